"""The email transport seam: one message, up to 1,000 recipients (SendGrid personalizations).

Errors are the SMS tree's (``outreach.providers.sms``): PermanentSendError (4xx: this batch is
refused, with the provider's reason), TransientSendError (429, connect failures: not processed,
retry later), UncertainSendError (5xx, timeouts after sending: may have gone out, never retried).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

MAX_RECIPIENTS = 1000  # SendGrid: personalizations (and recipients) per request


@dataclass(frozen=True)
class EmailRecipient:
    to: str
    reference: str  # "delivery:123": comes back on events as custom_args["delivery_id"]
    custom_args: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)  # List-Unsubscribe per recipient
    substitutions: dict[str, str] = field(default_factory=dict)  # placeholder -> value


@dataclass(frozen=True)
class OutboundEmail:
    from_email: str
    from_name: str | None
    subject: str
    html: str
    text: str
    recipients: list[EmailRecipient]
    categories: list[str] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)  # the same for every recipient

    def __post_init__(self) -> None:
        if not 1 <= len(self.recipients) <= MAX_RECIPIENTS:
            raise ValueError(f"an email goes to 1..{MAX_RECIPIENTS} recipients")


@dataclass(frozen=True)
class EmailSendResult:
    message_id: str | None  # SendGrid's X-Message-Id for the request
    accepted: int


class EmailTransport(Protocol):
    name: str

    def send(self, email: OutboundEmail) -> EmailSendResult: ...

    def close(self) -> None: ...
