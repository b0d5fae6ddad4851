"""Delivery receipts (Twilio status callbacks): move deliveries forward, apply the error policy.

Callbacks are at-least-once and unordered: a (MessageSid, MessageStatus) pair is applied once, and
a delivery never moves backwards (a late "sent" after "delivered" changes nothing).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from outreach import consent
from outreach.clock import utcnow
from outreach.models import Campaign, Delivery, Huddle, Member, StatusEvent, Subscription
from outreach.models import campaigns as k
from outreach.models import consent as c
from outreach.models import members as m
from outreach.phones import mask_phone

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
    *,
    message_sid: str,
    status: str,
    error_code: str | None,
    policy: Mapping[str, ErrorAction] = DEFAULT_ERROR_POLICY,
) -> StatusOutcome:
    status = status.strip().lower()
    error_code = (error_code or "").strip() or None
    try:
        with factory() as session, session.begin():
            session.add(
                StatusEvent(
                    provider_message_id=message_sid[:64],
                    status=status[:24],
                    error_code=error_code,
                    received_at=utcnow(),
                )
            )
            session.flush()
            return _apply(session, message_sid, status, error_code, policy)
    except IntegrityError:
        log.debug("status %s for %s already applied", status, message_sid)
        return StatusOutcome(applied=False)


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
    rank, state = _STATUS.get(status, (0, None))
    moved = state is not None and rank > _STATE_RANK.get(delivery.state, 0)
    if moved:
        delivery.state = state  # type: ignore[assignment]
        delivery.updated_at = utcnow()
    if error_code and (moved or delivery.error_code is None):
        delivery.error_code = error_code
    action = policy.get(error_code or "", ErrorAction.NONE)
    if action is not ErrorAction.NONE:
        _apply_error_action(session, delivery, action, error_code or "")
    return StatusOutcome(applied=moved, delivery_id=delivery.id, action=action)


def replay_early_events(session: Session, provider_message_ids: list[str]) -> None:
    """Apply status callbacks that arrived before the sender wrote the message id.

    The webhook stores every callback (StatusEvent) even when no delivery matches yet; the
    sender calls this right after recording ids, in the same transaction.
    """
    if not provider_message_ids:
        return
    early = session.execute(
        select(StatusEvent.provider_message_id, StatusEvent.status, StatusEvent.error_code)
        .where(StatusEvent.provider_message_id.in_(provider_message_ids))
        .order_by(StatusEvent.id)
    ).all()
    for message_sid, status, error_code in early:
        _apply(session, message_sid, status, error_code, DEFAULT_ERROR_POLICY)


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
