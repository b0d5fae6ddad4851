"""That a huddle holds a person's data: the consent state ``none``, below every subscription."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, bindparam, text
from sqlalchemy.orm import Session

from outreach.app.clock import utcnow
from outreach.models import UTCDateTime

_HOLD = text(
    """INSERT INTO huddle_members (huddle_id, member_id, source, created_at)
    VALUES (:huddle_id, :member_id, :source, :now) ON CONFLICT DO NOTHING"""
).bindparams(bindparam("now", type_=UTCDateTime()))


def hold(
    db: Session | Connection,
    *,
    huddle_id: int,
    member_id: int,
    source: str,
    at: datetime | None = None,
) -> None:
    """Record that ``huddle_id`` holds ``member_id`` (once: the first source is kept)."""
    db.execute(
        _HOLD,
        {"huddle_id": huddle_id, "member_id": member_id, "source": source, "now": at or utcnow()},
    )
