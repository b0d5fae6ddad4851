"""Twilio request signatures, checked over the public URL Twilio called."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from typing import Any, TypeVar, cast
from urllib.parse import urlparse

from flask import Request, abort, current_app, request
from twilio.request_validator import RequestValidator, add_port, compare, remove_port
from werkzeug.datastructures import MultiDict

from web.extensions import services

F = TypeVar("F", bound=Callable[..., Any])


def public_url(req: Request, public_base_url: str | None) -> str:
    """The URL as Twilio saw it: PUBLIC_BASE_URL + path + query, else the (proxy-fixed) URL."""
    if public_base_url:
        query = req.query_string.decode("latin-1")
        return public_base_url + req.path + (f"?{query}" if query else "")
    return req.url


class _SignedParams:
    """The form as ``RequestValidator`` reads it, without its exception-driven lookups.

    ``compute_signature`` asks each parameter for ``getall`` (Django's name), falls back to
    ``getlist`` (Flask's) after an AttributeError: with Twilio's ~20 parameters, the exceptions
    cost more than the HMAC. Same names, same values, so the same signature.
    """

    __slots__ = ("_lists",)

    def __init__(self, form: MultiDict[str, str]) -> None:
        self._lists = dict(form.lists())

    def __iter__(self) -> Iterator[str]:
        return iter(self._lists)

    def __len__(self) -> int:
        return len(self._lists)

    def getall(self, name: str) -> list[str]:
        return self._lists[name]

    getlist = getall

    def __getitem__(self, name: str) -> str:
        return self._lists[name][0]


@functools.lru_cache(maxsize=64)
def _signed_urls(url: str) -> tuple[str, ...]:
    """The URL without and with its default port: Twilio signs either (see RequestValidator)."""
    parsed = urlparse(url)
    return tuple(dict.fromkeys((remove_port(parsed), add_port(parsed))))


@functools.lru_cache(maxsize=8)
def _validator(token: str) -> RequestValidator:
    return RequestValidator(token)


def is_valid_signature(token: str, url: str, form: MultiDict[str, str], signature: str) -> bool:
    """``RequestValidator(token).validate(url, form, signature)``, stopping at the first match.

    ``validate`` always computes the signature over both forms of the URL (and parses the URL each
    time); a form-encoded webhook is valid when either matches, so the second is computed only
    when the first does not match.
    """
    validator = _validator(token)
    params = _SignedParams(form)
    return any(
        compare(validator.compute_signature(candidate, params), signature)
        for candidate in _signed_urls(url)
    )


def require_twilio_signature(view: F) -> F:
    """403 unless X-Twilio-Signature matches; the view never runs for a forged request."""

    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        settings = services().settings
        signature = request.headers.get("X-Twilio-Signature", "")
        if not signature:
            current_app.logger.warning("twilio webhook %s without a signature", request.path)
            abort(403)
        url = public_url(request, settings.public_base_url)
        if not is_valid_signature(settings.webhook_auth_token, url, request.form, signature):
            current_app.logger.warning("twilio webhook %s with a bad signature", request.path)
            abort(403)
        return view(*args, **kwargs)

    return cast(F, wrapper)
