"""Subscriptions (member × huddle × channel): ``pending → active → opted_out``, and back only
by the member. Every move writes its ledger row (:func:`outreach.consent.ledger.record`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Final, cast

from sqlalchemy import Connection, Table, bindparam, insert, select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.util import identity_key

from outreach.app.clock import utcnow
from outreach.consent.ledger import Provenance, address_for, record
from outreach.consent.memberships import hold
from outreach.models import Huddle, Member, Subscription
from outreach.models import consent as c
from outreach.models import members as m

_ACTION_FOR_STATE = {m.PENDING: c.OPT_IN_REQUESTED, m.ACTIVE: c.OPT_IN, m.OPTED_OUT: c.OPT_OUT}


class _Unchanged:
    def __repr__(self) -> str:
        return "UNCHANGED"


UNCHANGED: Final = _Unchanged()  # move_subscription: leave the conversation step as it is


@dataclass(frozen=True)
class SubscriptionState:
    """A subscription as read in the caller's transaction."""

    id: int
    member_id: int
    huddle_id: int
    channel: str
    state: str
    conversation_step: str | None


# Core statements on the table, built once: the inbound webhook runs them on every consent change.
_TABLE = cast(Table, Subscription.__table__)
_COLUMNS = tuple(
    _TABLE.c[name]
    for name in ("id", "member_id", "huddle_id", "channel", "state", "conversation_step")
)
_GET = select(*_COLUMNS).where(
    _TABLE.c.member_id == bindparam("member_id"),
    _TABLE.c.huddle_id == bindparam("huddle_id"),
    _TABLE.c.channel == bindparam("channel"),
)
_INSERT = insert(_TABLE).values(
    {
        column: bindparam(column)
        for column in (
            "member_id",
            "huddle_id",
            "channel",
            "state",
            "conversation_step",
            "created_at",
            "updated_at",
        )
    }
)
_MOVE = (
    update(_TABLE)
    .where(_TABLE.c.id == bindparam("subscription_id"))
    .values(
        state=bindparam("state"),
        conversation_step=bindparam("conversation_step"),
        updated_at=bindparam("updated_at"),
    )
)
_STEP = (
    update(_TABLE)
    .where(_TABLE.c.id == bindparam("subscription_id"))
    .values(conversation_step=bindparam("conversation_step"))
)


def get_subscription(
    db: Session | Connection, member: Member, huddle: Huddle, channel: str
) -> SubscriptionState | None:
    row = db.execute(
        _GET, {"member_id": member.id, "huddle_id": huddle.id, "channel": channel}
    ).first()
    return None if row is None else SubscriptionState(*row)


def move_subscription(
    db: Session | Connection,
    current: SubscriptionState | None,
    *,
    member_id: int,
    huddle_id: int,
    channel: str,
    address: str,
    state: str,
    provenance: Provenance,
    action: str | None = None,
    conversation_step: str | _Unchanged | None = UNCHANGED,
    at: datetime | None = None,
) -> bool:
    """Create or move a subscription the caller has read (``current``; None: there is none).

    A move to the state it is in changes nothing and writes no ledger row, but for the
    conversation step (a profile answer moves it and changes no consent). True if the state moved.
    """
    if state not in m.SUBSCRIPTION_STATES:
        raise ValueError(f"unknown subscription state {state!r}")
    now = at or utcnow()
    if current is None:
        step = None if isinstance(conversation_step, _Unchanged) else conversation_step
        db.execute(
            _INSERT,
            {
                "member_id": member_id,
                "huddle_id": huddle_id,
                "channel": channel,
                "state": state,
                "conversation_step": step,
                "created_at": now,
                "updated_at": now,
            },
        )
        hold(db, huddle_id=huddle_id, member_id=member_id, source=provenance.source, at=now)
    else:
        step = (
            current.conversation_step
            if isinstance(conversation_step, _Unchanged)
            else conversation_step
        )
        if current.state == state:
            if step != current.conversation_step:
                set_conversation_step(db, current.id, step)
            return False
        db.execute(
            _MOVE,
            {
                "subscription_id": current.id,
                "state": state,
                "conversation_step": step,
                "updated_at": now,
            },
        )
        _forget(db, current.id)
    record(
        db,
        member_id=member_id,
        huddle_id=huddle_id,
        channel=channel,
        address=address,
        action=action or _ACTION_FOR_STATE[state],
        provenance=provenance,
        at=now,
    )
    return True


def set_subscription_state(
    db: Session | Connection,
    *,
    member: Member,
    huddle: Huddle,
    channel: str,
    state: str,
    provenance: Provenance,
    action: str | None = None,
) -> bool:
    """Read the member's subscription to ``huddle`` and move it (see :func:`move_subscription`)."""
    address = address_for(member, channel)
    if address is None:
        raise ValueError(f"member {member.id} has no {channel} address")
    return move_subscription(
        db,
        get_subscription(db, member, huddle, channel),
        member_id=member.id,
        huddle_id=huddle.id,
        channel=channel,
        address=address,
        state=state,
        provenance=provenance,
        action=action,
    )


def set_conversation_step(db: Session | Connection, subscription_id: int, step: str | None) -> None:
    """Where the profile conversation stands: not consent, so no ledger row."""
    db.execute(_STEP, {"subscription_id": subscription_id, "conversation_step": step})
    _forget(db, subscription_id)


def _forget(db: Session | Connection, subscription_id: int) -> None:
    """A session's loaded copy of a subscription these statements changed is read again."""
    if isinstance(db, Session):
        loaded = db.identity_map.get(identity_key(Subscription, subscription_id))
        if loaded is not None:
            db.expire(loaded)
