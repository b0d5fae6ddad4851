"""``POST /webhooks/twilio/sms`` (inbound texts) and ``/webhooks/twilio/status`` (receipts).

The ``X-Twilio-Signature`` is checked over the public URL before anything is read or written
(403); a missing field is a 400, another method a 405, a body over the app's limit a 413, and an
unexpected error a logged 500. A text or status callback that gets a 500 is spooled to Redis
first and applied later (:mod:`outreach.sms.spool`): Twilio does not send either again.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Mapping

from flask import Blueprint, Response, abort, request
from redis import Redis
from twilio.twiml.messaging_response import MessagingResponse
from werkzeug.exceptions import HTTPException

from outreach.providers.twilio.error_policy import ErrorAction, parse_error_policy
from outreach.providers.twilio.signature import is_valid_signature, public_url
from outreach.sms import spool
from outreach.sms.inbound import InboundSms, Media, handle_inbound
from outreach.sms.inbound.message import MAX_MEDIA, MAX_MEDIA_TYPE, MAX_MEDIA_URL
from outreach.sms.receipts import handle_status
from webhooks import services

log = logging.getLogger(__name__)

bp = Blueprint("twilio", __name__, url_prefix="/webhooks/twilio")


@bp.before_request
def _verify() -> None:
    """400 for a body we cannot read; 403 unless the signature matches: nothing read or written."""
    length = request.headers.get("Content-Length")
    if length is not None and not length.strip().isdigit():
        abort(400, "bad Content-Length")
    if request.method != "POST":
        return  # routing answers 405
    settings = services().settings
    signature = request.headers.get("X-Twilio-Signature", "")
    if not signature:
        log.warning("twilio webhook %s without a signature", request.path)
        abort(403)
    url = public_url(
        request.path,
        request.query_string.decode("latin-1"),
        base_url=settings.public_base_url,
        request_url=request.url,
    )
    if not is_valid_signature(settings.webhook_auth_token, url, request.form, signature):
        log.warning("twilio webhook %s with a bad signature", request.path)
        abort(403)


@bp.errorhandler(Exception)
def _failed(error: Exception) -> HTTPException | tuple[str, int, dict[str, str]]:
    if isinstance(error, HTTPException):
        return error
    log.exception("twilio webhook %s failed", request.path, exc_info=error)
    return "Internal Server Error\n", 500, {"Content-Type": "text/plain; charset=utf-8"}


@bp.post("/sms", provide_automatic_options=False)
def inbound_sms() -> Response:
    form = request.form
    message_sid = form.get("MessageSid") or form.get("SmsSid")
    if not message_sid:
        abort(400, "MessageSid is required")
    sms = InboundSms(
        message_sid=message_sid[:64],
        from_raw=form.get("From", ""),
        to=form.get("To", ""),
        body=form.get("Body", ""),
        messaging_service_sid=form.get("MessagingServiceSid") or None,
        opt_out_type=form.get("OptOutType") or None,
        media=media(form),
    )
    svc = services()
    try:
        result = handle_inbound(svc.engine, sms, default_region=svc.settings.default_region)
    except Exception:
        _spool(sms.message_sid, lambda redis: spool.spool_text(redis, sms))
        raise  # still a 500: nothing was committed, and the answer must not say it was
    return Response(twiml(result.reply), content_type="text/xml; charset=utf-8")


def media(form: Mapping[str, str]) -> tuple[Media, ...]:
    """An MMS's attachments: ``MediaUrl{N}`` and ``MediaContentType{N}`` for N < ``NumMedia``.

    Never raises: an unreadable ``NumMedia`` is none, more than Twilio's 10 are 10, an index
    without an http(s) URL or with one too long to keep whole is skipped (a cut URL is a wrong
    link), and a content type is cut to its column.
    """
    count = form.get("NumMedia", "").strip()
    if not (count.isascii() and count.isdigit()):
        return ()
    found = []
    for index in range(min(int(count), MAX_MEDIA) if len(count) < 5 else MAX_MEDIA):
        url = form.get(f"MediaUrl{index}", "").strip()
        if len(url) > MAX_MEDIA_URL or not url.lower().startswith(("https://", "http://")):
            continue
        content_type = form.get(f"MediaContentType{index}", "").strip()[:MAX_MEDIA_TYPE]
        found.append(Media(url, content_type))
    return tuple(found)


@bp.post("/status", provide_automatic_options=False)
def status_callback() -> Response:
    form = request.form
    message_sid = form.get("MessageSid") or form.get("SmsSid")
    status = form.get("MessageStatus") or form.get("SmsStatus")
    if not message_sid or not status:
        abort(400, "MessageSid and MessageStatus are required")
    error_code = form.get("ErrorCode") or None
    svc = services()
    try:
        handle_status(
            svc.engine,
            message_sid=message_sid,
            status=status,
            error_code=error_code,
            policy=_policy(svc.settings.twilio_error_policy),
        )
    except Exception:
        _spool(
            message_sid,
            lambda redis: spool.spool_status(
                redis, message_sid=message_sid, status=status, error_code=error_code
            ),
        )
        raise
    return Response(status=204)


def _spool(message_sid: str, keep: Callable[[Redis], None]) -> None:
    """Keep a request the database did not take (a restart, a failover): Twilio will not send
    it again. The worker applies it later."""
    try:
        keep(services().redis)
    except Exception:
        log.exception("twilio webhook %s could not be spooled either: it is lost", message_sid)


@functools.lru_cache(maxsize=1024)
def twiml(reply: str | None) -> bytes:
    """The TwiML answer; cached: the replies we send are a huddle's few texts (HELP, STOP...)."""
    response = MessagingResponse()
    if reply:
        response.message(reply)
    return str(response).encode()


@functools.cache
def _policy(text: str | None) -> dict[str, ErrorAction]:
    return parse_error_policy(text)
