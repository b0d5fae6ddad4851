"""How long an API ``Idempotency-Key`` is remembered, and forgetting the old ones."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete
from sqlalchemy.orm import Session

from outreach.models import IdempotencyKey

KEPT_FOR = timedelta(hours=24)  # Stripe's window: a client retrying longer has given up


def forget_expired(session: Session, *, now: datetime) -> int:
    done = session.execute(
        delete(IdempotencyKey).where(IdempotencyKey.created_at <= now - KEPT_FOR)
    )
    return int(done.rowcount or 0)  # type: ignore[attr-defined]
