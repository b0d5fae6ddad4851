"""A network admin makes a huddle from the dashboard; nobody else can."""

from __future__ import annotations

import re

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from outreach.accounts import users
from outreach.app.services import Services
from outreach.models import AuditEvent, Huddle
from outreach.people.huddles import create_huddle

PASSWORD = "correct horse battery"


@pytest.fixture
def sign_in(app: Flask, services: Services):  # type: ignore[no-untyped-def]
    with services.sessions.begin() as session:
        create_huddle(session, slug="moab", name="Moab", keywords=["MOAB"])
        users.create_user(session, email="boss@example.org", password=PASSWORD, admin=True)
        users.create_user(session, email="mo@example.org", password=PASSWORD, huddles=["moab"])

    def signed_in(email: str) -> tuple[FlaskClient, str]:
        client = app.test_client()
        token = _token(client.get("/login").get_data(as_text=True))
        form = {"email": email, "password": PASSWORD, "csrf_token": token}
        assert client.post("/login", data=form).status_code == 302
        return client, _token(client.get("/huddles/new").get_data(as_text=True) or "")

    return signed_in


def _token(page: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', page)
    return found.group(1) if found else ""


def _form(**changes: str) -> dict[str, str]:
    return {
        "name": "Logan Huddle",
        "slug": "logan",
        "keywords": "LOGAN logan2",
        "sender": "(617) 555-0142",
        "timezone": "America/Denver",
        **changes,
    }


def test_an_admin_creates_a_huddle_and_lands_on_its_overview(sign_in, services: Services) -> None:  # type: ignore[no-untyped-def]
    client, token = sign_in("boss@example.org")
    response = client.post("/huddles/new", data={**_form(), "csrf_token": token})
    assert response.status_code == 302
    assert response.headers["Location"] == "/h/logan/"
    with services.read_sessions() as session:
        huddle = session.scalars(select(Huddle).where(Huddle.slug == "logan")).one()
        assert huddle.sender_number == "+16175550142"
        assert huddle.timezone == "America/Denver"
        assert sorted(k.keyword for k in huddle.keywords) == ["LOGAN", "LOGAN2"]
        actions = session.scalars(select(AuditEvent.action)).all()
    assert "huddle_created" in actions


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"slug": "Not A Slug!"}, "slug"),
        ({"name": ""}, "name must not be empty"),
        ({"keywords": ""}, "at least one join keyword"),
        ({"keywords": "MOAB"}, "already used"),
        ({"keywords": "STOP"}, "reserved"),
        ({"sender": "12"}, "not a valid number"),
        ({"timezone": "Mars/Olympus"}, "not an IANA time zone"),
        ({"slug": "moab"}, "already exists"),
    ],
)
def test_a_bad_field_is_named_and_nothing_is_made(  # type: ignore[no-untyped-def]
    sign_in, services: Services, changes: dict[str, str], message: str
) -> None:
    client, token = sign_in("boss@example.org")
    response = client.post("/huddles/new", data={**_form(**changes), "csrf_token": token})
    assert response.status_code == 422
    assert message in response.get_data(as_text=True)
    with services.read_sessions() as session:
        assert session.scalars(select(Huddle.slug)).all() == ["moab"]


def test_an_organizer_cannot_make_a_huddle(sign_in) -> None:  # type: ignore[no-untyped-def]
    client, _ = sign_in("mo@example.org")
    assert client.get("/huddles/new").status_code == 404
    page = client.get("/").get_data(as_text=True)
    token = _token(page)
    assert client.post("/huddles/new", data={**_form(), "csrf_token": token}).status_code == 404
