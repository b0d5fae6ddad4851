"""``/metrics``: Prometheus text format (prometheus-client).

Two kinds of figures. Requests (count and latency by endpoint and status) are counted in each
web process; under gunicorn set ``PROMETHEUS_MULTIPROC_DIR`` to an empty folder so every worker
process's counts are added up. Everything else is read from the database and Redis when
scraped, so every web process answers the same: deliveries by state, queue depth, stale claims,
the Twilio spool, rate-limiter waits, provider errors by code, live workers. If either store is
unreachable, the answer says so (``outreach_database_up``, ``outreach_redis_up``) and carries
what the other gave. With ``METRICS_TOKEN`` set a scrape needs ``Authorization: Bearer …``.
"""

from __future__ import annotations

import hmac
import logging
import os
import time
from collections.abc import Iterator
from datetime import timedelta

from flask import Blueprint, Flask, Response, abort, g, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from rq import Queue
from sqlalchemy import func, select

from outreach.app.clock import utcnow
from outreach.app.services import Services
from outreach.campaigns import leases
from outreach.campaigns.ratelimit import WAIT_METRIC
from outreach.models import Campaign, Delivery
from outreach.models import campaigns as k
from outreach.sms import spool
from web.access import public
from web.extensions import services

log = logging.getLogger(__name__)

bp = Blueprint("metrics", __name__)

QUEUES = ("outreach-send", "outreach-default")  # workers.queues.ALL_QUEUES (web imports no workers)
STALE_CLAIM = timedelta(minutes=1)
RECENTLY_FINISHED = timedelta(hours=24)

REQUESTS = Counter(
    "outreach_http_requests", "HTTP requests answered", ["endpoint", "method", "status"]
)
LATENCY = Histogram(
    "outreach_http_request_seconds",
    "Time to answer an HTTP request",
    ["endpoint"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)


def init_app(app: Flask) -> None:
    app.before_request(_start_timer)
    app.after_request(_count)
    app.register_blueprint(bp)


def _start_timer() -> None:
    g.metrics_started = time.perf_counter()


def _count(response: Response) -> Response:
    started = g.pop("metrics_started", None)
    endpoint = request.endpoint or "unmatched"  # a route name, never the raw path
    REQUESTS.labels(endpoint, request.method, str(response.status_code)).inc()
    if started is not None:
        LATENCY.labels(endpoint).observe(time.perf_counter() - started)
    return response


@bp.get("/metrics")
@public("Prometheus, behind METRICS_TOKEN when it is set")
def metrics() -> Response:
    svc = services()
    token = svc.settings.metrics_token
    if token:
        given = request.headers.get("Authorization", "").removeprefix("Bearer ")
        if not hmac.compare_digest(given.encode(), token.encode()):
            abort(401)
    registry = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.MultiProcessCollector(registry)
    else:
        registry.register(REQUESTS)
        registry.register(LATENCY)
    registry.register(StoreCollector(svc))
    return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)


class StoreCollector(Collector):
    """Figures read from the database and Redis at scrape time."""

    def __init__(self, svc: Services) -> None:
        self._svc = svc

    def collect(self) -> Iterator[Metric]:
        yield from self._database()
        yield from self._redis()

    def _database(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("outreach_database_up", "1 if the database answered the scrape")
        try:
            found = list(self._read_database())
        except Exception as exc:  # noqa: BLE001 - a scrape reports, never fails
            log.warning("metrics: database unreachable: %s", type(exc).__name__)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from found

    def _read_database(self) -> Iterator[Metric]:
        now = utcnow()
        current = (Campaign.state.in_([k.SENDING, k.PAUSED, k.SCHEDULED])) | (
            Campaign.finished_at >= now - RECENTLY_FINISHED
        )
        recent = select(Campaign.id).where(current)
        deliveries = GaugeMetricFamily(
            "outreach_deliveries",
            "Deliveries of current campaigns (and those finished in the last day), by state",
            labels=["channel", "state"],
        )
        errors = GaugeMetricFamily(
            "outreach_provider_errors",
            "Deliveries of current campaigns the provider refused, by error code",
            labels=["channel", "code"],
        )
        with self._svc.sessions() as session:
            for channel, state, count in session.execute(
                select(Delivery.channel, Delivery.state, func.count())
                .where(Delivery.campaign_id.in_(recent))
                .group_by(Delivery.channel, Delivery.state)
            ):
                deliveries.add_metric([channel, state], count)
            for channel, code, count in session.execute(
                select(Delivery.channel, Delivery.error_code, func.count())
                .where(Delivery.campaign_id.in_(recent), Delivery.error_code.is_not(None))
                .group_by(Delivery.channel, Delivery.error_code)
            ):
                errors.add_metric([channel, code or ""], count)
            stale = session.scalar(
                select(func.count()).where(
                    Delivery.campaign_id.in_(recent),
                    Delivery.state == k.CLAIMED,
                    Delivery.claimed_at < now - STALE_CLAIM,
                )
            )
            alive = leases.live_workers(
                session, now=now, timeout=self._svc.settings.worker_lease_timeout
            )
        yield deliveries
        yield errors
        yield _gauge("outreach_claims_stale", "Deliveries claimed over a minute ago", stale or 0)
        yield _gauge("outreach_workers_alive", "Workers whose lease is fresh", alive)

    def _redis(self) -> Iterator[Metric]:
        client = self._svc.redis
        try:
            depth = {name: Queue(name, connection=client).count for name in QUEUES}
            spooled = spool.waiting(client)
            dead = int(client.llen(spool.DEAD))
            waits = client.hgetall(WAIT_METRIC)
        except Exception as exc:  # noqa: BLE001 - a scrape reports, never fails
            log.warning("metrics: redis unreachable: %s", type(exc).__name__)
            yield _gauge("outreach_redis_up", "1 if Redis answered the scrape", 0)
            return
        yield _gauge("outreach_redis_up", "1 if Redis answered the scrape", 1)
        queues = GaugeMetricFamily("outreach_queue_jobs", "Jobs waiting", labels=["queue"])
        for name, count in depth.items():
            queues.add_metric([name], count)
        yield queues
        yield _gauge("outreach_twilio_spool_length", "Twilio webhooks spooled", spooled)
        yield _gauge("outreach_twilio_spool_dead_letters", "Spooled webhooks set aside", dead)
        waited = GaugeMetricFamily(
            "outreach_rate_limiter_wait_seconds_total",
            "Seconds sends waited for their sender's rate limit",
            labels=["sender"],
        )
        for sender, seconds in sorted(waits.items()):
            waited.add_metric([_text(sender)], float(seconds))
        yield waited


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
