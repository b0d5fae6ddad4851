"""``@writes``: one transaction per changing request, and ``Idempotency-Key`` honoured.

The endpoint does its work in :func:`web.api.core.writing` and returns; the answer is stored
with the key in that same transaction, so a retried request (a timeout, a double click) gets the
first answer back and changes nothing, even when the first one's answer never arrived. Two
requests racing with one key: the second's commit fails on the key's unique index, it rolls
back, and it answers what the first stored. The same key with another request is refused.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable
from typing import Any, TypeVar

from flask import Response, request
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from outreach.accounts.idempotency import KEPT_FOR
from outreach.app.clock import utcnow
from outreach.models import IdempotencyKey
from web.api.core import access, fail, reading, writing

HEADER = "Idempotency-Key"
MAX_KEY = 255

View = TypeVar("View", bound=Callable[..., Any])


def writes(view: View) -> View:
    """Commit the endpoint's session once it answered (below 400), with the key if one came."""

    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        key = request.headers.get(HEADER)
        if key is not None:
            key = _checked(key)
            fingerprint = _fingerprint()
            replay = _stored(key, fingerprint)
            if replay is not None:
                return replay
        response: Response = view(*args, **kwargs)
        session = writing()
        if response.status_code >= 400:
            session.rollback()
            return response
        if key is None:
            session.commit()
            return response
        session.add(
            IdempotencyKey(
                organizer_id=access().organizer_id,
                key=key,
                fingerprint=fingerprint,
                status_code=response.status_code,
                response_body=response.get_data(as_text=True),
            )
        )
        try:
            session.commit()
        except IntegrityError:  # the same key, committed meanwhile by a racing request
            session.rollback()
            replay = _stored(key, fingerprint)
            if replay is None:
                raise
            return replay
        return response

    return wrapper  # type: ignore[return-value]


def _checked(key: str) -> str:
    key = key.strip()
    if not key or len(key) > MAX_KEY or not key.isprintable() or not key.isascii():
        fail(
            400, "bad_idempotency_key", f"An {HEADER} is 1 to {MAX_KEY} printable ASCII characters."
        )
    return key


def _fingerprint() -> str:
    digest = hashlib.sha256()
    for part in (request.method, request.path, request.query_string.decode("latin-1")):
        digest.update(part.encode() + b"\0")
    if request.mimetype == "text/csv":  # an upload is streamed, never held: its size stands for it
        digest.update((request.headers.get("Content-Length") or "").encode())
    else:
        digest.update(request.get_data(cache=True))
    return digest.hexdigest()


def _stored(key: str, fingerprint: str) -> Response | None:
    with reading() as session:
        row = session.scalars(
            select(IdempotencyKey).where(
                IdempotencyKey.organizer_id == access().organizer_id,
                IdempotencyKey.key == key,
            )
        ).first()
        if row is None:
            return None
        if row.created_at <= utcnow() - KEPT_FOR:  # forgotten: this request starts afresh
            writing().delete(writing().get_one(IdempotencyKey, row.id))
            writing().flush()
            return None
        if row.fingerprint != fingerprint:
            fail(
                422,
                "idempotency_key_reused",
                f"This {HEADER} was used for a different request.",
            )
        response = Response(row.response_body, status=row.status_code, mimetype="application/json")
    response.headers["Idempotent-Replayed"] = "true"
    return response
