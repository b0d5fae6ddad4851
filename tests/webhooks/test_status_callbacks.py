"""Delivery receipts: forward-only, deduped, error codes applied by policy."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import event, func, select

from outreach import consent
from outreach.app.services import Services
from outreach.models import (
    Campaign,
    ConsentEvent,
    Delivery,
    StatusEvent,
    Subscription,
    Suppression,
)
from outreach.models import members as m
from outreach.providers.twilio.error_policy import ErrorAction, parse_error_policy
from outreach.sms.receipts import (
    StatusOutcome,
    handle_status,
    lock_message_ids,
    replay_early_events,
)
from tests.webhooks.concurrency import held
from tests.webhooks.conftest import DELIVERY_SID, MARIA, add_sent_delivery
from tests.webhooks.twilio_helpers import signed_post
from workers import context, jobs

NUMBER = MARIA
SID = DELIVERY_SID


def callback(
    client: FlaskClient, status: str, error_code: str | None = None, sid: str = SID
) -> int:
    params = {
        "MessageSid": sid,
        "MessageStatus": status,
        "AccountSid": "AC" + "0" * 32,
        "To": NUMBER,
        "From": "+16175550100",
    }
    if error_code:
        params["ErrorCode"] = error_code
    return signed_post(client, "/webhooks/twilio/status", params).status_code


def delivery_state(services: Services, delivery_id: int) -> tuple[str, str | None]:
    with services.sessions() as session:
        d = session.get_one(Delivery, delivery_id)
        return d.state, d.error_code


def test_status_moves_forward_only_whatever_the_order(
    client: FlaskClient, services: Services, delivery_id: int
) -> None:
    assert callback(client, "delivered") == 204
    assert callback(client, "sent") == 204
    assert callback(client, "queued") == 204
    assert delivery_state(services, delivery_id) == ("delivered", None)


def test_repeated_callbacks_are_applied_once(
    client: FlaskClient, services: Services, delivery_id: int
) -> None:
    for _ in range(3):
        assert callback(client, "undelivered", "30003") == 204
    with services.sessions() as session:
        assert session.scalar(select(func.count(StatusEvent.id))) == 1
    assert delivery_state(services, delivery_id) == ("undelivered", "30003")


def test_21610_opts_the_person_out_with_a_ledger_row(
    client: FlaskClient, services: Services, delivery_id: int
) -> None:
    callback(client, "failed", "21610")
    with services.sessions() as session:
        assert session.scalars(select(Subscription.state)).one() == m.OPTED_OUT
        event = session.scalars(select(ConsentEvent).order_by(ConsentEvent.id.desc())).first()
        assert event is not None
        assert (event.action, event.source, event.detail) == (
            "opt_out",
            "provider",
            "twilio error 21610",
        )
        assert consent.is_suppressed(session, "sms", NUMBER, "+16175550100")


@pytest.mark.parametrize("code", ["21211", "21614", "21635", "30005", "30006"])
def test_unreachable_numbers_are_suppressed(
    client: FlaskClient, services: Services, delivery_id: int, code: str
) -> None:
    callback(client, "undelivered", code)
    with services.sessions() as session:
        assert consent.is_suppressed(session, "sms", NUMBER)
        assert (
            session.scalars(select(ConsentEvent.action).order_by(ConsentEvent.id.desc())).first()
            == "suppress"
        )


def test_30007_flags_the_campaign_not_the_person(
    client: FlaskClient, services: Services, delivery_id: int
) -> None:
    callback(client, "undelivered", "30007")
    with services.sessions() as session:
        assert not consent.is_suppressed(session, "sms", NUMBER)
        assert session.scalars(select(Subscription.state)).one() == m.ACTIVE
        flag = session.scalars(select(Campaign.flag)).one()
        assert flag is not None
        assert "30007" in flag


def test_unknown_message_sid_is_accepted(
    client: FlaskClient, services: Services, delivery_id: int
) -> None:
    assert callback(client, "delivered", sid="SM" + "f" * 32) == 204
    assert delivery_state(services, delivery_id) == ("sent", None)


def test_missing_fields_are_a_clear_400(client: FlaskClient, delivery_id: int) -> None:
    assert signed_post(client, "/webhooks/twilio/status", {"MessageSid": SID}).status_code == 400


def test_error_policy_is_configurable() -> None:
    policy = parse_error_policy("30003=suppress, 30007=none")
    assert policy["30003"] is ErrorAction.SUPPRESS
    assert policy["30007"] is ErrorAction.NONE
    assert policy["21610"] is ErrorAction.OPT_OUT
    with pytest.raises(ValueError, match="CODE=ACTION"):
        parse_error_policy("30003=explode")


def test_a_later_error_code_never_replaces_the_first_unless_the_status_moves(
    client: FlaskClient, services: Services, delivery_id: int
) -> None:
    assert callback(client, "undelivered", "30003") == 204
    assert callback(client, "failed", "30008") == 204  # same rank: no move, the first code stays
    assert delivery_state(services, delivery_id) == ("undelivered", "30003")


def test_an_error_code_is_recorded_when_the_delivery_had_none(
    client: FlaskClient, services: Services, delivery_id: int
) -> None:
    assert callback(client, "delivered") == 204
    with services.sessions() as session:
        moved_at = session.get_one(Delivery, delivery_id).updated_at
    assert moved_at is not None
    assert callback(client, "UNDELIVERED", " 30008 ") == 204  # normalized, then recorded
    assert delivery_state(services, delivery_id) == ("delivered", "30008")
    with services.sessions() as session:
        assert session.get_one(Delivery, delivery_id).updated_at == moved_at  # did not move
        events = session.execute(
            select(StatusEvent.status, StatusEvent.error_code).order_by(StatusEvent.id)
        ).all()
        assert [tuple(e) for e in events] == [("delivered", None), ("undelivered", "30008")]


def test_a_policy_error_code_for_an_unknown_message_is_accepted(
    client: FlaskClient, services: Services, delivery_id: int
) -> None:
    assert callback(client, "failed", "30006", sid="SM" + "e" * 32) == 204
    assert callback(client, "failed", "30006", sid="SM" + "e" * 32) == 204
    with services.sessions() as session:
        assert not consent.is_suppressed(session, "sms", NUMBER)
        assert session.scalar(select(func.count(StatusEvent.id))) == 1


@pytest.mark.parametrize(
    ("policy", "flagged"), [(None, True), ("30007=none", False)], ids=["default", "configured"]
)
def test_a_callback_before_the_sender_wrote_the_id_is_applied_with_the_same_policy(
    client: FlaskClient, services: Services, delivery_id: int, policy: str | None, flagged: bool
) -> None:
    """A fast provider calls back before the sender recorded its id: the sender replays it."""
    early = "SM" + "b" * 32
    assert callback(client, "undelivered", "30007", sid=early) == 204  # no delivery has it yet
    assert delivery_state(services, delivery_id) == ("sent", None)
    with services.sessions.begin() as session:
        session.get_one(Delivery, delivery_id).provider_message_id = early  # the sender's write
        session.flush()
        replay_early_events(session, [early], parse_error_policy(policy))
    assert delivery_state(services, delivery_id) == ("undelivered", "30007")
    with services.sessions() as session:
        assert (session.scalars(select(Campaign.flag)).one() is not None) is flagged


def test_the_send_context_carries_the_configured_error_policy(services: Services) -> None:
    settings = services.settings.with_overrides(twilio_error_policy="30007=none,30003=suppress")
    svc = Services(settings, services.engine, services.sessions, services.redis)
    context.install(svc)
    jobs._send_context = None
    try:
        policy = jobs.send_context().error_policy
    finally:
        jobs._send_context = None
        context.install(services)
    assert policy["30007"] is ErrorAction.NONE
    assert policy["30003"] is ErrorAction.SUPPRESS
    assert policy["21610"] is ErrorAction.OPT_OUT  # the defaults stay


def test_a_callback_racing_the_sender_writing_its_id_is_not_lost(
    services: Services, delivery_id: int
) -> None:
    """The webhook finds no delivery while the sender is writing the id; the sender's replay
    does not see the webhook's uncommitted callback. One of them must still apply it."""
    racing = "SM" + "c" * 32
    looked, sender_done = threading.Event(), threading.Event()
    outcome: list[StatusOutcome] = []

    def pause_after_the_first_look(_conn: object, _cur: object, sql: str, *_: object) -> None:
        first_look = "FROM deliveries WHERE provider_message_id" in sql and not looked.is_set()
        if first_look and threading.current_thread() is webhook:
            looked.set()
            sender_done.wait(5)  # the sender replays and commits in this gap

    def callback_arrives() -> None:
        outcome.append(
            handle_status(
                services.engine,
                message_sid=racing,
                status="delivered",
                error_code=None,
            )
        )

    webhook = threading.Thread(target=callback_arrives)
    event.listen(services.engine, "after_cursor_execute", pause_after_the_first_look)
    try:
        with services.sessions.begin() as session:  # the sender's transaction
            lock_message_ids(session, [racing])
            session.get_one(Delivery, delivery_id).provider_message_id = racing
            session.flush()
            webhook.start()
            # PostgreSQL: the webhook looks (no delivery yet) and pauses. SQLite: it waits for
            # this transaction's write lock and never gets that far.
            looked.wait(1)
            replay_early_events(session, [racing])
        sender_done.set()
        webhook.join(10)
    finally:
        sender_done.set()
        event.remove(services.engine, "after_cursor_execute", pause_after_the_first_look)
    assert not webhook.is_alive()
    assert delivery_state(services, delivery_id) == ("delivered", None)
    (applied,) = outcome
    assert applied.applied


@pytest.mark.parametrize(("code", "reason"), [("30006", "twilio-30006"), ("21610", "stop")])
def test_two_failures_for_one_number_at_once_are_both_applied(
    app: Flask, services: Services, delivery_id: int, code: str, reason: str
) -> None:
    """Two campaigns' texts to a number fail at once: both callbacks add the same suppression.

    On PostgreSQL they run side by side and meet on its unique key; neither may fail (Twilio
    does not send a status callback again after a 500).
    """
    other_sid = "SM" + "f" * 32
    with services.sessions.begin() as session:
        first = session.get_one(Delivery, delivery_id)
        campaign = Campaign(
            huddle_id=session.get_one(Campaign, first.campaign_id).huddle_id,
            name="Phone bank",
            channel="sms",
            body="Phone bank!",
            state="sending",
        )
        add_sent_delivery(session, campaign, first.member_id, other_sid)
    clients = [app.test_client(), app.test_client()]
    with ThreadPoolExecutor(2) as pool, held(services, "suppressions") as hold:
        futures = [
            pool.submit(callback, client, "failed", code, sid)
            for client, sid in zip(clients, [SID, other_sid], strict=True)
        ]
        hold.wait(2)
    assert [future.result(timeout=30) for future in futures] == [204, 204]
    with services.sessions() as session:
        assert set(session.scalars(select(Delivery.state))) == {"failed"}
        suppression = session.scalars(select(Suppression)).one()
        assert (suppression.address, suppression.reason, suppression.lifted_at) == (
            NUMBER,
            reason,
            None,
        )
        assert session.scalar(select(func.count(StatusEvent.id))) == 2
        if code == "21610":
            assert session.scalars(select(Subscription.state)).one() == m.OPTED_OUT
