"""``outreach worker``: an RQ worker with the scheduler, graceful on SIGTERM.

The worker runs jobs in-process (SimpleWorker-style, no fork per job): our jobs are batches
that hold a database connection pool and HTTP keep-alive connections worth reusing, and a crash
mid-batch is made safe by the delivery ledger, not by process isolation.
"""

from __future__ import annotations

import logging

from rq import Queue, SimpleWorker

from workers import context
from workers.queues import ALL_QUEUES


def run_worker(*, burst: bool = False, name: str | None = None) -> bool:
    from workers.jobs import schedule_reconciler  # noqa: PLC0415 - jobs import the domain

    svc = context.services()
    schedule_reconciler()
    queues = [Queue(q, connection=svc.redis) for q in ALL_QUEUES]
    worker = SimpleWorker(queues, connection=svc.redis, name=name)
    logging.getLogger("rq.worker").setLevel(logging.INFO)
    return bool(worker.work(burst=burst, with_scheduler=True, logging_level="INFO"))
