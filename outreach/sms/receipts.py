"""Delivery receipts (Twilio status callbacks): move deliveries forward, apply the error policy.

Callbacks are at-least-once and unordered: a (MessageSid, MessageStatus) pair is applied once, and
a delivery never moves backwards (a late "sent" after "delivered" changes nothing).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, ClassVar

from sqlalchemy import Connection, Dialect, select, text
from sqlalchemy.orm import Session, sessionmaker

from outreach import consent
from outreach.addresses.phones import mask_phone
from outreach.app.clock import utcnow
from outreach.app.db import HeldConnections, bind_processor, driver_sql
from outreach.models import Campaign, Delivery, Huddle, Member, StatusEvent, Subscription
from outreach.models import campaigns as k
from outreach.models import consent as c
from outreach.models import members as m

log = logging.getLogger(__name__)


class ErrorAction(StrEnum):
    OPT_OUT = "opt_out"  # the carrier says the person replied STOP
    SUPPRESS = "suppress"  # the number cannot take texts (invalid, landline, unknown)
    FLAG_CAMPAIGN = "flag_campaign"  # a content problem: tell the organizer, keep the person
    NONE = "none"


#: Twilio error code -> what we do. Twilio says codes may change: override with the
#: TWILIO_ERROR_POLICY setting ("30003=suppress,30008=none").
DEFAULT_ERROR_POLICY: Mapping[str, ErrorAction] = {
    "21610": ErrorAction.OPT_OUT,
    "21211": ErrorAction.SUPPRESS,
    "21614": ErrorAction.SUPPRESS,
    "21635": ErrorAction.SUPPRESS,
    "30005": ErrorAction.SUPPRESS,
    "30006": ErrorAction.SUPPRESS,
    "30007": ErrorAction.FLAG_CAMPAIGN,
}

# Twilio MessageStatus -> (rank, delivery state). Higher ranks win; equal ranks don't move.
_STATUS = {
    "accepted": (0, None),
    "scheduled": (0, None),
    "queued": (0, None),
    "sending": (1, None),
    "sent": (2, k.SENT),
    "delivered": (3, k.DELIVERED),
    "undelivered": (3, k.UNDELIVERED),
    "failed": (3, k.FAILED),
    "canceled": (3, k.FAILED),
    "partially_delivered": (3, k.DELIVERED),
    "read": (4, k.DELIVERED),
}
_STATE_RANK = {
    k.QUEUED: 0,
    k.CLAIMED: 0,
    k.UNKNOWN: 0,
    k.SENT: 2,
    k.DELIVERED: 3,
    k.UNDELIVERED: 3,
    k.FAILED: 3,
    k.SKIPPED: 9,
}


def parse_error_policy(text: str | None) -> dict[str, ErrorAction]:
    """``"30003=suppress,30008=none"`` over the defaults; raises ValueError with the bad part."""
    policy = dict(DEFAULT_ERROR_POLICY)
    for part in (text or "").split(","):
        if not part.strip():
            continue
        code, _, action = part.partition("=")
        code, action = code.strip(), action.strip().lower()
        if not code.isdigit() or action not in {a.value for a in ErrorAction}:
            raise ValueError(f"bad error policy entry {part!r}: expected CODE=ACTION")
        policy[code] = ErrorAction(action)
    return policy


@dataclass(frozen=True)
class StatusOutcome:
    applied: bool  # False: a duplicate, an unknown message, or a step backwards
    delivery_id: int | None = None
    action: ErrorAction = ErrorAction.NONE


def handle_status(
    factory: sessionmaker[Session],
    connections: HeldConnections,
    *,
    message_sid: str,
    status: str,
    error_code: str | None,
    policy: Mapping[str, ErrorAction] = DEFAULT_ERROR_POLICY,
) -> StatusOutcome:
    """Record a status callback and move its delivery forward, on this thread's held connection.

    Callbacks come two or three per message a campaign sends, more than any other request: the
    common ones (a status, perhaps an error code with no policy action) are three plain
    statements (:class:`_StatusStatements`). An error code with an action goes through the ORM
    and ``outreach.consent`` in the same transaction.
    """
    status = status.strip().lower()[:24]
    error_code = (error_code or "").strip()[:16] or None
    message_sid = message_sid[:64]
    action = policy.get(error_code or "", ErrorAction.NONE)
    with connections.begin() as connection:
        sql = _StatusStatements(connection)
        if not sql.record(message_sid, status, error_code, utcnow()):
            log.debug("status %s for %s already applied", status, message_sid)
            return StatusOutcome(applied=False)
        delivery = sql.delivery(message_sid)
        if delivery is None and wait_for_sender(connection, message_sid):
            delivery = sql.delivery(message_sid)  # the sender may have just committed it
        if delivery is None:
            # Replies we sent, messages from before a restore, and callbacks that came before
            # the sender recorded the id (it replays them): accept and note.
            log.info("status %s for unknown message %s", status, message_sid)
            return StatusOutcome(applied=False)
        if action is not ErrorAction.NONE:
            with factory(bind=connection) as session:
                outcome = _apply(session, message_sid, status, error_code, policy)
                session.flush()
                return outcome
        delivery_id, state, current_error = delivery
        moved, new_state, new_error = _advance(state, current_error, status, error_code)
        if moved or new_error != current_error:
            sql.update(delivery_id, new_state, new_error, utcnow() if moved else None)
        return StatusOutcome(applied=moved, delivery_id=delivery_id)


def lock_message_ids(session: Session, provider_message_ids: list[str]) -> None:
    """PostgreSQL: hold each id's lock until the sender's transaction ends (see wait_for_sender).

    The sender takes them before it writes the ids and replays early callbacks; ids are unique
    to a message and taken in order, so two senders never wait on each other.
    """
    if provider_message_ids and session.get_bind().dialect.name == "postgresql":
        session.execute(_LOCK_IDS, {"ids": sorted(provider_message_ids)})


def wait_for_sender(connection: Connection, message_sid: str) -> bool:
    """PostgreSQL: a callback that found no delivery waits for a sender writing its id.

    The webhook stores the callback, then looks for the delivery; the sender writes the id, then
    replays the callbacks stored for it. Under READ COMMITTED each can miss the other's
    uncommitted write, and the callback would never be applied. Taking the id's lock (which
    the sender holds from before its write until it commits) and looking again closes that:
    either the sender committed first and the delivery is now there, or it waits for this
    callback's commit and replays it. On SQLite the write lock already orders the two (False).
    """
    if connection.dialect.name != "postgresql":
        return False
    connection.exec_driver_sql("SELECT pg_advisory_xact_lock(hashtext(%s))", (message_sid,))
    return True


_LOCK_IDS = text(
    "SELECT pg_advisory_xact_lock(hashtext(id)) FROM unnest(CAST(:ids AS text[])) AS id"
)


def _advance(
    state: str, current_error: str | None, status: str, error_code: str | None
) -> tuple[bool, str, str | None]:
    """(moved, state, error code) of a delivery after a callback: only ever forward.

    An error code is kept when the status moved the delivery, or when it had none yet.
    """
    rank, new_state = _STATUS.get(status, (0, None))
    moved = new_state is not None and rank > _STATE_RANK.get(state, 0)
    error = error_code if error_code and (moved or current_error is None) else current_error
    return moved, (new_state if moved and new_state is not None else state), error


class _StatusStatements:
    """The callbacks' SQL, straight to the driver (``exec_driver_sql``) in its paramstyle."""

    _by_dialect: ClassVar[dict[tuple[str, str], tuple[dict[str, str], Callable[[Any], Any]]]] = {}

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        dialect = connection.dialect
        key = (dialect.name, dialect.paramstyle)
        found = self._by_dialect.get(key)
        if found is None:
            found = self._by_dialect[key] = self._prepare(dialect)
        self.sql, self.bind_time = found

    @staticmethod
    def _prepare(dialect: Dialect) -> tuple[dict[str, str], Callable[[Any], Any]]:
        def sql(text: str) -> str:
            return driver_sql(dialect, text)

        delivery = "SELECT id, state, error_code FROM deliveries WHERE provider_message_id = ?"
        if dialect.name != "sqlite":  # SQLite's transaction holds the database's write lock
            delivery = f"{delivery} FOR UPDATE"
        statements = {
            "record": sql(
                """INSERT INTO status_events (provider_message_id, status, error_code, received_at)
                VALUES (?, ?, ?, ?)
                ON CONFLICT (provider_message_id, status) DO NOTHING RETURNING id"""
            ),
            "delivery": sql(delivery),
            "update": sql(
                """UPDATE deliveries SET state = ?, error_code = ?,
                updated_at = COALESCE(?, updated_at) WHERE id = ?"""
            ),
        }
        return statements, bind_processor(StatusEvent.__table__.c.received_at.type, dialect)

    def record(self, message_sid: str, status: str, error_code: str | None, now: datetime) -> bool:
        """Store the callback unless (MessageSid, status) is stored already (then False)."""
        params = (message_sid, status, error_code, self.bind_time(now))
        return self.connection.exec_driver_sql(self.sql["record"], params).first() is not None

    def delivery(self, message_sid: str) -> tuple[int, str, str | None] | None:
        row = self.connection.exec_driver_sql(self.sql["delivery"], (message_sid,)).first()
        return None if row is None else (row[0], row[1], row[2])

    def update(self, delivery_id: int, state: str, error: str | None, now: datetime | None) -> None:
        when = None if now is None else self.bind_time(now)
        self.connection.exec_driver_sql(self.sql["update"], (state, error, when, delivery_id))


def _apply(
    session: Session,
    message_sid: str,
    status: str,
    error_code: str | None,
    policy: Mapping[str, ErrorAction],
) -> StatusOutcome:
    delivery = session.scalars(
        select(Delivery).where(Delivery.provider_message_id == message_sid).with_for_update()
    ).one_or_none()
    if delivery is None:
        # Replies we sent and messages from before a restore have no delivery: accept and note.
        log.info("status %s for unknown message %s", status, message_sid)
        return StatusOutcome(applied=False)
    moved, state, error = _advance(delivery.state, delivery.error_code, status, error_code)
    if moved:
        delivery.state = state
        delivery.updated_at = utcnow()
    if error != delivery.error_code:
        delivery.error_code = error
    action = policy.get(error_code or "", ErrorAction.NONE)
    if action is not ErrorAction.NONE:
        _apply_error_action(session, delivery, action, error_code or "")
    return StatusOutcome(applied=moved, delivery_id=delivery.id, action=action)


def replay_early_events(
    session: Session,
    provider_message_ids: list[str],
    policy: Mapping[str, ErrorAction] = DEFAULT_ERROR_POLICY,
) -> None:
    """Apply status callbacks that arrived before the sender wrote the message id.

    The webhook stores every callback (StatusEvent) even when no delivery matches yet; the
    sender calls this right after recording ids, in the same transaction, with the error policy
    the webhook applies (TWILIO_ERROR_POLICY).
    """
    if not provider_message_ids:
        return
    early = session.execute(
        select(StatusEvent.provider_message_id, StatusEvent.status, StatusEvent.error_code)
        .where(StatusEvent.provider_message_id.in_(provider_message_ids))
        .order_by(StatusEvent.id)
    ).all()
    for message_sid, status, error_code in early:
        _apply(session, message_sid, status, error_code, policy)


def _apply_error_action(
    session: Session, delivery: Delivery, action: ErrorAction, code: str
) -> None:
    campaign = session.get_one(Campaign, delivery.campaign_id)
    huddle = session.get_one(Huddle, campaign.huddle_id)
    member = session.get(Member, delivery.member_id)
    apply_error_action(
        session,
        action=action,
        code=code,
        address=delivery.address,
        huddle=huddle,
        member=member,
        campaign=campaign,
    )


def apply_error_action(
    session: Session,
    *,
    action: ErrorAction,
    code: str,
    address: str,
    huddle: Huddle,
    member: Member | None,
    campaign: Campaign | None,
) -> None:
    """What a provider error means for the person (or the campaign). Used by receipts and sends."""
    provenance = consent.Provenance(source=c.SOURCE_PROVIDER, detail=f"twilio error {code}")
    if action is ErrorAction.OPT_OUT:
        if member is not None:
            for subscription in session.scalars(
                select(Subscription).where(
                    Subscription.member_id == member.id,
                    Subscription.channel == m.SMS,
                    Subscription.state != m.OPTED_OUT,
                    Subscription.huddle_id.in_(
                        select(Huddle.id).where(Huddle.sender_number == huddle.sender_number)
                        if huddle.sender_number
                        else [huddle.id]
                    ),
                )
            ):
                consent.set_subscription_state(
                    session,
                    member=member,
                    huddle=session.get_one(Huddle, subscription.huddle_id),
                    channel=m.SMS,
                    state=m.OPTED_OUT,
                    provenance=provenance,
                )
        consent.suppress(
            session,
            channel=m.SMS,
            address=address,
            reason="stop",
            scope=huddle.sender_key,
            detail=f"twilio error {code}",
        )
        log.info("error %s: %s opted out of %s", code, mask_phone(address), huddle.slug)
    elif action is ErrorAction.SUPPRESS:
        consent.suppress(
            session,
            channel=m.SMS,
            address=address,
            reason=f"twilio-{code}",
            detail=f"twilio error {code}",
        )
        consent.record(
            session,
            member=member,
            huddle=None,
            channel=m.SMS,
            address=address,
            action=c.SUPPRESS,
            provenance=provenance,
        )
        log.info("error %s: %s suppressed", code, mask_phone(address))
    elif action is ErrorAction.FLAG_CAMPAIGN and campaign is not None:
        campaign.flag = (
            f"Carrier filtering (Twilio {code}) on at least one message: review the content."
        )
        log.warning("campaign %s flagged: twilio error %s", campaign.id, code)
