"""``outreach worker``: an RQ worker with the scheduler, graceful on SIGTERM.

The worker runs jobs in-process (SimpleWorker-style, no fork per job): our jobs are batches
that hold a database connection pool and HTTP keep-alive connections worth reusing, and a crash
mid-batch is made safe by the delivery ledger, not by process isolation.

On SIGTERM or Ctrl-C, RQ finishes the running job before exiting. A send job at a slow rate can
run for minutes, so the worker also tells the job (``context.stop_requested``): it ends after its
current group and puts the rest of its range back on the queue for the next worker.
"""

from __future__ import annotations

import logging
from types import FrameType

from rq import Queue, SimpleWorker

from workers import context
from workers.queues import ALL_QUEUES


class OutreachWorker(SimpleWorker):
    """RQ's SimpleWorker, telling the running job when a warm shutdown is asked for."""

    def request_stop(self, signum: int, frame: FrameType | None) -> None:
        context.request_stop()
        super().request_stop(signum, frame)


def run_worker(*, burst: bool = False, name: str | None = None) -> bool:
    from workers.jobs import (  # noqa: PLC0415 - jobs import the domain
        schedule_reconciler,
        schedule_twilio_replay,
    )

    svc = context.services()
    schedule_reconciler()
    schedule_twilio_replay()
    queues = [Queue(q, connection=svc.redis) for q in ALL_QUEUES]
    context.clear_stop()
    worker = OutreachWorker(queues, connection=svc.redis, name=name)
    logging.getLogger("rq.worker").setLevel(logging.INFO)
    return bool(worker.work(burst=burst, with_scheduler=True, logging_level="INFO"))
