"""Segments through the API: save, list, read, count and sample, errors that point at the culprit,
and who may use them."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.web.api.conftest import Caller

Api = Callable[[str], Caller]


@pytest.fixture
def logan_members(api_as: Api) -> dict[str, int]:
    """Ann and Bob subscribed to texts (volunteer, donor); Cy a volunteer without consent."""
    lee = api_as("lee")
    people = {
        "ann": {
            "phone": "617-555-0121",
            "first_name": "Ann",
            "zip": "02128",
            "tags": ["volunteer"],
            "consent": ["sms"],
        },
        "bob": {
            "phone": "617-555-0122",
            "first_name": "Bob",
            "zip": "02129",
            "tags": ["donor"],
            "consent": ["sms"],
        },
        "cy": {"phone": "617-555-0123", "first_name": "Cy", "zip": "02128", "tags": ["volunteer"]},
    }
    ids = {}
    for name, body in people.items():
        made = lee("POST", "/huddles/logan/members", json=body)
        assert made.status_code == 201, made.json
        ids[name] = made.json["id"]
    return ids


def test_count_and_sample_a_filter(api_as: Api, logan_members: dict[str, int]) -> None:
    lee = api_as("lee")
    counted = lee("POST", "/huddles/logan/segments/count", json={"filter": "tag:volunteer"})
    assert counted.status_code == 200, counted.json
    assert counted.json == {"count": 1}  # Cy is a volunteer without consent to texts
    assert lee("POST", "/huddles/logan/segments/count", json={}).json == {"count": 2}
    assert lee(
        "POST",
        "/huddles/logan/segments/count",
        json={"filter": "tag:volunteer", "channel": "email"},
    ).json == {"count": 0}
    sampled = lee("POST", "/huddles/logan/segments/sample", json={"filter": "zip:021*", "limit": 1})
    assert sampled.status_code == 200, sampled.json
    assert sampled.json == {
        "data": [{"id": logan_members["ann"], "display_name": "Ann", "zip": "02128"}]
    }
    both = lee("POST", "/huddles/logan/segments/sample", json={"filter": "zip:021*"}).json["data"]
    assert [p["display_name"] for p in both] == ["Ann", "Bob"]
    too_many = lee("POST", "/huddles/logan/segments/sample", json={"filter": "", "limit": 21})
    assert too_many.status_code == 422
    assert too_many.json["error"]["code"] == "invalid"


def test_save_list_read_and_count_a_saved_segment(
    api_as: Api, logan_members: dict[str, int]
) -> None:
    lee = api_as("lee")
    saved = lee(
        "POST", "/huddles/logan/segments", json={"name": "volunteers", "filter": " tag:volunteer "}
    )
    assert saved.status_code == 201, saved.json
    assert saved.json["name"] == "volunteers"
    assert saved.json["filter"] == "tag:volunteer"
    listed = lee("GET", "/huddles/logan/segments")
    assert listed.status_code == 200
    assert listed.json == {"data": [saved.json]}
    assert lee("GET", "/huddles/logan/segments/volunteers").json == saved.json
    assert lee("GET", "/huddles/logan/segments/nobody").status_code == 404
    by_name = lee("POST", "/huddles/logan/segments/count", json={"filter": "@volunteers"})
    assert by_name.json == {"count": 1}
    sampled = lee("POST", "/huddles/logan/segments/sample", json={"filter": "@volunteers"})
    assert [p["id"] for p in sampled.json["data"]] == [logan_members["ann"]]
    unknown = lee("POST", "/huddles/logan/segments/count", json={"filter": "@hosts"})
    assert unknown.status_code == 422
    assert unknown.json["error"]["details"] == {"field": "filter"}


def test_a_name_already_used_is_refused(api_as: Api) -> None:
    lee = api_as("lee")
    assert (
        lee(
            "POST", "/huddles/logan/segments", json={"name": "hosts", "filter": "tag:host"}
        ).status_code
        == 201
    )
    again = lee("POST", "/huddles/logan/segments", json={"name": "hosts", "filter": "tag:donor"})
    assert again.status_code == 422
    assert again.json["error"]["code"] == "invalid"
    assert again.json["error"]["details"] == {"field": "name"}
    assert [s["filter"] for s in lee("GET", "/huddles/logan/segments").json["data"]] == ["tag:host"]


@pytest.mark.parametrize(
    ("filter_text", "culprit"),
    [
        ("tag:volunteer zipp:021*", "zipp"),
        ("tag:host or (tag:donor", "("),
        ("tag:host huddle:moab", "huddle"),
    ],
    ids=["unknown-term", "unclosed", "other-huddle"],
)
def test_a_filter_error_says_where(api_as: Api, filter_text: str, culprit: str) -> None:
    lee = api_as("lee")
    for path, body in (
        ("/huddles/logan/segments/count", {"filter": filter_text}),
        ("/huddles/logan/segments/sample", {"filter": filter_text}),
        ("/huddles/logan/segments", {"name": "broken", "filter": filter_text}),
    ):
        response = lee("POST", path, json=body)
        assert response.status_code == 422, path
        error = response.json["error"]
        assert error["code"] == "invalid"
        assert error["details"] == {"field": "filter", "position": filter_text.index(culprit)}, path
        assert error["message"]
    assert lee("GET", "/huddles/logan/segments").json == {"data": []}  # nothing saved


def test_segments_are_for_organizers_of_the_huddle(api_as: Api, client) -> None:  # type: ignore[no-untyped-def]
    api_as("lee")("POST", "/huddles/logan/segments", json={"name": "hosts", "filter": "tag:host"})
    assert api_as("admin")("GET", "/huddles/logan/segments/hosts").status_code == 200
    for who in ("rae", "mo"):  # a responder of logan; the organizer of another huddle
        caller = api_as(who)
        for method, path, body in (
            ("GET", "/huddles/logan/segments", None),
            ("GET", "/huddles/logan/segments/hosts", None),
            ("POST", "/huddles/logan/segments", {"name": "mine", "filter": ""}),
            ("POST", "/huddles/logan/segments/count", {"filter": ""}),
            ("POST", "/huddles/logan/segments/sample", {"filter": ""}),
        ):
            response = caller(method, path, json=body)
            assert response.status_code == 404, (who, path)
            assert response.json["error"]["code"] == "not_found"
    assert api_as("mo")("GET", "/huddles/moab/segments").json == {"data": []}
    stranger = client.get("/api/v1/huddles/logan/segments")
    assert stranger.status_code == 401
    assert stranger.json["error"]["code"] == "unauthorized"
    assert [s["name"] for s in api_as("lee")("GET", "/huddles/logan/segments").json["data"]] == [
        "hosts"
    ]


def test_the_openapi_document_describes_segments(api_as: Api) -> None:
    spec = api_as("lee").client.get("/api/v1/openapi.json").json
    assert {"/api/v1/huddles/{slug}/segments", "/api/v1/huddles/{slug}/segments/count"} <= set(
        spec["paths"]
    )
    sampled = spec["components"]["schemas"]["SampledMember"]
    assert set(sampled["required"]) == {"id", "display_name", "zip"}
