"""``POST /webhooks/sendgrid/events``: SendGrid's signed event webhook.

The raw body is read once, byte for byte, before anything parses it: the signature covers
``timestamp + body`` exactly. Unsigned, forged, stale or future-dated posts get 403 and change
nothing; a body that is not a JSON array of events gets 400. Accepted posts answer 204 once the
whole batch is committed (SendGrid posts the batch again on any other answer).
"""

from __future__ import annotations

from flask import Blueprint, Response, abort, current_app, request
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import RequestEntityTooLarge

from outreach.app.clock import utcnow
from outreach.app.settings import Settings
from outreach.email.events import MAX_BODY_BYTES, MalformedEvents, handle_events, parse_events
from outreach.providers.sendgrid.signature import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    event_public_key,
    signature_problem,
)
from webhooks import services

bp = Blueprint("sendgrid_events", __name__, url_prefix="/webhooks/sendgrid")


def _require_signature(settings: Settings, raw: bytes) -> None:
    """403 unless the post carries a good, fresh signature; never accept unsigned events."""
    public_key = event_public_key(settings)
    if not public_key:
        current_app.logger.error(
            "sendgrid events refused: no event webhook public key "
            "(set SENDGRID_EVENT_PUBLIC_KEY to the key in SendGrid's Mail Settings)"
        )
        abort(403)
    try:
        problem = signature_problem(
            public_key,
            payload=raw,
            signature=request.headers.get(SIGNATURE_HEADER, ""),
            timestamp=request.headers.get(TIMESTAMP_HEADER, ""),
            now=utcnow(),
        )
    except ValueError as exc:
        current_app.logger.error("sendgrid events refused: unusable public key: %s", exc)
        abort(403)
    if problem is not None:
        current_app.logger.warning("sendgrid events refused: %s", problem)
        abort(403)


@bp.post("/events")
def events() -> ResponseReturnValue:
    svc = services()
    # This view alone takes bodies up to 5 MB; the app's limit stays small for everything else.
    request.max_content_length = MAX_BODY_BYTES
    try:
        raw = request.get_data(cache=True)
    except RequestEntityTooLarge:
        abort(400, f"body larger than {MAX_BODY_BYTES} bytes")
    _require_signature(svc.settings, raw)
    try:
        batch = parse_events(raw)
    except MalformedEvents as exc:
        current_app.logger.warning("sendgrid events refused: %s", exc)
        abort(400, str(exc))
    outcome = handle_events(svc.sessions, batch)
    current_app.logger.info(
        "sendgrid events: %d stored, %d duplicates, %d without a delivery",
        outcome.stored,
        outcome.duplicates,
        outcome.unmatched,
    )
    return Response(status=204)
