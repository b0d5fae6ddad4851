"""Suppressions: addresses we must never contact on a channel, from one sender or from all (``*``).

Checked at send time, not only when an audience is chosen. A lifted suppression keeps its row
(``lifted_at``), so its history stays readable. Callers write the matching ledger row.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import cast

from sqlalchemy import Connection, Dialect, Insert, Table, bindparam, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from outreach.app.clock import utcnow
from outreach.models import Suppression
from outreach.models import consent as c

_TABLE = cast(Table, Suppression.__table__)


def _upsert(insert: postgresql.Insert | sqlite.Insert) -> Insert:
    statement = insert.values(
        channel=bindparam("channel"),
        address=bindparam("address"),
        scope=bindparam("scope"),
        reason=bindparam("reason"),
        detail=bindparam("detail"),
        created_at=bindparam("created_at"),
    )
    excluded = statement.excluded
    return statement.on_conflict_do_update(
        index_elements=["channel", "address", "scope"],
        set_={
            "lifted_at": None,
            "reason": excluded.reason,
            "detail": excluded.detail,
            "created_at": excluded.created_at,
        },
        where=_TABLE.c.lifted_at.is_not(None) | (_TABLE.c.reason != excluded.reason),
    )


# Added, or re-armed when lifted or for another reason, in one statement: on PostgreSQL another
# transaction may be adding the same row (two texts to a number failing at once, a bounce posted
# twice); the insert then waits for it and re-arms that row instead.
_SUPPRESS = {
    "postgresql": _upsert(postgresql.insert(_TABLE)),
    "sqlite": _upsert(sqlite.insert(_TABLE)),
}
_LIFT = (
    update(_TABLE)
    .where(
        _TABLE.c.channel == bindparam("b_channel"),
        _TABLE.c.address == bindparam("b_address"),
        _TABLE.c.scope == bindparam("b_scope"),
        _TABLE.c.lifted_at.is_(None),
    )
    .values(lifted_at=bindparam("lifted_at"))
)
_LIFT_FOR_REASONS = _LIFT.where(_TABLE.c.reason.in_(bindparam("b_reasons", expanding=True)))


def _dialect(db: Session | Connection) -> Dialect:
    return db.get_bind().dialect if isinstance(db, Session) else db.dialect


def suppress(
    db: Session | Connection,
    *,
    channel: str,
    address: str,
    reason: str,
    scope: str = c.ALL_SENDERS,
    detail: str | None = None,
    at: datetime | None = None,
) -> None:
    """Add (or re-arm) a suppression of ``address`` on ``channel`` from ``scope``."""
    db.execute(
        _SUPPRESS[_dialect(db).name],
        {
            "channel": channel,
            "address": address,
            "scope": scope,
            "reason": reason,
            "detail": detail,
            "created_at": at or utcnow(),
        },
    )


def lift_suppression(
    db: Session | Connection,
    *,
    channel: str,
    address: str,
    scope: str,
    reasons: Collection[str] | None = None,
    at: datetime | None = None,
) -> bool:
    """Lift a member-requested suppression (START, a confirmed re-join): only the member's own
    act lifts one, so callers name the ``reasons`` theirs may lift. True if one was lifted."""
    params: dict[str, object] = {
        "b_channel": channel,
        "b_address": address,
        "b_scope": scope,
        "lifted_at": at or utcnow(),
    }
    if reasons is None:
        result = db.execute(_LIFT, params)
    else:
        result = db.execute(_LIFT_FOR_REASONS, {**params, "b_reasons": list(reasons)})
    return bool(result.rowcount)  # type: ignore[attr-defined]


def is_suppressed(
    db: Session | Connection, channel: str, address: str, scope: str | None = None
) -> bool:
    """True when ``address`` must not be contacted on ``channel`` (from ``scope``, or at all)."""
    scopes = [c.ALL_SENDERS] if scope is None else [c.ALL_SENDERS, scope]
    found = db.execute(
        select(_TABLE.c.id).where(
            _TABLE.c.channel == channel,
            _TABLE.c.address == address,
            _TABLE.c.scope.in_(scopes),
            _TABLE.c.lifted_at.is_(None),
        )
    ).first()
    return found is not None
