"""STOP <keyword> end to end: signed webhooks through the Flask app, then campaigns.

LOGAN and PROVO share one number. "STOP LOGAN" leaves LOGAN only: PROVO keeps texting the member.
These rely on the classifier reading "STOP LOGAN" as ``Classification(OPT_OUT, keyword="LOGAN")``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import time_machine
from flask.testing import FlaskClient
from sqlalchemy import select

from outreach.app.services import Services
from outreach.models import (
    ConsentEvent,
    Delivery,
    Huddle,
    InboundMessage,
    Member,
    OutboxMessage,
    Suppression,
)
from outreach.models import members as m
from tests.webhooks.conftest import LOGAN_NUMBER, MARIA
from tests.webhooks.test_inbound_sms import sub_state
from tests.webhooks.twilio_helpers import Phone
from tests.workers.campaign_helpers import SENDER, add_members, draft, make_huddle, run_worker
from tests.workers.test_campaigns import MORNING
from workers import jobs

assert SENDER == LOGAN_NUMBER


@pytest.fixture
def shared(services: Services, client: FlaskClient) -> Iterator[Phone]:
    """LOGAN and PROVO on one number, at 10:00 in Boston (campaigns may send); MARIA's phone."""
    with time_machine.travel(MORNING, tick=True):
        with services.sessions.begin() as session:
            make_huddle(session, "logan")
            make_huddle(session, "provo")
        yield Phone(client, MARIA, LOGAN_NUMBER)


def join(phone: Phone, *keywords: str) -> None:
    for keyword in keywords:
        assert "Reply YES" in phone.text(keyword)
        assert "You're in" in phone.text("YES")


def huddle_id(services: Services, slug: str) -> int:
    with services.sessions() as session:
        return session.scalars(select(Huddle.id).where(Huddle.slug == slug)).one()


def last_event(services: Services) -> ConsentEvent:
    with services.sessions() as session:
        event = session.scalars(select(ConsentEvent).order_by(ConsentEvent.id.desc())).first()
        assert event is not None
        return event


def suppressions(services: Services, number: str = MARIA) -> set[str]:
    with services.sessions() as session:
        return set(
            session.scalars(
                select(Suppression.scope).where(
                    Suppression.address == number, Suppression.lifted_at.is_(None)
                )
            )
        )


def test_stop_logan_leaves_logan_only(shared: Phone, services: Services) -> None:
    join(shared, "LOGAN", "PROVO")
    reply = shared.text("STOP LOGAN")
    assert reply == (
        "Logan Huddle: You're unsubscribed and will get no more messages. "
        "Reply START to resubscribe."
    )
    assert sub_state(services, slug="logan") == m.OPTED_OUT
    assert sub_state(services, slug="provo") == m.ACTIVE
    event = last_event(services)
    assert (event.action, event.source, event.detail) == ("opt_out", "keyword", "STOP LOGAN")
    assert event.huddle_id == huddle_id(services, "logan")
    assert suppressions(services) == set()  # the number is PROVO's sender too
    logan_id = huddle_id(services, "logan")
    with services.sessions() as session:
        row = session.scalars(select(InboundMessage).where(InboundMessage.body == "STOP LOGAN"))
        stop = row.one()
    assert (stop.intent, stop.huddle_id) == ("opt_out", logan_id)
    # PROVO still talks to her: HELP and replies as before, and STOP then leaves PROVO too.
    assert shared.text("STOP").startswith("Provo Huddle: You're unsubscribed")
    assert sub_state(services, slug="provo") == m.OPTED_OUT
    assert suppressions(services) == {LOGAN_NUMBER}


def test_stop_logan_from_a_member_not_in_logan_records_the_revocation(
    shared: Phone, services: Services
) -> None:
    join(shared, "PROVO")
    assert shared.text("stop logan").startswith("Logan Huddle: You're unsubscribed")
    assert sub_state(services, slug="logan") is None
    assert sub_state(services, slug="provo") == m.ACTIVE
    event = last_event(services)
    assert (event.action, event.address) == ("opt_out", MARIA)
    assert event.huddle_id == huddle_id(services, "logan")
    with services.sessions() as session:
        assert event.member_id == session.scalars(select(Member.id)).one()
    assert suppressions(services) == set()


def test_stop_logan_from_a_stranger_records_the_revocation(
    shared: Phone, services: Services
) -> None:
    assert shared.text("STOP LOGAN").startswith("Logan Huddle: You're unsubscribed")
    event = last_event(services)
    assert (event.action, event.member_id) == ("opt_out", None)
    assert event.huddle_id == huddle_id(services, "logan")
    with services.sessions() as session:
        assert session.scalars(select(Member)).all() == []
    assert suppressions(services) == set()


def test_start_after_stop_logan_brings_logan_back(shared: Phone, services: Services) -> None:
    join(shared, "LOGAN", "PROVO")
    shared.text("STOP LOGAN")
    assert shared.text("START").startswith("Logan Huddle: You're resubscribed")
    assert sub_state(services, slug="logan") == m.ACTIVE
    assert sub_state(services, slug="provo") == m.ACTIVE
    assert last_event(services).action == "resubscribe"


def test_twilios_advanced_opt_out_stops_every_huddle_on_the_number(
    shared: Phone, services: Services
) -> None:
    """OptOutType=STOP: Twilio blocked the number itself, so the STOP is not scoped."""
    join(shared, "LOGAN", "PROVO")
    assert shared.text("STOP LOGAN", OptOutType="STOP") == ""  # Twilio sent its confirmation
    assert sub_state(services, slug="logan") == m.OPTED_OUT
    assert sub_state(services, slug="provo") == m.OPTED_OUT
    assert suppressions(services) == {LOGAN_NUMBER}


def test_stop_logan_on_a_number_only_logan_uses_suppresses_the_number(
    phone: Phone, services: Services
) -> None:
    """Nothing else sends from the number: the scoped STOP suppresses it, as STOP does."""
    join(phone, "LOGAN")
    assert phone.text("STOP LOGAN").startswith("Logan Huddle: You're unsubscribed")
    assert sub_state(services) == m.OPTED_OUT
    assert suppressions(services) == {LOGAN_NUMBER}


def test_after_stop_logan_logan_campaigns_skip_her_and_provo_campaigns_reach_her(
    shared: Phone, services: Services
) -> None:
    join(shared, "LOGAN", "PROVO")
    with services.sessions.begin() as session:
        logan = session.scalars(select(Huddle).where(Huddle.slug == "logan")).one()
        others = [member.phone for member in add_members(session, logan, 2)]
    shared.text("STOP LOGAN")
    logan_campaign = draft(services, body="Logan rally Saturday!", huddle_slug="logan")
    provo_campaign = draft(services, body="Provo potluck Sunday!", huddle_slug="provo")
    for campaign_id in (logan_campaign, provo_campaign):
        jobs.launch_campaign(campaign_id)
    run_worker(services)
    with services.sessions() as session:
        outcomes = {
            (row.campaign_id, row.address): (row.state, row.skip_reason)
            for row in session.scalars(select(Delivery))
        }
        to_maria = session.scalars(
            select(OutboxMessage.body).where(OutboxMessage.to_address == MARIA)
        ).all()
    assert outcomes[(logan_campaign, MARIA)] == ("skipped", "opted-out")
    assert all(outcomes[(logan_campaign, phone)] == ("sent", None) for phone in others)
    assert outcomes[(provo_campaign, MARIA)] == ("sent", None)
    assert len(to_maria) == 1
    assert to_maria[0].startswith("Provo potluck Sunday!")


def test_a_request_naming_logan_leaves_logan_only(shared: Phone, services: Services) -> None:
    join(shared, "LOGAN", "PROVO")
    reply = shared.text("Could you take me off the Logan list? Thanks")
    assert reply.startswith("Logan Huddle: You're unsubscribed")
    assert sub_state(services, slug="logan") == m.OPTED_OUT
    assert sub_state(services, slug="provo") == m.ACTIVE


def test_a_request_naming_both_huddles_leaves_both(shared: Phone, services: Services) -> None:
    join(shared, "LOGAN", "PROVO")
    assert shared.text("unsubscribe me from logan and provo").endswith(
        "Reply START to resubscribe."
    )
    assert sub_state(services, slug="logan") == m.OPTED_OUT
    assert sub_state(services, slug="provo") == m.OPTED_OUT
    assert suppressions(services) == {LOGAN_NUMBER}
