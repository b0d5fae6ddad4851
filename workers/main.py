"""``outreach worker``: an RQ worker that rides out Redis restarts, with the ticker beside it.

The worker runs jobs in-process (SimpleWorker-style, no fork per job): our jobs are batches
that hold a database connection pool and HTTP keep-alive connections worth reusing, and a crash
mid-batch is made safe by the delivery ledger and the worker's lease, not by process isolation.

RQ's worker quits when it loses Redis; this one waits and starts again (backoff up to
``MAX_BACKOFF``), so ``outreach run`` and a platform without restarts keep sending after Redis
comes back, empty or not (the sweep rebuilds the queue from the ledger). The ticker
(``workers.ticker``) renews the lease and runs the sweep and the spool replay meanwhile.

On SIGTERM or Ctrl-C, RQ finishes the running job before exiting. A send job at a slow rate can
run for minutes, so the worker also tells the job (``context.stop_requested``): it ends after its
current group and puts the rest of its range back on the queue for the next worker.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import time
from types import FrameType

import redis
from rq import Queue, SimpleWorker

from outreach.app.clock import utcnow
from outreach.campaigns.leases import Lease
from workers import context
from workers.queues import ALL_QUEUES
from workers.ticker import Chore, Ticker

log = logging.getLogger(__name__)

SWEEPS_PER_LEASE_TIMEOUT = 5  # a sweep every 3 s with the default 15 s lease timeout
REPLAY_EVERY = 2.0  # seconds: how soon a STOP spooled in a database outage applies
FIRST_BACKOFF = 0.5
MAX_BACKOFF = 5.0


class OutreachWorker(SimpleWorker):
    """RQ's SimpleWorker, telling the running job when a warm shutdown is asked for."""

    def request_stop(self, signum: int, frame: FrameType | None) -> None:
        context.request_stop()
        super().request_stop(signum, frame)


def run_worker(*, burst: bool = False, name: str | None = None) -> bool:
    from workers.jobs import (  # noqa: PLC0415 - jobs import the domain
        replay_twilio_spool,
        sweep,
    )

    svc = context.services()
    timeout = svc.settings.worker_lease_timeout
    lease = Lease(svc.sessions, name, now=utcnow, timeout=timeout)
    context.install_lease(lease)
    context.clear_stop()
    ticker = Ticker(
        lease,
        svc.redis,
        [
            Chore("sweep", timeout / SWEEPS_PER_LEASE_TIMEOUT, sweep),
            Chore("twilio-replay", REPLAY_EVERY, replay_twilio_spool),
        ],
    )
    ticker.tick()  # lease first: a send job must not start before the lease exists
    ticker.start()
    logging.getLogger("rq.worker").setLevel(logging.INFO)
    worked = False
    backoff = FIRST_BACKOFF
    try:
        for incarnation in itertools.count(1):
            started = time.monotonic()
            try:
                queues = [Queue(q, connection=svc.redis) for q in ALL_QUEUES]
                worker = OutreachWorker(
                    queues, connection=svc.redis, name=f"{lease.worker_id}.{incarnation}"
                )
                worked = worker.work(burst=burst, logging_level="INFO") or worked
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                log.warning("worker: Redis unavailable: %s", exc)
            if burst or context.stop_requested():
                return worked
            if time.monotonic() - started > MAX_BACKOFF * 4:
                backoff = FIRST_BACKOFF  # it ran a good while: start the backoff again
            log.warning("worker: RQ stopped (Redis lost?); starting again in %.1f s", backoff)
            time.sleep(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF)
    finally:
        ticker.stop()
        ticker.join(timeout=5)
        with contextlib.suppress(Exception):
            lease.end()
        context.install_lease(None)
    return worked
