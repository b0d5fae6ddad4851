"""What every endpoint of ``/api/v1`` shares: the token, the session, the error shape, cursors.

A request carries ``Authorization: Bearer hot_…``; the token stands for its user exactly (their
role in each huddle, or admin). An endpoint says the capability it needs (``@token(c)``); objects
of huddles the token may not use are simply not found (404), so ids reveal nothing.

Every error, from a validation failure to an unknown URL, is ``{"error": {"code", "message",
"details"}}``.
"""

from __future__ import annotations

import base64
import binascii
import functools
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, NoReturn, TypeVar

import marshmallow as ma
from flask import Response, g, jsonify, request
from flask_smorest import Api, abort
from sqlalchemy import select
from sqlalchemy.orm import Session
from werkzeug.exceptions import HTTPException

from outreach.accounts import tokens
from outreach.accounts.access import Access, access_of
from outreach.models import Huddle
from web.access import SIGNED_IN
from web.extensions import services

log = logging.getLogger(__name__)

PREFIX = "/api/v1"
BEARER = "bearerAuth"
MAX_ID = 2**31 - 1  # the largest id of an INTEGER column (PostgreSQL refuses a larger one)

View = TypeVar("View", bound=Callable[..., Any])

_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "too_large",
    415: "unsupported_media_type",
    422: "invalid",
    429: "rate_limited",
}


class ErrorBody(ma.Schema):
    code = ma.fields.String(required=True, metadata={"description": "Stable, for programs"})
    message = ma.fields.String(required=True, metadata={"description": "For people"})
    details = ma.fields.Dict(
        required=True, metadata={"description": "Per field errors, limits, positions"}
    )


class ErrorSchema(ma.Schema):
    error = ma.fields.Nested(ErrorBody, required=True)


class OutreachApi(Api):
    """flask-smorest's Api, answering errors in our shape, and only under ``/api/``."""

    ERROR_SCHEMA = ErrorSchema

    def handle_http_exception(self, error: HTTPException) -> Any:
        if not request.path.startswith(PREFIX + "/") and request.path != PREFIX:
            return error  # pages and webhooks keep Flask's own error pages
        return error_response(error)


def error_response(error: HTTPException) -> Response:
    status = error.code or 500
    data = getattr(error, "data", None) or {}
    details = data.get("details")
    if details is None and "messages" in data:  # webargs: {"json": {"field": ["..."]}}
        details = data["messages"]
    message = data.get("message") or _plain(error)
    body = {
        "error": {
            "code": data.get("code")
            or _CODES.get(status, "internal" if status >= 500 else "error"),
            "message": message,
            "details": details or {},
        }
    }
    response = jsonify(body)
    response.status_code = status
    for name, value in (data.get("headers") or {}).items():
        response.headers[name] = value
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="api"'
    if status == 405 and error.get_response().headers.get("Allow"):
        response.headers["Allow"] = error.get_response().headers["Allow"]
    return response


def _plain(error: HTTPException) -> str:
    if (error.code or 500) >= 500:
        return "Something went wrong on our side; nothing was changed. Try again later."
    return (error.description or error.name or "error").strip()


def fail(status: int, code: str, message: str, **details: Any) -> NoReturn:
    abort(status, code=code, message=message, details=details)
    raise AssertionError("abort returned")  # pragma: no cover - abort always raises


def not_found(what: str) -> NoReturn:
    fail(404, "not_found", f"No such {what}.")


def access() -> Access:
    """The access of this request's token (inside a ``@token`` endpoint)."""
    found: Access = g.api_access
    return found


def token(capability: str) -> Callable[[View], View]:
    """Authenticate the bearer token and check ``capability``: in the huddle of the URL's
    ``slug``, or somewhere. Before anything reads the request, so another huddle's endpoint is a
    404 whatever the body says."""

    def wrap(view: View) -> View:
        @functools.wraps(view)
        def checked(*args: Any, **kwargs: Any) -> Any:
            g.api_access, huddle_id = _authenticate(kwargs.get("slug"))
            if any(isinstance(v, int) and not 0 < v <= MAX_ID for v in kwargs.values()):
                not_found("resource")  # no row has that id, and the database cannot say so
            if capability != SIGNED_IN and not g.api_access.can(capability, huddle_id):
                not_found("huddle" if "slug" in kwargs else "resource")
            _refuse_nul()
            return view(*args, **kwargs)

        checked.scope = capability  # type: ignore[attr-defined]
        return checked  # type: ignore[return-value]

    return wrap


def _refuse_nul() -> None:
    """No text we store may hold a NUL (PostgreSQL refuses it): one clear 422 for any field."""
    texts: list[object] = [*request.args.values(), *(request.view_args or {}).values()]
    if request.is_json:
        texts.append(request.get_json(silent=True))
    while texts:
        value = texts.pop()
        if isinstance(value, str):
            if "\x00" in value:
                fail(422, "invalid", "Text cannot contain NUL characters.")
        elif isinstance(value, dict):
            texts.extend(value.keys())
            texts.extend(value.values())
        elif isinstance(value, list):
            texts.extend(value)


def _authenticate(slug: str | None) -> tuple[Access, int | None]:
    """The token's access, and the id of the huddle ``slug`` (404 if there is none)."""
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        fail(401, "unauthorized", "Send your API token as 'Authorization: Bearer <token>'.")
    with services().sessions.begin() as session:
        user = tokens.user_of(session, value.strip())
        if user is None:
            fail(401, "unauthorized", "That token is unknown, revoked, or its user is disabled.")
        found = access_of(session, user)
        huddle_id = None
        if slug is not None:
            huddle_id = session.scalar(select(Huddle.id).where(Huddle.slug == slug))
            if huddle_id is None:
                not_found("huddle")
    g.api_actor = user.email
    return found, huddle_id


def actor() -> str:
    """The email of the token's user, for the ledger and the audit log."""
    found: str = g.api_actor
    return found


@contextmanager
def reading() -> Iterator[Session]:
    with services().read_sessions() as session:
        yield session


def writing() -> Session:
    """The request's read-write session: endpoints that change data use it and never commit;
    ``@writes`` (``web.api.idempotency``) commits it once, with the idempotency key if any."""
    if "api_session" not in g:
        g.api_session = services().sessions()
    found: Session = g.api_session
    return found


def close_session(_: BaseException | None = None) -> None:
    session: Session | None = g.pop("api_session", None)
    if session is not None:
        session.close()


def encode_cursor(last_id: int) -> str:
    return base64.urlsafe_b64encode(f"after:{last_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> int:
    if not cursor:
        return 0
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raw = ""
    head, _, tail = raw.partition(":")
    if head != "after" or not tail.isdigit() or len(tail) > 18:
        fail(400, "bad_cursor", "That cursor is not one this API gave out.", cursor=cursor[:100])
    return min(int(tail), MAX_ID)


class Page(ma.Schema):
    """The shape of a list: its items, and the cursor of the next page (null on the last)."""

    next_cursor = ma.fields.String(
        required=True, allow_none=True, metadata={"description": "Pass as ?cursor= for more"}
    )


class PageArgs(ma.Schema):
    cursor = ma.fields.String(load_default=None, validate=ma.validate.Length(max=100))
    limit = ma.fields.Integer(load_default=50, validate=ma.validate.Range(min=1, max=500))
