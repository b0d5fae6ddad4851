"""The consent ledger: one row per consent change, never updated, never deleted.

Database triggers refuse UPDATE and DELETE on ``consent_events`` (migration 0001), so the ledger is
enough to answer "when and how did this number agree, and when did it stop?".
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import cast

from sqlalchemy import Connection, Table, bindparam, insert, select
from sqlalchemy.orm import Session

from outreach.app.clock import utcnow
from outreach.models import ConsentEvent, Member
from outreach.models import members as m


@dataclass(frozen=True)
class Provenance:
    """Where a consent change came from, as the ledger records it."""

    source: str
    detail: str | None = None
    provider_message_id: str | None = None
    ip: str | None = None
    user_agent: str | None = None
    actor: str | None = None


def address_for(member: Member, channel: str) -> str | None:
    """The member's address on ``channel``: the phone for SMS, the email for email."""
    return member.phone if channel == m.SMS else member.email


_RECORD = insert(cast(Table, ConsentEvent.__table__)).values(
    {
        column: bindparam(column)
        for column in (
            "member_id",
            "huddle_id",
            "channel",
            "address",
            "action",
            "source",
            "detail",
            "provider_message_id",
            "ip",
            "user_agent",
            "actor",
            "created_at",
        )
    }
)


def record(
    db: Session | Connection,
    *,
    member_id: int | None,
    huddle_id: int | None,
    channel: str,
    address: str,
    action: str,
    provenance: Provenance,
    at: datetime | None = None,
) -> None:
    """Append one ledger row (``huddle_id`` None: about every huddle, or about the address)."""
    db.execute(
        _RECORD,
        {
            "member_id": member_id,
            "huddle_id": huddle_id,
            "channel": channel,
            "address": address,
            "action": action,
            "source": provenance.source,
            "detail": provenance.detail,
            "provider_message_id": provenance.provider_message_id,
            "ip": provenance.ip,
            "user_agent": provenance.user_agent,
            "actor": provenance.actor,
            "created_at": at or utcnow(),
        },
    )


def history(session: Session, member: Member) -> list[ConsentEvent]:
    """The member's whole ledger, oldest first, including rows about their addresses alone."""
    addresses = [a for a in (member.phone, member.email) if a]
    return list(
        session.scalars(
            select(ConsentEvent)
            .where(
                (ConsentEvent.member_id == member.id)
                | (ConsentEvent.member_id.is_(None) & ConsentEvent.address.in_(addresses))
            )
            .order_by(ConsentEvent.created_at, ConsentEvent.id)
        )
    )
