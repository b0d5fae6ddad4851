"""SendGrid v3 Mail Send through the official SDK (``sendgrid.SendGridAPIClient``).

One :class:`~outreach.providers.email.OutboundEmail` is one ``POST /v3/mail/send``: a
personalization per recipient (its address, ``custom_args`` with our ``delivery_id``, its
``List-Unsubscribe`` headers and substitutions), and the message-level from, subject, content
(text/plain first, as SendGrid requires, then text/html), categories and headers. The body is a
plain dict (:func:`mail_body`): the ``sendgrid.helpers.mail`` classes build the same JSON, check
less than SendGrid does, and take far longer for 1,000 personalizations. SendGrid itself is the
validator: a refusal comes back as a 400 listing every problem, raised as
:class:`PermanentSendError`.

What this adapter adds to the SDK:

- **A host and a timeout.** ``SENDGRID_API_HOST`` (a local fake, a recording proxy) goes to the
  client's constructor, the only place the SDK reads it. Timeout 15 s for connect and for each
  read (the SDK has none by default).
- **Bounded retries, only when nothing was processed:** HTTP 429 (waiting until
  ``X-RateLimit-Reset`` if that is sooner than the budget, else backing off exponentially with
  jitter) and failures before the whole request was written (refused, DNS, connect timeout, TLS).
  A 5xx, a read timeout or a connection lost while waiting for the answer raise
  :class:`UncertainSendError` after that one request: SendGrid may have accepted the batch, and
  sending it again would mail up to 1,000 people twice.
- **Errors mapped** onto the tree in :mod:`outreach.providers.sms`: 401/403/404 are
  :class:`AccountError` (our key or host is wrong: every batch will fail alike), other 4xx
  :class:`PermanentSendError` with SendGrid's ``errors[].message`` joined; addresses quoted in
  them are masked, and so are addresses in our logs.

Connections: the SDK's ``python_http_client`` builds a urllib opener per request and sends
``Connection: close``, so every request opens a new connection, and over HTTPS loads the CA bundle
into a new TLS context and does a full handshake (tens of ms of CPU, plus two round trips). For a
1,000-recipient request that is a small share of the time; for one-recipient requests it is
most of it: batching (per-recipient differences as substitutions) matters more than
connection reuse.

Logging: ``python_http_client`` logs each payload and its headers, API key included, at DEBUG;
keep the ``python_http_client`` logger at INFO or above in production.

Thread-safety: safe to share between threads. Each request builds its own urllib opener; the
client's only shared state is its header dict, which the SDK sets once and then only reads.
"""

from __future__ import annotations

import http.client
import json
import logging
import random
import re
import time
import urllib.error
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from python_http_client.exceptions import HTTPError as SendGridHTTPError
from sendgrid import SendGridAPIClient

from outreach.addresses.emails import mask_email
from outreach.app.settings import ConfigError, Settings
from outreach.providers.email import EmailRecipient, EmailSendResult, OutboundEmail
from outreach.providers.sms import (
    AccountError,
    PermanentSendError,
    SendError,
    TransientSendError,
    UncertainSendError,
)

__all__ = [
    "DEFAULT_HOST",
    "NO_RETRY",
    "RetryPolicy",
    "SendGridEmailTransport",
    "custom_args",
    "delivery_id_of",
    "error_from_response",
    "mail_body",
]

log = logging.getLogger(__name__)

DEFAULT_HOST = "https://api.sendgrid.com"
TIMEOUT = 15.0

_EMAIL_LIKE = re.compile(r"[^\s\[\]<>()\"',;:@]+@[^\s\[\]<>()\"',;:@]+")


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry a request SendGrid did not process.

    The n-th retry waits between half and all of ``min(max_delay, base_delay * 2**(n-1))``
    ("equal jitter"), or until ``X-RateLimit-Reset`` (plus up to ``base_delay`` of jitter) when a
    429 names a later time. No retry starts once ``budget`` seconds would have passed since the
    first attempt, counting the wait: a reset further away than that is left to the caller, who
    releases the batch and tries again later. Defaults: waits of 0.25-0.5, 0.5-1, 1-2 s.
    """

    attempts: int = 4
    base_delay: float = 0.5
    max_delay: float = 4.0
    budget: float = 8.0

    def delay(self, retry: int, rng: random.Random, *, reset_in: float | None = None) -> float:
        ceiling = min(self.max_delay, self.base_delay * 2 ** (retry - 1))
        backoff = ceiling / 2 + rng.random() * ceiling / 2
        if reset_in is not None and reset_in > 0:
            return max(backoff, reset_in + rng.random() * self.base_delay)
        return backoff


NO_RETRY = RetryPolicy(attempts=1)  # for callers that must not wait, e.g. inside a web request


def delivery_id_of(reference: str) -> int | None:
    """``delivery:123`` -> 123; any other reference -> None."""
    prefix, _, rest = reference.partition(":")
    return int(rest) if prefix == "delivery" and rest.isdigit() else None


def custom_args(recipient: EmailRecipient) -> dict[str, str]:
    """The recipient's ``custom_args``, with ``delivery_id`` from its reference taking precedence.

    SendGrid returns them, flattened, on every event about this recipient.
    """
    args = dict(recipient.custom_args)
    delivery_id = delivery_id_of(recipient.reference)
    if delivery_id is not None:
        args["delivery_id"] = str(delivery_id)
    return args


def mail_body(email: OutboundEmail) -> dict[str, Any]:
    """The ``/v3/mail/send`` JSON for ``email``; tracking settings are left to the account."""
    sender: dict[str, str] = {"email": email.from_email}
    if email.from_name:
        sender["name"] = email.from_name
    content = [
        {"type": kind, "value": value}
        for kind, value in (("text/plain", email.text), ("text/html", email.html))
        if value
    ]
    body: dict[str, Any] = {
        "personalizations": [_personalization(r) for r in email.recipients],
        "from": sender,
        "subject": email.subject,
        "content": content,
    }
    if email.categories:
        body["categories"] = list(email.categories)
    if email.headers:
        body["headers"] = dict(email.headers)
    return body


def _personalization(recipient: EmailRecipient) -> dict[str, Any]:
    personalization: dict[str, Any] = {"to": [{"email": recipient.to}]}
    args = custom_args(recipient)
    if args:
        personalization["custom_args"] = args
    if recipient.headers:
        personalization["headers"] = dict(recipient.headers)
    if recipient.substitutions:
        personalization["substitutions"] = dict(recipient.substitutions)
    return personalization


class SendGridEmailTransport:
    """Sends email with SendGrid. Thread-safe (see the module docstring)."""

    name = "sendgrid"

    def __init__(
        self,
        api_key: str,
        *,
        host: str | None = None,
        timeout: float = TIMEOUT,
        retry: RetryPolicy = RetryPolicy(),  # frozen: sharing the default is safe
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        # python_http_client logs request headers (the API key) and bodies at DEBUG.
        if logging.getLogger("python_http_client").getEffectiveLevel() < logging.INFO:
            logging.getLogger("python_http_client").setLevel(logging.INFO)
        self._sendgrid = SendGridAPIClient(api_key, host=(host or DEFAULT_HOST).rstrip("/"))
        self._sendgrid.client.timeout = timeout
        self._retry = retry
        self._sleep = sleep
        self._clock = clock  # wall clock: X-RateLimit-Reset is a Unix time
        self._rng = rng or random.Random()  # jitter, not a secret

    @classmethod
    def from_settings(cls, settings: Settings, **options: Any) -> SendGridEmailTransport:
        """A transport for the configured key and host; ``options`` go to the constructor."""
        if not settings.sendgrid_api_key:
            raise ConfigError("the sendgrid email backend needs SENDGRID_API_KEY")
        return cls(settings.sendgrid_api_key, host=settings.sendgrid_api_host, **options)

    def send(self, email: OutboundEmail) -> EmailSendResult:
        body = mail_body(email)
        what = _describe(email)
        started = time.monotonic()
        waited = 0.0
        attempt = 1
        while True:
            try:
                response = self._sendgrid.client.mail.send.post(request_body=body)
            except (SendGridHTTPError, OSError, http.client.HTTPException) as exc:
                error, reset_in = self._error(exc)
                delay = self._retry.delay(attempt, self._rng, reset_in=reset_in)
                spent = max(time.monotonic() - started, waited)  # waited: when sleep is fake
                if (
                    not isinstance(error, TransientSendError)
                    or attempt >= self._retry.attempts
                    or spent + delay > self._retry.budget
                ):
                    log.warning("sendgrid %s failed: %s", what, error)
                    raise error from exc
                log.info("sendgrid %s: %s; retry %d in %.2f s", what, error, attempt, delay)
                self._sleep(delay)
                waited += delay
                attempt += 1
                continue
            message_id = response.headers.get("X-Message-Id")
            log.info("sendgrid %s: accepted as %s", what, message_id or "-")
            return EmailSendResult(message_id=message_id, accepted=len(email.recipients))

    def close(self) -> None:
        """Nothing to release: the SDK opens and closes a connection per request."""

    def _error(self, exc: Exception) -> tuple[SendError, float | None]:
        """The error for ``exc``, and for a 429 the seconds until SendGrid's limit resets."""
        if not isinstance(exc, SendGridHTTPError):
            return error_from_exception(exc), None
        error = error_from_response(exc.status_code, exc.body, exc.reason)
        reset_in = None
        if exc.status_code == 429 and exc.headers is not None:
            reset = exc.headers.get("X-RateLimit-Reset")
            if reset and reset.strip().isdigit():
                reset_in = int(reset) - self._clock()
                error.message += f" (limit resets in {max(reset_in, 0):.0f} s)"
        return error, reset_in


def error_from_response(status: int, body: bytes | str | None, reason: str = "") -> SendError:
    """The :class:`SendError` for an HTTP error answer of ``/v3/mail/send``."""
    message = _error_messages(body) or f"SendGrid answered {status} {reason}".strip()
    kind: type[SendError]
    if status == 429:
        kind = TransientSendError
    elif status >= 500:
        kind = UncertainSendError
    elif status in (401, 403, 404):
        kind = AccountError
    elif 400 <= status < 500:
        kind = PermanentSendError
    else:  # urllib raises for anything but 2xx; a 1xx/3xx here means a broken proxy
        kind = UncertainSendError
    return kind(message, http_status=status)


def error_from_exception(exc: Exception) -> SendError:
    """The :class:`SendError` for a network failure during ``/v3/mail/send``.

    urllib wraps in :class:`urllib.error.URLError` only what fails while connecting and writing
    the request (refused, DNS, connect timeout, TLS, a reset mid-upload): SendGrid cannot have
    processed a request it did not receive whole. A failure while waiting for or reading the
    answer (read timeout, connection closed) comes through unwrapped, after the request went out.
    """
    if isinstance(exc, urllib.error.URLError):
        reason = exc.reason
        name = type(reason).__name__ if isinstance(reason, BaseException) else str(reason)
        return TransientSendError(f"could not send the request to SendGrid: {name}")
    if isinstance(exc, TimeoutError):
        return UncertainSendError("no answer from SendGrid before the read timeout")
    return UncertainSendError(f"connection to SendGrid failed after sending: {type(exc).__name__}")


def _error_messages(body: bytes | str | None) -> str:
    """SendGrid's ``{"errors": [{"message": ...}]}`` joined with "; ", addresses masked."""
    if not body:
        return ""
    try:
        parsed = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return ""
    errors = parsed.get("errors") if isinstance(parsed, dict) else None
    if not isinstance(errors, list):
        return ""
    messages = [
        str(e["message"]) for e in errors if isinstance(e, dict) and e.get("message") is not None
    ]
    return _mask_addresses("; ".join(messages))


def _mask_addresses(text: str) -> str:
    """SendGrid quotes addresses in some errors ("...instance of [a@b.org]..."): mask them."""
    return _EMAIL_LIKE.sub(lambda m: mask_email(m.group()), text)


def _describe(email: OutboundEmail) -> str:
    """``send delivery:12 (+999) to m***@example.org``: for logs."""
    first = email.recipients[0]
    more = f" (+{len(email.recipients) - 1})" if len(email.recipients) > 1 else ""
    return f"send {first.reference}{more} to {mask_email(first.to)}"
