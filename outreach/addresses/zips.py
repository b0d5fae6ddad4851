"""US ZIP codes, as members type them: ``02128``, ``02128-4012`` or ``021284012``; we keep five."""

from __future__ import annotations

import re

_ZIP = re.compile(r"(\d{5})(?:-?\d{4})?")


def normalize_zip(text: str) -> str | None:
    """The 5-digit ZIP of ``text`` (ZIP+4 with or without its dash), or None if it is not one."""
    match = _ZIP.fullmatch(text.strip())
    return match.group(1) if match else None
