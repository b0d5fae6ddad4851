"""Building audiences and running workers for campaign tests."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from outreach import campaigns, consent
from outreach.app.services import Services
from outreach.models import Huddle, Member, MemberTag, OutboxMessage
from outreach.models import members as m
from outreach.people.huddles import create_huddle
from tests.members import active_member
from workers.queues import ALL_QUEUES

SENDER = "+16175550100"


def make_huddle(
    session: Session, slug: str = "logan", timezone: str = "America/New_York"
) -> Huddle:
    return create_huddle(
        session,
        slug=slug,
        name=f"{slug.title()} Huddle",
        keywords=[slug.upper()],
        sender=SENDER,
        timezone=timezone,
    )


def add_members(
    session: Session,
    huddle: Huddle,
    count: int,
    *,
    start: int = 0,
    zip_code: str = "02128",
    area: str = "617",
    state: str = m.ACTIVE,
    tag: str | None = None,
) -> list[Member]:
    """Members with numbers +1 AREA 2xx xxxx (never the sandbox's magic 555-01xx numbers)."""
    provenance = consent.Provenance(source="import", detail="test")
    made = []
    for i in range(start, start + count):
        member = active_member(
            session,
            huddle,
            phone=f"+1{area}{200 + i // 10000:03d}{i % 10000:04d}",
            first_name=f"Member{i}",
            zip=zip_code,
        )
        if state != m.ACTIVE:
            consent.set_subscription_state(
                session,
                member=member,
                huddle=huddle,
                channel=m.SMS,
                state=state,
                provenance=provenance,
            )
        if tag:
            session.add(MemberTag(huddle_id=huddle.id, member_id=member.id, tag=tag))
        made.append(member)
    return made


def draft(
    services: Services, body: str = "Rally Saturday, {{ first_name }}!", **kwargs: object
) -> int:
    args: dict[str, object] = {
        "huddle_slug": "logan",
        "channel": "sms",
        "segment_filter": "",
        "body": body,
        "rate": 2000.0,
    }
    args.update(kwargs)
    with services.sessions.begin() as session:
        return campaigns.create_campaign(session, **args).id  # type: ignore[arg-type]


def run_worker(services: Services) -> None:
    from rq import Queue, SimpleWorker

    queues = [Queue(q, connection=services.redis) for q in ALL_QUEUES]
    SimpleWorker(queues, connection=services.redis).work(burst=True)


def outbox_counts(services: Services) -> dict[str, int]:
    with services.sessions() as session:
        rows = session.execute(
            select(OutboxMessage.to_address, func.count()).group_by(OutboxMessage.to_address)
        )
        return {str(to): int(n) for to, n in rows.all()}
