"""The consent ledger (append-only) and suppressions."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from outreach.app.clock import utcnow
from outreach.models.base import Base, UTCDateTime

# ConsentEvent.action
OPT_IN_REQUESTED = "opt_in_requested"  # asked to confirm (double opt-in)
OPT_IN = "opt_in"  # consent given (YES, single opt-in, import assertion, email click)
OPT_OUT = "opt_out"  # consent revoked (STOP, unsubscribe, provider 21610)
RESUBSCRIBE = "resubscribe"  # START after STOP
SUPPRESS = "suppress"  # provider says: never contact this address (bounce, landline…)

# ConsentEvent.source
SOURCE_KEYWORD = "keyword"
SOURCE_FORM = "form"
SOURCE_IMPORT = "import"
SOURCE_API = "api"
SOURCE_PROVIDER = "provider"
SOURCE_ORGANIZER = "organizer"

ALL_SENDERS = "*"


class ConsentEvent(Base):
    """One row per consent change. Never updated, never deleted (database triggers enforce it)."""

    __tablename__ = "consent_events"
    __table_args__ = (
        Index("ix_consent_events_member_created", "member_id", "created_at"),
        # A month of one huddle's opt-outs, for its overview, from the index alone.
        Index(
            "ix_consent_events_huddle_action_created",
            "huddle_id",
            "action",
            "created_at",
            "channel",
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    member_id: Mapped[int | None] = mapped_column(ForeignKey("members.id", ondelete="RESTRICT"))
    huddle_id: Mapped[int | None] = mapped_column(ForeignKey("huddles.id", ondelete="RESTRICT"))
    channel: Mapped[str] = mapped_column(String(10))
    address: Mapped[str] = mapped_column(String(254))  # the phone or email the change is about
    action: Mapped[str] = mapped_column(String(20))
    source: Mapped[str] = mapped_column(String(20))
    detail: Mapped[str | None] = mapped_column(Text)  # raw text, "file.csv line 12", reason…
    provider_message_id: Mapped[str | None] = mapped_column(String(64))
    ip: Mapped[str | None] = mapped_column(String(45))
    user_agent: Mapped[str | None] = mapped_column(Text)
    actor: Mapped[str | None] = mapped_column(String(254))  # organizer email, "member", "system"
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Suppression(Base):
    """An address we must never contact on a channel, from one sender or from all (``*``).

    A lifted suppression (START) keeps its row with ``lifted_at`` set, so history stays readable.
    """

    __tablename__ = "suppressions"
    __table_args__ = (UniqueConstraint("channel", "address", "scope"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    channel: Mapped[str] = mapped_column(String(10))
    address: Mapped[str] = mapped_column(String(254), index=True)
    scope: Mapped[str] = mapped_column(String(64), default=ALL_SENDERS)
    reason: Mapped[str] = mapped_column(String(40))
    detail: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    lifted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
