"""Twilio request signatures, checked over the public URL Twilio called."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from urllib.parse import urlparse

from twilio.request_validator import RequestValidator, add_port, compare, remove_port


class _SignedParams:
    """A form (name -> values) as ``RequestValidator`` reads it, without its exception lookups.

    ``compute_signature`` asks each parameter for ``getall`` (Django's name), falls back to
    ``getlist`` (Flask's) after an AttributeError: with Twilio's ~20 parameters, the exceptions
    cost more than the HMAC. Same names, same values, so the same signature.
    """

    __slots__ = ("_lists",)

    def __init__(self, form: dict[str, list[str]]) -> None:
        self._lists = form

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


def is_valid_signature(token: str, url: str, form: dict[str, list[str]], signature: str) -> bool:
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
