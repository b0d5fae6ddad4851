"""Campaigns through the API: drafted, previewed, tested, launched once, paused, resumed,
cancelled and reported, as each role, with a real worker, Redis and database."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis
import time_machine
from rq import Queue
from sqlalchemy import func, select

from outreach.accounts import audit
from outreach.app.services import Services
from outreach.models import AuditEvent, Campaign, MemberField, OutboxMessage
from outreach.models import members as m
from outreach.people.huddles import get_huddle
from tests.members import active_member
from tests.web.api.conftest import Caller
from tests.workers.campaign_helpers import SENDER, add_members, outbox_counts, run_worker
from web.api.core import encode_cursor
from workers import jobs
from workers.queues import DEFAULT_QUEUE

# 15:00 UTC in January: 10:00 in Boston, inside everyone's sending hours.
MORNING = datetime(2027, 1, 12, 15, 0, tzinfo=UTC)
TEXT = {"segment": "tag:volunteer", "body": "Hi {{ first_name }}, canvass Saturday!", "rate": 500}
EMAIL = {
    "channel": "email",
    "subject": "News for {{ first_name }}",
    "body": "**Hello** {{ first_name }}, see you at {{ field.location }}.",
}

Api = Callable[[str], Caller]


@pytest.fixture
def test_env(test_env: dict[str, str]) -> dict[str, str]:
    """No public URL: send jobs then enqueue no sandbox receipts, which would POST to
    https://outreach.test, a name that never resolves: with a slow resolver, seconds each."""
    return {**test_env, "PUBLIC_BASE_URL": ""}


@pytest.fixture(autouse=True)
def clock() -> Iterator[time_machine.Coordinates]:
    with time_machine.travel(MORNING, tick=True) as traveller:
        yield traveller


@pytest.fixture
def audience(services: Services, tokens_by_user: dict[str, str]) -> None:
    """Logan can text (6 volunteers, 4 others) and email (Ann and Bo); moab has no one."""
    with services.sessions.begin() as session:
        logan = get_huddle(session, "logan")
        logan.sender_number = SENDER
        logan.email_from_address = "logan@example.org"
        logan.postal_address = "1 Main St, Boston MA 02128"
        add_members(session, logan, 6, tag="volunteer")
        add_members(session, logan, 4, start=100)
        for name, address in (("Ann", "ann@example.org"), ("Bo", "bo@example.org")):
            member = active_member(session, logan, email=address, channel=m.EMAIL, first_name=name)
            session.add(
                MemberField(huddle_id=logan.id, member_id=member.id, name="location", value="Hall")
            )


def _create(lee: Caller, **body: Any) -> dict[str, Any]:
    made = lee("POST", "/huddles/logan/campaigns", json={**TEXT, **body})
    assert made.status_code == 201, made.json
    return dict(made.json)


def _launch_jobs(services: Services) -> list[str]:
    ids = Queue(DEFAULT_QUEUE, connection=services.redis).get_job_ids()
    return [i for i in ids if i.startswith(jobs.LAUNCH_JOB_PREFIX)]


def _count(services: Services, model: type[Any]) -> int:
    with services.sessions() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def test_create_preview_launch_and_report_end_to_end(
    api_as: Api, services: Services, audience: None
) -> None:
    lee = api_as("lee")
    made = _create(lee, name="Saturday canvass", window="09:00-20:00")
    assert {k: made[k] for k in ("name", "channel", "state", "segment", "window", "rate")} == {
        "name": "Saturday canvass",
        "channel": "sms",
        "state": "draft",
        "segment": "tag:volunteer",
        "window": "09:00-20:00",
        "rate": 500.0,
    }
    assert made["created_by"] == "lee@example.org"
    assert made["audience_size"] == 0
    assert made["launched_at"] is None
    path = f"/huddles/logan/campaigns/{made['id']}"
    assert lee("GET", path).json == made
    listed = lee("GET", "/huddles/logan/campaigns").json
    assert [c["id"] for c in listed["data"]] == [made["id"]]
    assert listed["next_cursor"] is None

    shown = lee("GET", f"{path}/preview")
    assert shown.status_code == 200, shown.json
    assert shown.json["audience"] == 6
    samples = shown.json["samples"]
    assert len(samples) == 3
    assert samples[0]["text"] == "Hi Member0, canvass Saturday!\nReply STOP to opt out"
    assert {(s["encoding"], s["segments"], s["subject"]) for s in samples} == {("GSM-7", 1, None)}
    assert all(s["member_id"] is not None and s["warnings"] == [] for s in samples)

    launched = lee("POST", f"{path}/launch")
    assert launched.status_code == 202, launched.json
    assert launched.json["state"] == "sending"
    assert launched.json["launched_at"] is not None
    assert len(_launch_jobs(services)) == 1
    run_worker(services)

    report = lee("GET", f"{path}/status")
    assert report.status_code == 200
    assert report.json["state"] == "completed"
    assert report.json["by_state"] == {"sent": 6}
    assert (report.json["audience"], report.json["done"]) == (6, 6)
    assert report.json["last_progress_at"] is not None
    assert len(outbox_counts(services)) == 6
    assert lee("GET", path).json["audience_size"] == 6
    with services.sessions() as session:
        logged = session.execute(
            select(AuditEvent.action, AuditEvent.actor_email, AuditEvent.subject).where(
                AuditEvent.action.like("campaign%")
            )
        ).all()
    assert sorted(tuple(row) for row in logged) == [
        (audit.CAMPAIGN_CREATED, "lee@example.org", f"campaign {made['id']}"),
        (audit.CAMPAIGN_LAUNCHED, "lee@example.org", f"campaign {made['id']}"),
    ]


def test_a_retried_create_with_its_key_drafts_one_campaign(
    api_as: Api, services: Services, audience: None
) -> None:
    lee = api_as("lee")
    headers = {"Idempotency-Key": "draft-1"}
    first = lee("POST", "/huddles/logan/campaigns", json=TEXT, headers=headers)
    again = lee("POST", "/huddles/logan/campaigns", json=TEXT, headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.json == first.json
    assert again.headers["Idempotent-Replayed"] == "true"
    other = lee("POST", "/huddles/logan/campaigns", json={**TEXT, "body": "Other"}, headers=headers)
    assert other.status_code == 422
    assert other.json["error"]["code"] == "idempotency_key_reused"
    assert _count(services, Campaign) == 1


def test_a_campaign_is_launched_once_whatever_is_retried(
    api_as: Api, services: Services, audience: None
) -> None:
    lee = api_as("lee")
    path = f"/huddles/logan/campaigns/{_create(lee)['id']}/launch"
    first = lee("POST", path, headers={"Idempotency-Key": "go"})
    replay = lee("POST", path, headers={"Idempotency-Key": "go"})
    assert first.status_code == replay.status_code == 202
    assert replay.json == first.json
    assert replay.headers["Idempotent-Replayed"] == "true"
    second = lee("POST", path)
    assert second.status_code == 409
    assert second.json["error"]["code"] == "conflict"
    assert second.json["error"]["details"] == {"state": "sending"}
    assert len(_launch_jobs(services)) == 1
    run_worker(services)
    assert lee("POST", path).status_code == 409  # completed
    assert sorted(outbox_counts(services).values()) == [1] * 6


def test_the_launch_job_is_enqueued_only_after_the_commit(
    api_as: Api, services: Services, audience: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[str] = []

    def enqueue(campaign_id: int) -> None:
        with services.sessions() as session:  # another connection: only what is committed
            seen.append(session.get_one(Campaign, campaign_id).state)

    monkeypatch.setattr(jobs, "enqueue_launch", enqueue)
    lee = api_as("lee")
    made = _create(lee)
    assert lee("POST", f"/huddles/logan/campaigns/{made['id']}/launch").status_code == 202
    assert seen == ["sending"]
    refused = lee("POST", f"/huddles/logan/campaigns/{made['id']}/launch")
    assert refused.status_code == 409
    assert seen == ["sending"]  # a refused launch enqueues nothing


def test_redis_away_at_launch_the_launch_stands_and_the_sweep_finishes_it(
    api_as: Api,
    services: Services,
    audience: None,
    monkeypatch: pytest.MonkeyPatch,
    clock: time_machine.Coordinates,
) -> None:
    def refuse(campaign_id: int) -> None:
        raise redis.ConnectionError("Redis is away")

    monkeypatch.setattr(jobs, "enqueue_launch", refuse)
    lee = api_as("lee")
    made = _create(lee)
    launched = lee("POST", f"/huddles/logan/campaigns/{made['id']}/launch")
    assert launched.status_code == 202
    assert launched.json["state"] == "sending"
    monkeypatch.undo()
    clock.shift(timedelta(seconds=11))
    assert jobs.sweep()["launched"] == 1
    run_worker(services)
    assert lee("GET", f"/huddles/logan/campaigns/{made['id']}/status").json["by_state"] == {
        "sent": 6
    }


def test_a_campaign_with_a_send_time_ahead_is_scheduled(
    api_as: Api, services: Services, audience: None
) -> None:
    lee = api_as("lee")
    made = _create(lee, send_at="2027-01-13T10:00:00-05:00")
    assert made["send_at"] == "2027-01-13T15:00:00+00:00"
    path = f"/huddles/logan/campaigns/{made['id']}/launch"
    launched = lee("POST", path)
    assert launched.status_code == 202
    assert launched.json["state"] == "scheduled"
    assert _launch_jobs(services) == []  # the sweep launches it when it is due
    assert lee("POST", path).status_code == 409


def test_pause_resume_and_cancel(api_as: Api, services: Services, audience: None) -> None:
    lee = api_as("lee")
    path = f"/huddles/logan/campaigns/{_create(lee, segment='')['id']}"
    refused = lee("POST", f"{path}/resume")
    assert refused.status_code == 409  # a draft does not "resume" into sending, unlaunched
    assert refused.json["error"]["details"] == {"state": "draft"}
    assert lee("POST", f"{path}/pause").status_code == 409
    assert lee("POST", f"{path}/launch").status_code == 202
    paused = lee("POST", f"{path}/pause")
    assert paused.status_code == 200
    assert paused.json["state"] == "paused"
    run_worker(services)
    assert _count(services, OutboxMessage) == 0
    resumed = lee("POST", f"{path}/resume")
    assert resumed.status_code == 200
    assert resumed.json["state"] == "sending"
    run_worker(services)
    assert len(outbox_counts(services)) == 10
    assert lee("GET", f"{path}/status").json["state"] == "completed"
    late = lee("POST", f"{path}/cancel")
    assert late.status_code == 409
    assert late.json["error"]["details"] == {"state": "completed"}

    other = f"/huddles/logan/campaigns/{_create(lee)['id']}"
    cancelled = lee("POST", f"{other}/cancel")
    assert cancelled.status_code == 200
    assert cancelled.json["state"] == "cancelled"
    assert cancelled.json["finished_at"] is not None
    assert lee("POST", f"{other}/launch").status_code == 409


def test_test_sends_go_to_one_address_only(api_as: Api, services: Services, audience: None) -> None:
    lee = api_as("lee")
    path = f"/huddles/logan/campaigns/{_create(lee)['id']}/test"
    sent = lee("POST", path, json={"to": "(617) 555-0177"})
    assert sent.status_code == 200, sent.json
    assert sent.json["to"] == "+16175550177"
    assert sent.json["provider_message_id"].startswith("SM")
    member = lee("POST", path, json={"to": "+16172000003"})
    assert member.json["text"] == "[TEST] Hi Member3, canvass Saturday!\nReply STOP to opt out"
    bad = lee("POST", path, json={"to": "12"})
    assert bad.status_code == 422
    assert bad.json["error"]["details"] == {"field": "to"}
    refused = lee("POST", path, json={"to": "+16175550101"})  # the sandbox's opted-out number
    assert refused.status_code == 502
    assert refused.json["error"]["code"] == "provider_error"
    assert refused.json["error"]["details"] == {"provider_code": "21610"}
    maybe = lee("POST", path, json={"to": "+16175550104"})  # stored, then a 500: maybe sent
    assert maybe.status_code == 502
    assert maybe.json["error"]["code"] == "provider_uncertain"
    email = f"/huddles/logan/campaigns/{_create(lee, **EMAIL)['id']}/test"
    mailed = lee("POST", email, json={"to": "Ann@Example.org"})
    assert mailed.status_code == 200, mailed.json
    assert mailed.json["subject"] == "[TEST] News for Ann"
    with services.sessions() as session:
        rows = session.execute(
            select(OutboxMessage.channel, OutboxMessage.to_address, OutboxMessage.kind).order_by(
                OutboxMessage.id
            )
        ).all()
    assert [tuple(r) for r in rows] == [
        ("sms", "+16175550177", "test"),
        ("sms", "+16172000003", "test"),
        ("sms", "+16175550104", "test"),
        ("email", "ann@example.org", "test"),
    ]
    with services.sessions() as session:
        first = session.scalars(select(OutboxMessage.body).order_by(OutboxMessage.id)).first()
    assert first == "[TEST] Hi Maria, canvass Saturday!\nReply STOP to opt out"


def test_an_email_campaign_previews_its_subject_and_both_parts(api_as: Api, audience: None) -> None:
    lee = api_as("lee")
    made = _create(lee, segment="", **EMAIL)
    shown = lee("GET", f"/huddles/logan/campaigns/{made['id']}/preview")
    assert shown.status_code == 200, shown.json
    assert shown.json["audience"] == 2
    ann = shown.json["samples"][0]
    assert ann["subject"] == "News for Ann"
    assert "<strong>Hello</strong> Ann, see you at Hall." in ann["html"]
    assert "Hello Ann, see you at Hall." in ann["text"]
    assert "1 Main St, Boston MA 02128" in ann["text"]
    assert (ann["encoding"], ann["segments"], ann["warnings"]) == (None, None, [])
    assert [s["subject"] for s in shown.json["samples"]] == ["News for Ann", "News for Bo"]


def test_drafting_errors_are_422_in_the_error_shape(
    api_as: Api, services: Services, audience: None
) -> None:
    lee = api_as("lee")
    bad = lee("POST", "/huddles/logan/campaigns", json={**TEXT, "segment": "tag:volunteer or"})
    assert bad.status_code == 422
    assert set(bad.json) == {"error"}
    assert set(bad.json["error"]) == {"code", "message", "details"}
    assert bad.json["error"]["code"] == "invalid"
    assert bad.json["error"]["message"].startswith("segment: ")
    assert bad.json["error"]["details"] == {"field": "segment"}
    typo = lee("POST", "/huddles/logan/campaigns", json={**TEXT, "body": "Hi {{ nmae }}"})
    assert typo.status_code == 422
    assert "nmae" in typo.json["error"]["message"]
    for field, value in (("window", "9-17"), ("send_at", "2027-01-13T10:00:00"), ("rate", 0)):
        refused = lee("POST", "/huddles/logan/campaigns", json={**TEXT, field: value})
        assert refused.status_code == 422, field
        assert list(refused.json["error"]["details"]["json"]) == [field]
    no_subject = lee("POST", "/huddles/logan/campaigns", json={**EMAIL, "subject": None})
    assert no_subject.status_code == 422
    assert "subject" in no_subject.json["error"]["message"]
    assert _count(services, Campaign) == 0


def test_campaigns_are_paged_by_id(api_as: Api, audience: None) -> None:
    lee = api_as("lee")
    ids = [_create(lee, name=f"c{i}")["id"] for i in range(3)]
    first = lee("GET", "/huddles/logan/campaigns?limit=2").json
    assert [c["id"] for c in first["data"]] == ids[:2]
    rest = lee("GET", f"/huddles/logan/campaigns?limit=2&cursor={first['next_cursor']}").json
    assert [c["id"] for c in rest["data"]] == ids[2:]
    assert rest["next_cursor"] is None
    beyond = lee("GET", f"/huddles/logan/campaigns?cursor={encode_cursor(10**17)}")
    assert beyond.json == {"data": [], "next_cursor": None}  # past any id PostgreSQL can hold


def test_an_id_too_large_for_the_database_is_not_found(api_as: Api, audience: None) -> None:
    lee = api_as("lee")
    for suffix in ("", "/status", "/launch"):
        verb = "POST" if suffix == "/launch" else "GET"
        response = lee(verb, f"/huddles/logan/campaigns/{2**31}{suffix}")
        assert response.status_code == 404, suffix
        assert response.json["error"]["code"] == "not_found"


def test_other_huddles_and_responders_find_no_campaign(
    api_as: Api, services: Services, audience: None
) -> None:
    lee = api_as("lee")
    made = _create(lee)
    base = f"/huddles/logan/campaigns/{made['id']}"
    calls = [
        ("GET", "/huddles/logan/campaigns"),
        ("POST", "/huddles/logan/campaigns"),
        ("GET", base),
        ("GET", f"{base}/preview"),
        ("POST", f"{base}/test"),
        ("POST", f"{base}/launch"),
        ("POST", f"{base}/pause"),
        ("POST", f"{base}/resume"),
        ("POST", f"{base}/cancel"),
        ("GET", f"{base}/status"),
    ]
    bodies = {"/campaigns": TEXT, "/test": {"to": "+16175550177"}}
    moab = [(verb, path.replace("/logan/", "/moab/")) for verb, path in calls[2:]]
    for name in ("mo", "rae"):
        caller = api_as(name)
        for verb, path in calls + (moab if name == "mo" else []):
            valid = next((b for end, b in bodies.items() if path.endswith(end)), None)
            # Another huddle is not found before the body is read; in mo's own huddle a body
            # is checked first, for a campaign that exists or not alike.
            bodies_tried = (valid,) if "/moab/" in path else (valid, {"nonsense": True})
            for body in bodies_tried:
                response = caller(verb, path, json=body)
                assert response.status_code == 404, (name, verb, path, body)
                assert response.json["error"]["code"] == "not_found"
    for verb, path in calls:
        response = lee.client.open(f"/api/v1{path}", method=verb)
        assert response.status_code == 401, (verb, path)
        assert response.json["error"]["code"] == "unauthorized"
    assert lee("GET", base).json == made  # nothing of it changed
    assert _count(services, Campaign) == 1
    assert _count(services, OutboxMessage) == 0


def test_an_admin_reaches_every_huddles_campaigns(api_as: Api, audience: None) -> None:
    made = _create(api_as("lee"))
    boss = api_as("admin")
    assert boss("GET", f"/huddles/logan/campaigns/{made['id']}").json["id"] == made["id"]
    assert boss("GET", f"/huddles/moab/campaigns/{made['id']}").status_code == 404


def test_the_openapi_document_describes_the_campaign_endpoints(api_as: Api) -> None:
    spec = api_as("lee").client.get("/api/v1/openapi.json").json
    paths = spec["paths"]
    assert "/api/v1/huddles/{slug}/campaigns" in paths
    for suffix in ("", "/preview", "/test", "/launch", "/pause", "/resume", "/cancel", "/status"):
        assert f"/api/v1/huddles/{{slug}}/campaigns/{{campaign_id}}{suffix}" in paths
    campaign = spec["components"]["schemas"]["Campaign"]
    assert campaign["properties"]["window"]["type"] == ["string", "null"]
    assert "audience_size" in campaign["required"]
