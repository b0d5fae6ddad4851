"""Flask's signed-cookie sessions, with the signing serializer built once."""

from __future__ import annotations

from typing import Any

from flask import Flask
from flask.sessions import SecureCookieSessionInterface
from itsdangerous import URLSafeTimedSerializer


class CookieSessions(SecureCookieSessionInterface):
    """``SecureCookieSessionInterface``, reusing its serializer while the keys stay the same.

    Flask builds a new serializer on every request, including every webhook (which never carries
    a session cookie), and itsdangerous's constructor serializes ``{}`` to learn its output type:
    about 2.5% of an inbound reply's CPU (bench/inbound_profile.py). The serializer keeps no
    per-request state, so one per key set serves every request and thread.
    """

    def __init__(self) -> None:
        self._keys: tuple[Any, ...] | None = None
        self._serializer: URLSafeTimedSerializer | None = None

    def get_signing_serializer(self, app: Flask) -> URLSafeTimedSerializer | None:
        keys = (app.secret_key, *(app.config["SECRET_KEY_FALLBACKS"] or ()))
        if keys != self._keys:
            self._serializer = super().get_signing_serializer(app)
            self._keys = keys
        return self._serializer
