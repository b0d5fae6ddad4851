"""Saved segments, campaigns and the delivery ledger (one row per campaign × member × channel)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from outreach.app.clock import utcnow
from outreach.models.base import Base, UTCDateTime

# Campaign.state
DRAFT = "draft"
SCHEDULED = "scheduled"
SENDING = "sending"
PAUSED = "paused"
COMPLETED = "completed"
CANCELLED = "cancelled"

# Delivery.state
QUEUED = "queued"
CLAIMED = "claimed"
SENT = "sent"
DELIVERED = "delivered"
UNDELIVERED = "undelivered"
FAILED = "failed"
SKIPPED = "skipped"
UNKNOWN = "unknown"  # claimed, then the worker died and the provider could not confirm

#: How far along a delivery is. Receipts and email events are at-least-once and unordered: a
#: report moves a delivery only to a state of a higher rank (a late "sent" after "delivered"
#: changes nothing). Skipped rows were never sent: no report moves them.
DELIVERY_RANK = {
    QUEUED: 0,
    CLAIMED: 0,
    UNKNOWN: 0,
    SENT: 2,
    DELIVERED: 3,
    UNDELIVERED: 3,
    FAILED: 3,
    SKIPPED: 9,
}


class Segment(Base):
    __tablename__ = "segments"
    __table_args__ = (UniqueConstraint("huddle_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    huddle_id: Mapped[int] = mapped_column(ForeignKey("huddles.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(100))
    filter: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Campaign(Base):
    __tablename__ = "campaigns"

    id: Mapped[int] = mapped_column(primary_key=True)
    huddle_id: Mapped[int] = mapped_column(
        ForeignKey("huddles.id", ondelete="RESTRICT"), index=True
    )
    name: Mapped[str] = mapped_column(String(200))
    channel: Mapped[str] = mapped_column(String(10))
    segment_filter: Mapped[str] = mapped_column(Text, default="")
    subject: Mapped[str | None] = mapped_column(Text)
    body: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(12), default=DRAFT)
    send_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    rate: Mapped[float | None] = mapped_column()  # segments/s for this campaign's sender
    quiet_start: Mapped[str | None] = mapped_column(String(5))  # "HH:MM", narrows the window
    quiet_end: Mapped[str | None] = mapped_column(String(5))
    respect_quiet_hours: Mapped[bool] = mapped_column(default=True)  # email: off unless asked
    flag: Mapped[str | None] = mapped_column(Text)  # e.g. carrier filtering (30007) noticed
    audience_size: Mapped[int] = mapped_column(Integer, default=0)
    created_by: Mapped[str | None] = mapped_column(String(254))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    launched_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Delivery(Base):
    """The ledger that makes "exactly one message per member per campaign" hold."""

    __tablename__ = "deliveries"
    __table_args__ = (
        UniqueConstraint("campaign_id", "member_id", "channel"),
        # Claims and batch planning walk a campaign's queued rows in id order.
        Index("ix_deliveries_campaign_state_id", "campaign_id", "state", "id"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"))
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id", ondelete="CASCADE"))
    channel: Mapped[str] = mapped_column(String(10))
    address: Mapped[str] = mapped_column(String(254))
    state: Mapped[str] = mapped_column(String(12), default=QUEUED)
    skip_reason: Mapped[str | None] = mapped_column(String(40))
    provider_message_id: Mapped[str | None] = mapped_column(String(64), index=True)
    error_code: Mapped[str | None] = mapped_column(String(16))
    segments: Mapped[int | None] = mapped_column(Integer)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    not_before: Mapped[datetime | None] = mapped_column(UTCDateTime)  # deferred by quiet hours
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    claimed_by: Mapped[str | None] = mapped_column(String(100))  # the claiming job's lease
    lookups: Mapped[int] = mapped_column(Integer, default=0)  # provider lookups of a dead claim
    opened_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # email: first open
    clicked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # email: first click
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
