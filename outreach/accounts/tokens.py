"""API tokens: random, shown once, stored as their SHA-256 (a token is as strong as a key)."""

from __future__ import annotations

import hashlib
import secrets

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from outreach.accounts import audit
from outreach.app.clock import utcnow
from outreach.models import ApiToken, Organizer

PREFIX = "hot_"  # recognisable in a leaked config file or a secret scanner


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def issue(session: Session, user: Organizer, *, label: str = "", by: str = "cli") -> str:
    """A new token for ``user``; the caller shows it once, nothing keeps it."""
    token = PREFIX + secrets.token_urlsafe(32)
    row = ApiToken(organizer_id=user.id, token_hash=_digest(token), label=label[:100], use_count=0)
    session.add(row)
    session.flush()
    audit.record(
        session,
        audit.TOKEN_CREATED,
        actor_id=None,
        actor_email=by,
        subject=user.email,
        detail={"token_id": row.id, "label": label},
    )
    return token


def revoke(session: Session, user: Organizer, token_id: int, *, by: str = "cli") -> bool:
    done = session.execute(
        update(ApiToken)
        .where(
            ApiToken.id == token_id,
            ApiToken.organizer_id == user.id,
            ApiToken.revoked_at.is_(None),
        )
        .values(revoked_at=utcnow())
    )
    if not done.rowcount:  # type: ignore[attr-defined]
        return False
    audit.record(
        session,
        audit.TOKEN_REVOKED,
        actor_id=None,
        actor_email=by,
        subject=user.email,
        detail={"token_id": token_id},
    )
    return True


def user_of(session: Session, token: str) -> Organizer | None:
    """The enabled user whose live token this is; counts the use."""
    if not token.startswith(PREFIX):
        return None
    found = session.execute(
        select(ApiToken, Organizer)
        .join(Organizer, Organizer.id == ApiToken.organizer_id)
        .where(ApiToken.token_hash == _digest(token), ApiToken.revoked_at.is_(None))
    ).one_or_none()
    if found is None:
        return None
    row, user = found
    if user.disabled_at is not None:
        return None
    row.last_used_at = utcnow()
    row.use_count += 1
    return user


def list_tokens(session: Session, user: Organizer) -> list[ApiToken]:
    return list(
        session.scalars(
            select(ApiToken).where(ApiToken.organizer_id == user.id).order_by(ApiToken.id)
        )
    )
