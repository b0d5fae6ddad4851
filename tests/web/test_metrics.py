"""``/metrics``: parsed with prometheus-client's own parser, against the real stores."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import redis
from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select, update

from outreach.app.clock import utcnow
from outreach.app.services import Services
from outreach.campaigns.ratelimit import WAIT_METRIC
from outreach.models import Delivery, WorkerLease
from outreach.models import campaigns as k
from outreach.sms import spool
from outreach.sms.inbound import InboundSms
from tests.webhooks.twilio_helpers import Phone, new_sid
from tests.workers.campaign_helpers import SENDER, add_members, draft, make_huddle
from web.app import create_app
from workers import jobs


def scrape(
    client: FlaskClient, **headers: str
) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.mimetype == "text/plain"
    samples = {}
    for family in text_string_to_metric_families(response.get_data(as_text=True)):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def test_requests_are_counted_by_endpoint_and_status(
    client: FlaskClient, services: Services
) -> None:
    with services.sessions.begin() as session:
        make_huddle(session)
    before = scrape(client)
    key = (
        "outreach_http_requests_total",
        (("endpoint", "twilio.inbound_sms"), ("method", "POST"), ("status", "200")),
    )
    Phone(client, "+16172000001", SENDER).text("JOIN LOGAN")
    client.get("/no-such-page")
    after = scrape(client)
    assert after[key] == before.get(key, 0) + 1, sorted(k for k in after if "http" in k[0])
    unmatched = (
        "outreach_http_requests_total",
        (("endpoint", "unmatched"), ("method", "GET"), ("status", "404")),
    )
    assert after[unmatched] >= 1
    assert (
        after[("outreach_http_request_seconds_count", (("endpoint", "twilio.inbound_sms"),))] >= 1
    )


def test_the_ledger_queues_spool_waits_and_workers_are_read_when_scraped(
    client: FlaskClient, services: Services
) -> None:
    with services.sessions.begin() as session:
        huddle = make_huddle(session)
        add_members(session, huddle, 5)
    campaign_id = draft(services)
    jobs.launch_campaign(campaign_id)
    now = utcnow()
    with services.sessions.begin() as session:
        ids = session.scalars(select(Delivery.id).order_by(Delivery.id)).all()
        session.execute(
            update(Delivery)
            .where(Delivery.id.in_(ids[:2]))
            .values(state=k.CLAIMED, claimed_at=now - timedelta(minutes=2))
        )
        session.execute(
            update(Delivery).where(Delivery.id == ids[2]).values(state=k.FAILED, error_code="30007")
        )
        session.add(WorkerLease(worker_id="w1", beat_at=now, started_at=now))
        session.add(WorkerLease(worker_id="gone", beat_at=now - timedelta(hours=1), started_at=now))
    spool.spool_text(services.redis, InboundSms(new_sid(), "+16172000009", SENDER, "STOP"))
    services.redis.hincrbyfloat(WAIT_METRIC, "+16175550100", 2.5)
    samples = scrape(client)
    assert samples[("outreach_deliveries", (("channel", "sms"), ("state", "queued")))] == 2
    assert samples[("outreach_deliveries", (("channel", "sms"), ("state", "claimed")))] == 2
    assert samples[("outreach_provider_errors", (("channel", "sms"), ("code", "30007")))] == 1
    assert samples[("outreach_claims_stale", ())] == 2
    assert samples[("outreach_workers_alive", ())] == 1
    assert samples[("outreach_queue_jobs", (("queue", "outreach-send"),))] == 1
    assert samples[("outreach_twilio_spool_length", ())] == 1
    assert samples[("outreach_twilio_spool_dead_letters", ())] == 0
    assert (
        samples[("outreach_rate_limiter_wait_seconds_total", (("sender", "+16175550100"),))] == 2.5
    )
    assert samples[("outreach_database_up", ())] == 1
    assert samples[("outreach_redis_up", ())] == 1


def test_a_metrics_token_is_required_when_set(services: Services) -> None:
    settings = replace(services.settings, metrics_token="scrape-me")
    client = create_app(settings, replace(services, settings=settings)).test_client()
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert scrape(client, Authorization="Bearer scrape-me")[("outreach_redis_up", ())] == 1


def test_with_redis_away_the_scrape_still_answers_with_the_database(
    services: Services, tmp_path: Path
) -> None:
    away = redis.Redis.from_url(f"unix://{tmp_path / 'nothing.sock'}")
    broken = replace(services, redis=away)
    samples = scrape(create_app(services.settings, broken).test_client())
    assert samples[("outreach_redis_up", ())] == 0
    assert samples[("outreach_database_up", ())] == 1
    assert ("outreach_queue_jobs", (("queue", "outreach-send"),)) not in samples
