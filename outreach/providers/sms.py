"""The SMS transport interface: what a campaign sender hands a provider, and what can go wrong.

Every backend (``twilio``, ``sandbox``) implements :class:`SmsTransport`; the sender never imports a
vendor SDK. Errors form a tree whose branches tell the caller what to do with the delivery::

    SendError                       anything a send can raise; code / http_status / message
    ├── PermanentSendError          refused: never retry this message (4xx with a code)
    │   ├── RecipientOptedOut       21610: the person replied STOP; suppress them
    │   ├── InvalidRecipient        21211, 21614, 21635: invalid, landline, not mobile; suppress
    │   └── AccountError            401/403/404 and sender codes (21212, 21606, 21701, ...): our
    │                               credentials or sender are wrong; every message will fail the
    │                               same way, so stop the batch and alert instead of failing people
    ├── TransientSendError          not processed (429 / 20429, no connection): safe to retry later
    └── UncertainSendError          the provider may have accepted it (5xx, read timeout, connection
                                    lost after sending): NEVER retry blindly; mark the delivery
                                    'unknown' and reconcile

A transport retries transient errors itself, within a small bound, before raising
:class:`TransientSendError`; when it does raise it, the message was not sent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

__all__ = [
    "AccountError",
    "InvalidRecipient",
    "OutboundSms",
    "PermanentSendError",
    "RecipientOptedOut",
    "SendError",
    "SendResult",
    "SmsTransport",
    "TransientSendError",
    "UncertainSendError",
]

MAX_VALIDITY_PERIOD = 36_000  # seconds; Twilio's ValidityPeriod is 1..36000


@dataclass(frozen=True)
class OutboundSms:
    """One text to send. Give ``from_number``, ``messaging_service_sid`` or both.

    With both, Twilio sends through the service from that number (which must be in its pool).
    """

    to: str  # E.164
    body: str
    from_number: str | None = None
    messaging_service_sid: str | None = None
    status_callback: str | None = None  # our /webhooks/twilio/status URL
    validity_period: int | None = None  # seconds, 1..36000; None: the provider's default
    reference: str | None = None  # "delivery:123" / "reply:45": for logs and the sandbox outbox

    def __post_init__(self) -> None:
        if not self.from_number and not self.messaging_service_sid:
            raise ValueError("OutboundSms needs from_number or messaging_service_sid")
        if self.validity_period is not None and not (
            1 <= self.validity_period <= MAX_VALIDITY_PERIOD
        ):
            raise ValueError(
                f"validity_period must be 1..{MAX_VALIDITY_PERIOD} s, not {self.validity_period}"
            )

    @property
    def sender(self) -> str:
        """The number, else the messaging service: what the outbox and logs show as sender."""
        return self.from_number or self.messaging_service_sid or ""


@dataclass(frozen=True)
class SendResult:
    provider_message_id: str
    status: str  # the provider's initial status: queued (From) or accepted (service)
    segments: int | None = None


class SendError(Exception):
    """A send failed. ``code`` is the provider's error code as text (``"21610"``), if any."""

    def __init__(
        self, message: str, *, code: str | int | None = None, http_status: int | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = None if code is None else str(code)
        self.http_status = http_status

    def __str__(self) -> str:
        details = [f"code {self.code}"] if self.code is not None else []
        if self.http_status is not None:
            details.append(f"HTTP {self.http_status}")
        return f"{self.message} ({', '.join(details)})" if details else self.message


class PermanentSendError(SendError):
    """The provider refused this message: retrying sends nothing but the same refusal."""


class RecipientOptedOut(PermanentSendError):
    """21610: the recipient replied STOP to this sender; Twilio blocks every further text."""


class InvalidRecipient(PermanentSendError):
    """21211 / 21614 / 21635: not a valid number, or not one that can take an SMS."""


class AccountError(PermanentSendError):
    """Our credentials, account or sender were refused: not the recipient's fault."""


class TransientSendError(SendError):
    """The provider did not process the request; the same message may be sent again later."""


class UncertainSendError(SendError):
    """The provider may or may not have accepted the message: reconcile, never resend blindly."""


class SmsTransport(Protocol):
    """Sends texts through one provider. See each implementation for thread-safety."""

    name: str

    def send(self, message: OutboundSms) -> SendResult:
        """Hand ``message`` to the provider, or raise a :class:`SendError` subclass."""
        ...

    def fetch_status(self, provider_message_id: str) -> str | None:
        """The provider's current status of a message, or None if it doesn't know the id."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...
