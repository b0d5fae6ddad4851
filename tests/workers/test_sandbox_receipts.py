"""The sandbox plays the providers: signed receipts and events reach our real webhooks over HTTP."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import time_machine
from rq.job import Job
from rq.registry import ScheduledJobRegistry
from sqlalchemy import func, select
from werkzeug.serving import make_server

from outreach import campaigns, consent
from outreach.app.services import Services
from outreach.models import Delivery, EmailEvent
from outreach.models import campaigns as k
from outreach.models import members as m
from outreach.people.huddles import create_huddle
from tests.members import active_member
from tests.workers.campaign_helpers import add_members, draft, make_huddle, run_worker
from web import create_app
from workers import context, jobs
from workers.queues import DEFAULT_QUEUE


@pytest.fixture
def live(services: Services) -> Iterator[Services]:
    """The app served on a loopback port, PUBLIC_BASE_URL pointing at it, failures at 50%."""
    server = make_server("127.0.0.1", 0, None)  # type: ignore[arg-type]
    port = server.server_port
    server.server_close()
    settings = services.settings.with_overrides(
        public_base_url=f"http://127.0.0.1:{port}", sandbox_failure_rate=0.5
    )
    svc = Services(settings, services.engine, services.sessions, services.redis)
    app = create_app(settings, svc)
    http = make_server("127.0.0.1", port, app, threaded=True)
    thread = threading.Thread(target=http.serve_forever, daemon=True)
    thread.start()
    context.install(svc)
    jobs._send_context = None
    with time_machine.travel(datetime(2027, 1, 12, 15, 0, tzinfo=UTC), tick=True):
        yield svc
    jobs._send_context = None
    context.install(services)
    http.shutdown()
    thread.join(timeout=5)


def run_scheduled(svc: Services) -> None:
    registry = ScheduledJobRegistry(DEFAULT_QUEUE, connection=svc.redis)
    for job_id in registry.get_job_ids():
        job = Job.fetch(job_id, connection=svc.redis)
        if job.func_name.endswith(("post_sandbox_receipts", "post_sandbox_email_events")):
            job.func(*job.args)


def test_sms_receipts_arrive_signed_and_move_deliveries(live: Services) -> None:
    with live.sessions.begin() as session:
        add_members(session, make_huddle(session), 20)
    campaign_id = draft(live)
    jobs.launch_campaign(campaign_id)
    run_worker(live)
    run_scheduled(live)
    with live.sessions() as session:
        report = campaigns.status(session, campaign_id)
    assert report.by_state.get(k.SENT, 0) == 0
    assert report.by_state[k.DELIVERED] + report.by_state[k.UNDELIVERED] == 20
    assert report.by_state[k.UNDELIVERED] > 0  # half fail in this sandbox
    assert set(report.errors) <= {"30003", "30005"}


# Each email hard-bounces with probability 1/4 here (half fail, half of those are soft): with 40
# the test sees none with probability 0.75**40 = 1e-5 (with 10 it was 6%, and it did fail).
EMAIL_MEMBERS = 40


def test_email_events_arrive_signed_and_bounces_suppress(live: Services) -> None:
    with live.sessions.begin() as session:
        huddle = create_huddle(
            session,
            slug="logan",
            name="Logan",
            keywords=["LOGAN"],
            postal_address="1 Main St",
            email_from_address="l@example.org",
        )
        for i in range(EMAIL_MEMBERS):
            active_member(
                session, huddle, email=f"p{i}@example.net", channel=m.EMAIL, source="form"
            )
        campaign_id = campaigns.create_campaign(
            session,
            huddle_slug="logan",
            channel="email",
            segment_filter="",
            body="News",
            subject="News",
        ).id
    jobs.launch_campaign(campaign_id)
    run_worker(live)
    run_scheduled(live)
    with live.sessions() as session:
        report = campaigns.status(session, campaign_id)
        per_delivery = dict(
            session.execute(
                select(EmailEvent.delivery_id, func.count()).group_by(EmailEvent.delivery_id)
            ).all()
        )
        bounced = session.scalars(
            select(Delivery.address).where(Delivery.state.in_([k.FAILED, k.UNDELIVERED]))
        ).all()
        soft = session.scalars(select(Delivery.address).where(Delivery.state == k.SENT)).all()
        # Every message got its events: processed, then delivered or a bounce.
        assert sorted(per_delivery.values()) == [2] * EMAIL_MEMBERS
        assert report.by_state.get(k.DELIVERED, 0) + len(bounced) + len(soft) == EMAIL_MEMBERS
        assert bounced, "half the sandbox emails bounce at this failure rate"
        for address in bounced:  # hard bounces: never again
            assert consent.is_suppressed(session, "email", address)
        for address in soft:  # blocked (soft) bounces: recorded, SendGrid retries them
            assert not consent.is_suppressed(session, "email", address)
