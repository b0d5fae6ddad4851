"""Campaign fan-out and sending, in-process: the invariants with a real Redis and database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from flask.testing import FlaskClient
from rq import Queue
from rq.registry import ScheduledJobRegistry
from sqlalchemy import select, update

from outreach import campaigns, consent
from outreach.app.services import Services
from outreach.campaigns import CampaignError, segments
from outreach.models import Campaign, Delivery, OutboxMessage, Subscription
from outreach.models import campaigns as k
from outreach.models import members as m
from outreach.providers.sms import OutboundSms, SendResult, SmsTransport
from outreach.sms import spool
from outreach.sms.inbound import InboundSms
from tests.webhooks.twilio_helpers import Phone
from tests.workers.campaign_helpers import (
    SENDER,
    add_members,
    draft,
    make_huddle,
    outbox_counts,
    run_worker,
)
from workers import jobs
from workers.queues import SEND_QUEUE

# 15:00 UTC in January: 10:00 in Boston, 07:00 in Los Angeles.
MORNING = datetime(2027, 1, 12, 15, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def frozen_clock() -> time_machine.Coordinates:
    with time_machine.travel(MORNING, tick=True) as traveller:
        yield traveller


def _states(services: Services, campaign_id: int) -> dict[str, int]:
    with services.sessions() as session:
        return campaigns.status(session, campaign_id).by_state


def test_everyone_active_gets_exactly_one_text_and_the_campaign_completes(
    services: Services,
) -> None:
    with services.sessions.begin() as session:
        huddle = make_huddle(session)
        add_members(session, huddle, 30)
    campaign_id = draft(services)
    jobs.launch_campaign(campaign_id)
    run_worker(services)
    sent = outbox_counts(services)
    assert len(sent) == 30
    assert set(sent.values()) == {1}
    with services.sessions() as session:
        report = campaigns.status(session, campaign_id)
        assert report.state == k.COMPLETED
        assert report.by_state == {k.SENT: 30}
        first = session.scalars(select(OutboxMessage).order_by(OutboxMessage.id)).first()
        assert first is not None
        assert first.body.startswith("Rally Saturday, Member")
        assert first.body.endswith("Reply STOP to opt out")  # first text from this huddle
        assert first.from_address == SENDER


def test_opt_outs_and_suppressions_are_skipped_with_reasons(services: Services) -> None:
    with services.sessions.begin() as session:
        huddle = make_huddle(session)
        add_members(session, huddle, 5)
        add_members(session, huddle, 3, start=100, state=m.OPTED_OUT)
        add_members(session, huddle, 2, start=200, state=m.PENDING)
        suppressed = add_members(session, huddle, 1, start=300)[0]
        consent.suppress(
            session, channel="sms", address=suppressed.phone or "", reason="stop", scope=SENDER
        )
    campaign_id = draft(services)
    jobs.launch_campaign(campaign_id)
    run_worker(services)
    assert len(outbox_counts(services)) == 5
    with services.sessions() as session:
        report = campaigns.status(session, campaign_id)
    assert report.skipped == {"opted-out": 3, "suppressed": 1}  # pending members are not audience
    assert report.by_state[k.SENT] == 5


def test_segment_filter_selects_the_audience(services: Services) -> None:
    with services.sessions.begin() as session:
        huddle = make_huddle(session)
        add_members(session, huddle, 4, tag="volunteer")
        add_members(session, huddle, 6, start=50)
    campaign_id = draft(services, segment_filter="tag:volunteer")
    jobs.launch_campaign(campaign_id)
    run_worker(services)
    assert len(outbox_counts(services)) == 4


def test_a_date_term_means_the_same_days_at_launch_as_in_the_count(services: Services) -> None:
    """``joined>=2027-01-10`` is that day in the huddle's zone when counted and when launched."""
    with services.sessions.begin() as session:
        huddle = make_huddle(session, timezone="America/Los_Angeles")
        late_on_the_9th, early_on_the_10th = add_members(session, huddle, 2)
        for member, joined in (
            (late_on_the_9th, datetime(2027, 1, 10, 7, 0, tzinfo=UTC)),  # 23:00 on the 9th in LA
            (early_on_the_10th, datetime(2027, 1, 10, 9, 0, tzinfo=UTC)),  # 01:00 on the 10th
        ):
            session.execute(
                update(Subscription)
                .where(Subscription.member_id == member.id)
                .values(created_at=joined)
            )
        huddle_id = huddle.id
    with services.sessions() as session:
        counted = segments.count(
            session,
            huddle_id=huddle_id,
            channel=m.SMS,
            filter_text="joined>=2027-01-10",
            now=MORNING,
        )
    campaign_id = draft(services, segment_filter="joined>=2027-01-10")
    jobs.launch_campaign(campaign_id)
    assert counted == 1
    assert _states(services, campaign_id) == {k.QUEUED: 1}


class StopMidway:
    """A transport that, while sending, has a later recipient text STOP through the webhook."""

    def __init__(self, inner: SmsTransport, client: FlaskClient, victim: str, after: int) -> None:
        self.inner = inner
        self.client = client
        self.victim = victim
        self.after = after
        self.sent = 0
        self.name = "stop-midway"

    def send(self, message: OutboundSms) -> SendResult:
        self.sent += 1
        if self.sent == self.after:
            assert "unsubscribed" in Phone(self.client, self.victim, SENDER).text("stop texting me")
        return self.inner.send(message)

    def fetch_status(self, provider_message_id: str) -> str | None:
        return self.inner.fetch_status(provider_message_id)

    def close(self) -> None:
        self.inner.close()


def test_a_stop_texted_while_the_campaign_sends_is_honored(
    services: Services, client: FlaskClient
) -> None:
    with services.sessions.begin() as session:
        huddle = make_huddle(session)
        add_members(session, huddle, 40)
    campaign_id = draft(services, rate=20.0)  # groups of 5: the re-check runs between groups
    jobs.launch_campaign(campaign_id)
    with services.sessions() as session:  # the last one to be sent
        victim = session.scalars(select(Delivery.address).order_by(Delivery.id.desc())).first()
    assert victim is not None
    context = jobs.send_context()
    inner = context.transport_for_thread()
    wrapper = StopMidway(inner, client, victim, after=3)
    context.transport_for_thread = lambda: wrapper
    try:
        run_worker(services)
    finally:
        jobs._send_context = None
    sent = outbox_counts(services)
    assert victim not in sent
    assert len(sent) == 39
    with services.sessions() as session:
        reason = session.scalar(select(Delivery.skip_reason).where(Delivery.address == victim))
        assert reason in ("opted-out", "suppressed")


def test_quiet_hours_defer_to_the_recipients_morning(
    services: Services, frozen_clock: time_machine.Coordinates
) -> None:
    with services.sessions.begin() as session:
        huddle = make_huddle(session)
        add_members(session, huddle, 3, zip_code="02128")  # Boston: 10:00 now
        add_members(session, huddle, 2, start=50, zip_code="94103", area="415")  # SF: 07:00 now
    campaign_id = draft(services)
    jobs.launch_campaign(campaign_id)
    run_worker(services)
    assert len(outbox_counts(services)) == 3
    with services.sessions() as session:
        waiting = session.scalars(select(Delivery).where(Delivery.state == k.QUEUED)).all()
        assert {d.not_before for d in waiting} == {datetime(2027, 1, 12, 16, 0, tzinfo=UTC)}
        assert session.get_one(Campaign, campaign_id).state == k.SENDING
    # Nothing is scheduled in RQ: the ledger says when, and the sweep enqueues it when due.
    assert Queue(SEND_QUEUE, connection=services.redis).count == 0
    assert ScheduledJobRegistry(SEND_QUEUE, connection=services.redis).count == 0
    frozen_clock.move_to(datetime(2027, 1, 12, 15, 59, tzinfo=UTC))
    assert jobs.sweep()["stalled"] == 0
    # Nothing goes out before 08:00 in San Francisco, even if a job runs early.
    jobs.send_batch(campaign_id, 0, 10**9)
    assert len(outbox_counts(services)) == 3
    frozen_clock.move_to(datetime(2027, 1, 12, 16, 0, 30, tzinfo=UTC))
    assert jobs.sweep()["stalled"] == 1
    run_worker(services)
    assert len(outbox_counts(services)) == 5
    with services.sessions() as session:
        assert session.get_one(Campaign, campaign_id).state == k.COMPLETED


def test_validity_period_ends_with_the_window(services: Services) -> None:
    seen: list[OutboundSms] = []

    class Recorder:
        name = "recorder"

        def send(self, message: OutboundSms) -> SendResult:
            seen.append(message)
            return SendResult(
                provider_message_id=f"SM{len(seen):032x}", status="queued", segments=1
            )

        def fetch_status(self, provider_message_id: str) -> str | None:
            return "queued" if provider_message_id.startswith("SM") else None

        def close(self) -> None:
            pass

    with services.sessions.begin() as session:
        huddle = make_huddle(session)
        add_members(session, huddle, 1)
    campaign_id = draft(services)
    jobs.launch_campaign(campaign_id)
    context = jobs.send_context()
    recorder = Recorder()
    context.transport_for_thread = lambda: recorder
    try:
        run_worker(services)
    finally:
        jobs._send_context = None
    # 10:00 in Boston; the window closes at 21:00: 11 hours, capped at Twilio's 10-hour maximum.
    assert [m.validity_period for m in seen] == [36000]
    assert seen[0].status_callback == "https://outreach.test/webhooks/twilio/status"


def test_pause_resume_and_cancel(services: Services) -> None:
    with services.sessions.begin() as session:
        huddle = make_huddle(session)
        add_members(session, huddle, 10)
    campaign_id = draft(services)
    jobs.launch_campaign(campaign_id)
    with services.sessions.begin() as session:
        campaigns.pause(session, campaign_id)
    run_worker(services)
    assert outbox_counts(services) == {}
    with services.sessions.begin() as session:
        campaigns.move(campaigns.get_campaign(session, campaign_id), k.SENDING)
    jobs.resume_campaign(campaign_id)
    run_worker(services)
    assert len(outbox_counts(services)) == 10
    with pytest.raises(CampaignError, match="completed"), services.sessions.begin() as session:
        campaigns.cancel(session, campaign_id)


def test_cancel_skips_everything_not_yet_sent(services: Services) -> None:
    with services.sessions.begin() as session:
        huddle = make_huddle(session)
        add_members(session, huddle, 10)
    campaign_id = draft(services)
    jobs.launch_campaign(campaign_id)
    with services.sessions.begin() as session:
        campaigns.cancel(session, campaign_id)
    run_worker(services)
    assert outbox_counts(services) == {}
    assert _states(services, campaign_id) == {k.SKIPPED: 10}


def test_drafting_reports_errors_now(services: Services) -> None:
    with services.sessions.begin() as session:
        make_huddle(session)
    for kwargs, message in (
        ({"segment_filter": "tag:"}, "segment"),
        ({"body": "Hi {{ frist_name }}"}, "body"),
        ({"body": "{% for x in y %}{% endfor %}"}, "body"),
        ({"rate": -1.0}, "rate"),
        ({"quiet_start": "25:00", "quiet_end": "26:00"}, "HH:MM"),
        ({"huddle_slug": "nowhere"}, "no huddle"),
    ):
        with pytest.raises((CampaignError, ValueError), match=message):
            draft(services, **kwargs)


def test_relaunching_never_duplicates_deliveries(services: Services) -> None:
    with services.sessions.begin() as session:
        huddle = make_huddle(session)
        add_members(session, huddle, 7)
    campaign_id = draft(services)
    jobs.launch_campaign(campaign_id)
    from outreach.app.clock import utcnow
    from outreach.campaigns import fanout

    assert fanout.snapshot(services.sessions, campaign_id, now=utcnow()) == 7
    jobs.enqueue_batches(campaign_id)  # a second set of jobs for the same rows
    run_worker(services)
    assert set(outbox_counts(services).values()) == {1}


def test_a_stop_spooled_in_an_outage_counts_before_the_campaign_sends(
    services: Services,
) -> None:
    """The STOP came while the database was away and waits in the spool. Sends are queued
    ahead of the spool's own replay job, so the sender applies the spool before its last
    consent check: the member gets the STOP's confirmation, never the campaign."""
    with services.sessions.begin() as session:
        huddle = make_huddle(session)
        stopped, *others = add_members(session, huddle, 3)
        assert stopped.phone is not None
    campaign_id = draft(services)
    jobs.launch_campaign(campaign_id)
    stop = InboundSms("SM" + "5" * 32, stopped.phone, SENDER, "STOP")
    spool.spool_text(services.redis, stop)

    run_worker(services)

    assert services.redis.llen(spool.SPOOL) == 0
    with services.sessions() as session:
        reason = session.scalar(
            select(Delivery.skip_reason).where(Delivery.address == stopped.phone)
        )
        to_stopped = session.scalars(
            select(OutboxMessage.body).where(OutboxMessage.to_address == stopped.phone)
        ).all()
    assert reason == "opted-out"
    assert len(to_stopped) == 1
    assert "Rally" not in to_stopped[0]  # the confirmation, not the campaign
    assert all(outbox_counts(services)[member.phone or ""] == 1 for member in others)


def test_a_worker_whose_lease_is_stale_sends_nothing_and_hands_its_rows_back(
    services: Services,
) -> None:
    with services.sessions.begin() as session:
        huddle = make_huddle(session)
        add_members(session, huddle, 5)
    campaign_id = draft(services)
    jobs.launch_campaign(campaign_id)
    context = jobs.send_context()
    context.may_send = lambda: False  # could not renew its lease for half the timeout
    try:
        run_worker(services)
    finally:
        jobs._send_context = None
    assert outbox_counts(services) == {}
    with services.sessions() as session:
        rows = session.scalars(select(Delivery).where(Delivery.campaign_id == campaign_id)).all()
    assert {row.state for row in rows} == {k.QUEUED}
    assert all(row.not_before is not None for row in rows)  # the sweep gives them a job later


def test_a_scheduled_campaign_is_launched_by_the_sweep_when_its_time_comes(
    services: Services, frozen_clock: time_machine.Coordinates
) -> None:
    with services.sessions.begin() as session:
        huddle = make_huddle(session)
        add_members(session, huddle, 4)
    send_at = MORNING + timedelta(hours=1)
    campaign_id = draft(services, send_at=send_at)
    assert jobs.launch_campaign(campaign_id) == k.SCHEDULED
    assert jobs.sweep()["launched"] == 0  # not yet: nothing waits in RQ for it either
    run_worker(services)
    assert outbox_counts(services) == {}
    frozen_clock.move_to(send_at + timedelta(seconds=1))
    assert jobs.sweep()["launched"] == 1
    assert jobs.sweep()["launched"] == 0  # its launch job is queued: not a second one
    run_worker(services)
    assert len(outbox_counts(services)) == 4
    assert _states(services, campaign_id) == {k.SENT: 4}
