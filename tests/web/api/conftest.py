"""Two huddles, a user of each role and an API token for each."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from argon2 import PasswordHasher, profiles
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from outreach.accounts import passwords, tokens, users
from outreach.app.services import Services
from outreach.models import accounts as a
from outreach.people.huddles import create_huddle

PASSWORD = "correct horse battery"


@dataclass
class Caller:
    """An API client that sends one user's token."""

    client: FlaskClient
    token: str

    def __call__(self, method: str, path: str, **kwargs: Any) -> TestResponse:
        headers = {"Authorization": f"Bearer {self.token}", **kwargs.pop("headers", {})}
        return self.client.open(f"/api/v1{path}", method=method, headers=headers, **kwargs)


@pytest.fixture(autouse=True)
def cheap_passwords(monkeypatch: pytest.MonkeyPatch) -> None:
    """argon2's test profile: these tests are about tokens, not the cost of a password."""
    monkeypatch.setattr(passwords, "_hasher", PasswordHasher.from_parameters(profiles.CHEAPEST))


@pytest.fixture
def tokens_by_user(services: Services) -> dict[str, str]:
    """admin, lee (organizer of logan), mo (organizer of moab), rae (responder of logan)."""
    with services.sessions.begin() as session:
        create_huddle(
            session, slug="logan", name="Logan", keywords=["LOGAN"], sender="+16175550100"
        )
        create_huddle(session, slug="moab", name="Moab", keywords=["MOAB"], sender="+14355550100")
        made = {
            "admin": users.create_user(
                session, email="boss@example.org", password=PASSWORD, admin=True
            ),
            "lee": users.create_user(
                session, email="lee@example.org", password=PASSWORD, huddles=["logan"]
            ),
            "mo": users.create_user(
                session, email="mo@example.org", password=PASSWORD, huddles=["moab"]
            ),
            "rae": users.create_user(
                session,
                email="rae@example.org",
                password=PASSWORD,
                huddles=["logan"],
                role=a.RESPONDER,
            ),
        }
        return {name: tokens.issue(session, user, label="test") for name, user in made.items()}


@pytest.fixture
def api_as(app: Flask, tokens_by_user: dict[str, str]) -> Callable[[str], Caller]:
    def caller(name: str) -> Caller:
        return Caller(app.test_client(), tokens_by_user[name])

    return caller
