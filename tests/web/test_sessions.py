"""Cookie sessions keep Flask's behaviour with the serializer built once per key set."""

from __future__ import annotations

from flask import Flask, session

from web.sessions import CookieSessions


def _app_with_session_routes(app: Flask) -> Flask:
    @app.get("/_test/session/set")
    def set_value() -> str:
        session["seen"] = "yes"
        return ""

    @app.get("/_test/session/get")
    def get_value() -> str:
        return str(session.get("seen", "missing"))

    return app


def test_one_serializer_per_key_set(app: Flask) -> None:
    interface = app.session_interface
    assert isinstance(interface, CookieSessions)
    first = interface.get_signing_serializer(app)
    assert first is not None
    assert interface.get_signing_serializer(app) is first

    app.secret_key = "rotated-" + str(app.secret_key)
    rotated = interface.get_signing_serializer(app)
    assert rotated is not first
    assert rotated is not None
    assert rotated.loads(rotated.dumps({"a": 1})) == {"a": 1}


def test_session_round_trip_and_key_rotation(app: Flask) -> None:
    _app_with_session_routes(app)
    client = app.test_client()
    client.get("/_test/session/set")
    assert client.get("/_test/session/get").text == "yes"

    old_key = app.secret_key
    app.secret_key = "another-key-entirely"
    app.config["SECRET_KEY_FALLBACKS"] = [old_key]
    # Rotation with the old key as a fallback: the old cookie still reads.
    assert client.get("/_test/session/get").text == "yes"

    app.config["SECRET_KEY_FALLBACKS"] = []
    # A cookie signed with a key no longer configured is not trusted.
    assert client.get("/_test/session/get").text == "missing"
