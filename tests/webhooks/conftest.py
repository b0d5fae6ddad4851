"""A huddle on a Twilio number, and a supporter's phone texting it."""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient
from sqlalchemy.orm import Session

from outreach.app.services import Services
from outreach.models import Campaign, Delivery
from outreach.people.huddles import create_huddle
from tests.members import active_member
from tests.webhooks.twilio_helpers import Phone

LOGAN_NUMBER = "+16175550100"
MARIA = "+16175550111"
DELIVERY_SID = "SM" + "a" * 32


@pytest.fixture
def logan(services: Services) -> None:
    with services.sessions.begin() as session:
        create_huddle(
            session,
            slug="logan",
            name="Logan Huddle",
            keywords=["LOGAN", "EASTIE"],
            sender=LOGAN_NUMBER,
        )


@pytest.fixture
def phone(client: FlaskClient, logan: None) -> Phone:
    return Phone(client, MARIA, LOGAN_NUMBER)


@pytest.fixture
def delivery_id(services: Services) -> int:
    """A campaign text sent to MARIA, an active member on the Logan number, awaiting receipts."""
    with services.sessions.begin() as session:
        huddle = create_huddle(
            session, slug="logan", name="Logan", keywords=["LOGAN"], sender=LOGAN_NUMBER
        )
        member = active_member(session, huddle, phone=MARIA)
        campaign = Campaign(
            huddle_id=huddle.id, name="Rally", channel="sms", body="Rally!", state="sending"
        )
        return add_sent_delivery(session, campaign, member.id, DELIVERY_SID)


def add_sent_delivery(session: Session, campaign: Campaign, member_id: int, sid: str) -> int:
    session.add(campaign)
    session.flush()
    delivery = Delivery(
        campaign_id=campaign.id,
        member_id=member_id,
        channel="sms",
        address=MARIA,
        state="sent",
        provider_message_id=sid,
    )
    session.add(delivery)
    session.flush()
    return delivery.id
