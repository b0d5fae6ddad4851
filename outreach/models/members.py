"""Members (people), the huddles that hold them, their subscriptions, tags and custom fields."""

from __future__ import annotations

import re
from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, Text, UniqueConstraint, func
from sqlalchemy.orm import Mapped, mapped_column, relationship

from outreach.app.clock import utcnow
from outreach.models.base import Base, UTCDateTime

SMS = "sms"
EMAIL = "email"
CHANNELS = (SMS, EMAIL)

PENDING = "pending"
ACTIVE = "active"
OPTED_OUT = "opted_out"
SUBSCRIPTION_STATES = (PENDING, ACTIVE, OPTED_OUT)
NO_CONSENT = "none"  # a channel the huddle holds no subscription on: never contacted on it

#: A custom field's name (``MemberField.name``): what an import's column becomes, what a template
#: (``{{ field.language }}``) and a segment (``field:language=es``) may name.
FIELD_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")


class Member(Base):
    """A person. One row per E.164 phone and per normalized email (both unique when present).

    On PostgreSQL, ``lower(first_name)`` and ``lower(last_name)`` are indexed for a name search
    (a prefix of either, any case); the pattern operator class serves ``LIKE 'ann%'`` whatever
    the database's collation.
    """

    __tablename__ = "members"
    # zip prefix ranges (segments) read (zip, id) from the index alone on PostgreSQL.
    __table_args__ = (Index("ix_members_zip_id", "zip", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    phone: Mapped[str | None] = mapped_column(String(20), unique=True)
    email: Mapped[str | None] = mapped_column(String(254), unique=True)
    first_name: Mapped[str | None] = mapped_column(String(100))
    last_name: Mapped[str | None] = mapped_column(String(100))
    zip: Mapped[str | None] = mapped_column(String(10))
    timezone: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_replied_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    subscriptions: Mapped[list[Subscription]] = relationship(back_populates="member")

    @property
    def display_name(self) -> str:
        return " ".join(p for p in (self.first_name, self.last_name) if p) or "(no name)"


for _name in ("first_name", "last_name"):
    Index(
        f"ix_members_{_name}_prefix",
        func.lower(getattr(Member, _name)).label(f"{_name}_lower"),
        postgresql_ops={f"{_name}_lower": "text_pattern_ops"},
    ).ddl_if(dialect="postgresql")


class Subscription(Base):
    """Member × huddle × channel. ``opted_out`` goes back to ``active`` only by the member."""

    __tablename__ = "subscriptions"
    __table_args__ = (
        UniqueConstraint("member_id", "huddle_id", "channel"),
        # Segment and audience queries start from a huddle's active subscribers: with the
        # member id in the index they never touch the table.
        Index(
            "ix_subscriptions_huddle_channel_state_member",
            "huddle_id",
            "channel",
            "state",
            "member_id",
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id", ondelete="CASCADE"), index=True)
    huddle_id: Mapped[int] = mapped_column(ForeignKey("huddles.id", ondelete="CASCADE"))
    channel: Mapped[str] = mapped_column(String(10))
    state: Mapped[str] = mapped_column(String(12))
    # Where a short SMS conversation stands (profile questions); None when there is none.
    conversation_step: Mapped[str | None] = mapped_column(String(20))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    member: Mapped[Member] = relationship(back_populates="subscriptions")


class HuddleMember(Base):
    """That a huddle holds this person's data, whether or not they agreed to hear from it.

    Written by every path that brings a person into a huddle (a keyword, the join form, an import,
    the API); a person with no subscription here has the consent state ``none`` on each channel.
    """

    __tablename__ = "huddle_members"
    # A month of one huddle's newcomers, for its overview's growth chart.
    __table_args__ = (Index("ix_huddle_members_huddle_created", "huddle_id", "created_at"),)

    huddle_id: Mapped[int] = mapped_column(
        ForeignKey("huddles.id", ondelete="CASCADE"), primary_key=True
    )
    member_id: Mapped[int] = mapped_column(
        ForeignKey("members.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    source: Mapped[str] = mapped_column(String(20))  # keyword, form, import, api…
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class MemberTag(Base):
    """Tags belong to a huddle: one huddle's "donor" is none of another huddle's business."""

    __tablename__ = "member_tags"
    __table_args__ = (
        UniqueConstraint("huddle_id", "member_id", "tag"),
        Index("ix_member_tags_huddle_tag", "huddle_id", "tag", "member_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    huddle_id: Mapped[int] = mapped_column(ForeignKey("huddles.id", ondelete="CASCADE"))
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id", ondelete="CASCADE"))
    tag: Mapped[str] = mapped_column(String(64))


class MemberField(Base):
    """Custom fields, per huddle (``field:language=es``)."""

    __tablename__ = "member_fields"
    __table_args__ = (
        UniqueConstraint("huddle_id", "member_id", "name"),
        Index(
            "ix_member_fields_huddle_name_value_member", "huddle_id", "name", "value", "member_id"
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    huddle_id: Mapped[int] = mapped_column(ForeignKey("huddles.id", ondelete="CASCADE"))
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(64))
    value: Mapped[str] = mapped_column(Text)
