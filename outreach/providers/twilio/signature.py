"""Twilio request signatures (``X-Twilio-Signature``), checked with the SDK's RequestValidator.

Twilio signs the URL it called, so behind a proxy the public URL is rebuilt first: the configured
``PUBLIC_BASE_URL`` with the request's path and query, else the URL as ProxyFix restored it.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

from twilio.request_validator import RequestValidator, compare


@functools.lru_cache(maxsize=8)
def _validator(token: str) -> RequestValidator:
    return RequestValidator(token)


def is_valid_signature(token: str, url: str, params: Mapping[str, Any], signature: str) -> bool:
    """True when ``signature`` is Twilio's over ``url`` and the form ``params`` (a MultiDict).

    ``validate`` signs the URL twice (with and without its port); Twilio signs the URL it was
    given, so that one is tried alone first and ``validate`` decides whatever it does not match.
    """
    if not signature:
        return False
    validator = _validator(token)
    if "bodySHA256=" not in url and compare(validator.compute_signature(url, params), signature):
        return True
    return bool(validator.validate(url, params, signature))


def sign(token: str, url: str, params: Mapping[str, Any]) -> str:
    """The signature Twilio would send: the sandbox signs its simulated callbacks with it."""
    return str(_validator(token).compute_signature(url, params))


def public_url(path: str, query: str, *, base_url: str | None, request_url: str) -> str:
    """The URL as Twilio saw it: ``base_url`` + path + query, else the (proxy-fixed) URL."""
    if not base_url:
        return request_url
    return base_url + path + (f"?{query}" if query else "")
