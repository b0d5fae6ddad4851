"""Queue names and constructors. Sends go on their own queue so they never wait behind chores;
member imports, which can run a minute or more, on theirs, taken when nothing else waits."""

from __future__ import annotations

import redis
from rq import Queue

SEND_QUEUE = "outreach-send"
DEFAULT_QUEUE = "outreach-default"
IMPORT_QUEUE = "outreach-import"
ALL_QUEUES = (SEND_QUEUE, DEFAULT_QUEUE, IMPORT_QUEUE)


def queue(connection: redis.Redis, name: str = DEFAULT_QUEUE) -> Queue:
    return Queue(name, connection=connection)
