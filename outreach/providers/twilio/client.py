"""Twilio Programmable Messaging through the official SDK (``twilio.rest.Client``).

What this adapter adds to the SDK:

- **A base URL.** ``TWILIO_API_BASE_URL`` (a local fake, a recording proxy) is honored by an
  ``http_client`` that rewrites ``https://*.twilio.com`` after the SDK has built each URL, so every
  domain and any ``TWILIO_EDGE`` / ``TWILIO_REGION`` land there too.
- **Timeouts.** Connect 5 s, read 15 s (the SDK has none by default).
- **Keep-alive.** One ``requests.Session`` (one connection pool) per transport. Proxy and CA
  bundle variables (``HTTPS_PROXY``, ``NO_PROXY``, ``REQUESTS_CA_BUNDLE``) are read once when the
  transport is built, not on every request as requests otherwise does.
- **Bounded retries, only when nothing was sent:** HTTP 429 / error 20429 (Twilio's concurrency
  limit: the request was not processed) and connection failures before a byte went out (refused,
  DNS, connect timeout). Exponential backoff with jitter, 4 attempts, at most ~8 s in all.
  A 5xx, a read timeout or a connection lost mid-request raise :class:`UncertainSendError` after
  that one request: Twilio may have queued the text, and creating it again could double-send.
- **Errors mapped** onto the tree in :mod:`outreach.providers.sms`; phone numbers in provider
  messages and in our logs are masked.

Thread-safety: **not thread-safe; use one transport per thread.** A ``requests.Session`` is not
documented as thread-safe, and the SDK's http client keeps per-request state on itself. RQ workers
run one job at a time per process, so a worker builds one transport and reuses it; building one
costs about a millisecond and a new connection.
"""

from __future__ import annotations

import logging
import os
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import requests
from requests.adapters import HTTPAdapter
from requests.utils import get_environ_proxies
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.http.response import Response
from twilio.rest import Client
from urllib3.exceptions import ConnectTimeoutError, MaxRetryError

from outreach.addresses.phones import mask_phone
from outreach.app.settings import ConfigError, Settings
from outreach.providers.sms import (
    AccountError,
    InvalidRecipient,
    OutboundSms,
    PermanentSendError,
    RecipientOptedOut,
    SendError,
    SendResult,
    TransientSendError,
    UncertainSendError,
)

__all__ = ["NO_RETRY", "RetryPolicy", "TwilioSmsTransport", "error_from_exception"]

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 15.0

OPTED_OUT_CODES = frozenset({"21610"})
INVALID_RECIPIENT_CODES = frozenset({"21211", "21614", "21635"})
#: Refusals of our sender, not of the recipient: From invalid / not ours / missing, bad service.
SENDER_CODES = frozenset({"21212", "21603", "21606", "21659", "21701"})
RATE_LIMITED_CODE = "20429"

_PHONE_LIKE = re.compile(r"(?<!\w)\+?\d[\d\- ().]{6,18}\d(?!\w)")

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry a request Twilio did not process.

    The n-th retry waits between half and all of ``min(max_delay, base_delay * 2**(n-1))``
    ("equal jitter": spread out, never zero). No retry starts once ``budget`` seconds have passed
    since the first attempt, counting the wait. Defaults: waits of 0.25-0.5, 0.5-1, 1-2 s.
    """

    attempts: int = 4
    base_delay: float = 0.5
    max_delay: float = 4.0
    budget: float = 8.0

    def delay(self, retry: int, rng: random.Random) -> float:
        ceiling = min(self.max_delay, self.base_delay * 2 ** (retry - 1))
        return ceiling / 2 + rng.random() * ceiling / 2


NO_RETRY = RetryPolicy(attempts=1)  # for callers that must not wait, e.g. inside a web request


class _HttpClient(TwilioHttpClient):
    """The SDK's requests-based client with a (connect, read) timeout and an optional base URL."""

    def __init__(
        self, *, base_url: str | None, timeout: tuple[float, float], pool_maxsize: int
    ) -> None:
        super().__init__(pool_connections=True, logger=log)
        # HttpClient.__init__ rejects anything but a number; requests takes (connect, read).
        self.timeout = timeout
        self._target = urlsplit(base_url) if base_url else None
        session = self.session
        for prefix in ("https://", "http://"):
            session.mount(prefix, HTTPAdapter(pool_maxsize=pool_maxsize))
        # requests re-reads the proxy and CA-bundle variables from os.environ on every request
        # (a fifth of the client's CPU at loopback speed): read them once, for our one host.
        session.proxies.update(get_environ_proxies(base_url or "https://api.twilio.com"))
        ca_bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
        if ca_bundle:
            session.verify = ca_bundle
        session.trust_env = False

    def rewrite(self, url: str) -> str:
        if self._target is None:
            return url
        parts = urlsplit(url)
        host = parts.hostname or ""
        if host != "twilio.com" and not host.endswith(".twilio.com"):
            return url
        path = self._target.path.rstrip("/") + parts.path
        return urlunsplit(
            parts._replace(scheme=self._target.scheme, netloc=self._target.netloc, path=path)
        )

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Response:
        return super().request(method, self.rewrite(url), *args, **kwargs)

    # The SDK logs six INFO lines per request, formatted eagerly: log one DEBUG line, lazily.
    def log_request(self, kwargs: dict[str, Any]) -> None:
        log.debug("twilio request %s %s", kwargs["method"], kwargs["url"])

    def log_response(self, status_code: int, response: requests.Response) -> None:
        log.debug("twilio response %s from %s", status_code, response.url)


class TwilioSmsTransport:
    """Sends texts with Twilio. Not thread-safe: one per thread (see the module docstring)."""

    name = "twilio"

    def __init__(
        self,
        account_sid: str,
        auth_token: str,
        *,
        base_url: str | None = None,
        connect_timeout: float = CONNECT_TIMEOUT,
        read_timeout: float = READ_TIMEOUT,
        retry: RetryPolicy = RetryPolicy(),  # frozen: sharing the default is safe
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
        pool_maxsize: int = 4,
    ) -> None:
        self._http = _HttpClient(
            base_url=base_url, timeout=(connect_timeout, read_timeout), pool_maxsize=pool_maxsize
        )
        self._client = Client(account_sid, auth_token, http_client=self._http)
        self._retry = retry
        # A send can still reach Twilio this long after it started: the retry budget, then a
        # last attempt's connect and read (the reconciler waits this long before re-queueing).
        self.max_request_seconds = retry.budget + connect_timeout + read_timeout
        self._sleep = sleep
        self._rng = rng or random.Random()  # jitter, not a secret

    @classmethod
    def from_settings(cls, settings: Settings, **options: Any) -> TwilioSmsTransport:
        """A transport for the configured account; ``options`` go to the constructor."""
        if not (settings.twilio_account_sid and settings.twilio_auth_token):
            raise ConfigError(
                "the twilio SMS backend needs TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN"
            )
        return cls(
            settings.twilio_account_sid,
            settings.twilio_auth_token,
            base_url=settings.twilio_api_base_url,
            **options,
        )

    def send(self, message: OutboundSms) -> SendResult:
        params: dict[str, Any] = {"to": message.to, "body": message.body}
        if message.from_number:
            params["from_"] = message.from_number
        if message.messaging_service_sid:
            params["messaging_service_sid"] = message.messaging_service_sid
        if message.status_callback:
            params["status_callback"] = message.status_callback
        if message.validity_period is not None:
            params["validity_period"] = message.validity_period
        what = f"send {message.reference or '-'} to {mask_phone(message.to)}"
        try:
            created = self._call(what, lambda: self._client.messages.create(**params))
        except SendError as exc:
            log.warning("twilio %s failed: %s", what, exc)
            raise
        result = SendResult(
            provider_message_id=created.sid,
            status=str(created.status),
            segments=_int_or_none(created.num_segments),
        )
        log.info("twilio %s: %s %s", what, result.provider_message_id, result.status)
        return result

    def fetch_status(self, provider_message_id: str) -> str | None:
        """Twilio's current status of a message; None if Twilio answers 404 for it.

        A fetch changes nothing, so unlike a create it is also retried after a 5xx or a timeout.
        """
        try:
            message = self._call(
                f"fetch {provider_message_id}",
                lambda: self._client.messages(provider_message_id).fetch(),
                idempotent=True,
            )
        except PermanentSendError as exc:
            if exc.http_status == 404:
                return None
            raise
        return None if message.status is None else str(message.status)

    def find_sent(self, *, to: str, reference: str, since: datetime) -> str | None:
        """A message Twilio created for ``to`` since ``since`` (a claim left by a dead worker).

        Twilio keeps no reference of ours, so any message to that number from us since the
        claim counts as this one: sends to one person are rare and minutes apart. "" means
        Twilio has none (safe to send again); a lookup failure raises SendError.
        """
        del reference  # Twilio stores no field of ours to match it against
        messages = self._call(
            f"list messages to {mask_phone(to)}",
            lambda: self._client.messages.list(to=to, date_sent_after=since, limit=20),
            idempotent=True,
        )
        for message in messages:
            created = message.date_created
            if created is None or created >= since - timedelta(seconds=5):
                return str(message.sid)
        return ""

    def close(self) -> None:
        self._http.session.close()

    def _call(self, what: str, request: Callable[[], T], *, idempotent: bool = False) -> T:
        """Run ``request``, retrying what was not processed (everything, if ``idempotent``)."""
        started = time.monotonic()
        attempt = 1
        while True:
            try:
                return request()
            except (TwilioException, requests.RequestException) as exc:
                error = error_from_exception(exc)
                if idempotent and isinstance(error, UncertainSendError):
                    error = TransientSendError(
                        error.message, code=error.code, http_status=error.http_status
                    )
                delay = self._retry.delay(attempt, self._rng)
                give_up = (
                    not isinstance(error, TransientSendError)
                    or attempt >= self._retry.attempts
                    or time.monotonic() - started + delay > self._retry.budget
                )
                if give_up:
                    raise error from exc
                log.info("twilio %s: %s; retry %d in %.2f s", what, error, attempt, delay)
            self._sleep(delay)
            attempt += 1


def error_from_exception(exc: TwilioException | requests.RequestException) -> SendError:
    """The :class:`SendError` for what the SDK or requests raised during a create."""
    if isinstance(exc, TwilioRestException):
        return _from_rest_exception(exc)
    if isinstance(exc, TwilioException):  # e.g. "Unable to fetch page": an answer it can't read
        return UncertainSendError(f"twilio: {exc.args[0] if exc.args else type(exc).__name__}")
    if _failed_before_sending(exc):
        return TransientSendError(f"could not connect to Twilio: {type(exc).__name__}")
    if isinstance(exc, requests.Timeout):
        return UncertainSendError("no answer from Twilio before the read timeout")
    return UncertainSendError(f"connection to Twilio failed after sending: {type(exc).__name__}")


def _from_rest_exception(exc: TwilioRestException) -> SendError:
    code = None if exc.code is None else str(exc.code)
    status = int(exc.status)
    message = _mask_numbers(str(exc.msg or "Twilio refused the request"))
    kind: type[SendError]
    if status == 429 or code == RATE_LIMITED_CODE:
        kind = TransientSendError
    elif status >= 500:
        kind = UncertainSendError
    elif code in OPTED_OUT_CODES:
        kind = RecipientOptedOut
    elif code in INVALID_RECIPIENT_CODES:
        kind = InvalidRecipient
    elif status in (401, 403, 404) or code in SENDER_CODES:
        kind = AccountError
    elif 400 <= status < 500:
        kind = PermanentSendError
    else:  # the SDK raises for any status outside 200-399; a 1xx/3xx here means a broken proxy
        kind = UncertainSendError
    return kind(message, code=code, http_status=status)


def _failed_before_sending(exc: requests.RequestException) -> bool:
    """True if requests could not open a connection, so no byte of the request went out.

    requests wraps urllib3's ``MaxRetryError(reason=NewConnectionError(...))`` (refused, DNS) and
    raises ``ConnectTimeout`` for a connect timeout. Anything else that goes wrong on a connection
    (reset, closed mid-answer, a TLS error) may have happened after the request was sent.
    """
    if isinstance(exc, requests.ConnectTimeout):
        return True
    if not isinstance(exc, requests.ConnectionError) or not exc.args:
        return False
    reason = exc.args[0]
    if isinstance(reason, MaxRetryError):
        reason = reason.reason
    # NewConnectionError and NameResolutionError are ConnectTimeoutError subclasses in urllib3 2.
    return isinstance(reason, ConnectTimeoutError)


def _mask_numbers(text: str) -> str:
    """Twilio's messages quote the number ("The 'To' number +1415... is not valid"): mask it."""
    return _PHONE_LIKE.sub(lambda m: mask_phone(re.sub(r"[^\d+]", "", m.group())), text)


def _int_or_none(value: object) -> int | None:
    try:
        number = int(str(value))
    except ValueError:
        return None
    return number if number > 0 else None
