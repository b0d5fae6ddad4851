"""The ticker: a thread in every worker process that renews its lease and runs the chores.

RQ's scheduler runs in one worker at a time, and a worker killed with SIGKILL keeps that role
until RQ's maintenance notices, about ten minutes later. Our periodic work (the sweep, the spool
replay) must not wait for that: every worker's ticker tries each chore when it is due, a Redis
key set with NX for the chore's period lets one of them run it, and a lock keeps a long run from
overlapping the next. A worker that loses Redis or the database logs it and keeps ticking.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis
from redis.exceptions import LockError

from outreach.campaigns.leases import Lease

log = logging.getLogger(__name__)

TICK = 0.5  # seconds between looks at the clock
RUN_LOCK_TIMEOUT = 600  # a chore that runs longer than this is presumed dead
# Delete the key only if it still names the dead holder: two workers may both notice it.
_DELETE_IF_HOLDER = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""


@dataclass
class Chore:
    name: str
    every: float  # seconds
    run: Callable[[], Any]
    next_try: float = 0.0


class Ticker(threading.Thread):
    def __init__(
        self,
        lease: Lease,
        client: redis.Redis,
        chores: list[Chore],
        *,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(name="outreach-ticker", daemon=True)
        self._lease = lease
        self._redis = client
        self._chores = chores
        self._monotonic = monotonic
        self._halt = threading.Event()
        self._next_beat = 0.0
        self._failing: set[str] = set()  # what failed last time (log once per outage)
        self._release_if = client.register_script(_DELETE_IF_HOLDER)

    def stop(self) -> None:
        self._halt.set()

    def run(self) -> None:
        while not self._halt.is_set():
            self.tick()
            self._halt.wait(TICK)

    def tick(self) -> None:
        now = self._monotonic()
        if now >= self._next_beat and self._attempt("lease", self._lease.beat):
            self._next_beat = now + self._lease.beat_every
        for chore in self._chores:
            if now >= chore.next_try:
                chore.next_try = now + chore.every
                self._attempt(chore.name, functools.partial(self._run_once, chore))

    def _run_once(self, chore: Chore) -> None:
        """Run ``chore`` if no worker ran it during its period and none is running it now."""
        key = f"outreach:chore:{chore.name}"
        if not self._redis.set(key, self._lease.worker_id, nx=True, px=int(chore.every * 1000)):
            return
        running = f"{key}:running"
        lock = self._redis.lock(running, timeout=RUN_LOCK_TIMEOUT)
        token = self._lease.worker_id
        taken = lock.acquire(blocking=False, token=token) or (
            self._break_if_dead(running) and lock.acquire(blocking=False, token=token)
        )
        if not taken:
            return
        try:
            result = chore.run()
            if result:
                log.debug("%s: %s", chore.name, result)
        finally:
            with contextlib.suppress(LockError):  # Redis restarted meanwhile: the lock is gone
                lock.release()

    def _break_if_dead(self, running: str) -> bool:
        """Delete a chore's lock left by a worker that died running it; True if it was.

        Without this a worker killed mid-sweep would stop every sweep for RUN_LOCK_TIMEOUT.
        """
        holder = self._redis.get(running)
        if holder is None:
            return True
        name = holder.decode() if isinstance(holder, bytes) else str(holder)
        if self._lease.is_alive(name):
            return False
        log.warning("chore lock %s held by %s, a dead worker: taken over", running, name)
        return bool(self._release_if(keys=[running], args=[holder]))

    def _attempt(self, what: str, step: Callable[[], Any]) -> bool:
        try:
            step()
        except Exception as exc:  # noqa: BLE001 - the ticker outlives any outage
            if what not in self._failing:
                log.warning("ticker: %s failed: %s: %s", what, type(exc).__name__, exc)
                self._failing.add(what)
            else:
                log.debug("ticker: %s still failing: %s", what, exc)
            return False
        if what in self._failing:
            log.warning("ticker: %s works again", what)
            self._failing.discard(what)
        return True
