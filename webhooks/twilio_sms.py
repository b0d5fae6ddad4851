"""``POST /webhooks/twilio/sms`` (inbound texts) and ``/webhooks/twilio/status`` (receipts)."""

from __future__ import annotations

import functools

from flask import Blueprint, Response, abort, request
from flask.typing import ResponseReturnValue
from twilio.twiml.messaging_response import MessagingResponse

from outreach.inbound import InboundSms, handle_inbound
from outreach.receipts import ErrorAction, handle_status, parse_error_policy
from web.extensions import services
from webhooks.signatures import require_twilio_signature

bp = Blueprint("twilio_sms", __name__, url_prefix="/webhooks/twilio")


_EMPTY_TWIML = str(MessagingResponse())  # most texts (replies for the inbox) get no answer


def _twiml(reply: str | None) -> Response:
    if not reply:
        return Response(_EMPTY_TWIML, mimetype="text/xml")
    response = MessagingResponse()
    response.message(reply)
    return Response(str(response), mimetype="text/xml")


@bp.post("/sms")
@require_twilio_signature
def inbound_sms() -> ResponseReturnValue:
    form = request.form
    message_sid = form.get("MessageSid") or form.get("SmsSid") or ""
    if not message_sid:
        abort(400, "MessageSid is required")
    svc = services()
    result = handle_inbound(
        svc.sessions,
        InboundSms(
            message_sid=message_sid[:64],
            from_raw=form.get("From", ""),
            to=form.get("To", ""),
            body=form.get("Body", ""),
            messaging_service_sid=form.get("MessagingServiceSid") or None,
            opt_out_type=form.get("OptOutType") or None,
        ),
        default_region=svc.settings.default_region,
    )
    return _twiml(result.reply)


@functools.cache
def _policy(text: str | None) -> dict[str, ErrorAction]:
    return parse_error_policy(text)


@bp.post("/status")
@require_twilio_signature
def status_callback() -> ResponseReturnValue:
    form = request.form
    message_sid = form.get("MessageSid") or form.get("SmsSid") or ""
    status = form.get("MessageStatus") or form.get("SmsStatus") or ""
    if not message_sid or not status:
        abort(400, "MessageSid and MessageStatus are required")
    svc = services()
    handle_status(
        svc.sessions,
        message_sid=message_sid,
        status=status,
        error_code=form.get("ErrorCode"),
        policy=_policy(svc.settings.twilio_error_policy),
    )
    return Response(status=204)
