"""Every route says who may reach it, and each person reaches exactly that.

The list of routes comes from the app's URL map: a new page without ``@public`` or ``@requires``
fails here before it can ship.
"""

from __future__ import annotations

import re

import pytest
from flask import Flask
from flask.testing import FlaskClient

import webhooks
from outreach.accounts import access, users
from outreach.app.services import Services
from outreach.models import accounts as a
from outreach.people.huddles import create_huddle
from web.access import PUBLIC, SIGNED_IN, scope_of
from web.api.core import PREFIX

PASSWORD = "correct horse battery"
PROVIDER_BLUEPRINTS = {bp.name for bp in webhooks.blueprints()}  # signature-checked


def routes(app: Flask) -> list[tuple[str, str, str]]:
    """(endpoint, URL rule, method) for every page: not the webhooks', nor the API's (bearer
    tokens, tests/web/api/test_api_scoping.py)."""
    found = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint.partition(".")[0] in PROVIDER_BLUEPRINTS or rule.rule.startswith(PREFIX):
            continue
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            found.append((rule.endpoint, rule.rule, method))
    return found


def test_every_route_says_who_may_reach_it(app: Flask) -> None:
    unmarked = [ep for ep, _, _ in routes(app) if scope_of(app.view_functions[ep]) is None]
    assert unmarked == []
    scopes = {scope_of(app.view_functions[ep]) for ep, _, _ in routes(app)}
    assert scopes <= {PUBLIC, SIGNED_IN, *access.CAPABILITIES}


def test_a_stranger_is_sent_to_sign_in_from_every_page_that_is_not_public(
    app: Flask, client: FlaskClient
) -> None:
    guarded = [r for r in routes(app) if scope_of(app.view_functions[r[0]]) != PUBLIC]
    assert guarded  # the home page at least
    for endpoint, rule, method in guarded:
        path = re.sub(r"<[^>]+>", "1", rule)
        response = client.open(path, method=method)
        if method == "GET":
            assert response.status_code == 302, endpoint
            assert response.headers["Location"].startswith("/login"), endpoint
        else:  # a POST without the session's CSRF token never gets as far
            assert response.status_code in (302, 400), endpoint


@pytest.fixture
def signed_in_as(app: Flask, services: Services):  # type: ignore[no-untyped-def]
    with services.sessions.begin() as session:
        create_huddle(session, slug="logan", name="Logan", keywords=["LOGAN"])
        users.create_user(session, email="boss@example.org", password=PASSWORD, admin=True)
        users.create_user(session, email="lee@example.org", password=PASSWORD, huddles=["logan"])
        users.create_user(
            session,
            email="rae@example.org",
            password=PASSWORD,
            huddles=["logan"],
            role=a.RESPONDER,
        )

    def sign_in(email: str) -> FlaskClient:
        client = app.test_client()
        page = client.get("/login").get_data(as_text=True)
        token = re.search(r'name="csrf_token" value="([^"]+)"', page)
        assert token
        form = {"email": email, "password": PASSWORD, "csrf_token": token.group(1)}
        assert client.post("/login", data=form).status_code == 302
        return client

    return sign_in


def test_each_role_reaches_the_pages_of_its_capabilities_and_nothing_else(
    app: Flask, signed_in_as
) -> None:  # type: ignore[no-untyped-def]
    pages = [
        (ep, rule)
        for ep, rule, method in routes(app)
        if method == "GET" and scope_of(app.view_functions[ep]) not in (PUBLIC,) and "<" not in rule
    ]
    for email, role in (
        ("boss@example.org", a.ADMIN),
        ("lee@example.org", a.ORGANIZER),
        ("rae@example.org", a.RESPONDER),
    ):
        client = signed_in_as(email)
        for endpoint, rule in pages:
            scope = scope_of(app.view_functions[endpoint])
            allowed = scope == SIGNED_IN or scope in access.ROLE_CAPABILITIES[role]
            status = client.get(rule).status_code
            assert status == (200 if allowed else 404), (email, endpoint, status)


def test_the_audit_log_shows_admins_who_signed_in(signed_in_as) -> None:  # type: ignore[no-untyped-def]
    signed_in_as("lee@example.org")
    page = signed_in_as("boss@example.org").get("/audit").get_data(as_text=True)
    assert "lee@example.org" in page
    assert "signed in" in page
    assert "user created" in page


def test_a_signed_in_session_is_not_an_api_token(signed_in_as) -> None:  # type: ignore[no-untyped-def]
    response = signed_in_as("boss@example.org").get("/api/v1/huddles")
    assert response.status_code == 401
    assert response.json["error"]["code"] == "unauthorized"
