"""One place that says what time it is: tests freeze it (time-machine); datetimes stay aware."""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    return datetime.now(UTC)
