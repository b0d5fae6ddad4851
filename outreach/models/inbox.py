"""The inbox's own state: canned replies per huddle, and who answers which conversation."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from outreach.app.clock import utcnow
from outreach.models.base import Base, UTCDateTime


class CannedReply(Base):
    """A reply a huddle's responders send often ("The meeting is at 7 at the library"), picked
    from a list instead of typed again. Titles are unique in a huddle: the picker shows them."""

    __tablename__ = "canned_replies"
    __table_args__ = (UniqueConstraint("huddle_id", "title"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    huddle_id: Mapped[int] = mapped_column(ForeignKey("huddles.id", ondelete="CASCADE"))
    title: Mapped[str] = mapped_column(String(80))
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class InboxAssignment(Base):
    """Who answers one member's conversation in one huddle (none: anyone). One row at most per
    conversation: assigning again replaces it."""

    __tablename__ = "inbox_assignments"
    __table_args__ = (Index("ix_inbox_assignments_huddle_organizer", "huddle_id", "organizer_id"),)

    huddle_id: Mapped[int] = mapped_column(
        ForeignKey("huddles.id", ondelete="CASCADE"), primary_key=True
    )
    member_id: Mapped[int] = mapped_column(
        ForeignKey("members.id", ondelete="CASCADE"), primary_key=True
    )
    organizer_id: Mapped[int] = mapped_column(ForeignKey("organizers.id", ondelete="CASCADE"))
    assigned_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("organizers.id", ondelete="SET NULL")
    )
    assigned_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
