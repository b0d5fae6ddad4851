"""A local HTTP server that answers like Twilio's Programmable Messaging REST API (2010-04-01).

It lets adapters, tests and benchmarks drive the *real* ``twilio`` SDK over loopback, without
patching it. Shapes follow ``shared/specs/twilio_api_v2010.json`` (``api.v2010.account.message``,
``ListMessageResponse``) and Twilio's legacy error body
``{"code", "message", "more_info", "status"}``, which the SDK turns into ``TwilioRestException``.

Usage::

    with FakeTwilio(account_sid, auth_token) as fake:
        client = fake.client()
        msg = client.messages.create(to="+15005550006", from_="+15005550001", body="hi")
        assert fake.requests[-1].form["Body"] == ["hi"]

Endpoints (``{sid}`` must be the fake's account sid, else 404 ``20404``):

- ``POST /2010-04-01/Accounts/{sid}/Messages.json``: create; 201 with the message resource.
- ``GET  /2010-04-01/Accounts/{sid}/Messages/{MessageSid}.json``: fetch; 404 ``20404`` if unknown.
- ``GET  /2010-04-01/Accounts/{sid}/Messages.json``: list, newest first, filters ``To``/``From``,
  ``PageSize``/``Page`` paging (what ``client.messages.list(to=...)`` sends).

Pointing the SDK at the fake
----------------------------
twilio 9.x has no base-URL argument. Every REST call goes ``Domain.request`` -> ``Client.request``
(which adds Basic auth and applies ``edge``/``region`` via ``Client.get_hostname``) ->
``client.http_client.request(method, "https://api.twilio.com/2010-04-01/...")``. The cleanest seam
is the ``http_client`` that ``Client`` accepts::

    Client(sid, token, http_client=LoopbackTwilioHttpClient(fake.base_url, timeout=5.0))

``LoopbackTwilioHttpClient`` *is* the SDK's own requests-based ``TwilioHttpClient``; it only swaps
scheme and host of ``*.twilio.com`` URLs for the fake's, after the SDK has built them, so every
domain and any ``TWILIO_EDGE``/``TWILIO_REGION`` still land on the fake. ``fake.client()`` builds
exactly that. An adapter that takes a ready ``Client`` can be handed it; one that builds its own
can take an ``http_client`` argument.

The one-liner alternative, ``client.api.base_url = fake.base_url``, works for the ``api`` domain
only and breaks as soon as an edge or region is configured (``get_hostname`` then rewrites the
``127.0.0.1:PORT`` host). Either way set a timeout: ``TwilioHttpClient`` has none by default.

Deliberate choices
------------------
- ``status`` is ``"queued"`` when ``From`` is given, ``"accepted"`` (with ``from: null``) when
  only ``MessagingServiceSid`` is, as the real API does since the service picks the sender later,
  and ``"scheduled"`` with ``ScheduleType=fixed`` + ``SendAt``.
- Test hooks: ``fail_next(n, status, code, created=False)``, ``reject_to[number] = code``,
  ``latency``, ``set_status(sid, ...)`` (what a later fetch returns), ``reset()``, and
  ``record=False`` to keep nothing in memory during long benchmarks (fetch/list then find nothing).
- ``To`` must be E.164 (``+`` and 8 to 15 digits) or a channel address (``whatsapp:+1...``);
  otherwise 21211. Stricter than Twilio, which also parses some national formats: the project
  stores E.164 only, so anything else is a bug worth failing on.
- HTTP/1.1 keep-alive, TCP_NODELAY and one ``write`` per response, so that benchmarks measure the
  client and not Nagle's algorithm.

Throughput check: ``.venv/bin/python tests/fakes/twilio_server.py [--threads 4] [--seconds 3]``.
Measured on the 2-core dev machine: the server alone answers 3,600-5,400 creates/s with keep-alive
(``wrk``, 1 to 16 connections); driven by the SDK from 4 threads in the same process it shows
~450-650/s, because the SDK and ``requests`` spend about 1.5 ms of CPU per call there against
about 0.2 ms in the fake.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import contextlib
import json
import math
import re
import secrets
import socket
import socketserver
import sys
import threading
import time
import traceback
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple, Self
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

from requests.adapters import HTTPAdapter
from twilio.http.http_client import TwilioHttpClient

if TYPE_CHECKING:
    from twilio.http.response import Response
    from twilio.rest import Client

__all__ = [
    "TWILIO_ERRORS",
    "FakeHTTPService",
    "FakeTwilio",
    "LoopbackTwilioHttpClient",
    "RecordedRequest",
    "Reply",
    "count_segments",
    "json_reply",
]

# --------------------------------------------------------------------------------------------
# Shared machinery (FakeSendGrid reuses it)
# --------------------------------------------------------------------------------------------


@dataclass(slots=True)
class RecordedRequest:
    """One request as the fake received it, plus the status it answered."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # names lower-cased
    body: bytes
    form: dict[str, list[str]]  # urlencoded body fields; empty for other content types
    auth: tuple[str, str] | None  # decoded HTTP Basic credentials, if any
    status: int = 0

    def header(self, name: str) -> str | None:
        """Return a header value, case-insensitively."""
        return self.headers.get(name.lower())

    def json_body(self) -> Any:
        """Return the body parsed as JSON."""
        return json.loads(self.body)


class Reply(NamedTuple):
    """What a fake answers: status, extra headers, body."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes


@dataclass(slots=True)
class _Failure:
    remaining: int
    status: int
    code: int | None
    created: bool = False


def json_reply(status: int, payload: object, headers: list[tuple[str, str]] | None = None) -> Reply:
    """A JSON answer with Content-Type set, plus ``headers``."""
    body = json.dumps(payload, separators=(",", ":")).encode()
    content_type = ("Content-Type", "application/json; charset=utf-8")
    return Reply(status, [content_type, *(headers or [])], body)


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


class _Handler(BaseHTTPRequestHandler):
    """HTTP/1.1 keep-alive handler that hands each request to the owning fake."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    timeout = 120  # idle keep-alive connections; stop() closes them anyway
    server: _HTTPServer

    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection, add=True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.track(self.connection, add=False)

    def log_message(self, format: str, *args: Any) -> None:
        """Stay quiet: one stderr line per request would dominate a benchmark."""

    def handle_one_request(self) -> None:
        """Read one request, let the fake answer it, write the answer in a single send.

        Replaces BaseHTTPRequestHandler's parsing (``email`` header parser, ``send_header``
        buffering), which cost more than the fakes themselves: this is what makes the server
        fast enough for benchmarks.
        """
        try:
            line = self.rfile.readline(65537)
            if not line:
                self.close_connection = True
                return
            method, target, version = line.decode("latin-1").split()
            headers: dict[str, str] = {}
            while (raw := self.rfile.readline(65537)) not in (b"\r\n", b"\n", b""):
                name, _, value = raw.decode("latin-1").partition(":")
                headers[name.strip().lower()] = value.strip()
            connection = headers.get("connection", "").lower()
            self.close_connection = connection == "close" or (
                version != "HTTP/1.1" and connection != "keep-alive"
            )
            if headers.get("expect", "").lower() == "100-continue":
                self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            body = self._read_body(headers)
        except (ValueError, OSError):
            self.close_connection = True
            return
        fake = self.server.fake
        try:
            reply = fake.dispatch(method, target, headers, body)
        except Exception:  # noqa: BLE001 (a bug in the fake becomes a visible 500, not a hang)
            reply = json_reply(500, {"fake_error": traceback.format_exc()})
        delay = fake.latency
        if delay > 0:
            time.sleep(delay)
        head = [f"HTTP/1.1 {reply.status} {_reason(reply.status)}"]
        head.append(f"Content-Length: {len(reply.body)}")
        head.extend(f"{name}: {value}" for name, value in reply.headers)
        if self.close_connection:
            head.append("Connection: close")
        head.append("\r\n")
        self.wfile.write("\r\n".join(head).encode("latin-1") + reply.body)

    def _read_body(self, headers: dict[str, str]) -> bytes:
        if headers.get("transfer-encoding", "").lower() == "chunked":
            chunks = []
            while size := int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16):
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                pass  # trailers
            return b"".join(chunks)
        length = int(headers.get("content-length") or 0)
        return self.rfile.read(length) if length else b""


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 512

    def __init__(self, fake: FakeHTTPService) -> None:
        self.fake = fake
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind calls socket.getfqdn(), a DNS lookup: skip it to start fast.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)

    def track(self, conn: socket.socket, *, add: bool) -> None:
        with self._connections_lock:
            if add:
                self._connections.add(conn)
            else:
                self._connections.discard(conn)

    def close_connections(self) -> None:
        with self._connections_lock:
            conns, self._connections = self._connections, set()
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], OSError):
            return  # client went away, or stop() closed the connection
        super().handle_error(request, client_address)


class FakeHTTPService:
    """Lifecycle, request recording and programmable failures shared by the fakes.

    Subclasses implement :meth:`handle`. Starts on ``127.0.0.1`` on an ephemeral port in a daemon
    thread; one thread per connection (``ThreadingHTTPServer``), HTTP/1.1 keep-alive.
    """

    poll_interval: ClassVar[float] = 0.01  # bounds how long stop() waits for the accept loop

    def __init__(self, *, latency: float = 0.0, record: bool = True) -> None:
        self.latency = latency
        """Seconds to wait before answering each request; may be changed while running."""
        self.record = record
        """Keep every request (and created resource) in memory. Turn off for long benchmarks."""
        self.request_count = 0
        self._lock = threading.Lock()
        self._requests: list[RecordedRequest] = []
        self._failures: deque[_Failure] = deque()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> Self:
        if self._httpd is not None:
            raise RuntimeError(f"{type(self).__name__} is already running")
        httpd = _HTTPServer(self)
        thread = threading.Thread(
            target=httpd.serve_forever,
            kwargs={"poll_interval": self.poll_interval},
            name=f"{type(self).__name__}:{httpd.server_port}",
            daemon=True,
        )
        thread.start()
        self._httpd, self._thread = httpd, thread
        return self

    def stop(self) -> None:
        httpd, thread = self._httpd, self._thread
        if httpd is None or thread is None:
            return
        httpd.shutdown()
        httpd.server_close()
        httpd.close_connections()
        thread.join()
        self._httpd = self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError(f"{type(self).__name__} is not running")
        return self._httpd.server_port

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT``, no trailing slash."""
        return f"http://127.0.0.1:{self.port}"

    # -- recording and failures --------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        """A snapshot of the requests received so far, oldest first."""
        with self._lock:
            return list(self._requests)

    def reset(self) -> None:
        """Forget recorded requests and resources and pending failures; keep configuration."""
        with self._lock:
            self._requests.clear()
            self._failures.clear()
            self.request_count = 0
            self._reset_resources()

    def _reset_resources(self) -> None:
        """Clear subclass state; called with the lock held."""

    def _program_failures(self, n: int, status: int, code: int | None, created: bool) -> None:
        if n < 1:
            raise ValueError("n must be >= 1")
        with self._lock:
            self._failures.append(_Failure(n, status, code, created))

    def _take_failure(self) -> _Failure | None:
        with self._lock:
            if not self._failures:
                return None
            failure = self._failures[0]
            failure.remaining -= 1
            if failure.remaining == 0:
                self._failures.popleft()
            return failure

    # -- request handling --------------------------------------------------------------------

    def dispatch(self, method: str, target: str, headers: dict[str, str], body: bytes) -> Reply:
        """Build the request record, let :meth:`handle` answer, record both."""
        parts = urlsplit(target)
        form: dict[str, list[str]] = {}
        if headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
            form = parse_qs(body.decode("utf-8"), keep_blank_values=True)
        request = RecordedRequest(
            method=method,
            path=parts.path,
            query=parse_qs(parts.query, keep_blank_values=True) if parts.query else {},
            headers=headers,
            body=body,
            form=form,
            auth=_basic_auth(headers.get("authorization")),
        )
        reply = self.handle(request)
        request.status = reply.status
        with self._lock:
            self.request_count += 1
            if self.record:
                self._requests.append(request)
        return reply

    def handle(self, request: RecordedRequest) -> Reply:
        raise NotImplementedError


def _basic_auth(value: str | None) -> tuple[str, str] | None:
    if not value or not value.startswith("Basic "):
        return None
    try:
        user, _, password = base64.b64decode(value[6:], validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return user, password


# --------------------------------------------------------------------------------------------
# Twilio
# --------------------------------------------------------------------------------------------

TWILIO_ERRORS: dict[int, tuple[int, str]] = {
    # code: (HTTP status, message)
    20003: (401, "Authenticate"),
    20004: (405, "Method not allowed"),
    20404: (404, "The requested resource {path} was not found"),
    20429: (429, "Too Many Requests"),
    20500: (500, "Internal Server Error"),
    20503: (503, "Service Unavailable"),
    21211: (400, "Invalid 'To' Phone Number"),
    21266: (400, "'To' and 'From' number cannot be the same"),
    21602: (400, "Message body is required."),
    21603: (400, "A 'From' phone number is required."),
    21604: (400, "A 'To' phone number is required."),
    21606: (400, "The 'From' phone number is not a valid, message-capable Twilio phone number"),
    21610: (400, "Attempt to send to unsubscribed recipient"),
    21612: (400, "The 'To' phone number is not currently reachable via SMS"),
    21614: (400, "'To' number is not a valid mobile number"),
    21617: (400, "The concatenated message body exceeds the 1600 character limit."),
    21701: (400, "The Messaging Service Sid {sid} is invalid."),
}
"""Error code -> (HTTP status, message) used for the fake's answers (codes from Twilio's docs)."""

_API = "/2010-04-01"
_MESSAGES = re.compile(r"^/2010-04-01/Accounts/([^/]+)/Messages\.json$")
_MESSAGE = re.compile(r"^/2010-04-01/Accounts/([^/]+)/Messages/([^/]+)\.json$")
_E164 = re.compile(r"^\+[1-9]\d{7,14}$")
_CHANNEL = re.compile(r"^[a-z]+:\S+$")  # whatsapp:+1..., messenger:123, rcs:...
_ACCOUNT_SID = re.compile(r"^AC[0-9a-fA-F]{32}$")
_SERVICE_SID = re.compile(r"^MG[0-9a-fA-F]{32}$")

_GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM7_EXTENDED = frozenset("^{}\\[~]|€\f")


def count_segments(body: str) -> int:
    """SMS segments for ``body``: GSM-7 160/153 (extension chars count 2), else UCS-2 70/67."""
    if not body:
        return 1
    if all(ch in _GSM7_BASIC or ch in _GSM7_EXTENDED for ch in body):
        units = len(body) + sum(ch in _GSM7_EXTENDED for ch in body)
        single, multi = 160, 153
    else:
        units = len(body.encode("utf-16-le")) // 2
        single, multi = 70, 67
    return 1 if units <= single else math.ceil(units / multi)


_clock_cache: tuple[int, str] = (0, "")


def _rfc2822_now() -> str:
    """Now as RFC 2822 ("Thu, 24 Aug 2023 05:01:45 +0000"), formatted once per second."""
    global _clock_cache  # noqa: PLW0603 (a benign race: both writers store the same value)
    second = int(time.time())
    if _clock_cache[0] != second:
        _clock_cache = (second, format_datetime(datetime.fromtimestamp(second, UTC)))
    return _clock_cache[1]


class LoopbackTwilioHttpClient(TwilioHttpClient):
    """The SDK's ``TwilioHttpClient``, sending ``https://*.twilio.com`` requests to ``base_url``.

    Only scheme and host change; path, query, body, headers and auth are the SDK's own.
    ``trust_env=False`` (the default here) stops requests from reading proxy and netrc settings
    from the environment: a loopback fake must never be reached through an ``HTTP_PROXY``, and
    scanning ``os.environ`` twice per request cost more than the fake's whole answer.
    """

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float = 10.0,
        pool_maxsize: int = 32,
        trust_env: bool = False,
    ) -> None:
        super().__init__(timeout=timeout)
        target = urlsplit(base_url)
        self._scheme, self._netloc = target.scheme, target.netloc
        if self.session is not None:
            self.session.trust_env = trust_env
            # The SDK mounts a sized pool for https:// only; size http:// alike for many threads.
            self.session.mount("http://", HTTPAdapter(pool_maxsize=pool_maxsize))

    def rewrite(self, url: str) -> str:
        parts = urlsplit(url)
        host = parts.hostname or ""
        if host == "twilio.com" or host.endswith(".twilio.com"):
            parts = parts._replace(scheme=self._scheme, netloc=self._netloc)
        return urlunsplit(parts)

    def request(
        self,
        method: str,
        url: str,
        params: dict[str, object] | None = None,
        data: dict[str, object] | None = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,
        allow_redirects: bool = False,
    ) -> Response:
        return super().request(
            method,
            self.rewrite(url),
            params=params,
            data=data,
            headers=headers,
            auth=auth,
            timeout=timeout,
            allow_redirects=allow_redirects,
        )


class _TwilioError(Exception):
    def __init__(self, code: int, status: int | None = None, **fmt: str) -> None:
        default_status, template = TWILIO_ERRORS.get(code, (400, "Error {code}"))
        self.code = code
        self.status = status or default_status
        self.message = template.format(code=code, **fmt)
        super().__init__(self.message)


class FakeTwilio(FakeHTTPService):
    """Fake Twilio REST API for Messages. See the module docstring.

    Attributes you may change at any time: ``latency`` (seconds per request), ``reject_to``
    (``{to_number: error_code}``, answered with HTTP 400 and that code), ``record``.
    """

    def __init__(
        self,
        account_sid: str = "AC" + "0" * 32,
        auth_token: str = "test-auth-token",  # noqa: S107
        latency: float = 0.0,
        *,
        record: bool = True,
    ) -> None:
        if not _ACCOUNT_SID.match(account_sid):
            raise ValueError("account_sid must be 'AC' followed by 32 hex digits")
        super().__init__(latency=latency, record=record)
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.reject_to: dict[str, int] = {}
        self.created_count = 0
        self._list_failures: deque[int] = deque()  # statuses for the next list requests
        self._messages: dict[str, dict[str, Any]] = {}

    # -- test API ----------------------------------------------------------------------------

    @property
    def messages(self) -> list[dict[str, Any]]:
        """Snapshot of created messages (resource JSON as answered), oldest first."""
        with self._lock:
            return [dict(m) for m in self._messages.values()]

    def message(self, sid: str) -> dict[str, Any]:
        """The stored resource of message ``sid`` (KeyError if unknown)."""
        with self._lock:
            return dict(self._messages[sid])

    def set_status(
        self,
        sid: str,
        status: str,
        *,
        error_code: int | None = None,
        error_message: str | None = None,
    ) -> dict[str, Any]:
        """Move a created message to ``status`` (what a later fetch will return)."""
        now = _rfc2822_now()
        with self._lock:
            message = self._messages[sid]
            message.update(status=status, error_code=error_code, error_message=error_message)
            message["date_updated"] = now
            if status in {"sent", "delivered", "undelivered", "failed", "read"}:
                message["date_sent"] = message["date_sent"] or now
            return dict(message)

    def fail_next(
        self, n: int = 1, status: int = 429, code: int = 20429, *, created: bool = False
    ) -> None:
        """Make the next ``n`` create requests fail with ``status`` and Twilio error ``code``.

        With ``created=True`` the message is stored (fetchable) although the answer is an error:
        a provider that processed the request but failed to say so, for reconciliation tests.
        """
        self._program_failures(n, status, code, created)

    def fail_lists(self, n: int = 1, status: int = 500) -> None:
        """Make the next ``n`` message-list requests fail with ``status`` (the SDK then raises
        ``TwilioException: Unable to fetch page``, not a ``TwilioRestException``)."""
        with self._lock:
            self._list_failures.extend([status] * n)

    def client(self, *, timeout: float = 10.0) -> Client:
        """A real ``twilio.rest.Client`` whose HTTP client talks to this fake."""
        from twilio.rest import Client

        http_client = LoopbackTwilioHttpClient(self.base_url, timeout=timeout)
        return Client(self.account_sid, self.auth_token, http_client=http_client)

    def _reset_resources(self) -> None:
        self._messages.clear()
        self.created_count = 0
        self._list_failures.clear()

    # -- HTTP --------------------------------------------------------------------------------

    def handle(self, request: RecordedRequest) -> Reply:
        try:
            return self._route(request)
        except _TwilioError as err:
            return self._error(err.status, err.code, err.message)

    def _route(self, request: RecordedRequest) -> Reply:
        if request.auth != (self.account_sid, self.auth_token):
            reply = self._error(401, 20003, TWILIO_ERRORS[20003][1])
            reply.headers.append(("WWW-Authenticate", 'Basic realm="Twilio API"'))
            return reply
        not_found = _TwilioError(20404, path=request.path)
        if match := _MESSAGES.match(request.path):
            if match.group(1) != self.account_sid:
                raise not_found
            if request.method == "POST":
                return self._create(request)
            if request.method == "GET":
                return self._list(request)
            raise _TwilioError(20004)
        if (match := _MESSAGE.match(request.path)) and match.group(1) == self.account_sid:
            if request.method != "GET":
                raise _TwilioError(20004)
            with self._lock:
                message = self._messages.get(match.group(2))
                if message is None:
                    raise not_found
                return json_reply(200, message)
        raise not_found

    def _error(self, status: int, code: int, message: str) -> Reply:
        payload = {
            "code": code,
            "message": message,
            "more_info": f"https://www.twilio.com/docs/errors/{code}",
            "status": status,
        }
        return json_reply(status, payload, [("Twilio-Request-Id", "RQ" + secrets.token_hex(16))])

    def _create(self, request: RecordedRequest) -> Reply:
        failure = self._take_failure()
        if failure is not None and not failure.created:
            raise _TwilioError(failure.code or 20429, failure.status)
        form = request.form

        def first(name: str) -> str | None:
            values = form.get(name)
            return values[0] if values else None

        to, from_, service = first("To"), first("From"), first("MessagingServiceSid")
        body = first("Body")
        media = form.get("MediaUrl", [])
        if not to:
            raise _TwilioError(21604)
        if not from_ and not service:
            raise _TwilioError(21603)
        if service and not _SERVICE_SID.match(service):
            raise _TwilioError(21701, sid=service)
        if not body and not media and not first("ContentSid"):
            raise _TwilioError(21602)
        if body and len(body) > 1600:
            raise _TwilioError(21617)
        if not (_E164.match(to) or _CHANNEL.match(to)):
            raise _TwilioError(21211)
        if from_ and not (_E164.match(from_) or _CHANNEL.match(from_) or from_.isalnum()):
            raise _TwilioError(21606)  # alphanumeric sender ids are allowed
        if from_ == to:
            raise _TwilioError(21266)
        if to in self.reject_to:
            raise _TwilioError(self.reject_to[to])

        sid = ("MM" if media else "SM") + secrets.token_hex(16)
        now = _rfc2822_now()
        if first("ScheduleType") == "fixed" and first("SendAt"):
            status = "scheduled"
        elif from_:
            status = "queued"
        else:
            status = "accepted"
        uri = f"{_API}/Accounts/{self.account_sid}/Messages/{sid}"
        message: dict[str, Any] = {
            "account_sid": self.account_sid,
            "api_version": "2010-04-01",
            "body": body or "",
            "date_created": now,
            "date_sent": None,
            "date_updated": now,
            "direction": "outbound-api",
            "error_code": None,
            "error_message": None,
            "from": from_,
            "messaging_service_sid": service,
            "num_media": str(len(media)),
            "num_segments": str(count_segments(body or "")),
            "price": None,
            "price_unit": None,
            "sid": sid,
            "status": status,
            "subresource_uris": {"media": f"{uri}/Media.json"},
            "to": to,
            "uri": f"{uri}.json",
        }
        with self._lock:
            self.created_count += 1
            if self.record:
                self._messages[sid] = message
        if failure is not None:  # created=True: processed, but answered with an error
            raise _TwilioError(failure.code or 20500, failure.status)
        return json_reply(201, message)

    def _list(self, request: RecordedRequest) -> Reply:
        with self._lock:
            status = self._list_failures.popleft() if self._list_failures else None
        if status is not None:
            raise _TwilioError(20500, status)
        query = {name: values[0] for name, values in request.query.items()}
        page_size = max(1, min(int(query.get("PageSize", "50")), 1000))
        page = max(0, int(query.get("Page", "0")))
        with self._lock:
            found = [
                dict(m)
                for m in reversed(self._messages.values())
                if ("To" not in query or m["to"] == query["To"])
                and ("From" not in query or m["from"] == query["From"])
            ]
        start = page * page_size
        chunk = found[start : start + page_size]
        filters = {k: v for k, v in query.items() if k in {"To", "From"}}

        def page_uri(number: int) -> str:
            params = urlencode({**filters, "PageSize": page_size, "Page": number})
            return f"{request.path}?{params}"

        payload = {
            "end": start + max(len(chunk) - 1, 0),
            "first_page_uri": page_uri(0),
            "messages": chunk,
            "next_page_uri": page_uri(page + 1) if start + page_size < len(found) else None,
            "page": page,
            "page_size": page_size,
            "previous_page_uri": page_uri(page - 1) if page > 0 else None,
            "start": start,
            "uri": page_uri(page),
        }
        return json_reply(200, payload)


# --------------------------------------------------------------------------------------------
# Throughput check (not a test): .venv/bin/python tests/fakes/twilio_server.py
# --------------------------------------------------------------------------------------------


def _throughput(threads: int, seconds: float, latency: float) -> None:
    sid, token = "AC" + "ab" * 16, "throughput-token"
    with FakeTwilio(sid, token, latency=latency, record=False) as fake:
        counts = [0] * threads
        deadline = time.perf_counter() + seconds
        barrier = threading.Barrier(threads + 1)

        def worker(index: int) -> None:
            client = fake.client(timeout=5.0)  # one client (session, connection) per thread
            client.messages.create(to="+15005550006", from_="+15005550001", body="warm-up")
            barrier.wait()
            while time.perf_counter() < deadline:
                client.messages.create(to="+15005550006", from_="+15005550001", body="hello")
                counts[index] += 1

        pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
        for thread in pool:
            thread.start()
        barrier.wait()
        began = time.perf_counter()
        for thread in pool:
            thread.join()
        elapsed = time.perf_counter() - began
        total = sum(counts)
        print(
            f"twilio fake: {total} messages.create in {elapsed:.2f} s from {threads} threads "
            f"(SDK client and server in one process) = {total / elapsed:,.0f} req/s"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Requests/s of the fake driven by the SDK.")
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--latency", type=float, default=0.0)
    arguments = parser.parse_args()
    _throughput(arguments.threads, arguments.seconds, arguments.latency)
