"""Huddles through the API: each token sees the huddles its user was given, with its role."""

from __future__ import annotations

from collections.abc import Callable

from tests.web.api.conftest import Caller


def test_each_user_sees_their_huddles_with_their_role(api_as: Callable[[str], Caller]) -> None:
    seen = {
        name: [(h["slug"], h["role"]) for h in api_as(name)("GET", "/huddles").json["data"]]
        for name in ("admin", "lee", "mo", "rae")
    }
    assert seen == {
        "admin": [("logan", "admin"), ("moab", "admin")],
        "lee": [("logan", "organizer")],
        "mo": [("moab", "organizer")],
        "rae": [("logan", "responder")],
    }
    logan = api_as("rae")("GET", "/huddles/logan").json
    assert (logan["name"], logan["keywords"]) == ("Logan", ["LOGAN"])
    assert api_as("mo")("GET", "/huddles/logan").status_code == 404
    assert api_as("mo")("GET", "/huddles/nowhere").status_code == 404
