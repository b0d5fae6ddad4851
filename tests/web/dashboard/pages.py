"""Signing in with Flask's test client, as the dashboard's page tests do."""

from __future__ import annotations

import re

from flask.testing import FlaskClient

PASSWORD = "correct horse battery"


def csrf_of(page: str) -> str:
    """The CSRF token of a rendered page's forms."""
    found = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert found, page
    return found.group(1)


def sign_in(client: FlaskClient, email: str, password: str = PASSWORD) -> None:
    token = csrf_of(client.get("/login").get_data(as_text=True))
    answer = client.post("/login", data={"email": email, "password": password, "csrf_token": token})
    assert answer.status_code == 302
