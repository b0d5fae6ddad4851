"""SendGrid event webhook: check the signature, then apply events to deliveries and consent.

SendGrid posts a JSON array of events, signed with ECDSA P-256/SHA-256 over ``timestamp + raw
body``. Events are at-least-once and unordered: each is stored once (``sg_event_id``), and a
delivery never moves backwards (a late ``processed`` after ``delivered`` changes nothing).

========================  ===================================================================
event                     effect
========================  ===================================================================
processed, deferred       recorded only (SendGrid retries deferred mail itself)
delivered                 delivery → ``delivered``
open                      delivery → ``delivered``; first ``opened_at`` (machine opens, e.g.
                          Apple Mail Privacy Protection, prove delivery but are not opens)
click                     delivery → ``delivered``; first ``clicked_at`` (and ``opened_at``)
bounce, type "bounce"     hard: delivery → ``undelivered``; address suppressed (all senders)
bounce, type "blocked"    soft/temporary: recorded only
dropped                   delivery → ``failed``; address suppressed (all senders), unless
                          SendGrid dropped the *message* (spam content, bad SMTPAPI header,
                          quota): then the campaign is flagged and nobody is suppressed
spamreport                email subscription in the huddle → ``opted_out``; suppressed (all)
unsubscribe,              email subscription in the huddle → ``opted_out``; suppressed for
group_unsubscribe         the huddle's sender; without a known huddle: suppressed (all)
group_resubscribe         recorded only: a resubscribe must come from the member, on our pages
========================  ===================================================================

A delivery is found through the ``delivery_id`` custom arg (SendGrid flattens custom args onto
the event) and only when the event's address is the delivery's. An event without a delivery is
still stored; bounces, drops, spam reports and unsubscribes still suppress its address, with the
member found by email for the ledger row.

One POST is one transaction: everything in it is applied, or nothing is and SendGrid posts it
again. Two POSTs racing on the same events (a retry while the first is still running) meet on a
unique key; the loser starts over and finds the winner's rows.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from outreach import consent
from outreach.addresses.emails import InvalidEmail, mask_email, normalize_email
from outreach.app.clock import utcnow
from outreach.models import Campaign, Delivery, EmailEvent, Huddle, Member, Suppression
from outreach.models import campaigns as k
from outreach.models import consent as c
from outreach.models import members as m

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 5 * 1024 * 1024

# SendGrid ``dropped`` reasons about the message, not the address: suppressing the recipient
# for these would silence a whole list over one bad template.
_MESSAGE_LEVEL_DROPS = ("invalid smtpapi", "spam content", "package quota", "size limit")

_ID_CHUNK = 500  # sg_event_ids per IN (…) when looking for duplicates
_ATTEMPTS = 3  # whole-batch attempts when a concurrent POST wins a unique key


class MalformedEvents(ValueError):
    """The body is not a JSON array of event objects; the message says what is wrong."""


# -- parsing ---------------------------------------------------------------------------------


def parse_events(raw: bytes) -> list[dict[str, Any]]:
    """The event objects of a webhook body; MalformedEvents when it is not an array of them."""
    if len(raw) > MAX_BODY_BYTES:
        raise MalformedEvents(f"body larger than {MAX_BODY_BYTES} bytes")
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise MalformedEvents(f"body is not JSON: {exc}") from None
    if not isinstance(data, list):
        raise MalformedEvents("body is not a JSON array of events")
    for index, item in enumerate(data):
        if not isinstance(item, dict):
            raise MalformedEvents(f"event {index} is not a JSON object")
    return data


# -- applying --------------------------------------------------------------------------------


@dataclass(frozen=True)
class EventsOutcome:
    stored: int  # new events recorded
    duplicates: int  # already recorded (this POST or an earlier one): nothing changed
    unmatched: int  # stored without a delivery (unknown id, another address, no id)


def handle_events(
    factory: sessionmaker[Session],
    events: Sequence[Mapping[str, Any]],
    *,
    now: datetime | None = None,
) -> EventsOutcome:
    """Store and apply a POST's events in one transaction; repeated events change nothing."""
    now = now or utcnow()
    for attempt in range(1, _ATTEMPTS + 1):
        try:
            with factory() as session, session.begin():
                return _apply_all(session, events, now)
        except IntegrityError:
            # Another POST stored one of these events (or the same suppression) first.
            if attempt == _ATTEMPTS:
                raise
            log.info("sendgrid events raced another request; applying again (%d)", attempt)
    raise AssertionError("unreachable")  # pragma: no cover


def event_id(payload: Mapping[str, Any]) -> str:
    """``sg_event_id``, or a digest of the event when a (non-SendGrid) poster left it out."""
    given = payload.get("sg_event_id")
    if isinstance(given, str) and given.strip():
        return given.strip()[:100]
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return "sha256:" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _apply_all(
    session: Session, events: Sequence[Mapping[str, Any]], now: datetime
) -> EventsOutcome:
    ids = [event_id(e) for e in events]
    seen: set[str] = set()
    for start in range(0, len(ids), _ID_CHUNK):
        chunk = ids[start : start + _ID_CHUNK]
        seen.update(
            session.scalars(select(EmailEvent.sg_event_id).where(EmailEvent.sg_event_id.in_(chunk)))
        )
    # Lock the deliveries up front, in id order: two POSTs touching the same deliveries then
    # queue behind each other instead of deadlocking (PostgreSQL; SQLite has one writer).
    references = sorted({r for e in events if (r := _delivery_ref(e.get("delivery_id")))})
    deliveries: dict[int, Delivery] = {}
    for start in range(0, len(references), _ID_CHUNK):
        id_chunk = references[start : start + _ID_CHUNK]
        deliveries.update(
            (d.id, d)
            for d in session.scalars(
                select(Delivery)
                .where(Delivery.id.in_(id_chunk))
                .order_by(Delivery.id)
                .with_for_update()
            )
        )
    stored = duplicates = unmatched = 0
    for sg_event_id, payload in zip(ids, events, strict=True):
        if sg_event_id in seen:
            duplicates += 1
            continue
        seen.add(sg_event_id)
        stored += 1
        if not _apply_one(session, sg_event_id, payload, now, deliveries):
            unmatched += 1
    return EventsOutcome(stored=stored, duplicates=duplicates, unmatched=unmatched)


@dataclass
class _Target:
    """What an event is about: the address, and the delivery/campaign/huddle/member if known."""

    address: str | None
    delivery: Delivery | None = None
    campaign: Campaign | None = None
    huddle: Huddle | None = None
    member: Member | None = None


def _apply_one(
    session: Session,
    sg_event_id: str,
    payload: Mapping[str, Any],
    now: datetime,
    deliveries: Mapping[int, Delivery],
) -> bool:
    name = _text(payload.get("event")).lower()[:30] or "unknown"
    address = _address(payload.get("email"))
    reference = _delivery_ref(payload.get("delivery_id"))
    reason = _reason(payload)
    session.add(
        EmailEvent(
            sg_event_id=sg_event_id,
            event=name,
            email=address,
            delivery_id=reference,
            reason=reason,
            received_at=now,
        )
    )
    target = _find_target(session, deliveries.get(reference or 0), reference, address, name)
    when = _event_time(payload, now)
    detail = f"sendgrid {name}" + (f": {reason}" if reason else "")
    provenance = consent.Provenance(
        source=c.SOURCE_PROVIDER,
        detail=detail[:500],
        provider_message_id=_text(payload.get("sg_message_id"))[:64] or None,
    )

    if name == "delivered":
        _advance(target.delivery, k.DELIVERED, now)
    elif name == "open":
        _advance(target.delivery, k.DELIVERED, now)
        if target.delivery is not None and payload.get("sg_machine_open") is not True:
            target.delivery.opened_at = target.delivery.opened_at or when
    elif name == "click":
        _advance(target.delivery, k.DELIVERED, now)
        if target.delivery is not None:
            target.delivery.opened_at = target.delivery.opened_at or when
            target.delivery.clicked_at = target.delivery.clicked_at or when
    elif name == "bounce":
        if _text(payload.get("type")).lower() == "blocked":
            log.info("sendgrid soft bounce (blocked) for %s: recorded", mask_email(address))
        else:
            code = _text(payload.get("status"))[:16] or "bounce"
            _advance(target.delivery, k.UNDELIVERED, now, error_code=code)
            _suppress(session, target, reason="bounce", provenance=provenance)
    elif name == "dropped":
        _advance(target.delivery, k.FAILED, now, error_code="dropped")
        if any(part in (reason or "").lower() for part in _MESSAGE_LEVEL_DROPS):
            _flag_campaign(target, reason)
        else:
            _suppress(session, target, reason="dropped", provenance=provenance)
    elif name == "spamreport":
        _opt_out(session, target, provenance)
        _suppress(session, target, reason="spamreport", provenance=provenance)
    elif name in ("unsubscribe", "group_unsubscribe"):
        _opt_out(session, target, provenance)
        scope = target.huddle.sender_key if target.huddle is not None else c.ALL_SENDERS
        _suppress(session, target, reason="unsubscribe", provenance=provenance, scope=scope)
    elif name == "group_resubscribe":
        log.info(
            "sendgrid group_resubscribe for %s recorded, not applied: a resubscribe comes "
            "from the member through our own pages",
            mask_email(address),
        )
    return target.delivery is not None


def _find_target(
    session: Session,
    delivery: Delivery | None,
    reference: int | None,
    address: str | None,
    name: str,
) -> _Target:
    if delivery is not None and (
        delivery.channel != m.EMAIL
        or (address is not None and delivery.address.strip().lower() != address)
    ):
        log.warning(
            "sendgrid %s names delivery %s, which is not an email to %s: not applied to it",
            name,
            reference,
            mask_email(address),
        )
        delivery = None
    if delivery is None:
        if reference is not None or name not in ("processed", "deferred"):
            log.info(
                "sendgrid %s for %s: no delivery %s", name, mask_email(address), reference or "-"
            )
        member = (
            session.scalars(select(Member).where(Member.email == address)).one_or_none()
            if address
            else None
        )
        return _Target(address=address, member=member)
    campaign = session.get_one(Campaign, delivery.campaign_id)
    return _Target(
        address=address or delivery.address.strip().lower(),
        delivery=delivery,
        campaign=campaign,
        huddle=session.get_one(Huddle, campaign.huddle_id),
        member=session.get(Member, delivery.member_id),
    )


def _advance(
    delivery: Delivery | None, state: str, now: datetime, *, error_code: str | None = None
) -> None:
    """Move forward only: a state of a lower rank never replaces one of a higher rank."""
    if delivery is None:
        return
    moved = k.DELIVERY_RANK[state] > k.DELIVERY_RANK.get(delivery.state, 0)
    if moved:
        delivery.state = state
        delivery.updated_at = now
    if error_code and (moved or delivery.error_code is None):
        delivery.error_code = error_code


def _suppress(
    session: Session,
    target: _Target,
    *,
    reason: str,
    provenance: consent.Provenance,
    scope: str = c.ALL_SENDERS,
) -> None:
    """Suppress the address on email, with a ledger row when that changes anything."""
    if not target.address:
        return
    current = session.execute(
        select(Suppression.lifted_at, Suppression.reason).where(
            Suppression.channel == m.EMAIL,
            Suppression.address == target.address,
            Suppression.scope == scope,
        )
    ).first()
    unchanged = current is not None and current.lifted_at is None and current.reason == reason
    consent.suppress(
        session,
        channel=m.EMAIL,
        address=target.address,
        reason=reason,
        scope=scope,
        detail=provenance.detail,
    )
    if unchanged:
        return
    consent.record(
        session,
        member_id=target.member.id if target.member is not None else None,
        huddle_id=target.huddle.id
        if target.huddle is not None and scope != c.ALL_SENDERS
        else None,
        channel=m.EMAIL,
        address=target.address,
        action=c.SUPPRESS,
        provenance=provenance,
    )
    log.info("sendgrid %s: %s suppressed (%s)", reason, mask_email(target.address), scope)


def _opt_out(session: Session, target: _Target, provenance: consent.Provenance) -> None:
    """The member's email subscription in the delivery's huddle goes ``opted_out``."""
    if target.member is None or target.huddle is None:
        return
    if not target.member.email:
        log.warning("member %s has no email address left to opt out", target.member.id)
        return
    consent.set_subscription_state(
        session,
        member=target.member,
        huddle=target.huddle,
        channel=m.EMAIL,
        state=m.OPTED_OUT,
        provenance=provenance,
    )
    log.info("%s opted out of %s email", mask_email(target.address), target.huddle.slug)


def _flag_campaign(target: _Target, reason: str | None) -> None:
    log.warning("sendgrid dropped a message (%s): not the address's fault", reason)
    if target.campaign is not None:
        target.campaign.flag = (
            f"SendGrid dropped at least one email ({reason or 'no reason given'}): "
            "review the content."
        )


# -- field helpers ---------------------------------------------------------------------------


def _text(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ""


def _address(value: Any) -> str | None:
    text = _text(value)
    if not text:
        return None
    try:
        return normalize_email(text)
    except InvalidEmail:
        return text.lower()[:254]


def _delivery_ref(value: Any) -> int | None:
    """``"123"`` (or ``"delivery:123"``, or 123) from the ``delivery_id`` custom arg."""
    if isinstance(value, int) and not isinstance(value, bool):
        text = str(value)
    else:
        text = _text(value).removeprefix("delivery:")
    if not text.isascii() or not text.isdigit() or len(text) > 18:
        return None
    return int(text) or None


def _reason(payload: Mapping[str, Any]) -> str | None:
    parts = [_text(payload.get(field)) for field in ("reason", "response")]
    text = " / ".join(p for p in parts if p)
    return text[:2000] or None


def _event_time(payload: Mapping[str, Any], now: datetime) -> datetime:
    """When the event happened (SendGrid's ``timestamp``), or ``now`` if that looks wrong."""
    stamp = payload.get("timestamp")
    if (
        isinstance(stamp, int | float)
        and not isinstance(stamp, bool)
        and 946_684_800 <= stamp <= now.timestamp() + 86_400
    ):
        return datetime.fromtimestamp(stamp, UTC)
    return now
