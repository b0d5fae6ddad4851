"""The sandbox SMS backend: texts land in the outbox table and delivery is simulated.

A first-class backend (the default one), not a test double: a fresh install, a demo or a staging
site "sends" through it, and organizers see the result in the outbox. ``send`` stores an
:class:`~outreach.models.OutboxMessage` in its own short transaction and answers like Twilio: a
random ``SM`` + 32 hex sid, status ``queued``, the segment count. Call it outside any open write
transaction, as you would a provider (on SQLite a second writer waits for the first).

Delivery is simulated, not performed: :meth:`SandboxSmsTransport.simulated_receipts` gives the
status callbacks Twilio would post for a message (a worker job signs them with
:func:`sign_status_callback` and posts them to our own webhook). The outcome is a pure function of
the sid (:func:`simulated_outcome`): ``delivered``, or, for a ``SANDBOX_FAILURE_RATE`` share of
messages, ``undelivered`` with 30003 (unreachable) or 30005 (unknown number).

Magic numbers
-------------
Any ``+1`` number whose last seven digits are below behaves on purpose, whatever its area code,
e.g. +1 617 555 0101 (555-0100 to 555-0199 are reserved for fiction, and ``phonenumbers`` takes
them as valid, so members can have them):

========  ==========================================================================
5550100   always delivered, whatever the failure rate
5550101   refused: :class:`RecipientOptedOut` (21610), as Twilio does after a STOP
5550102   refused: :class:`InvalidRecipient` (21211)
5550103   :class:`TransientSendError` (429 / 20429) on the first send to it from this
          transport instance, then accepted: exercises retry-later paths
5550104   stored as sent, then :class:`UncertainSendError` (500): the provider queued
          it but the answer was lost, for reconciliation paths
5550105   accepted, then undelivered with 30003
5550106   accepted, then undelivered with 30005
========  ==========================================================================

Pass ``magic_numbers`` to change the table (keys: seven digits, or a whole E.164 number).

Thread-safe: sessions come from the sessionmaker per call, and the little state kept (which
numbers already had their one transient failure) is behind a lock.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import threading
from collections.abc import Mapping
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from outreach.addresses.phones import mask_phone
from outreach.app.db import transaction
from outreach.app.settings import Settings
from outreach.messages.encoding import analyze
from outreach.models import OutboxMessage
from outreach.providers.sms import (
    InvalidRecipient,
    OutboundSms,
    RecipientOptedOut,
    SendResult,
    TransientSendError,
    UncertainSendError,
)
from outreach.providers.twilio.signature import sign

__all__ = [
    "MAGIC_NUMBERS",
    "Magic",
    "SandboxSmsTransport",
    "sign_status_callback",
    "simulated_outcome",
]

log = logging.getLogger(__name__)

PROVIDER = "sandbox"
OUTBOX_KINDS = frozenset({"campaign", "reply", "test"})


class Magic(StrEnum):
    DELIVERED = "delivered"
    OPTED_OUT = "opted-out"
    INVALID = "invalid"
    TRANSIENT_ONCE = "transient-once"
    UNCERTAIN = "uncertain"
    UNREACHABLE = "unreachable"
    UNKNOWN_NUMBER = "unknown-number"


MAGIC_NUMBERS: Mapping[str, Magic] = {
    "5550100": Magic.DELIVERED,
    "5550101": Magic.OPTED_OUT,
    "5550102": Magic.INVALID,
    "5550103": Magic.TRANSIENT_ONCE,
    "5550104": Magic.UNCERTAIN,
    "5550105": Magic.UNREACHABLE,
    "5550106": Magic.UNKNOWN_NUMBER,
}

_FORCED_OUTCOMES: Mapping[Magic, tuple[str, str | None]] = {
    Magic.DELIVERED: ("delivered", None),
    Magic.UNREACHABLE: ("undelivered", "30003"),
    Magic.UNKNOWN_NUMBER: ("undelivered", "30005"),
}


def simulated_outcome(provider_message_id: str, failure_rate: float) -> tuple[str, str | None]:
    """(final MessageStatus, ErrorCode) for a message: the same answer for the same sid."""
    digest = hashlib.sha256(provider_message_id.encode()).digest()
    draw = int.from_bytes(digest[:8], "big") / 2**64  # uniform in [0, 1)
    if draw >= failure_rate:
        return "delivered", None
    return "undelivered", ("30003" if digest[8] % 2 == 0 else "30005")


def sign_status_callback(settings: Settings, url: str, params: dict[str, str]) -> str:
    """The ``X-Twilio-Signature`` Twilio would send with ``params`` POSTed to ``url``."""
    return sign(settings.webhook_auth_token, url, params)


class SandboxSmsTransport:
    """Stores texts in the outbox instead of sending them. See the module docstring."""

    name = PROVIDER
    max_request_seconds = 0.0  # the outbox row is written before send returns

    def __init__(
        self,
        settings: Settings,
        sessions: sessionmaker[Session],
        *,
        magic_numbers: Mapping[str, Magic] = MAGIC_NUMBERS,
    ) -> None:
        self._failure_rate = settings.sandbox_failure_rate
        self._sessions = sessions
        self._magic_numbers = magic_numbers
        self._failed_once: set[str] = set()
        self._lock = threading.Lock()

    def send(self, message: OutboundSms) -> SendResult:
        magic = self.magic(message.to)
        what = f"send {message.reference or '-'} to {mask_phone(message.to)}"
        if magic is Magic.OPTED_OUT:
            log.info("sandbox %s: refused, 21610 (magic number)", what)
            raise RecipientOptedOut(
                "Attempt to send to unsubscribed recipient", code="21610", http_status=400
            )
        if magic is Magic.INVALID:
            log.info("sandbox %s: refused, 21211 (magic number)", what)
            raise InvalidRecipient("Invalid 'To' Phone Number", code="21211", http_status=400)
        if magic is Magic.TRANSIENT_ONCE:
            with self._lock:
                first = message.to not in self._failed_once
                self._failed_once.add(message.to)
            if first:
                log.info("sandbox %s: 429 this once (magic number)", what)
                raise TransientSendError("Too Many Requests", code="20429", http_status=429)

        sid = "SM" + secrets.token_hex(16)
        kind, delivery_id = _kind_and_delivery(message.reference)
        with transaction(self._sessions) as session:
            session.add(
                OutboxMessage(
                    channel="sms",
                    provider=PROVIDER,
                    provider_message_id=sid,
                    to_address=message.to,
                    from_address=message.sender,
                    body=message.body,
                    delivery_id=delivery_id,
                    kind=kind,
                )
            )
        if magic is Magic.UNCERTAIN:
            log.info("sandbox %s: stored as %s, answered 500 (magic number)", what, sid)
            raise UncertainSendError("Internal Server Error", code="20500", http_status=500)
        log.info("sandbox %s: %s queued", what, sid)
        return SendResult(
            provider_message_id=sid, status="queued", segments=analyze(message.body).segments
        )

    def fetch_status(self, provider_message_id: str) -> str | None:
        """The final simulated status of a message in the outbox, None if it isn't there."""
        outcome = self._outcome(provider_message_id)
        return None if outcome is None else outcome[0]

    def find_sent(self, *, to: str, reference: str, since: datetime) -> str | None:
        """The id of the outbox message sent for ``reference`` (``delivery:N``), or "" if none.

        The outbox row is written in its own transaction before ``send`` returns, so a worker
        that died after the provider call left the evidence here.
        """
        _, delivery_id = _kind_and_delivery(reference)
        if delivery_id is None:
            return None
        with self._sessions() as session:
            found = session.scalar(
                select(OutboxMessage.provider_message_id)
                .where(
                    OutboxMessage.delivery_id == delivery_id,
                    OutboxMessage.to_address == to,
                    OutboxMessage.created_at >= since - timedelta(seconds=5),
                )
                .limit(1)
            )
        return found or ""

    def simulated_receipts(self, provider_message_id: str) -> list[tuple[str, str | None]]:
        """The (MessageStatus, ErrorCode) callbacks Twilio would send, in order; [] if unknown."""
        outcome = self._outcome(provider_message_id)
        if outcome is None:
            return []
        return [("sent", None), outcome]

    def close(self) -> None:
        """Nothing to release: sessions are per call."""

    def magic(self, to: str) -> Magic | None:
        """What a magic number does, or None for an ordinary number."""
        found = self._magic_numbers.get(to)
        if found is None and to.startswith("+1") and len(to) == 12:
            found = self._magic_numbers.get(to[-7:])
        return found

    def _outcome(self, provider_message_id: str) -> tuple[str, str | None] | None:
        with self._sessions() as session:
            to = session.scalar(
                select(OutboxMessage.to_address)
                .where(
                    OutboxMessage.provider_message_id == provider_message_id,
                    OutboxMessage.provider == PROVIDER,
                    OutboxMessage.channel == "sms",
                )
                .limit(1)
            )
        if to is None:
            return None
        magic = self.magic(to)
        forced = _FORCED_OUTCOMES.get(magic) if magic is not None else None
        return forced or simulated_outcome(provider_message_id, self._failure_rate)


def _kind_and_delivery(reference: str | None) -> tuple[str, int | None]:
    """``delivery:123`` -> ("campaign", 123); ``reply:…`` / ``test:…`` -> that kind."""
    prefix, _, rest = (reference or "").partition(":")
    if prefix == "delivery" and rest.isdigit():
        return "campaign", int(rest)
    if prefix in OUTBOX_KINDS:
        return prefix, None
    return "campaign", None
