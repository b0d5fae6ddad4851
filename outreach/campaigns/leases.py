"""Worker leases: the database says which worker processes are alive and what their jobs hold.

Each worker process renews its row in ``worker_leases`` several times per lease timeout
(``WORKER_LEASE_TIMEOUT``, 15 s by default). A send job
takes a token (``<worker>:<campaign>:<n>``), writes it as the row's ``holding`` before it claims
anything, and every delivery it claims carries the token in ``claimed_by``. A claim is alive
while a worker that renewed its lease within the timeout holds its token; any other claim
belongs to a dead worker or a job that ended badly, and the sweep settles it
(``outreach.campaigns.reconcile``).

The database, not Redis, keeps the leases: after Redis restarts empty, live workers must not
look dead (their claims would be asked about and re-queued while they send them), and a worker
with no database cannot send anyway. A worker that could not renew for half the timeout
stops starting sends, so it has stopped well before anyone can call it dead.
"""

from __future__ import annotations

import itertools
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, delete, select, update
from sqlalchemy.orm import Session, sessionmaker

from outreach.models import WorkerLease

LEASE_TIMEOUT = 15.0  # seconds: a lease not renewed for this long is dead (the default)
BEATS_PER_TIMEOUT = 6  # renewals per timeout: a slow database or two can be missed
FORGET_AFTER = timedelta(hours=1)  # dead leases are deleted after this


def new_worker_id() -> str:
    host = "".join(ch if ch.isalnum() or ch in "-." else "-" for ch in socket.gethostname())
    return f"{host[:40]}-{os.getpid()}-{secrets.token_hex(3)}"


class Lease:
    """This process's lease: its id, the token of the running job, and whether it may send."""

    def __init__(
        self,
        factory: sessionmaker[Session],
        worker_id: str | None = None,
        *,
        now: Callable[[], datetime],
        timeout: float = LEASE_TIMEOUT,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.worker_id = worker_id or new_worker_id()
        self.timeout = timeout
        self.beat_every = timeout / BEATS_PER_TIMEOUT
        self._fence = timeout / 2  # could not renew for this long: start no more sends
        self._factory = factory
        self._now = now
        self._monotonic = monotonic
        self._numbers = itertools.count(1)
        self._lock = threading.Lock()
        self._holding: str | None = None
        self._renewed: float | None = None
        self._started = now()

    @property
    def holding(self) -> str | None:
        return self._holding

    def beat(self) -> None:
        """Renew the lease, writing what the running job holds. Raises if the database is away."""
        with self._lock:
            holding = self._holding
            attempt = self._monotonic()
            _write(self._factory, self.worker_id, holding, self._now(), self._started)
            if self._holding == holding:
                self._renewed = attempt

    def hold(self, subject: int | str) -> str:
        """A token for a new job (a campaign's id, or what else it holds), written before the job
        claims anything."""
        with self._lock:
            token = f"{self.worker_id}:{subject}:{next(self._numbers)}"
            attempt = self._monotonic()
            _write(self._factory, self.worker_id, token, self._now(), self._started)
            self._holding = token
            self._renewed = attempt
        return token

    def release(self) -> None:
        """The job ended: claims it left (if any) are for the sweep. Written at the next beat."""
        with self._lock:
            self._holding = None
            self._renewed = None

    def may_send(self) -> bool:
        """True while the lease was renewed recently enough that nobody can think us dead."""
        renewed = self._renewed
        return renewed is not None and self._monotonic() - renewed < self._fence

    def is_alive(self, worker_id: str) -> bool:
        """Whether that worker renewed its lease within the timeout (this one: always)."""
        if worker_id == self.worker_id:
            return True
        cutoff = self._now() - timedelta(seconds=self.timeout)
        with self._factory() as session:
            beat = session.scalar(
                select(WorkerLease.beat_at).where(WorkerLease.worker_id == worker_id)
            )
        return beat is not None and beat >= cutoff

    def end(self) -> None:
        """A clean exit: drop the row, so the sweep need not wait for the lease to time out."""
        with self._factory() as session, session.begin():
            session.execute(delete(WorkerLease).where(WorkerLease.worker_id == self.worker_id))


def _write(
    factory: sessionmaker[Session],
    worker_id: str,
    holding: str | None,
    now: datetime,
    started: datetime,
) -> None:
    with factory() as session, session.begin():
        result = session.execute(
            update(WorkerLease)
            .where(WorkerLease.worker_id == worker_id)
            .values(beat_at=now, holding=holding)
        )
        renewed = cast(CursorResult[Any], result).rowcount
        if not renewed:
            session.add(
                WorkerLease(worker_id=worker_id, beat_at=now, started_at=started, holding=holding)
            )


def live_tokens(session: Session, *, now: datetime, timeout: float) -> set[str]:
    """The tokens held by workers that renewed their lease within ``timeout`` seconds."""
    return set(
        session.scalars(
            select(WorkerLease.holding).where(
                WorkerLease.beat_at >= now - timedelta(seconds=timeout),
                WorkerLease.holding.is_not(None),
            )
        )
    )


def campaign_of(token: str) -> int | None:
    _, _, rest = token.partition(":")
    campaign, _, _ = rest.partition(":")
    return int(campaign) if campaign.isdigit() else None


def live_workers(session: Session, *, now: datetime, timeout: float = LEASE_TIMEOUT) -> int:
    cutoff = now - timedelta(seconds=timeout)
    return len(
        session.scalars(select(WorkerLease.worker_id).where(WorkerLease.beat_at >= cutoff)).all()
    )


def forget_dead(session: Session, *, now: datetime) -> None:
    session.execute(delete(WorkerLease).where(WorkerLease.beat_at < now - FORGET_AFTER))
