"""Huddles: the local groups, their join keywords and their senders."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from outreach.app.clock import utcnow
from outreach.models.base import Base, UTCDateTime

OPT_IN_DOUBLE = "double"
OPT_IN_SINGLE = "single"


class Huddle(Base):
    __tablename__ = "huddles"

    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    # SMS sender: a number in E.164, or a Twilio messaging service (MG…), or both.
    sender_number: Mapped[str | None] = mapped_column(String(20), index=True)
    messaging_service_sid: Mapped[str | None] = mapped_column(String(34))
    timezone: Mapped[str] = mapped_column(String(64), default="America/New_York")
    country: Mapped[str] = mapped_column(String(2), default="US")
    opt_in_mode: Mapped[str] = mapped_column(String(10), default=OPT_IN_DOUBLE)
    profile_questions: Mapped[bool] = mapped_column(Boolean, default=False)
    # Organizer-written copy; None means the default copy in templates/messages/.
    help_text: Mapped[str | None] = mapped_column(Text)
    confirmation_text: Mapped[str | None] = mapped_column(Text)
    welcome_text: Mapped[str | None] = mapped_column(Text)
    message_frequency: Mapped[str] = mapped_column(String(100), default="up to 4 msgs/month")
    support_contact: Mapped[str | None] = mapped_column(String(200))
    email_from_address: Mapped[str | None] = mapped_column(String(254))
    email_from_name: Mapped[str | None] = mapped_column(String(200))
    postal_address: Mapped[str | None] = mapped_column(Text)
    # Segments per second this sender may send; None means the default for its kind.
    sms_rate: Mapped[float | None] = mapped_column()
    # The huddle's sending window, "HH:MM" local times inside the federal 08:00-21:00 (never
    # wider); None: that default. New campaigns start from it (outreach.campaigns).
    quiet_start: Mapped[str | None] = mapped_column(String(5))
    quiet_end: Mapped[str | None] = mapped_column(String(5))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    keywords: Mapped[list[JoinKeyword]] = relationship(
        back_populates="huddle", cascade="all, delete-orphan", order_by="JoinKeyword.keyword"
    )

    @property
    def sender_key(self) -> str:
        """What STOP is scoped to: the number members see (or the messaging service)."""
        return self.sender_number or self.messaging_service_sid or f"huddle:{self.slug}"

    def __repr__(self) -> str:
        return f"<Huddle {self.slug}>"


class HuddleDirectoryStamp(Base):
    """One row whose stamp changes with every write to ``huddles`` or ``join_keywords``.

    Database triggers (migration 0006) set it to a new random value, whoever writes. A web worker
    keeps the huddles on each number texted in memory and checks this one value per text instead
    of reading them again (``outreach.sms.inbound``). Random, not a counter: a database restored
    from a backup and edited again never shows a stamp a worker has already seen.
    """

    __tablename__ = "huddle_directory_stamp"

    id: Mapped[int] = mapped_column(primary_key=True)
    stamp: Mapped[int] = mapped_column(BigInteger)


class JoinKeyword(Base):
    """A word texted to join. Unique across the network so one shared number can serve all."""

    __tablename__ = "join_keywords"

    id: Mapped[int] = mapped_column(primary_key=True)
    huddle_id: Mapped[int] = mapped_column(ForeignKey("huddles.id", ondelete="CASCADE"), index=True)
    keyword: Mapped[str] = mapped_column(String(40), unique=True)

    huddle: Mapped[Huddle] = relationship(back_populates="keywords")
