"""``POST /webhooks/twilio/sms`` (inbound texts) and ``/webhooks/twilio/status`` (receipts).

A plain WSGI app mounted in front of the Flask app (``web.create_app``), not a blueprint. Every
text a supporter sends arrives here, and for these two small, machine-called endpoints Flask's
request context, routing and form parser cost about as much as the handler's own work
(bench/RESULTS-inbound.md). RapidPro takes the same view further with courier, a separate
service for provider traffic. The contract is Flask's, kept by tests/webhooks: the
``X-Twilio-Signature`` is checked over the public URL before anything is read or written (403),
the body is parsed as Werkzeug parses a form, a missing field is a 400, another method a 405, a
body over ``MAX_REQUEST_BYTES`` a 413, and an unexpected error a logged 500. A text or status
callback that gets a 500 is spooled to Redis first and applied later (``outreach.sms.spool``).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import TYPE_CHECKING
from urllib.parse import unquote

import werkzeug.urls  # noqa: F401 - registers the "werkzeug.url_quote" codec error handler
from redis import Redis
from twilio.twiml.messaging_response import MessagingResponse
from werkzeug.wsgi import get_current_url

from outreach.app.services import Services
from outreach.providers.twilio.signature import is_valid_signature
from outreach.sms import spool
from outreach.sms.inbound import InboundSms, handle_inbound
from outreach.sms.receipts import ErrorAction, handle_status, parse_error_policy

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

log = logging.getLogger(__name__)

PREFIX = "/webhooks/twilio/"
MAX_REQUEST_BYTES = 2 * 1024 * 1024  # the Flask app's limit too; CSV uploads are streamed in chunks
_FORM = "application/x-www-form-urlencoded"
_KEEP_UNDECODABLE = "werkzeug.url_quote"  # a codec error handler werkzeug.urls registers
_EMPTY_TWIML = str(MessagingResponse()).encode()  # most texts (replies for the inbox) get none

Form = dict[str, list[str]]
Answer = tuple[HTTPStatus, str, bytes]  # status, content type, body


class HttpError(Exception):
    def __init__(self, status: HTTPStatus, detail: str = "") -> None:
        super().__init__(detail or status.phrase)
        self.status = status


class TwilioWebhooks:
    """WSGI middleware: the two Twilio endpoints here, every other path to ``app``."""

    def __init__(self, app: WSGIApplication, services: Services) -> None:
        self.app = app
        self.services = services
        self.routes: dict[str, Callable[[Form], Answer]] = {
            PREFIX + "sms": self.inbound_sms,
            PREFIX + "status": self.status_callback,
        }

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        view = self.routes.get(environ.get("PATH_INFO", ""))
        if view is None:
            return self.app(environ, start_response)
        status, content_type, body = self._serve(view, environ)
        start_response(
            f"{status.value} {status.phrase}",
            [("Content-Type", content_type), ("Content-Length", str(len(body)))]
            + ([("Allow", "POST")] if status is HTTPStatus.METHOD_NOT_ALLOWED else []),
        )
        return [body]

    def _serve(self, view: Callable[[Form], Answer], environ: WSGIEnvironment) -> Answer:
        path = environ["PATH_INFO"]
        try:
            if environ.get("REQUEST_METHOD") != "POST":
                raise HttpError(HTTPStatus.METHOD_NOT_ALLOWED)
            form = _read_form(environ)
            self._check_signature(environ, form)
            return view(form)
        except HttpError as error:
            return error.status, "text/plain; charset=utf-8", f"{error}\n".encode()
        except Exception:
            log.exception("twilio webhook %s failed", path)
            status = HTTPStatus.INTERNAL_SERVER_ERROR
            return status, "text/plain; charset=utf-8", f"{status.phrase}\n".encode()

    def _check_signature(self, environ: WSGIEnvironment, form: Form) -> None:
        """403 unless X-Twilio-Signature matches: a forged request reads and writes nothing."""
        settings = self.services.settings
        path = environ["PATH_INFO"]
        signature = environ.get("HTTP_X_TWILIO_SIGNATURE", "")
        if not signature:
            log.warning("twilio webhook %s without a signature", path)
            raise HttpError(HTTPStatus.FORBIDDEN)
        url = public_url(environ, settings.public_base_url)
        if not is_valid_signature(settings.webhook_auth_token, url, form, signature):
            log.warning("twilio webhook %s with a bad signature", path)
            raise HttpError(HTTPStatus.FORBIDDEN)

    def inbound_sms(self, form: Form) -> Answer:
        message_sid = _first(form, "MessageSid") or _first(form, "SmsSid")
        if not message_sid:
            raise HttpError(HTTPStatus.BAD_REQUEST, "MessageSid is required")
        sms = InboundSms(
            message_sid=message_sid[:64],
            from_raw=_first(form, "From"),
            to=_first(form, "To"),
            body=_first(form, "Body"),
            messaging_service_sid=_first(form, "MessagingServiceSid") or None,
            opt_out_type=_first(form, "OptOutType") or None,
        )
        try:
            result = handle_inbound(
                self.services.held, sms, default_region=self.services.settings.default_region
            )
        except Exception:
            self._spool(sms.message_sid, lambda redis: spool.spool_text(redis, sms))
            raise  # still a 500: nothing was committed, and the answer must not say it was
        return HTTPStatus.OK, "text/xml; charset=utf-8", twiml(result.reply)

    def _spool(self, message_sid: str, keep: Callable[[Redis], None]) -> None:
        """Keep a request the database did not take (a restart, a failover): Twilio will not
        send it again. The worker applies it later (``outreach.sms.spool``)."""
        try:
            keep(self.services.redis)
        except Exception:
            log.exception("twilio webhook %s could not be spooled either: it is lost", message_sid)

    def status_callback(self, form: Form) -> Answer:
        message_sid = _first(form, "MessageSid") or _first(form, "SmsSid")
        status = _first(form, "MessageStatus") or _first(form, "SmsStatus")
        if not message_sid or not status:
            raise HttpError(HTTPStatus.BAD_REQUEST, "MessageSid and MessageStatus are required")
        error_code = _first(form, "ErrorCode") or None
        try:
            handle_status(
                self.services.sessions,
                self.services.held,
                message_sid=message_sid,
                status=status,
                error_code=error_code,
                policy=_policy(self.services.settings.twilio_error_policy),
            )
        except Exception:
            self._spool(
                message_sid,
                lambda redis: spool.spool_status(
                    redis, message_sid=message_sid, status=status, error_code=error_code
                ),
            )
            raise
        return HTTPStatus.NO_CONTENT, "text/plain; charset=utf-8", b""


@functools.lru_cache(maxsize=1024)
def twiml(reply: str | None) -> bytes:
    """The TwiML answer; cached: the replies we send are a huddle's few texts (HELP, STOP...)."""
    if not reply:
        return _EMPTY_TWIML
    response = MessagingResponse()
    response.message(reply)
    return str(response).encode()


def public_url(environ: WSGIEnvironment, public_base_url: str | None) -> str:
    """The URL as Twilio saw it: PUBLIC_BASE_URL + path + query, else the (proxy-fixed) URL."""
    if not public_base_url:
        return get_current_url(environ)
    path = environ["PATH_INFO"].encode("latin-1").decode("utf-8", "replace")
    query = environ.get("QUERY_STRING", "")
    return public_base_url + path + (f"?{query}" if query else "")


def _read_form(environ: WSGIEnvironment) -> Form:
    """The form as Werkzeug parses it: the same names and values, so the same signature.

    A body that is not form-encoded, or not UTF-8, is an empty form (Werkzeug's silent parsing):
    its signature then fails, or the view finds its fields missing.
    """
    stream = environ["wsgi.input"]
    if environ.get("CONTENT_LENGTH"):
        try:
            length = int(environ["CONTENT_LENGTH"])
        except ValueError:
            raise HttpError(HTTPStatus.BAD_REQUEST, "bad Content-Length") from None
        if length > MAX_REQUEST_BYTES:
            raise HttpError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE)
        body = stream.read(length) if length > 0 else b""
    elif environ.get("wsgi.input_terminated"):  # chunked: the server knows where it ends
        body = stream.read(MAX_REQUEST_BYTES + 1)
        if len(body) > MAX_REQUEST_BYTES:
            raise HttpError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE)
    else:
        body = b""
    content_type = environ.get("CONTENT_TYPE", "").partition(";")[0].strip().lower()
    form: Form = {}
    if content_type != _FORM:
        return form
    try:
        text = body.decode()
    except UnicodeDecodeError:
        return form
    return parse_form(text)


def parse_form(text: str) -> Form:
    """``parse_qsl(text, keep_blank_values=True, errors="werkzeug.url_quote")``, grouped by name.

    The same steps as ``parse_qsl`` without its per-field overhead (a fifth of an inbound text's
    parsing): split on ``&``, then on the first ``=``; ``+`` is a space; percent escapes are
    decoded as UTF-8, an undecodable one kept as it came (Werkzeug's error handler). Most of
    Twilio's twenty fields have neither ``+`` nor ``%``: they are taken as they are.
    """
    form: Form = {}
    for field in text.split("&"):
        if not field:
            continue
        name, _, value = field.partition("=")
        if "%" in name or "+" in name:
            name = unquote(name.replace("+", " "), errors=_KEEP_UNDECODABLE)
        if "%" in value or "+" in value:
            value = unquote(value.replace("+", " "), errors=_KEEP_UNDECODABLE)
        values = form.get(name)
        if values is None:
            form[name] = [value]
        else:
            values.append(value)
    return form


def _first(form: Form, name: str) -> str:
    values = form.get(name)
    return values[0] if values else ""


@functools.cache
def _policy(text: str | None) -> dict[str, ErrorAction]:
    return parse_error_policy(text)
