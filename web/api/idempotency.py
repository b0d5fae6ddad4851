"""``@writes`` and ``@sends``: one transaction per changing request, ``Idempotency-Key`` honoured.

``@writes``: the endpoint does its work in :func:`web.api.core.writing` and returns; the answer
is stored with the key in that same transaction, so a retried request (a timeout, a double
click) gets the first answer back and changes nothing, even when the first one's answer never
arrived. Two requests racing with one key: the second's commit fails on the key's unique index,
it rolls back, and it answers what the first stored.

``@sends``: for endpoints whose effect leaves the database (a text to a member, a launch's
job), the key is claimed in a transaction of its own before the work, so a racing duplicate is
told the first is in progress (409) instead of sending again. A claim whose request failed
with an exception stays: nobody can say whether the text went out, and never twice comes first.

The same key with another request is refused (422).
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable
from typing import Any, TypeVar

from flask import Response, request
from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from werkzeug.exceptions import HTTPException

from outreach.accounts.idempotency import KEPT_FOR
from outreach.app.clock import utcnow
from outreach.models import IdempotencyKey
from web.api.core import access, fail, reading, writing
from web.extensions import services

HEADER = "Idempotency-Key"
PROVIDER_UNCERTAIN = "provider_uncertain"  # the provider may have sent it: the claim stays
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


def sends(view: View) -> View:
    """Like ``@writes``, with the key claimed before the endpoint runs."""

    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        key = request.headers.get(HEADER)
        if key is None:
            return _committed(view(*args, **kwargs))
        key = _checked(key)
        fingerprint = _fingerprint()
        replay = _stored(key, fingerprint)
        if replay is not None:
            return replay
        try:
            with services().sessions.begin() as session:
                session.add(
                    IdempotencyKey(
                        organizer_id=access().organizer_id, key=key, fingerprint=fingerprint
                    )
                )
        except IntegrityError:  # claimed meanwhile by a racing request
            replay = _stored(key, fingerprint)
            if replay is None:
                raise
            return replay
        try:
            response: Response = view(*args, **kwargs)
        except HTTPException as exc:  # refused, or the provider refused: nothing was done
            writing().rollback()
            if (getattr(exc, "data", None) or {}).get("code") != PROVIDER_UNCERTAIN:
                _release(key)
            raise
        session = writing()
        if response.status_code >= 400:
            session.rollback()
            _release(key)
        else:
            session.execute(
                update(IdempotencyKey)
                .where(
                    IdempotencyKey.organizer_id == access().organizer_id,
                    IdempotencyKey.key == key,
                )
                .values(
                    status_code=response.status_code,
                    response_body=response.get_data(as_text=True),
                )
            )
            session.commit()
        return response

    return wrapper  # type: ignore[return-value]


def _release(key: str) -> None:
    with services().sessions.begin() as session:
        session.execute(
            delete(IdempotencyKey).where(
                IdempotencyKey.organizer_id == access().organizer_id, IdempotencyKey.key == key
            )
        )


def _committed(response: Response) -> Response:
    session = writing()
    if response.status_code >= 400:
        session.rollback()
    else:
        session.commit()
    return response


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
        expired = row.created_at <= utcnow() - KEPT_FOR
        if not expired:
            if row.fingerprint != fingerprint:
                fail(
                    422,
                    "idempotency_key_reused",
                    f"This {HEADER} was used for a different request.",
                )
            if row.status_code is None:
                fail(
                    409,
                    "in_progress",
                    f"The first request with this {HEADER} is still running, or was cut short; "
                    "check what it did before trying again with a new key.",
                )
            response = Response(
                row.response_body, status=row.status_code, mimetype="application/json"
            )
    if expired:  # forgotten: this request starts afresh
        _release(key)
        return None
    response.headers["Idempotent-Replayed"] = "true"
    return response
