"""Delivery receipts (Twilio status callbacks): move deliveries forward, apply the error policy.

Callbacks are at-least-once and unordered: a (MessageSid, MessageStatus) pair is applied once
(``status_events`` is unique on it), and a delivery never moves backwards
(:data:`outreach.models.campaigns.DELIVERY_RANK`). A callback that arrives before the sender
recorded its message id is stored and applied when the sender records it
(:func:`replay_early_events`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Connection, Engine, Table, bindparam, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from outreach.app.clock import utcnow
from outreach.models import Campaign, Delivery, Huddle, StatusEvent
from outreach.models import campaigns as k
from outreach.providers.twilio.error_policy import DEFAULT_ERROR_POLICY, ErrorAction
from outreach.sms.error_actions import apply_error_action

log = logging.getLogger(__name__)

# Twilio MessageStatus -> the delivery state it means (None: says nothing about delivery yet).
_STATUS_STATE: dict[str, str | None] = {
    "accepted": None,
    "scheduled": None,
    "queued": None,
    "sending": None,
    "sent": k.SENT,
    "delivered": k.DELIVERED,
    "undelivered": k.UNDELIVERED,
    "failed": k.FAILED,
    "canceled": k.FAILED,
    "partially_delivered": k.DELIVERED,
    "read": k.DELIVERED,
}


@dataclass(frozen=True)
class StatusOutcome:
    applied: bool  # False: a duplicate, an unknown message, or a step backwards
    delivery_id: int | None = None
    action: ErrorAction = ErrorAction.NONE


_EVENTS = cast(Table, StatusEvent.__table__)
_DELIVERIES = cast(Table, Delivery.__table__)
_CAMPAIGNS = cast(Table, Campaign.__table__)
_HUDDLES = cast(Table, Huddle.__table__)


def _record_statement(insert: postgresql.Insert | sqlite.Insert) -> Any:
    return (
        insert.values(
            provider_message_id=bindparam("sid"),
            status=bindparam("status"),
            error_code=bindparam("error_code"),
            received_at=bindparam("at"),
        )
        .on_conflict_do_nothing(index_elements=["provider_message_id", "status"])
        .returning(_EVENTS.c.id)
    )


_RECORD = {
    "postgresql": _record_statement(postgresql.insert(_EVENTS)),
    "sqlite": _record_statement(sqlite.insert(_EVENTS)),
}
# On SQLite the transaction holds the database's write lock; FOR UPDATE is left out there.
_DELIVERY = (
    select(
        _DELIVERIES.c.id,
        _DELIVERIES.c.state,
        _DELIVERIES.c.error_code,
        _DELIVERIES.c.campaign_id,
        _DELIVERIES.c.member_id,
        _DELIVERIES.c.address,
    )
    .where(_DELIVERIES.c.provider_message_id == bindparam("sid"))
    .with_for_update()
)
_MOVE = (
    update(_DELIVERIES)
    .where(_DELIVERIES.c.id == bindparam("delivery_id"))
    .values(state=bindparam("state"), error_code=bindparam("error_code"))
)
_MOVE_AT = _MOVE.values(updated_at=bindparam("at"))
_EARLY = (
    select(_EVENTS.c.provider_message_id, _EVENTS.c.status, _EVENTS.c.error_code)
    .where(_EVENTS.c.provider_message_id.in_(bindparam("sids", expanding=True)))
    .order_by(_EVENTS.c.id)
)
_SENDER_OF_CAMPAIGN = select(
    _HUDDLES.c.id, _HUDDLES.c.slug, _HUDDLES.c.sender_number, _HUDDLES.c.messaging_service_sid
).where(
    _HUDDLES.c.id
    == select(_CAMPAIGNS.c.huddle_id)
    .where(_CAMPAIGNS.c.id == bindparam("campaign_id"))
    .scalar_subquery()
)
_LOCK_ID = text("SELECT pg_advisory_xact_lock(hashtext(:sid))")
_LOCK_IDS = text(
    "SELECT pg_advisory_xact_lock(hashtext(id)) FROM unnest(CAST(:ids AS text[])) AS id"
)


def handle_status(
    engine: Engine,
    *,
    message_sid: str,
    status: str,
    error_code: str | None,
    policy: Mapping[str, ErrorAction] = DEFAULT_ERROR_POLICY,
) -> StatusOutcome:
    """Record a status callback and move its delivery forward, in one transaction."""
    status = status.strip().lower()[:24]
    error_code = (error_code or "").strip()[:16] or None
    message_sid = message_sid[:64]
    with engine.begin() as db:
        params = {"sid": message_sid, "status": status, "error_code": error_code, "at": utcnow()}
        if db.execute(_RECORD[db.dialect.name], params).first() is None:
            log.debug("status %s for %s already applied", status, message_sid)
            return StatusOutcome(applied=False)
        delivery = db.execute(_DELIVERY, {"sid": message_sid}).first()
        if delivery is None and wait_for_sender(db, message_sid):
            delivery = db.execute(_DELIVERY, {"sid": message_sid}).first()  # committed meanwhile
        if delivery is None:
            # Replies we sent, messages from before a restore, and callbacks that came before
            # the sender recorded the id (it replays them): accept and note.
            log.info("status %s for unknown message %s", status, message_sid)
            return StatusOutcome(applied=False)
        return _apply(db, delivery, status, error_code, policy)


def lock_message_ids(db: Session | Connection, provider_message_ids: list[str]) -> None:
    """PostgreSQL: hold each id's lock until the sender's transaction ends (see wait_for_sender).

    The sender takes them before it writes the ids and replays early callbacks; ids are unique
    to a message and taken in order, so two senders never wait on each other.
    """
    if provider_message_ids and _dialect_name(db) == "postgresql":
        db.execute(_LOCK_IDS, {"ids": sorted(provider_message_ids)})


def wait_for_sender(db: Connection, message_sid: str) -> bool:
    """PostgreSQL: a callback that found no delivery waits for a sender writing its id.

    The webhook stores the callback, then looks for the delivery; the sender writes the id, then
    replays the callbacks stored for it. Under READ COMMITTED each can miss the other's
    uncommitted write, and the callback would never be applied. Taking the id's lock (which
    the sender holds from before its write until it commits) and looking again closes that:
    either the sender committed first and the delivery is now there, or it waits for this
    callback's commit and replays it. On SQLite the write lock already orders the two (False).
    """
    if db.dialect.name != "postgresql":
        return False
    db.execute(_LOCK_ID, {"sid": message_sid})
    return True


def replay_early_events(
    db: Session | Connection,
    provider_message_ids: list[str],
    policy: Mapping[str, ErrorAction] = DEFAULT_ERROR_POLICY,
) -> None:
    """Apply status callbacks that arrived before the sender wrote the message id.

    The webhook stores every callback even when no delivery matches yet; the sender calls this
    right after recording ids, in the same transaction, with the webhook's error policy.
    """
    if not provider_message_ids:
        return
    for message_sid, status, error_code in db.execute(_EARLY, {"sids": provider_message_ids}).all():
        delivery = db.execute(_DELIVERY, {"sid": message_sid}).first()
        if delivery is not None:
            _apply(db, delivery, status, error_code, policy)


def advance(
    state: str, current_error: str | None, status: str, error_code: str | None
) -> tuple[bool, str, str | None]:
    """(moved, state, error code) of a delivery after a callback: only ever forward.

    An error code is kept when the status moved the delivery, or when it had none yet.
    """
    new_state = _STATUS_STATE.get(status)
    moved = new_state is not None and k.DELIVERY_RANK[new_state] > k.DELIVERY_RANK.get(state, 0)
    error = error_code if error_code and (moved or current_error is None) else current_error
    return moved, (new_state if moved and new_state is not None else state), error


def _apply(
    db: Session | Connection,
    delivery: Sequence[Any],
    status: str,
    error_code: str | None,
    policy: Mapping[str, ErrorAction],
) -> StatusOutcome:
    delivery_id, state, current_error, campaign_id, member_id, address = delivery
    moved, new_state, new_error = advance(state, current_error, status, error_code)
    if moved:
        db.execute(
            _MOVE_AT,
            {
                "delivery_id": delivery_id,
                "state": new_state,
                "error_code": new_error,
                "at": utcnow(),
            },
        )
    elif new_error != current_error:
        db.execute(_MOVE, {"delivery_id": delivery_id, "state": state, "error_code": new_error})
    action = policy.get(error_code or "", ErrorAction.NONE)
    if action is not ErrorAction.NONE:
        sender = db.execute(_SENDER_OF_CAMPAIGN, {"campaign_id": campaign_id}).one()
        apply_error_action(
            db,
            action=action,
            code=error_code or "",
            address=address,
            huddle=Huddle(**sender._mapping),
            member_id=member_id,
            campaign_id=campaign_id,
        )
    return StatusOutcome(applied=moved, delivery_id=delivery_id, action=action)


def _dialect_name(db: Session | Connection) -> str:
    return db.get_bind().dialect.name if isinstance(db, Session) else db.dialect.name
