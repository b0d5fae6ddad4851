"""Queue names and constructors. Sends go on their own queue so they never wait behind chores."""

from __future__ import annotations

import redis
from rq import Queue

SEND_QUEUE = "outreach-send"
DEFAULT_QUEUE = "outreach-default"
ALL_QUEUES = (SEND_QUEUE, DEFAULT_QUEUE)


def queue(connection: redis.Redis, name: str = DEFAULT_QUEUE) -> Queue:
    return Queue(name, connection=connection)
