"""Twilio request signatures, checked over the public URL Twilio called."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar, cast

from flask import Request, abort, current_app, request
from twilio.request_validator import RequestValidator

from web.extensions import services

F = TypeVar("F", bound=Callable[..., Any])


def public_url(req: Request, public_base_url: str | None) -> str:
    """The URL as Twilio saw it: PUBLIC_BASE_URL + path + query, else the (proxy-fixed) URL."""
    if public_base_url:
        query = req.query_string.decode("latin-1")
        return public_base_url + req.path + (f"?{query}" if query else "")
    return req.url


def require_twilio_signature(view: F) -> F:
    """403 unless X-Twilio-Signature matches; the view never runs for a forged request."""

    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        settings = services().settings
        signature = request.headers.get("X-Twilio-Signature", "")
        if not signature:
            current_app.logger.warning("twilio webhook %s without a signature", request.path)
            abort(403)
        validator = RequestValidator(settings.webhook_auth_token)
        url = public_url(request, settings.public_base_url)
        if not validator.validate(url, request.form, signature):
            current_app.logger.warning("twilio webhook %s with a bad signature", request.path)
            abort(403)
        return view(*args, **kwargs)

    return cast(F, wrapper)
