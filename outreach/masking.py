"""Masking for logs: operators need to correlate, not to read the member list."""

from __future__ import annotations

from outreach.phones import mask_phone

__all__ = ["mask_email", "mask_phone"]


def mask_email(address: str | None) -> str:
    """``m***@example.org``."""
    if not address or "@" not in address:
        return "-"
    local, _, domain = address.partition("@")
    return f"{local[:1]}***@{domain}"
