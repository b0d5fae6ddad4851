"""Members as tests need them: subscribed as an import subscribes them, with a ledger row."""

from __future__ import annotations

from sqlalchemy.orm import Session

from outreach import consent
from outreach.models import Huddle, Member
from outreach.models import members as m


def active_member(
    session: Session,
    huddle: Huddle,
    *,
    phone: str | None = None,
    email: str | None = None,
    channel: str = m.SMS,
    source: str = "import",
    **fields: str,
) -> Member:
    """A new member, ``active`` on ``channel`` in ``huddle``, flushed (its id is set)."""
    member = Member(phone=phone, email=email, **fields)
    session.add(member)
    session.flush()
    consent.set_subscription_state(
        session,
        member=member,
        huddle=huddle,
        channel=channel,
        state=m.ACTIVE,
        provenance=consent.Provenance(source=source),
    )
    return member
