"""Member imports run by a worker: the uploaded file, where the import stands, its row errors."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, BigInteger, ForeignKey, Integer, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from outreach.app.clock import utcnow
from outreach.models.base import Base, UTCDateTime

STORING = "storing"  # the file is being stored: no worker takes it yet
QUEUED = "queued"  # waiting for a worker (first time, or again after a worker died)
RUNNING = "running"
DONE = "done"
FAILED = "failed"  # the file cannot be imported, or the database refused it too many times
IMPORT_STATES = (STORING, QUEUED, RUNNING, DONE, FAILED)


class MemberImport(Base):
    """One uploaded file and how far its import has come.

    ``next_line`` and the counts are written in the same transaction as each chunk of members,
    so a worker that dies mid-file leaves a row that says exactly what is in: the next worker
    starts at ``next_line`` and the totals stay true. ``runner`` is the lease token of the worker
    running it (``outreach.campaigns.leases``); a token no live worker holds means nobody is.
    """

    __tablename__ = "member_imports"

    id: Mapped[int] = mapped_column(primary_key=True)
    huddle_id: Mapped[int] = mapped_column(ForeignKey("huddles.id", ondelete="CASCADE"), index=True)
    source_name: Mapped[str] = mapped_column(String(255))
    consent_channels: Mapped[list[str]] = mapped_column(JSON)
    default_region: Mapped[str] = mapped_column(String(2))
    actor: Mapped[str | None] = mapped_column(String(254))
    state: Mapped[str] = mapped_column(String(10), default=QUEUED, index=True)
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    bytes_read: Mapped[int] = mapped_column(BigInteger, default=0)
    next_line: Mapped[int] = mapped_column(Integer, default=0)  # 0: not started
    rows: Mapped[int] = mapped_column(Integer, default=0)
    created: Mapped[int] = mapped_column(Integer, default=0)
    merged: Mapped[int] = mapped_column(Integer, default=0)
    subscribed_sms: Mapped[int] = mapped_column(Integer, default=0)
    subscribed_email: Mapped[int] = mapped_column(Integer, default=0)
    kept_opted_out: Mapped[int] = mapped_column(Integer, default=0)
    suppressed: Mapped[int] = mapped_column(Integer, default=0)
    error_count: Mapped[int] = mapped_column(Integer, default=0)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    runner: Mapped[str | None] = mapped_column(String(100))
    reason: Mapped[str | None] = mapped_column(Text)  # why it failed, or why the last try stopped
    not_before: Mapped[datetime | None] = mapped_column(UTCDateTime)  # a retry's earliest start
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class MemberImportPart(Base):
    """The uploaded file, in pieces of about a megabyte: web and worker share only the database."""

    __tablename__ = "member_import_parts"

    import_id: Mapped[int] = mapped_column(
        ForeignKey("member_imports.id", ondelete="CASCADE"), primary_key=True
    )
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    data: Mapped[bytes] = mapped_column(LargeBinary)


class MemberImportError(Base):
    """A row the import rejected, with its line: the row-error report."""

    __tablename__ = "member_import_errors"

    import_id: Mapped[int] = mapped_column(
        ForeignKey("member_imports.id", ondelete="CASCADE"), primary_key=True
    )
    line: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    reason: Mapped[str] = mapped_column(Text)
