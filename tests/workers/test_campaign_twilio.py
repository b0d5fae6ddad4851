"""A campaign end to end through the real Twilio SDK against a local fake Twilio API."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from sqlalchemy import select, update

from outreach import campaigns, consent
from outreach.app.services import Services
from outreach.campaigns import reconcile
from outreach.campaigns.ratelimit import RateLimiter
from outreach.models import Campaign, Delivery
from outreach.models import campaigns as k
from outreach.models import members as m
from outreach.providers.twilio.client import NO_RETRY, TwilioSmsTransport
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


def claim_for_a_dead_worker(services: Services, campaign_id: int, *, ago: timedelta) -> list[str]:
    """Mark every delivery claimed by a job of a worker that never renews: what SIGKILL leaves."""
    with services.sessions.begin() as session:
        session.execute(
            update(Delivery)
            .where(Delivery.campaign_id == campaign_id)
            .values(
                state=k.CLAIMED,
                claimed_at=datetime.now(UTC) - ago,
                claimed_by=f"gone-1-abc:{campaign_id}:1",
            )
        )
        return list(session.scalars(select(Delivery.address).order_by(Delivery.id)))


def test_the_reconciler_rides_out_a_message_list_it_cannot_read(
    twilio_services: Services, fake: FakeTwilio
) -> None:
    """Twilio's list answering 500s ("Unable to fetch page" in the SDK): the rows wait, the
    lookups are counted, and once it answers again each row is settled; a row it never answers
    for becomes unknown after MAX_LOOKUPS."""
    with twilio_services.sessions.begin() as session:
        huddle = make_huddle(session)
        add_members(session, huddle, 3)
    campaign_id = draft(twilio_services)
    with twilio_services.sessions.begin() as session:
        campaigns.fanout.start(session, campaign_id, now=datetime.now(UTC))
    campaigns.fanout.snapshot(twilio_services.sessions, campaign_id, now=datetime.now(UTC))
    never_answered, sent_one, not_sent = claim_for_a_dead_worker(
        twilio_services, campaign_id, ago=timedelta(minutes=2)
    )
    created = fake.client().messages.create(to=sent_one, from_=SENDER, body="hi")
    transport = TwilioSmsTransport(
        TEST_ACCOUNT_SID, TEST_AUTH_TOKEN, base_url=fake.base_url, retry=NO_RETRY
    )
    transports = {m.SMS: transport}
    fake.fail_lists(3 * (reconcile.MAX_LOOKUPS - 1))
    for _ in range(reconcile.MAX_LOOKUPS - 1):
        result = reconcile.reconcile_claims(
            twilio_services.sessions, transports, now=datetime.now(UTC)
        )
        assert (result.waiting, result.sent, result.unknown) == (3, 0, 0)
    with twilio_services.sessions() as session:
        assert set(session.scalars(select(Delivery.lookups))) == {reconcile.MAX_LOOKUPS - 1}
    fake.fail_lists(1)  # the first row's last lookup fails too
    result = reconcile.reconcile_claims(twilio_services.sessions, transports, now=datetime.now(UTC))
    transport.close()
    assert (result.sent, result.requeued, result.unknown) == (1, 1, 1)
    with twilio_services.sessions() as session:
        rows = dict(session.execute(select(Delivery.address, Delivery.state)).all())
        sid = session.scalar(
            select(Delivery.provider_message_id).where(Delivery.address == sent_one)
        )
    assert rows[sent_one] == k.SENT
    assert sid == created.sid
    assert rows[not_sent] == k.QUEUED
    assert rows[never_answered] == k.UNKNOWN
    assert result.campaigns == {campaign_id}


def test_a_claim_whose_send_may_still_be_in_flight_is_not_requeued_yet(
    twilio_services: Services, fake: FakeTwilio
) -> None:
    with twilio_services.sessions.begin() as session:
        huddle = make_huddle(session)
        add_members(session, huddle, 1)
    campaign_id = draft(twilio_services)
    with twilio_services.sessions.begin() as session:
        campaigns.fanout.start(session, campaign_id, now=datetime.now(UTC))
    campaigns.fanout.snapshot(twilio_services.sessions, campaign_id, now=datetime.now(UTC))
    claim_for_a_dead_worker(twilio_services, campaign_id, ago=timedelta(seconds=5))
    transport = TwilioSmsTransport(TEST_ACCOUNT_SID, TEST_AUTH_TOKEN, base_url=fake.base_url)
    now = datetime.now(UTC)
    result = reconcile.reconcile_claims(twilio_services.sessions, {m.SMS: transport}, now=now)
    assert (result.waiting, result.requeued) == (1, 0)  # Twilio may still be taking it
    later = now + timedelta(seconds=transport.max_request_seconds)
    result = reconcile.reconcile_claims(twilio_services.sessions, {m.SMS: transport}, now=later)
    transport.close()
    assert result.requeued == 1


def test_a_429_slows_the_sender_and_the_sweep_sends_the_rest_when_due(
    twilio_services: Services, fake: FakeTwilio
) -> None:
    with twilio_services.sessions.begin() as session:
        huddle = make_huddle(session)
        add_members(session, huddle, 1)
        sender_key = huddle.sender_key
    fake.fail_next(4, status=429, code=20429)  # the client's own retries all refused
    campaign_id = draft(twilio_services)
    jobs.launch_campaign(campaign_id)
    run_worker(twilio_services)
    fake.reset()  # Twilio answers again (and a retry budget cut short by a slow machine is moot)
    limiter = RateLimiter(twilio_services.redis)
    slowed = limiter.slowed(sender_key)
    assert slowed is not None
    assert slowed[0] == 0.5
    with twilio_services.sessions() as session:
        row = session.scalars(select(Delivery)).one()
        assert row.state == k.QUEUED
        assert row.not_before is not None
        retry_at = row.not_before
    assert jobs.sweep()["stalled"] == 0  # not due yet: no job
    with time_machine.travel(retry_at + timedelta(seconds=11), tick=False):
        assert jobs.sweep()["stalled"] == 1
        run_worker(twilio_services)
    with twilio_services.sessions() as session:
        assert campaigns.status(session, campaign_id).by_state == {k.SENT: 1}


def test_a_campaign_whose_last_claims_the_sweep_settled_is_completed_by_the_sweep(
    twilio_services: Services, fake: FakeTwilio
) -> None:
    with twilio_services.sessions.begin() as session:
        huddle = make_huddle(session)
        add_members(session, huddle, 2)
    campaign_id = draft(twilio_services)
    with twilio_services.sessions.begin() as session:
        campaigns.fanout.start(session, campaign_id, now=datetime.now(UTC))
    campaigns.fanout.snapshot(twilio_services.sessions, campaign_id, now=datetime.now(UTC))
    for address in claim_for_a_dead_worker(twilio_services, campaign_id, ago=timedelta(minutes=2)):
        fake.client().messages.create(to=address, from_=SENDER, body="hi")  # both went out
    outcome = jobs.sweep()
    assert (outcome["sent"], outcome["completed"]) == (2, 1)  # no send job is left to do it
    with twilio_services.sessions() as session:
        assert campaigns.status(session, campaign_id).state == k.COMPLETED


def test_lookups_stop_at_their_time_budget_and_the_rest_waits(
    twilio_services: Services, fake: FakeTwilio
) -> None:
    with twilio_services.sessions.begin() as session:
        huddle = make_huddle(session)
        add_members(session, huddle, 3)
    campaign_id = draft(twilio_services)
    with twilio_services.sessions.begin() as session:
        campaigns.fanout.start(session, campaign_id, now=datetime.now(UTC))
    campaigns.fanout.snapshot(twilio_services.sessions, campaign_id, now=datetime.now(UTC))
    claim_for_a_dead_worker(twilio_services, campaign_id, ago=timedelta(minutes=2))
    ticks = iter([0.0, 0.0, 5.0, 11.0, 11.0])  # the second lookup ends past the 10 s budget
    transport = TwilioSmsTransport(TEST_ACCOUNT_SID, TEST_AUTH_TOKEN, base_url=fake.base_url)
    result = reconcile.reconcile_claims(
        twilio_services.sessions,
        {m.SMS: transport},
        now=datetime.now(UTC),
        monotonic=lambda: next(ticks),
    )
    transport.close()
    assert (result.requeued, result.waiting) == (2, 1)
