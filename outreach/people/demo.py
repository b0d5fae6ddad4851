"""``outreach seed-demo``: a demo huddle and a few hundred fake members, for the dashboard."""

from __future__ import annotations

import random

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from outreach import consent
from outreach.addresses.phones import try_normalize_phone
from outreach.app.clock import utcnow
from outreach.models import Huddle, Member, MemberTag
from outreach.models import consent as c
from outreach.models import members as m
from outreach.people.huddles import create_huddle

DEMO_SLUG = "demo"
FIRST = [
    "Ana",
    "Ben",
    "Chloe",
    "Dev",
    "Elena",
    "Farid",
    "Grace",
    "Hana",
    "Ivan",
    "Jada",
    "Kofi",
    "Lena",
    "Malik",
    "Nia",
    "Omar",
    "Priya",
    "Quinn",
    "Rosa",
    "Sam",
    "Tariq",
]
LAST = [
    "Alvarez",
    "Brooks",
    "Chen",
    "Diaz",
    "Evans",
    "Fischer",
    "Garcia",
    "Hughes",
    "Ito",
    "Jones",
    "Khan",
    "Lopez",
    "Moreau",
    "Nguyen",
    "Okafor",
    "Patel",
]
AREA_CODES = ("617", "202", "312", "415", "512", "303", "404", "206", "305", "612")
ZIPS = ("02128", "20001", "60601", "94103", "78701", "80202", "30303", "98101", "33101", "55401")
TAGS = ("volunteer", "donor", "canvasser", "host", "new")


def seed(factory: sessionmaker[Session], *, count: int = 300, rng_seed: int = 7) -> tuple[str, int]:
    """Create (or top up) the demo huddle; returns its slug and how many members were added."""
    rng = random.Random(rng_seed)
    added = 0
    with factory.begin() as session:
        huddle = session.scalars(select(Huddle).where(Huddle.slug == DEMO_SLUG)).one_or_none()
        if huddle is None:
            huddle = create_huddle(
                session,
                slug=DEMO_SLUG,
                name="Demo Huddle",
                keywords=["DEMO", "HUDDLE"],
                sender="+1 617 555 0100",
                postal_address="1 Main St, Boston, MA 02128",
                email_from_address="demo@example.org",
            )
        provenance = consent.Provenance(source=c.SOURCE_IMPORT, detail="seed-demo", actor="demo")
        attempts = 0
        while added < count and attempts < count * 20:
            attempts += 1
            i = rng.randrange(len(AREA_CODES))
            phone = try_normalize_phone(
                f"+1{AREA_CODES[i]}{rng.randint(200, 989)}{rng.randint(0, 9999):04d}"
            )
            if phone is None or session.scalar(select(Member.id).where(Member.phone == phone)):
                continue
            first, last = rng.choice(FIRST), rng.choice(LAST)
            member = Member(
                phone=phone,
                email=f"{first}.{last}.{rng.randint(1, 99999)}@example.org".lower(),
                first_name=first,
                last_name=last,
                zip=ZIPS[i],
                created_at=utcnow(),
            )
            if session.scalar(select(Member.id).where(Member.email == member.email)):
                continue
            session.add(member)
            session.flush()
            for channel in m.CHANNELS:
                state = m.OPTED_OUT if rng.random() < 0.04 else m.ACTIVE
                consent.set_subscription_state(
                    session,
                    member=member,
                    huddle=huddle,
                    channel=channel,
                    state=m.ACTIVE,
                    provenance=provenance,
                )
                if state == m.OPTED_OUT:
                    consent.set_subscription_state(
                        session,
                        member=member,
                        huddle=huddle,
                        channel=channel,
                        state=state,
                        provenance=provenance,
                    )
            for tag in rng.sample(TAGS, k=rng.randint(0, 2)):
                session.add(MemberTag(huddle_id=huddle.id, member_id=member.id, tag=tag))
            added += 1
        session.flush()
    return DEMO_SLUG, added
