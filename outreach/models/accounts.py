"""Organizer accounts: who signs in, which huddles each sees and how, API tokens, the audit log."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from outreach.app.clock import utcnow
from outreach.models.base import Base, UTCDateTime

ADMIN = "admin"  # every huddle, settings, users; not a per-huddle role (``Organizer.is_admin``)
ORGANIZER = "organizer"  # a huddle's members, segments, campaigns, inbox, exports
RESPONDER = "responder"  # a huddle's inbox only
HUDDLE_ROLES = (ORGANIZER, RESPONDER)


class Organizer(Base):
    """A person who signs in. Access is granted per huddle (OrganizerHuddle), or to all (admin).

    ``session_version`` is part of every session's identity: bumping it (sign-out, disabling,
    a new password) ends every session of this person at once, on every device.
    """

    __tablename__ = "organizers"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    password_hash: Mapped[str | None] = mapped_column(String(255))
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    session_version: Mapped[int] = mapped_column(Integer, default=0)
    last_sign_in_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class OrganizerHuddle(Base):
    __tablename__ = "organizer_huddles"

    organizer_id: Mapped[int] = mapped_column(
        ForeignKey("organizers.id", ondelete="CASCADE"), primary_key=True
    )
    huddle_id: Mapped[int] = mapped_column(
        ForeignKey("huddles.id", ondelete="CASCADE"), primary_key=True
    )
    role: Mapped[str] = mapped_column(String(20), default=ORGANIZER)


class ApiToken(Base):
    """A bearer token, stored as its SHA-256: the token itself is shown once, when made."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    organizer_id: Mapped[int] = mapped_column(ForeignKey("organizers.id", ondelete="CASCADE"))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    label: Mapped[str] = mapped_column(String(100), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    use_count: Mapped[int] = mapped_column(Integer, default=0)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class AuditEvent(Base):
    """What an organizer did, appended and never changed: the actor's email is copied, so the
    record outlives the account."""

    __tablename__ = "audit_events"
    __table_args__ = (Index("ix_audit_events_at", "at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    actor_id: Mapped[int | None] = mapped_column(
        ForeignKey("organizers.id", ondelete="SET NULL"), index=True
    )
    actor_email: Mapped[str] = mapped_column(String(254))
    action: Mapped[str] = mapped_column(String(40))
    huddle_id: Mapped[int | None] = mapped_column(ForeignKey("huddles.id", ondelete="SET NULL"))
    subject: Mapped[str | None] = mapped_column(String(200))  # what it was done to: "campaign 12"
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True))
    ip: Mapped[str | None] = mapped_column(String(45))


class IdempotencyKey(Base):
    """An API request made with an ``Idempotency-Key``, and the answer it got.

    A retry with the same key and the same request gets the same answer, and changes nothing; the
    same key with another request is refused. Keys belong to a user and expire after a day.
    """

    __tablename__ = "idempotency_keys"
    __table_args__ = (UniqueConstraint("organizer_id", "key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    organizer_id: Mapped[int] = mapped_column(ForeignKey("organizers.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(255))
    fingerprint: Mapped[str] = mapped_column(String(64))  # SHA-256 of method, path and body
    status_code: Mapped[int | None] = mapped_column(Integer)  # None while the first one runs
    response_body: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
