"""Email addresses: normalized (trimmed, lower-cased) and checked for a plausible shape."""

from __future__ import annotations

import re

_EMAIL = re.compile(
    r"^[^@\s<>()\[\],;:\"]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$"
)


class InvalidEmail(ValueError):
    def __init__(self, raw: str, reason: str) -> None:
        super().__init__(f"{raw!r}: {reason}")
        self.raw = raw
        self.reason = reason


def normalize_email(raw: str) -> str:
    """Lower-case the whole address: mailbox providers treat it case-insensitively in practice."""
    text = (raw or "").strip().lower()
    if not text:
        raise InvalidEmail(raw, "empty")
    if len(text) > 254:
        raise InvalidEmail(raw[:40], "too long for an email address")
    if not _EMAIL.match(text):
        raise InvalidEmail(raw, "not an email address")
    return text


def mask_email(address: str | None) -> str:
    """For logs: ``m***@example.org``. Operators can correlate; logs don't leak the list."""
    if not address or "@" not in address:
        return "-"
    local, _, domain = address.partition("@")
    return f"{local[:1]}***@{domain}"
