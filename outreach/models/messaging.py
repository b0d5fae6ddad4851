"""Messages in and out: inbound texts, provider status events, the sandbox outbox."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Index, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from outreach.app.clock import utcnow
from outreach.models.base import Base, UTCDateTime

UNKNOWN_SENDER = "unknown"  # intent: a number we have never seen, texting no keyword
MAYBE_OPT_OUT = "maybe_opt_out"  # intent: looks like a STOP, is not certain (flagged)
# Answered with a hint, each kind at most once a day per number, told apart by the intent of the
# text it answered: how to join (a stranger's text), how to stop (a member's maybe-STOP).
HINTED = f"intent IN ('{UNKNOWN_SENDER}', '{MAYBE_OPT_OUT}') AND reply_text IS NOT NULL"


class InboundMessage(Base):
    """Every text we receive, deduped on the provider's MessageSid."""

    __tablename__ = "inbound_messages"
    __table_args__ = (
        Index("ix_inbound_messages_huddle_received", "huddle_id", "received_at"),
        # The texts answered with a hint (how to join, how to stop), by number: what the
        # once-a-day checks read. Only those: an index on every text's number costs each text
        # a page written.
        Index(
            "ix_inbound_messages_hints",
            "from_e164",
            "received_at",
            sqlite_where=text(HINTED),
            postgresql_where=text(HINTED),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    message_sid: Mapped[str] = mapped_column(String(64), unique=True)
    from_raw: Mapped[str] = mapped_column(String(64))
    from_e164: Mapped[str | None] = mapped_column(String(20))
    to_number: Mapped[str] = mapped_column(String(64))
    body: Mapped[str] = mapped_column(Text)
    # MMS attachments, in order: [{"url": ..., "content_type": ...}]; NULL: none (most texts)
    media: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON(none_as_null=True))
    member_id: Mapped[int | None] = mapped_column(ForeignKey("members.id", ondelete="SET NULL"))
    huddle_id: Mapped[int | None] = mapped_column(ForeignKey("huddles.id", ondelete="SET NULL"))
    intent: Mapped[str] = mapped_column(String(20))
    flagged: Mapped[bool] = mapped_column(Boolean, default=False)  # needs an organizer's eyes
    handled: Mapped[bool] = mapped_column(Boolean, default=False)  # organizer marked as done
    reply_text: Mapped[str | None] = mapped_column(Text)  # what we answered, for duplicates
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class StatusEvent(Base):
    """A provider status callback, deduped on (message id, status)."""

    __tablename__ = "status_events"
    __table_args__ = (UniqueConstraint("provider_message_id", "status"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    provider_message_id: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(24))
    error_code: Mapped[str | None] = mapped_column(String(16))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class EmailEvent(Base):
    """A SendGrid event, deduped on sg_event_id."""

    __tablename__ = "email_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    sg_event_id: Mapped[str] = mapped_column(String(100), unique=True)
    event: Mapped[str] = mapped_column(String(30))
    email: Mapped[str | None] = mapped_column(String(254))
    delivery_id: Mapped[int | None] = mapped_column()
    reason: Mapped[str | None] = mapped_column(Text)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class OutboxMessage(Base):
    """What we sent outside campaigns (replies) and everything the sandbox providers "sent"."""

    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_to_created", "to_address", "created_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    channel: Mapped[str] = mapped_column(String(10))
    provider: Mapped[str] = mapped_column(String(20))
    provider_message_id: Mapped[str | None] = mapped_column(String(64), index=True)
    to_address: Mapped[str] = mapped_column(String(254))
    from_address: Mapped[str | None] = mapped_column(String(254))
    subject: Mapped[str | None] = mapped_column(Text)
    body: Mapped[str] = mapped_column(Text)
    huddle_id: Mapped[int | None] = mapped_column(ForeignKey("huddles.id", ondelete="SET NULL"))
    member_id: Mapped[int | None] = mapped_column(ForeignKey("members.id", ondelete="SET NULL"))
    delivery_id: Mapped[int | None] = mapped_column(index=True)
    kind: Mapped[str] = mapped_column(String(20), default="reply")  # reply | campaign | test
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
