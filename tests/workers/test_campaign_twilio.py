"""A campaign end to end through the real Twilio SDK against a local fake Twilio API."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from sqlalchemy import select

from outreach import campaigns, consent
from outreach.app.services import Services
from outreach.models import Campaign, Delivery
from outreach.models import campaigns as k
from outreach.models import members as m
from outreach.providers.twilio.client import TwilioSmsTransport
from tests.conftest import TEST_ACCOUNT_SID, TEST_AUTH_TOKEN
from tests.fakes import FakeTwilio
from tests.workers.campaign_helpers import SENDER, add_members, draft, make_huddle, run_worker
from workers import context, jobs

MORNING = datetime(2027, 1, 12, 15, 0, tzinfo=UTC)


@pytest.fixture
def fake() -> Iterator[FakeTwilio]:
    with FakeTwilio(TEST_ACCOUNT_SID, TEST_AUTH_TOKEN) as server:
        yield server


@pytest.fixture
def twilio_services(services: Services, fake: FakeTwilio) -> Iterator[Services]:
    settings = services.settings.with_overrides(
        sms_backend="twilio",
        twilio_account_sid=TEST_ACCOUNT_SID,
        twilio_api_base_url=fake.base_url,
    )
    svc = Services(settings, services.engine, services.sessions, services.redis)
    context.install(svc)
    jobs._send_context = None
    with time_machine.travel(MORNING, tick=True):
        yield svc
    jobs._send_context = None
    context.install(services)


def test_campaign_requests_are_exactly_what_twilio_expects(
    twilio_services: Services, fake: FakeTwilio
) -> None:
    with twilio_services.sessions.begin() as session:
        huddle = make_huddle(session)
        add_members(session, huddle, 12)
    campaign_id = draft(twilio_services, body="Canvass at 10, {{ first_name }}.")
    jobs.launch_campaign(campaign_id)
    run_worker(twilio_services)
    creates = [r for r in fake.requests if r.method == "POST"]
    assert len(creates) == 12
    first = creates[0]
    assert first.path == f"/2010-04-01/Accounts/{TEST_ACCOUNT_SID}/Messages.json"
    assert first.auth == (TEST_ACCOUNT_SID, TEST_AUTH_TOKEN)
    assert first.form["From"] == [SENDER]
    assert first.form["StatusCallback"] == ["https://outreach.test/webhooks/twilio/status"]
    assert first.form["ValidityPeriod"] == ["36000"]
    assert first.form["Body"][0].startswith("Canvass at 10, Member")
    assert {r.form["To"][0] for r in creates} == {f"+1617200{i:04d}" for i in range(12)}
    with twilio_services.sessions() as session:
        sids = set(session.scalars(select(Delivery.provider_message_id)))
        assert sids == {msg["sid"] for msg in fake.messages}
        assert campaigns.status(session, campaign_id).state == k.COMPLETED


def test_twilio_refusals_map_to_skips_and_consent(
    twilio_services: Services, fake: FakeTwilio
) -> None:
    with twilio_services.sessions.begin() as session:
        huddle = make_huddle(session)
        people = add_members(session, huddle, 4)
    fake.reject_to[people[0].phone or ""] = 21610
    fake.reject_to[people[1].phone or ""] = 21211
    campaign_id = draft(twilio_services)
    jobs.launch_campaign(campaign_id)
    run_worker(twilio_services)
    with twilio_services.sessions() as session:
        report = campaigns.status(session, campaign_id)
        assert report.skipped == {"opted-out": 1, "invalid-number": 1}
        assert report.by_state[k.SENT] == 2
        assert consent.is_suppressed(session, "sms", people[0].phone or "", SENDER)
        assert consent.is_suppressed(session, "sms", people[1].phone or "")
        states = dict(session.execute(select(m.Subscription.member_id, m.Subscription.state)).all())
        assert states[people[0].id] == m.OPTED_OUT


def test_a_5xx_is_never_retried_and_reported_unknown(
    twilio_services: Services, fake: FakeTwilio
) -> None:
    with twilio_services.sessions.begin() as session:
        huddle = make_huddle(session)
        add_members(session, huddle, 1)
    fake.fail_next(1, status=500, code=20500, created=True)
    campaign_id = draft(twilio_services)
    jobs.launch_campaign(campaign_id)
    run_worker(twilio_services)
    assert len([r for r in fake.requests if r.method == "POST"]) == 1
    with twilio_services.sessions() as session:
        assert campaigns.status(session, campaign_id).by_state == {k.UNKNOWN: 1}


def test_rejected_credentials_pause_the_campaign_with_a_flag(
    twilio_services: Services, fake: FakeTwilio
) -> None:
    with twilio_services.sessions.begin() as session:
        huddle = make_huddle(session)
        add_members(session, huddle, 3)
    fake.fail_next(5, status=401, code=20003)
    campaign_id = draft(twilio_services)
    jobs.launch_campaign(campaign_id)
    run_worker(twilio_services)
    with twilio_services.sessions() as session:
        campaign = session.get_one(Campaign, campaign_id)
        assert campaign.state == k.PAUSED
        assert campaign.flag is not None
        assert "refused our account" in campaign.flag
        assert campaigns.status(session, campaign_id).by_state == {k.QUEUED: 3}


def test_reconciler_finds_what_twilio_has_and_what_it_does_not(fake: FakeTwilio) -> None:
    transport = TwilioSmsTransport(TEST_ACCOUNT_SID, TEST_AUTH_TOKEN, base_url=fake.base_url)
    since = datetime.now(UTC) - timedelta(seconds=1)
    client = fake.client()
    created = client.messages.create(to="+16172000001", from_="+16175550100", body="hi")
    assert (
        transport.find_sent(to="+16172000001", reference="delivery:1", since=since) == created.sid
    )
    assert transport.find_sent(to="+16172000002", reference="delivery:2", since=since) == ""
    transport.close()
