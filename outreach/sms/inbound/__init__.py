"""Inbound texts: what a supporter's text means, and what we do about it, in one transaction.

``POST /webhooks/twilio/sms`` calls :func:`handle_inbound`. The path of a text:

1. :mod:`~outreach.sms.inbound.classify` reads it (STOP in its many forms, HELP, YES, keywords),
   before the transaction, with the keywords of the huddles on the number as this process last
   saw them (:mod:`~outreach.sms.inbound.directory`);
2. :mod:`~outreach.sms.inbound.store` reads the sender and their subscriptions;
3. :mod:`~outreach.sms.inbound.decide` decides, in the compliance order (opt-out first);
4. the text claims its MessageSid (a repeat gets the first answer and changes nothing), and its
   consent changes are written through :mod:`outreach.consent`, committed before the webhook
   answers.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import IntegrityError

from outreach.addresses.phones import mask_phone
from outreach.app.clock import utcnow
from outreach.sms.inbound import classify as classifier
from outreach.sms.inbound import store
from outreach.sms.inbound.decide import IGNORED, ROUTINE_INTENTS, Decision, decide
from outreach.sms.inbound.directory import NumberHuddles, directory_for
from outreach.sms.inbound.message import MAX_STORED_BODY, InboundResult, InboundSms, Media, storable

__all__ = ["MAX_STORED_BODY", "InboundResult", "InboundSms", "Media", "handle_inbound", "storable"]

log = logging.getLogger(__name__)

ATTEMPTS = 3  # a text that met a concurrent one's new member or subscription: tries in all
# A picture with no words says nothing a keyword could: it is a reply, whatever the classifier
# would make of an empty body (Twilio's OptOutType still counts: it can only add an opt-out).
MEDIA_ONLY = classifier.Classification(classifier.Intent.OTHER)


def handle_inbound(engine: Engine, sms: InboundSms, *, default_region: str = "US") -> InboundResult:
    """Apply an inbound text and return the reply to send (None: say nothing).

    On PostgreSQL two texts about the same number run side by side: when both insert the same
    new member or subscription, the one that commits second fails on the unique index and is
    decided again from what the first committed (a 500 would lose the text: Twilio does not
    retry it). A repeated MessageSid never fails this way: its claim waits for the first
    delivery, then answers as it did.
    """
    sms = sms.storable()
    # Work that needs no consent state first: on SQLite the transaction holds the write lock.
    sender = store.Sender(sms.from_raw, default_region)
    to_e164 = store.normalize_phone(sms.to, default_region) or sms.to
    number = (to_e164, sms.messaging_service_sid)
    huddles = directory_for(engine)
    for attempt in range(1, ATTEMPTS + 1):
        known = huddles.get(number)
        early = _classify(sms, known.keywords) if known is not None else None
        try:
            with engine.begin() as db:
                current, read_again = huddles.current(db, number)
                result = early
                if read_again or result is None:
                    result = _classify(sms, current.keywords)
                return _apply(db, sms, sender, to_e164, current, result)
        except IntegrityError:
            if attempt == ATTEMPTS:
                raise
            log.info("inbound %s met a concurrent text's new row: deciding again", sms.message_sid)
    raise AssertionError("unreachable")  # pragma: no cover


def _classify(sms: InboundSms, keywords: Iterable[str]) -> classifier.Classification:
    return MEDIA_ONLY if sms.media_only else classifier.classify(sms.body, keywords)


def _apply(
    db: Connection,
    sms: InboundSms,
    sender: store.Sender,
    to_e164: str,
    huddles: NumberHuddles,
    result: classifier.Classification,
) -> InboundResult:
    """Read, decide, then claim the MessageSid and write (a duplicate writes nothing else)."""
    received_at = utcnow()
    from_e164, snapshot = store.read_snapshot(db, sender, huddles)
    if from_e164 is None or snapshot is None:
        ignored = Decision(InboundResult(IGNORED, None))
        row_id = store.claim(
            db,
            sms,
            from_e164=from_e164,
            to_e164=to_e164,
            received_at=received_at,
            member_id=None,
            decision=ignored,
        )
        if row_id is None:
            return store.answered(db, sms.message_sid)
        log.info("inbound %s from a non-number sender ignored", sms.message_sid)
        return ignored.result
    phone = from_e164

    def hinted_since(intent: str, since: datetime) -> bool:
        return store.hinted_since(db, phone, intent, since)

    decision = decide(
        snapshot, result, sms, to_e164, received_at=received_at, hinted_since=hinted_since
    )
    # A join by a number we have not met names the member it creates: claim first, finish after.
    new_member = decision.writes.new_member
    row_id = store.claim(
        db,
        sms,
        from_e164=phone,
        to_e164=to_e164,
        received_at=received_at,
        member_id=snapshot.member_id,
        decision=None if new_member else decision,
    )
    if row_id is None:
        return store.answered(db, sms.message_sid)
    now = utcnow()
    member_id = store.insert_member(db, phone, now) if new_member else snapshot.member_id
    store.write(
        db, decision.writes, sms, member_id=member_id, phone=phone, received_at=received_at, now=now
    )
    if new_member and member_id is not None:
        store.finish(db, row_id, decision, member_id)
    # Consent changes, joins and flags at INFO; the routine texts (replies for the inbox, HELP,
    # profile answers: most of the traffic, each kept as its inbound row) at DEBUG.
    routine = decision.result.intent in ROUTINE_INTENTS and not decision.flagged
    log.log(
        logging.DEBUG if routine else logging.INFO,
        "inbound %s from %s: %s%s",
        sms.message_sid,
        mask_phone(phone),
        decision.result.intent,
        " (flagged)" if decision.flagged else "",
    )
    return decision.result
