"""Members through the API: as each role, with the huddle's scoping, and errors in one shape."""

from __future__ import annotations

from collections.abc import Callable

from rq import SimpleWorker
from sqlalchemy import func, select

from outreach.accounts import audit, users
from outreach.app.services import Services
from outreach.models import ConsentEvent, Member
from tests.web.api.conftest import Caller
from workers import jobs


def test_an_organizer_adds_lists_and_reads_members_of_their_huddle(
    api_as: Callable[[str], Caller],
) -> None:
    lee = api_as("lee")
    made = lee(
        "POST",
        "/huddles/logan/members",
        json={"phone": "617-555-0101", "first_name": "Ann", "consent": ["sms"]},
    )
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
    for path in (
        "/huddles/logan/members",
        f"/huddles/logan/members/{made.json['id']}",
        f"/huddles/moab/members/{made.json['id']}",
    ):
        response = mo("GET", path)
        assert response.status_code == 404, path
        assert response.json["error"]["code"] == "not_found"


def test_the_openapi_document_is_public_and_describes_the_endpoints(
    api_as: Callable[[str], Caller],
) -> None:
    response = api_as("lee").client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    spec = response.json
    assert spec["openapi"] == "3.1.0"
    assert "/api/v1/huddles/{slug}/members" in spec["paths"]


def test_search_finds_by_phone_email_and_name_prefix_and_pages_with_a_cursor(
    api_as: Callable[[str], Caller],
) -> None:
    lee = api_as("lee")
    for n, name in enumerate(["Ann", "Andy", "Bea", "Anouk", "Cy"]):
        made = lee(
            "POST",
            "/huddles/logan/members",
            json={"phone": f"617555010{n}", "email": f"p{n}@example.org", "first_name": name},
        )
        assert made.status_code == 201
    by_name = lee("GET", "/huddles/logan/members?q=an&limit=2")
    assert [m["first_name"] for m in by_name.json["data"]] == ["Ann", "Andy"]
    more = lee("GET", f"/huddles/logan/members?q=an&limit=2&cursor={by_name.json['next_cursor']}")
    assert [m["first_name"] for m in more.json["data"]] == ["Anouk"]
    assert more.json["next_cursor"] is None
    assert [
        m["first_name"] for m in lee("GET", "/huddles/logan/members?q=(617) 555-0102").json["data"]
    ] == ["Bea"]
    assert [
        m["first_name"] for m in lee("GET", "/huddles/logan/members?q=P4@Example.org").json["data"]
    ] == ["Cy"]
    assert lee("GET", "/huddles/logan/members?q=100%25").json["data"] == []
    bad = lee("GET", "/huddles/logan/members?cursor=not-ours")
    assert bad.status_code == 400
    assert bad.json["error"]["code"] == "bad_cursor"


def test_adding_a_known_person_fills_blanks_and_never_resubscribes_an_opt_out(
    api_as: Callable[[str], Caller],
) -> None:
    lee = api_as("lee")
    first = lee("POST", "/huddles/logan/members", json={"phone": "6175550101", "consent": ["sms"]})
    member_id = first.json["id"]
    stopped = lee("POST", f"/huddles/logan/members/{member_id}/opt-out", json={"channel": "sms"})
    assert stopped.json["consent"]["sms"] == "opted_out"
    again = lee(
        "POST",
        "/huddles/logan/members",
        json={
            "phone": "+1 617 555 0101",
            "email": "ann@example.org",
            "first_name": "Ann",
            "consent": ["sms", "email"],
        },
    )
    assert again.status_code == 200
    assert again.json["id"] == member_id
    assert again.json["email"] == "ann@example.org"
    assert again.json["consent"] == {"sms": "opted_out", "email": "active"}
    history = lee("GET", f"/huddles/logan/members/{member_id}/consent").json["data"]
    assert [(e["channel"], e["action"], e["source"]) for e in history] == [
        ("sms", "opt_in", "api"),
        ("sms", "opt_out", "organizer"),
        ("email", "opt_in", "api"),
    ]
    assert history[1]["actor"] == "lee@example.org"


def test_an_opt_out_on_behalf_is_in_the_audit_log(
    api_as: Callable[[str], Caller], services: Services
) -> None:
    lee = api_as("lee")
    member_id = lee(
        "POST", "/huddles/logan/members", json={"phone": "6175550101", "consent": ["sms"]}
    ).json["id"]
    lee("POST", f"/huddles/logan/members/{member_id}/opt-out", json={"channel": "sms"})
    with services.read_sessions() as session:
        event = audit.recent(session, limit=1)[0]
    assert (event.action, event.actor_email, event.subject) == (
        audit.OPTED_OUT_FOR_MEMBER,
        "lee@example.org",
        f"member {member_id}",
    )


def test_patch_changes_names_tags_and_fields_and_refuses_changing_a_phone(
    api_as: Callable[[str], Caller],
) -> None:
    lee = api_as("lee")
    member_id = lee("POST", "/huddles/logan/members", json={"phone": "6175550101"}).json["id"]
    changed = lee(
        "PATCH",
        f"/huddles/logan/members/{member_id}",
        json={
            "first_name": "  Ann  Lee ",
            "zip": "84321-1234",
            "tags": ["Volunteer", "driver"],
            "fields": {"language": "es"},
        },
    )
    assert changed.status_code == 200, changed.json
    assert (changed.json["first_name"], changed.json["zip"]) == ("Ann Lee", "84321")
    assert changed.json["tags"] == ["driver", "volunteer"]
    assert changed.json["fields"] == {"language": "es"}
    removed = lee(
        "PATCH", f"/huddles/logan/members/{member_id}", json={"fields": {"language": None}}
    )
    assert removed.json["fields"] == {}
    refused = lee("PATCH", f"/huddles/logan/members/{member_id}", json={"phone": "6175550199"})
    assert refused.status_code == 422
    assert refused.json["error"]["details"] == {"field": "phone"}
    assert lee("GET", f"/huddles/logan/members/{member_id}").json["phone"] == "+16175550101"


def test_bad_input_gets_one_error_shape_and_changes_nothing(
    api_as: Callable[[str], Caller], services: Services
) -> None:
    lee = api_as("lee")
    cases = [
        ({"phone": "12"}, 422, "invalid"),
        ({"email": "not an email"}, 422, "invalid"),
        ({}, 422, "invalid"),
        ({"phone": 6175550101}, 422, "invalid"),  # webargs: not a string
        ({"phone": "6175550101", "consent": ["fax"]}, 422, "invalid"),
        ({"phone": "6175550101", "first_name": "x" * 101}, 422, "invalid"),
        ({"phone": "6175550101", "fields": {"Bad Name": "x"}}, 422, "invalid"),
    ]
    for body, status, code in cases:
        response = lee("POST", "/huddles/logan/members", json=body)
        assert response.status_code == status, (body, response.json)
        assert set(response.json) == {"error"}
        assert response.json["error"]["code"] == code
        assert set(response.json["error"]) == {"code", "message", "details"}
    with services.read_sessions() as session:
        assert session.scalar(select(func.count(Member.id))) == 0
    not_json = lee("POST", "/huddles/logan/members", data="phone=1", content_type="text/plain")
    assert not_json.status_code == 422
    unknown = lee("GET", "/no-such-thing")
    assert (unknown.status_code, unknown.json["error"]["code"]) == (404, "not_found")
    wrong_method = lee("DELETE", "/huddles")
    assert (wrong_method.status_code, wrong_method.json["error"]["code"]) == (
        405,
        "method_not_allowed",
    )


def test_without_a_valid_token_every_endpoint_is_401(
    api_as: Callable[[str], Caller], services: Services
) -> None:
    client = api_as("lee").client
    for headers in ({}, {"Authorization": "Bearer hot_nope"}, {"Authorization": "Basic eDp5"}):
        response = client.get("/api/v1/huddles/logan/members", headers=headers)
        assert response.status_code == 401
        assert response.json["error"]["code"] == "unauthorized"
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
    with services.sessions.begin() as session:
        users.disable(session, email="lee@example.org")
    assert api_as("lee")("GET", "/huddles").status_code == 401


def test_a_retried_create_with_an_idempotency_key_makes_one_member(
    api_as: Callable[[str], Caller], services: Services
) -> None:
    lee = api_as("lee")
    body = {"phone": "6175550101", "consent": ["sms"]}
    first = lee("POST", "/huddles/logan/members", json=body, headers={"Idempotency-Key": "k-1"})
    again = lee("POST", "/huddles/logan/members", json=body, headers={"Idempotency-Key": "k-1"})
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json == first.json
    assert again.headers["Idempotent-Replayed"] == "true"
    other = lee(
        "POST",
        "/huddles/logan/members",
        json={"phone": "6175550102"},
        headers={"Idempotency-Key": "k-1"},
    )
    assert (other.status_code, other.json["error"]["code"]) == (422, "idempotency_key_reused")
    # Keys are per user: another user's same key is another request.
    admin = api_as("admin")(
        "POST",
        "/huddles/logan/members",
        json={"phone": "6175550103"},
        headers={"Idempotency-Key": "k-1"},
    )
    assert admin.status_code == 201
    with services.read_sessions() as session:
        assert session.scalar(select(func.count(Member.id))) == 2
        assert session.scalar(select(func.count(ConsentEvent.id))) == 1
    failed = lee(
        "POST", "/huddles/logan/members", json={"phone": "12"}, headers={"Idempotency-Key": "k-2"}
    )
    assert failed.status_code == 422
    fixed = lee(
        "POST",
        "/huddles/logan/members",
        json={"phone": "6175550104"},
        headers={"Idempotency-Key": "k-2"},
    )
    assert fixed.status_code == 201  # a refused request is not remembered: fix it and retry


def test_an_import_runs_as_a_job_and_reports_its_row_errors(
    api_as: Callable[[str], Caller], services: Services
) -> None:
    lee = api_as("lee")
    csv_text = "phone,first_name\n6175550101,Ann\nnot a phone,Bo\n6175550103,Cy\n"
    started = lee(
        "POST",
        "/huddles/logan/imports?consent=sms&filename=list.csv",
        data=csv_text,
        content_type="text/csv",
    )
    assert started.status_code == 202, started.json
    assert started.json["state"] == "queued"
    SimpleWorker([jobs.IMPORT_QUEUE], connection=services.redis).work(burst=True)
    done = lee("GET", f"/huddles/logan/imports/{started.json['id']}").json
    assert (done["state"], done["imported"], done["error_count"]) == ("done", 2, 1)
    errors = lee("GET", f"/huddles/logan/imports/{started.json['id']}/errors").json
    assert [e["line"] for e in errors["data"]] == [3]
    assert api_as("mo")("GET", f"/huddles/logan/imports/{started.json['id']}").status_code == 404
    assert api_as("mo")("GET", f"/huddles/moab/imports/{started.json['id']}").status_code == 404
    refused = lee("POST", "/huddles/logan/imports", data="name\nx\n", content_type="text/csv")
    assert (refused.status_code, refused.json["error"]["code"]) == (422, "invalid_file")


def test_the_export_lists_everyone_held_with_their_consent_state(
    api_as: Callable[[str], Caller], services: Services
) -> None:
    lee = api_as("lee")
    lee(
        "POST",
        "/huddles/logan/members",
        json={"phone": "6175550101", "first_name": "=cmd", "consent": ["sms"]},
    )
    lee("POST", "/huddles/logan/members", json={"email": "b@example.org"})
    response = lee("GET", "/huddles/logan/members/export")
    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    lines = response.get_data(as_text=True).splitlines()
    assert lines[1:] == ["+16175550101,,'=cmd,,,,active,none", ",b@example.org,,,,,none,none"]
    with services.read_sessions() as session:
        assert audit.recent(session, limit=1)[0].action == audit.MEMBERS_EXPORTED
    assert api_as("rae")("GET", "/huddles/logan/members/export").status_code == 404


def test_an_import_larger_than_any_other_request_is_taken(api_as: Callable[[str], Caller]) -> None:
    rows = "".join(f"61755{n:05d},Member {n}\n" for n in range(160_000))
    body = "phone,first_name\n" + rows
    assert len(body) > 3 * 1024 * 1024  # more than the 2 MiB any other request may carry
    started = api_as("lee")("POST", "/huddles/logan/imports", data=body, content_type="text/csv")
    assert started.status_code == 202, started.json
    assert started.json["state"] == "queued"
