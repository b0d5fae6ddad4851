"""Twilio webhooks that arrive while the database is away: spooled to Redis, applied later.

The databases here are real and really unreachable (a SQLite file that cannot be opened, a
PostgreSQL port nobody listens on) or really without our tables; Redis is the tests' own.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from click.testing import CliRunner
from flask.testing import FlaskClient
from sqlalchemy import Engine, create_engine, func, select

from cli.main import main
from outreach import consent
from outreach.app.db import make_session_factory
from outreach.app.services import Services
from outreach.models import (
    ConsentEvent,
    Delivery,
    InboundMessage,
    OutboxMessage,
    Subscription,
)
from outreach.providers.sandbox.sms import SandboxSmsTransport
from outreach.sms import spool
from outreach.sms.inbound import InboundSms
from tests.webhooks.conftest import DELIVERY_SID, LOGAN_NUMBER, MARIA
from tests.webhooks.twilio_helpers import Phone, new_sid, signed_post
from web import create_app
from workers import jobs


def _unreachable_engine(services: Services, tmp_path: Path) -> Engine:
    if services.engine.dialect.name == "postgresql":
        url = services.engine.url.set(port=1)  # nobody listens there: connection refused
        return create_engine(url, pool_pre_ping=True)
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    return create_engine(f"sqlite:///{blocker / 'outreach.db'}")  # cannot be opened


@pytest.fixture
def down(services: Services, tmp_path: Path) -> Iterator[Services]:
    """The same settings and Redis, with a database that cannot be reached."""
    engine = _unreachable_engine(services, tmp_path)
    broken = Services(services.settings, engine, make_session_factory(engine), services.redis)
    yield broken
    engine.dispose()


@pytest.fixture
def phone_while_down(down: Services, logan: None) -> Phone:
    return Phone(create_app(down.settings, down).test_client(), MARIA, LOGAN_NUMBER)


def spooled(services: Services, key: str = spool.SPOOL) -> list[dict[str, object]]:
    return [json.loads(raw) for raw in services.redis.lrange(key, 0, -1)]


def replay(services: Services) -> spool.Replayed:
    transport = SandboxSmsTransport(services.settings, services.sessions)
    replayer = spool.Replayer(services.engine, transport)
    return spool.replay(services.redis, replayer)


def outbox(services: Services) -> list[tuple[str, str | None, str]]:
    with services.sessions() as session:
        rows = session.execute(
            select(OutboxMessage.to_address, OutboxMessage.from_address, OutboxMessage.body)
        )
        return [tuple(row) for row in rows]  # type: ignore[misc]


def test_a_text_the_database_did_not_take_is_spooled_then_applied_and_answered(
    phone_while_down: Phone, services: Services, caplog: pytest.LogCaptureFixture
) -> None:
    sid = new_sid()
    with caplog.at_level(logging.WARNING):
        response = phone_while_down.send("JOIN LOGAN", sid=sid)
    assert response.status_code == 500  # not committed: the answer does not pretend it was
    assert f"twilio text {sid} spooled for later" in caplog.text
    assert MARIA not in caplog.text
    (entry,) = spooled(services)
    assert entry["request"]["message_sid"] == sid  # type: ignore[index]
    assert entry["request"]["body"] == "JOIN LOGAN"  # type: ignore[index]

    result = jobs.replay_twilio_spool()  # the worker's job, back to the database

    assert (result["applied"], result["answered"], result["waiting"]) == (1, 1, 0)
    with services.sessions() as session:
        row = session.scalars(select(InboundMessage)).one()
        assert (row.message_sid, row.intent) == (sid, "join")
        assert session.scalars(select(Subscription.state)).one() == "pending"
        assert session.scalars(select(ConsentEvent.action)).all() == ["opt_in_requested"]
    ((to, sender, body),) = outbox(services)
    assert (to, sender) == (MARIA, LOGAN_NUMBER)
    assert "Reply YES to confirm" in body
    assert services.redis.llen(spool.SPOOL) == 0
    assert services.redis.llen(spool.REPLAYING) == 0


def test_a_picture_spooled_in_an_outage_keeps_its_media_through_the_replay(
    phone: Phone, phone_while_down: Phone, services: Services
) -> None:
    phone.text("JOIN LOGAN")
    phone.text("YES")
    media = [
        ("https://api.twilio.com/media/ME01", "image/jpeg"),
        ("https://api.twilio.com/media/ME02", "video/mp4"),
    ]
    assert phone_while_down.send("", media=media).status_code == 500
    assert phone_while_down.send("STOP", media=media[:1]).status_code == 500
    (picture, stop) = spooled(services)
    assert picture["request"]["media"] == [  # type: ignore[index]
        {"url": url, "content_type": content_type} for url, content_type in media
    ]

    outcome = replay(services)

    assert (outcome.applied, outcome.answered, outcome.waiting, outcome.dead) == (2, 1, 0, 0)
    with services.sessions() as session:
        rows = session.scalars(select(InboundMessage).order_by(InboundMessage.id)).all()
        assert [(row.body, row.intent) for row in rows[2:]] == [("", "other"), ("STOP", "opt_out")]
        assert rows[2].media == picture["request"]["media"]  # type: ignore[index]
        assert rows[3].media == stop["request"]["media"]  # type: ignore[index]
        assert session.scalars(select(Subscription.state)).one() == "opted_out"


def test_a_text_spooled_before_media_were_kept_still_replays(
    services: Services, logan: None
) -> None:
    """An entry written by the version before MMS has no ``media``: a text without any."""
    request = {
        "message_sid": new_sid(),
        "from_raw": MARIA,
        "to": LOGAN_NUMBER,
        "body": "JOIN LOGAN",
        "messaging_service_sid": None,
        "opt_out_type": None,
    }
    entry = {"kind": "text", "request": request, "spooled_at": "2026-11-28T10:00:00+00:00"}
    services.redis.rpush(spool.SPOOL, json.dumps(entry))
    outcome = replay(services)
    assert (outcome.applied, outcome.answered, outcome.dead) == (1, 1, 0)
    with services.sessions() as session:
        row = session.scalars(select(InboundMessage)).one()
        assert (row.message_sid, row.intent, row.media) == (request["message_sid"], "join", None)


def test_a_stop_spooled_in_an_outage_waits_for_the_database_however_long(
    phone: Phone, phone_while_down: Phone, down: Services, services: Services
) -> None:
    phone.text("JOIN LOGAN")
    phone.text("YES")
    assert phone_while_down.send("STOP").status_code == 500
    assert phone_while_down.send("hello?").status_code == 500
    for _ in range(spool.MAX_ATTEMPTS + 2):  # the database is still away
        outcome = replay(down)
        assert (outcome.applied, outcome.waiting, outcome.dead) == (0, 2, 0)
    assert [e["attempts"] for e in spooled(services)] == [0, 0]  # an outage is not a failure
    assert [e["request"]["body"] for e in spooled(services)] == ["STOP", "hello?"]  # type: ignore[index]

    outcome = replay(services)  # it is back

    assert (outcome.applied, outcome.answered, outcome.waiting) == (2, 1, 0)
    with services.sessions() as session:
        assert session.scalars(select(Subscription.state)).one() == "opted_out"
        assert session.scalars(select(ConsentEvent.action)).all()[-1] == "opt_out"
    ((to, _sender, body),) = outbox(services)  # the STOP's one confirmation; none for "hello?"
    assert to == MARIA
    assert "Logan Huddle" in body


def test_a_text_applied_meanwhile_is_not_applied_or_answered_twice(
    phone: Phone, phone_while_down: Phone, services: Services
) -> None:
    """Twilio retried it (a Fallback URL, a retry policy on the webhook URL) and it went in."""
    sid = new_sid()
    assert phone_while_down.send("HELP", sid=sid).status_code == 500
    assert phone.send("HELP", sid=sid).status_code == 200
    outcome = replay(services)
    assert (outcome.applied, outcome.unchanged, outcome.answered) == (0, 1, 0)
    assert outbox(services) == []
    with services.sessions() as session:
        assert session.scalar(select(func.count(InboundMessage.id))) == 1


def test_a_text_that_keeps_failing_is_set_aside_and_the_rest_go_on(
    services: Services, logan: None, caplog: pytest.LogCaptureFixture
) -> None:
    """Not the database's absence, so not waited for forever: kept for an operator."""
    good = InboundSms(new_sid(), MARIA, LOGAN_NUMBER, "JOIN LOGAN")
    poison = {"message_sid": None, "from_raw": MARIA, "to": LOGAN_NUMBER, "body": "x"}
    entry = {"kind": "text", "request": poison, "spooled_at": "2026-11-28T10:00:00+00:00"}
    services.redis.rpush(spool.SPOOL, json.dumps(entry))
    spool.spool_text(services.redis, good)
    with caplog.at_level(logging.ERROR, logger="outreach.sms.spool"):
        first = replay(services)  # each text is tried once a run
        assert (first.applied, first.waiting, first.dead) == (1, 1, 0)
        for _ in range(spool.MAX_ATTEMPTS - 1):
            outcome = replay(services)
    assert (outcome.applied, outcome.waiting, outcome.dead) == (0, 0, 1)
    (dead,) = spooled(services, spool.DEAD)
    assert (dead["attempts"], dead["error"]) == (spool.MAX_ATTEMPTS, "TypeError")
    assert "set aside after 5 failed replays" in caplog.text
    with services.sessions() as session:
        assert session.scalars(select(InboundMessage.body)).all() == ["JOIN LOGAN"]


def test_a_text_left_mid_replay_by_a_crash_is_applied_on_the_next_run(
    services: Services, logan: None
) -> None:
    spool.spool_text(services.redis, InboundSms(new_sid(), MARIA, LOGAN_NUMBER, "STOP"))
    services.redis.lmove(spool.SPOOL, spool.REPLAYING, "LEFT", "RIGHT")
    outcome = replay(services)
    assert (outcome.applied, outcome.waiting) == (1, 0)
    assert services.redis.llen(spool.REPLAYING) == 0


def test_without_redis_either_the_text_is_a_logged_500(
    down: Services, logan: None, caplog: pytest.LogCaptureFixture
) -> None:
    nowhere = redis.Redis(port=1, socket_connect_timeout=1)  # nobody listens there
    both_down = Services(down.settings, down.engine, down.sessions, nowhere)
    client: FlaskClient = create_app(both_down.settings, both_down).test_client()
    sid = new_sid()
    with caplog.at_level(logging.ERROR, logger="webhooks.twilio"):
        assert Phone(client, MARIA, LOGAN_NUMBER).send("STOP", sid=sid).status_code == 500
    assert f"twilio webhook {sid} could not be spooled either: it is lost" in caplog.text


def test_the_replay_job_runs_one_at_a_time(services: Services) -> None:
    spool.spool_text(services.redis, InboundSms(new_sid(), MARIA, LOGAN_NUMBER, "STOP"))
    lock = services.redis.lock("outreach:twilio:replay-lock", timeout=60)
    assert lock.acquire(blocking=False)
    try:
        assert jobs.replay_twilio_spool() == {"skipped": 1}
    finally:
        lock.release()


def test_the_database_url_of_the_unreachable_fixture_really_fails(down: Services) -> None:
    """The tests above rely on it: connecting must fail, not create a database somewhere."""
    with pytest.raises(Exception, match=r"unable to open|refused|could not connect"):
        down.engine.connect().close()


def test_a_status_callback_the_database_did_not_take_is_applied_with_its_policy(
    down: Services, services: Services, delivery_id: int
) -> None:
    """21610 on a campaign text: Twilio says the number replied STOP. Lost, the number would
    stay subscribed here; spooled, it is opted out once the database is back."""
    sid = DELIVERY_SID
    client = create_app(down.settings, down).test_client()
    params = {"MessageSid": sid, "MessageStatus": "failed", "ErrorCode": "21610"}
    assert signed_post(client, "/webhooks/twilio/status", params).status_code == 500
    (entry,) = spooled(services)
    assert (entry["kind"], entry["request"]) == (
        "status",
        {"message_sid": sid, "status": "failed", "error_code": "21610"},
    )

    outcome = jobs.replay_twilio_spool()

    assert (outcome["applied"], outcome["waiting"]) == (1, 0)
    with services.sessions() as session:
        delivery = session.scalars(select(Delivery)).one()
        assert (delivery.state, delivery.error_code) == ("failed", "21610")
        assert session.scalars(select(Subscription.state)).one() == "opted_out"
        assert consent.is_suppressed(session, "sms", MARIA, LOGAN_NUMBER)


def test_an_operator_sees_what_was_set_aside_and_puts_it_back(
    services: Services, logan: None, cli: CliRunner
) -> None:
    """After the fix for what failed it: ``outreach spool retry``, and the worker applies it."""
    sms = InboundSms(new_sid(), MARIA, LOGAN_NUMBER, "JOIN LOGAN")
    aside = spool.Spooled("text", dataclasses.asdict(sms), "2026-11-28T10:00:00+00:00", 5)
    services.redis.rpush(spool.DEAD, dataclasses.replace(aside, error="TypeError").dumps())
    spool.spool_text(services.redis, InboundSms(new_sid(), MARIA, LOGAN_NUMBER, "hello"))

    status = cli.invoke(main, ["spool", "status"])  # ids only: no number, no text
    assert status.exit_code == 0, status.output
    assert status.output.splitlines() == [
        "waiting: 1",
        "set aside: 1",
        f"  2026-11-28T10:00:00+00:00  text   {sms.message_sid}  5 attempts, last TypeError",
    ]

    retried = cli.invoke(main, ["spool", "retry"])
    assert retried.exit_code == 0, retried.output
    assert retried.output.startswith("1 back in the spool")
    assert services.redis.llen(spool.DEAD) == 0
    assert [e["attempts"] for e in spooled(services)] == [0, 0]
    assert replay(services).applied == 2


@pytest.mark.parametrize("entry", ["not json", '{"kind": "sms"}', '{"kind": "text", "x": 1}'])
def test_an_entry_that_is_not_a_request_is_set_aside_unread(
    services: Services, logan: None, cli: CliRunner, entry: str
) -> None:
    """Written by hand or by a bug: it must not stop the spool behind it."""
    services.redis.rpush(spool.SPOOL, entry)
    spool.spool_text(services.redis, InboundSms(new_sid(), MARIA, LOGAN_NUMBER, "STOP"))
    outcome = replay(services)
    assert (outcome.applied, outcome.dead, outcome.waiting) == (1, 1, 0)
    assert [raw.decode() for raw in services.redis.lrange(spool.DEAD, 0, -1)] == [entry]
    status = cli.invoke(main, ["spool", "status"])
    assert status.output.splitlines()[1:] == [
        "set aside: 1",
        "  ?  unreadable -  0 attempts, last unreadable",
    ]
    assert cli.invoke(main, ["spool", "retry"]).output.startswith("0 back in the spool")
    assert services.redis.llen(spool.DEAD) == 1


def test_a_backlog_drains_run_after_run_and_an_empty_spool_costs_one_look(
    services: Services, logan: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a long outage: each run has a budget, and the ticker's next run (seconds later)
    goes on with the rest; an empty spool is one Redis call, no lock, no database."""
    for body in ("one", "two", "three"):
        spool.spool_text(services.redis, InboundSms(new_sid(), MARIA, LOGAN_NUMBER, body))
    assert replay_in(services, seconds=0).applied == 0  # out of time before the first
    monkeypatch.setattr(jobs, "REPLAY_LIMIT", 2)  # a budget that ends with one left
    assert jobs.replay_twilio_spool()["waiting"] == 1
    assert jobs.replay_twilio_spool()["waiting"] == 0
    assert jobs.replay_twilio_spool() == {}


def replay_in(services: Services, *, seconds: float) -> spool.Replayed:
    transport = SandboxSmsTransport(services.settings, services.sessions)
    replayer = spool.Replayer(services.engine, transport)
    return spool.replay(services.redis, replayer, seconds=seconds)
