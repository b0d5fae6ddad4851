"""Signing in and out: sessions, the throttle on guessing, which huddles the home page shows."""

from __future__ import annotations

import re

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from outreach.accounts import users
from outreach.app.services import Services
from outreach.models import AuditEvent
from outreach.models import accounts as a
from outreach.people.huddles import create_huddle

PASSWORD = "correct horse battery"


@pytest.fixture
def people(services: Services) -> None:
    with services.sessions.begin() as session:
        create_huddle(session, slug="logan", name="Logan Huddle", keywords=["LOGAN"])
        create_huddle(session, slug="provo", name="Provo Huddle", keywords=["PROVO"])
        users.create_user(session, email="admin@example.org", password=PASSWORD, admin=True)
        users.create_user(
            session, email="lee@example.org", password=PASSWORD, huddles=["logan"], name="Lee"
        )
        users.create_user(
            session,
            email="rae@example.org",
            password=PASSWORD,
            huddles=["provo"],
            role=a.RESPONDER,
        )


def csrf(client: FlaskClient, path: str = "/login") -> str:
    page = client.get(path).get_data(as_text=True)
    found = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert found, page
    return found.group(1)


def sign_in(client: FlaskClient, email: str, password: str = PASSWORD, **extra: str):  # type: ignore[no-untyped-def]
    return client.post(
        "/login",
        data={"email": email, "password": password, "csrf_token": csrf(client), **extra},
    )


def sign_out(client: FlaskClient) -> None:
    home = client.get("/").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', home)
    assert token, home
    assert client.post("/logout", data={"csrf_token": token.group(1)}).status_code == 302


def actions(services: Services) -> list[tuple[str, str]]:
    with services.read_sessions() as session:
        return [
            (e.action, e.actor_email)
            for e in session.scalars(select(AuditEvent).order_by(AuditEvent.id))
        ]


def test_the_home_page_asks_for_a_sign_in_and_the_form_is_labelled(
    client: FlaskClient, people: None
) -> None:
    home = client.get("/")
    assert home.status_code == 302
    assert home.headers["Location"].startswith("/login?next=")
    page = client.get("/login").get_data(as_text=True)
    assert '<label for="email">Email</label>' in page
    assert '<label for="password">Password</label>' in page
    assert '<button type="submit">Sign in</button>' in page


def test_each_organizer_sees_only_their_huddles_and_an_admin_sees_all(
    app: Flask, people: None
) -> None:
    seen = {}
    for email in ("lee@example.org", "rae@example.org", "admin@example.org"):
        client = app.test_client()
        response = sign_in(client, email)
        assert response.status_code == 302, response.get_data(as_text=True)
        page = client.get("/").get_data(as_text=True)
        seen[email] = {name for name in ("Logan Huddle", "Provo Huddle") if name in page}
    assert seen == {
        "lee@example.org": {"Logan Huddle"},
        "rae@example.org": {"Provo Huddle"},
        "admin@example.org": {"Logan Huddle", "Provo Huddle"},
    }


def test_a_wrong_password_or_email_gets_the_same_answer_and_is_on_record(
    client: FlaskClient, services: Services, people: None
) -> None:
    wrong_password = sign_in(client, "lee@example.org", "not the password")
    wrong_email = sign_in(client, "nobody@example.org")
    assert wrong_password.status_code == wrong_email.status_code == 401
    assert "Wrong email or password." in wrong_password.get_data(as_text=True)
    assert "Wrong email or password." in wrong_email.get_data(as_text=True)
    assert client.get("/").status_code == 302
    assert actions(services)[-2:] == [
        ("sign_in_refused", "lee@example.org"),
        ("sign_in_refused", "nobody@example.org"),
    ]


def test_the_tenth_wrong_password_in_a_minute_is_refused_unchecked(
    client: FlaskClient, services: Services, people: None
) -> None:
    for _ in range(9):
        assert sign_in(client, "lee@example.org", "guess").status_code == 401
    refused = sign_in(client, "lee@example.org", PASSWORD)  # even the right one, for a minute
    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == "60"
    assert [act for act, _ in actions(services)].count("sign_in_refused") == 9  # not checked
    assert sign_in(client, "admin@example.org").status_code == 302  # another address is fine


def test_signing_out_ends_every_session_of_that_person(app: Flask, people: None) -> None:
    phone, laptop = app.test_client(), app.test_client()
    sign_in(phone, "lee@example.org")
    sign_in(laptop, "lee@example.org")
    assert phone.get("/").status_code == laptop.get("/").status_code == 200
    sign_out(phone)
    assert phone.get("/").status_code == 302
    assert laptop.get("/").status_code == 302


def test_a_disabled_user_is_signed_out_and_cannot_sign_in(
    app: Flask, services: Services, people: None
) -> None:
    client = app.test_client()
    sign_in(client, "lee@example.org")
    with services.sessions.begin() as session:
        users.disable(session, email="lee@example.org")
    assert client.get("/").status_code == 302
    assert sign_in(client, "lee@example.org").status_code == 401


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/x", "javascript:x"])
def test_after_signing_in_it_never_sends_you_to_another_site(
    client: FlaskClient, people: None, target: str
) -> None:
    response = sign_in(client, "lee@example.org", next=target)
    assert response.headers["Location"] == "/"


def test_after_signing_in_it_returns_to_the_page_asked_for(
    client: FlaskClient, people: None
) -> None:
    assert sign_in(client, "lee@example.org", next="/?x=1").headers["Location"] == "/?x=1"


def test_a_sign_in_without_the_csrf_token_is_refused(client: FlaskClient, people: None) -> None:
    response = client.post("/login", data={"email": "lee@example.org", "password": PASSWORD})
    assert response.status_code == 400
    assert client.get("/").status_code == 302
