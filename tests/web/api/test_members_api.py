"""Members through the API: as each role, with the huddle's scoping, and errors in one shape."""

from __future__ import annotations

from collections.abc import Callable

from tests.web.api.conftest import Caller


def test_an_organizer_adds_lists_and_reads_members_of_their_huddle(api_as: Callable[[str], Caller]) -> None:
    lee = api_as("lee")
    made = lee("POST", "/huddles/logan/members", json={"phone": "617-555-0101", "first_name": "Ann", "consent": ["sms"]})
    assert made.status_code == 201, made.json
    body = made.json
    assert body["phone"] == "+16175550101"
    assert body["consent"] == {"sms": "active", "email": "none"}
    listed = lee("GET", "/huddles/logan/members")
    assert listed.status_code == 200
    assert [m["id"] for m in listed.json["data"]] == [body["id"]]
    assert listed.json["next_cursor"] is None
    assert lee("GET", f"/huddles/logan/members/{body['id']}").json == body


def test_another_huddles_member_is_not_found(api_as: Callable[[str], Caller]) -> None:
    made = api_as("lee")("POST", "/huddles/logan/members", json={"email": "a@example.org"})
    mo = api_as("mo")
    for path in ("/huddles/logan/members", f"/huddles/logan/members/{made.json['id']}", f"/huddles/moab/members/{made.json['id']}"):
        response = mo("GET", path)
        assert response.status_code == 404, path
        assert response.json["error"]["code"] == "not_found"


def test_the_openapi_document_is_public_and_describes_the_endpoints(api_as: Callable[[str], Caller]) -> None:
    response = api_as("lee").client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    spec = response.json
    assert spec["openapi"] == "3.1.0"
    assert "/api/v1/huddles/{slug}/members" in spec["paths"]
