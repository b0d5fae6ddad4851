"""Worker leases: which worker processes are alive, and which job's claims each one holds."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from outreach.models.base import Base, UTCDateTime


class WorkerLease(Base):
    """One row per worker process, renewed every couple of seconds while it lives.

    ``holding`` is the lease token of the send job it is running (``None`` between jobs); the
    deliveries that job claimed carry the same token in ``claimed_by``. A claim whose token is
    not held by a worker that beat recently belongs to nobody and is settled by the sweep.
    """

    __tablename__ = "worker_leases"

    worker_id: Mapped[str] = mapped_column(String(80), primary_key=True)
    beat_at: Mapped[datetime] = mapped_column(UTCDateTime)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    holding: Mapped[str | None] = mapped_column(String(100))
