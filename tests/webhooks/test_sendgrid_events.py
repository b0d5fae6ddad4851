"""SendGrid event webhook: signed, deduped, forward-only, and consent applied with a ledger row."""

from __future__ import annotations

import base64
import functools
import json
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from flask.testing import FlaskClient
from sendgrid.helpers.eventwebhook import EventWebhook
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from werkzeug.test import TestResponse

from outreach import consent
from outreach.app.clock import utcnow
from outreach.app.services import Services
from outreach.campaigns import fanout
from outreach.email import events as email_events
from outreach.models import (
    Campaign,
    ConsentEvent,
    Delivery,
    EmailEvent,
    Member,
    Subscription,
    Suppression,
)
from outreach.models import members as m
from outreach.people.huddles import create_huddle
from outreach.providers.sandbox.email import sandbox_event_keys, sign_events
from outreach.providers.sendgrid.signature import event_public_key, signature_problem
from web import create_app

PATH = "/webhooks/sendgrid/events"
ADDRESS = "ada@example.org"
LOGAN_SENDER = "+16175550100"
BACK_BAY_SENDER = "+16175550200"


def _key_pair() -> tuple[ec.EllipticCurvePrivateKey, str]:
    private = ec.generate_private_key(ec.SECP256R1())
    der = private.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private, base64.b64encode(der).decode("ascii")


PRIVATE_KEY, PUBLIC_KEY = _key_pair()
OTHER_PRIVATE_KEY, _ = _key_pair()


def sign(body: bytes, timestamp: str, key: ec.EllipticCurvePrivateKey = PRIVATE_KEY) -> str:
    """What SendGrid sends: base64 of the DER ECDSA signature over ``timestamp + body``."""
    signature = key.sign(timestamp.encode("ascii") + body, ec.ECDSA(hashes.SHA256()))
    return base64.b64encode(signature).decode("ascii")


def now_stamp(offset: float = 0) -> str:
    return str(int(utcnow().timestamp() + offset))


def encode(events: list[dict[str, Any]]) -> bytes:
    # SendGrid ends its bodies with CRLF; the signature covers it.
    return json.dumps(events).encode("utf-8") + b"\r\n"


def post_raw(
    client: FlaskClient,
    body: bytes,
    *,
    timestamp: str | None = None,
    signature: str | None = None,
    headers: dict[str, str] | None = None,
) -> TestResponse:
    timestamp = timestamp if timestamp is not None else now_stamp()
    signature = signature if signature is not None else sign(body, timestamp)
    sent = {
        "X-Twilio-Email-Event-Webhook-Signature": signature,
        "X-Twilio-Email-Event-Webhook-Timestamp": timestamp,
    }
    if headers is not None:
        sent = headers
    return client.post(PATH, data=body, headers=sent, content_type="application/json")


_event_ids = iter(range(1, 1_000_000))


def event(name: str, delivery_id: int | None = None, **fields: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "email": ADDRESS,
        "timestamp": int(utcnow().timestamp()),
        "event": name,
        "sg_event_id": f"sg-event-{next(_event_ids)}",
        "sg_message_id": "14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.0",
    }
    if delivery_id is not None:
        payload["delivery_id"] = str(delivery_id)
    payload.update(fields)
    return payload


def post(client: FlaskClient, *events: dict[str, Any]) -> int:
    return post_raw(client, encode(list(events))).status_code


@pytest.fixture
def signed_services(services: Services) -> Services:
    settings = services.settings.with_overrides(sendgrid_event_public_key=PUBLIC_KEY)
    return Services(settings, services.engine, services.sessions, services.redis)


@pytest.fixture
def client(signed_services: Services) -> FlaskClient:
    app = create_app(signed_services.settings, signed_services)
    app.config["TESTING"] = True
    return app.test_client()


@dataclass(frozen=True)
class World:
    delivery_id: int
    member_id: int
    logan_id: int
    back_bay_id: int


@pytest.fixture
def world(services: Services) -> World:
    """Ada: email in Logan and Back Bay, SMS in Logan; one Logan email campaign sent to her."""
    with services.sessions.begin() as session:
        logan = create_huddle(
            session, slug="logan", name="Logan", keywords=["LOGAN"], sender=LOGAN_SENDER
        )
        back_bay = create_huddle(
            session, slug="back-bay", name="Back Bay", keywords=["BACKBAY"], sender=BACK_BAY_SENDER
        )
        member = Member(email=ADDRESS, phone="+16175550111")
        session.add(member)
        session.flush()
        for huddle, channel in ((logan, m.EMAIL), (back_bay, m.EMAIL), (logan, m.SMS)):
            consent.set_subscription_state(
                session,
                member=member,
                huddle=huddle,
                channel=channel,
                state=m.ACTIVE,
                provenance=consent.Provenance(source="import"),
            )
        campaign = Campaign(
            huddle_id=logan.id,
            name="Rally",
            channel=m.EMAIL,
            subject="Rally",
            body="Rally!",
            state="sending",
        )
        session.add(campaign)
        session.flush()
        delivery = Delivery(
            campaign_id=campaign.id,
            member_id=member.id,
            channel=m.EMAIL,
            address=ADDRESS,
            state="sent",
        )
        session.add(delivery)
        session.flush()
        return World(delivery.id, member.id, logan.id, back_bay.id)


def stored_events(services: Services) -> int:
    with services.sessions() as session:
        return session.scalar(select(func.count(EmailEvent.id))) or 0


def get_delivery(services: Services, delivery_id: int) -> Delivery:
    with services.sessions() as session:
        return session.get_one(Delivery, delivery_id)


def subscription_state(services: Services, world: World, huddle_id: int, channel: str) -> str:
    with services.sessions() as session:
        return session.scalars(
            select(Subscription.state).where(
                Subscription.member_id == world.member_id,
                Subscription.huddle_id == huddle_id,
                Subscription.channel == channel,
            )
        ).one()


def ledger(services: Services) -> list[tuple[str, str, str | None, int | None]]:
    """The ledger rows the webhook wrote (source provider), oldest first."""
    with services.sessions() as session:
        return [
            (row.action, row.channel, row.detail, row.member_id)
            for row in session.scalars(
                select(ConsentEvent)
                .where(ConsentEvent.source == "provider")
                .order_by(ConsentEvent.id)
            )
        ]


# -- signatures ------------------------------------------------------------------------------


def test_a_signed_post_is_accepted_and_the_sdk_helper_agrees(
    client: FlaskClient, services: Services, world: World
) -> None:
    body = encode([event("processed", world.delivery_id)])
    timestamp = now_stamp()
    signature = sign(body, timestamp)
    # The same signature passes SendGrid's own helper: our test signatures are SendGrid's format.
    assert EventWebhook(PUBLIC_KEY).verify_signature(body.decode("utf-8"), signature, timestamp)
    response = post_raw(client, body, timestamp=timestamp, signature=signature)
    assert response.status_code == 204
    assert stored_events(services) == 1
    assert get_delivery(services, world.delivery_id).state == "sent"


def test_a_forged_signature_is_refused(
    client: FlaskClient, services: Services, world: World
) -> None:
    body = encode([event("bounce", world.delivery_id, type="bounce")])
    timestamp = now_stamp()
    response = post_raw(
        client, body, timestamp=timestamp, signature=sign(body, timestamp, OTHER_PRIVATE_KEY)
    )
    assert response.status_code == 403
    assert stored_events(services) == 0
    with services.sessions() as session:
        assert not consent.is_suppressed(session, m.EMAIL, ADDRESS)


@pytest.mark.parametrize(
    "drop", ["X-Twilio-Email-Event-Webhook-Signature", "X-Twilio-Email-Event-Webhook-Timestamp"]
)
def test_missing_headers_are_refused(
    client: FlaskClient, services: Services, world: World, drop: str
) -> None:
    body = encode([event("delivered", world.delivery_id)])
    timestamp = now_stamp()
    headers = {
        "X-Twilio-Email-Event-Webhook-Signature": sign(body, timestamp),
        "X-Twilio-Email-Event-Webhook-Timestamp": timestamp,
    }
    del headers[drop]
    assert post_raw(client, body, headers=headers).status_code == 403
    assert post_raw(client, body, headers={}).status_code == 403
    assert stored_events(services) == 0
    assert get_delivery(services, world.delivery_id).state == "sent"


def test_a_body_changed_by_one_byte_is_refused(
    client: FlaskClient, services: Services, world: World
) -> None:
    body = encode([event("delivered", world.delivery_id)])
    timestamp = now_stamp()
    signature = sign(body, timestamp)
    tampered = body.replace(b'"delivered"', b'"delivereD"')
    assert len(tampered) == len(body)
    assert post_raw(client, tampered, timestamp=timestamp, signature=signature).status_code == 403
    # Even the trailing CRLF is covered.
    assert post_raw(client, body[:-1], timestamp=timestamp, signature=signature).status_code == 403
    assert stored_events(services) == 0


@pytest.mark.parametrize("offset", [-11 * 60, -24 * 3600, 5 * 60])
def test_stale_or_future_timestamps_are_refused(
    client: FlaskClient,
    services: Services,
    world: World,
    offset: int,
    caplog: pytest.LogCaptureFixture,
) -> None:
    body = encode([event("delivered", world.delivery_id)])
    timestamp = now_stamp(offset)
    with caplog.at_level(logging.WARNING):
        response = post_raw(client, body, timestamp=timestamp, signature=sign(body, timestamp))
    assert response.status_code == 403
    expected = "stale timestamp" if offset < 0 else "in the future"
    assert any(expected in r.getMessage() for r in caplog.records)
    assert stored_events(services) == 0


def test_a_recent_timestamp_within_the_window_is_accepted(
    client: FlaskClient, services: Services, world: World
) -> None:
    body = encode([event("delivered", world.delivery_id)])
    timestamp = now_stamp(-9 * 60)
    assert post_raw(client, body, timestamp=timestamp).status_code == 204
    assert stored_events(services) == 1


def test_the_replay_window_is_a_parameter() -> None:
    body = b"[]"
    timestamp = now_stamp(-120)
    signature = sign(body, timestamp)
    check = functools.partial(
        signature_problem, PUBLIC_KEY, payload=body, timestamp=timestamp, now=utcnow()
    )
    assert check(signature=signature) is None
    problem = check(signature=signature, max_age=60)
    assert problem is not None
    assert problem.startswith("stale")
    assert check(signature="not base64!") == "signature is not base64"
    assert check(signature=sign(b"[ ]", timestamp)) == "bad signature"


def test_without_any_key_everything_is_refused_in_production(
    services: Services, world: World, caplog: pytest.LogCaptureFixture
) -> None:
    settings = services.settings.with_overrides(
        environment="production", email_backend="sendgrid", sendgrid_event_public_key=None
    )
    app = create_app(
        settings, Services(settings, services.engine, services.sessions, services.redis)
    )
    body = encode([event("delivered", world.delivery_id)])
    with caplog.at_level(logging.ERROR):
        assert post_raw(app.test_client(), body).status_code == 403
    assert any("no event webhook public key" in r.getMessage() for r in caplog.records)
    assert stored_events(services) == 0


def test_the_sandbox_key_is_used_when_none_is_configured(services: Services, world: World) -> None:
    settings = services.settings.with_overrides(sendgrid_event_public_key=None)
    assert settings.email_backend == "sandbox"
    private_key, public_key = sandbox_event_keys(settings)
    assert event_public_key(settings) == public_key
    assert event_public_key(settings.with_overrides(email_backend="sendgrid")) is None
    app = create_app(
        settings, Services(settings, services.engine, services.sessions, services.redis)
    )
    body = encode([event("delivered", world.delivery_id)])
    timestamp = now_stamp()
    signature = sign_events(private_key, body, timestamp)
    response = post_raw(app.test_client(), body, timestamp=timestamp, signature=signature)
    assert response.status_code == 204


# -- bodies ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [b'[{"event": ', b'{"event": "delivered"}', b"[1, 2]", b"\xff\xfe[]", b""],
    ids=["truncated", "object", "not-objects", "not-utf8", "empty"],
)
def test_malformed_bodies_are_a_400(
    client: FlaskClient, services: Services, world: World, body: bytes
) -> None:
    assert post_raw(client, body).status_code == 400
    assert stored_events(services) == 0


def test_bodies_over_5_mb_are_a_400(client: FlaskClient, services: Services) -> None:
    body = b"[" + b" " * (5 * 1024 * 1024) + b"]"
    assert post_raw(client, body).status_code == 400
    assert stored_events(services) == 0


# -- dedupe and order ------------------------------------------------------------------------


def test_a_repeated_event_is_stored_once(
    client: FlaskClient, services: Services, world: World
) -> None:
    bounce = event("bounce", world.delivery_id, type="bounce", reason="550 5.1.1 user unknown")
    assert post(client, bounce) == 204
    assert post(client, bounce, bounce) == 204
    with services.sessions() as session:
        assert session.scalar(select(func.count(EmailEvent.id))) == 1
        assert session.scalar(select(func.count(Suppression.id))) == 1
    assert [row[0] for row in ledger(services)] == ["suppress"]


def test_delivered_then_a_late_processed_stays_delivered(
    client: FlaskClient, services: Services, world: World
) -> None:
    assert post(client, event("delivered", world.delivery_id)) == 204
    assert post(client, event("processed", world.delivery_id)) == 204
    assert post(client, event("deferred", world.delivery_id, response="421 try later")) == 204
    assert get_delivery(services, world.delivery_id).state == "delivered"
    assert stored_events(services) == 3


def test_open_and_click_record_their_first_times(
    client: FlaskClient, services: Services, world: World
) -> None:
    opened = datetime(2025, 5, 1, 14, 0, tzinfo=UTC)
    assert post(client, event("open", world.delivery_id, timestamp=int(opened.timestamp()))) == 204
    delivery = get_delivery(services, world.delivery_id)
    assert (delivery.state, delivery.opened_at, delivery.clicked_at) == ("delivered", opened, None)

    clicked = opened + timedelta(minutes=5)
    later = clicked + timedelta(hours=1)
    assert (
        post(
            client,
            event("click", world.delivery_id, timestamp=int(clicked.timestamp()), url="https://x"),
            event("open", world.delivery_id, timestamp=int(later.timestamp())),
            event("click", world.delivery_id, timestamp=int(later.timestamp())),
        )
        == 204
    )
    delivery = get_delivery(services, world.delivery_id)
    assert (delivery.opened_at, delivery.clicked_at) == (opened, clicked)


def test_a_click_before_any_open_counts_as_the_open(
    client: FlaskClient, services: Services, world: World
) -> None:
    clicked = datetime(2025, 5, 1, 15, 0, tzinfo=UTC)
    assert (
        post(client, event("click", world.delivery_id, timestamp=int(clicked.timestamp()))) == 204
    )
    delivery = get_delivery(services, world.delivery_id)
    assert (delivery.state, delivery.opened_at, delivery.clicked_at) == (
        "delivered",
        clicked,
        clicked,
    )


def test_a_machine_open_proves_delivery_but_is_no_open(
    client: FlaskClient, services: Services, world: World
) -> None:
    assert post(client, event("open", world.delivery_id, sg_machine_open=True)) == 204
    delivery = get_delivery(services, world.delivery_id)
    assert (delivery.state, delivery.opened_at) == ("delivered", None)


# -- bounces, drops, spam reports, unsubscribes ----------------------------------------------


def test_a_hard_bounce_suppresses_the_address_everywhere(
    client: FlaskClient, services: Services, world: World
) -> None:
    bounce = event(
        "bounce", world.delivery_id, type="bounce", status="5.1.1", reason="550 5.1.1 user unknown"
    )
    assert post(client, bounce) == 204
    delivery = get_delivery(services, world.delivery_id)
    assert (delivery.state, delivery.error_code) == ("undelivered", "5.1.1")
    assert ledger(services) == [
        ("suppress", m.EMAIL, "sendgrid bounce: 550 5.1.1 user unknown", world.member_id)
    ]
    with services.sessions() as session:
        assert consent.is_suppressed(session, m.EMAIL, ADDRESS)
        assert not consent.is_suppressed(session, m.SMS, "+16175550111")
        # The next email campaign's audience skips the address.
        campaign = Campaign(
            huddle_id=world.back_bay_id, name="Next", channel=m.EMAIL, subject="Hi", body="Hi"
        )
        session.add(campaign)
        session.commit()
        campaign_id = campaign.id
    assert fanout.snapshot(services.sessions, campaign_id, now=utcnow()) == 1
    with services.sessions() as session:
        skipped = session.scalars(select(Delivery).where(Delivery.campaign_id == campaign_id)).one()
        assert (skipped.state, skipped.skip_reason) == ("skipped", "suppressed")


def test_a_blocked_bounce_is_only_recorded(
    client: FlaskClient, services: Services, world: World
) -> None:
    blocked = event("bounce", world.delivery_id, type="blocked", reason="421 rate limited")
    assert post(client, blocked) == 204
    assert stored_events(services) == 1
    assert get_delivery(services, world.delivery_id).state == "sent"
    assert ledger(services) == []
    with services.sessions() as session:
        assert not consent.is_suppressed(session, m.EMAIL, ADDRESS)


def test_a_dropped_address_is_suppressed(
    client: FlaskClient, services: Services, world: World
) -> None:
    assert post(client, event("dropped", world.delivery_id, reason="Bounced Address")) == 204
    delivery = get_delivery(services, world.delivery_id)
    assert (delivery.state, delivery.error_code) == ("failed", "dropped")
    assert ledger(services) == [
        ("suppress", m.EMAIL, "sendgrid dropped: Bounced Address", world.member_id)
    ]


def test_a_dropped_message_flags_the_campaign_not_the_person(
    client: FlaskClient, services: Services, world: World
) -> None:
    assert post(client, event("dropped", world.delivery_id, reason="Spam Content")) == 204
    assert get_delivery(services, world.delivery_id).state == "failed"
    assert ledger(services) == []
    with services.sessions() as session:
        assert not consent.is_suppressed(session, m.EMAIL, ADDRESS)
        flag = session.scalars(select(Campaign.flag)).one()
        assert flag is not None
        assert "Spam Content" in flag


def test_a_spam_report_opts_out_and_suppresses(
    client: FlaskClient, services: Services, world: World
) -> None:
    assert (
        post(client, event("delivered", world.delivery_id), event("spamreport", world.delivery_id))
        == 204
    )
    assert subscription_state(services, world, world.logan_id, m.EMAIL) == m.OPTED_OUT
    assert subscription_state(services, world, world.logan_id, m.SMS) == m.ACTIVE
    assert get_delivery(services, world.delivery_id).state == "delivered"
    assert ledger(services) == [
        ("opt_out", m.EMAIL, "sendgrid spamreport", world.member_id),
        ("suppress", m.EMAIL, "sendgrid spamreport", world.member_id),
    ]
    with services.sessions() as session:
        assert consent.is_suppressed(session, m.EMAIL, ADDRESS)  # all senders


@pytest.mark.parametrize("name", ["unsubscribe", "group_unsubscribe"])
def test_an_unsubscribe_opts_out_of_that_huddles_email_only(
    client: FlaskClient, services: Services, world: World, name: str
) -> None:
    assert post(client, event(name, world.delivery_id, asm_group_id=42)) == 204
    assert subscription_state(services, world, world.logan_id, m.EMAIL) == m.OPTED_OUT
    assert subscription_state(services, world, world.back_bay_id, m.EMAIL) == m.ACTIVE
    assert subscription_state(services, world, world.logan_id, m.SMS) == m.ACTIVE
    with services.sessions() as session:
        assert consent.is_suppressed(session, m.EMAIL, ADDRESS, LOGAN_SENDER)
        assert not consent.is_suppressed(session, m.EMAIL, ADDRESS, BACK_BAY_SENDER)
        opt_out = session.scalars(
            select(ConsentEvent).where(ConsentEvent.action == "opt_out")
        ).one()
        assert (opt_out.source, opt_out.detail, opt_out.huddle_id, opt_out.channel) == (
            "provider",
            f"sendgrid {name}",
            world.logan_id,
            m.EMAIL,
        )


def test_a_group_resubscribe_is_only_recorded(
    client: FlaskClient, services: Services, world: World
) -> None:
    assert post(client, event("unsubscribe", world.delivery_id)) == 204
    assert post(client, event("group_resubscribe", world.delivery_id, asm_group_id=42)) == 204
    assert subscription_state(services, world, world.logan_id, m.EMAIL) == m.OPTED_OUT
    assert stored_events(services) == 2


# -- events without a delivery ---------------------------------------------------------------


def test_an_unknown_delivery_id_is_stored_and_accepted(
    client: FlaskClient, services: Services, world: World
) -> None:
    assert post(client, event("delivered", 999_999), event("open")) == 204
    assert stored_events(services) == 2
    with services.sessions() as session:
        stored = session.scalars(select(EmailEvent).order_by(EmailEvent.id)).first()
        assert stored is not None
        assert (stored.delivery_id, stored.event, stored.email) == (999_999, "delivered", ADDRESS)
    assert get_delivery(services, world.delivery_id).state == "sent"


def test_a_bounce_without_a_delivery_still_suppresses_the_member(
    client: FlaskClient, services: Services, world: World
) -> None:
    bounce = event("bounce", type="bounce", email="Ada@Example.org", reason="550 no such user")
    assert post(client, bounce) == 204
    with services.sessions() as session:
        assert consent.is_suppressed(session, m.EMAIL, ADDRESS)
    assert ledger(services) == [
        ("suppress", m.EMAIL, "sendgrid bounce: 550 no such user", world.member_id)
    ]


def test_a_spam_report_from_a_stranger_suppresses_the_address(
    client: FlaskClient, services: Services
) -> None:
    assert post(client, event("spamreport", email="stranger@example.net")) == 204
    with services.sessions() as session:
        assert consent.is_suppressed(session, m.EMAIL, "stranger@example.net")
    assert ledger(services) == [("suppress", m.EMAIL, "sendgrid spamreport", None)]


def test_a_delivery_id_for_another_address_is_not_applied_to_it(
    client: FlaskClient, services: Services, world: World
) -> None:
    other = event("unsubscribe", world.delivery_id, email="someone.else@example.net")
    assert post(client, other) == 204
    assert subscription_state(services, world, world.logan_id, m.EMAIL) == m.ACTIVE
    with services.sessions() as session:
        assert not consent.is_suppressed(session, m.EMAIL, ADDRESS)
        assert consent.is_suppressed(session, m.EMAIL, "someone.else@example.net")


# -- one transaction per POST ----------------------------------------------------------------


def test_a_failure_mid_batch_leaves_nothing_behind(
    client: FlaskClient, services: Services, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    def explode(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("database went away")

    monkeypatch.setattr(consent, "suppress", explode)
    batch = [event("delivered", world.delivery_id), event("bounce", world.delivery_id)]
    with pytest.raises(RuntimeError, match="went away"):
        post(client, *batch)
    assert stored_events(services) == 0
    assert get_delivery(services, world.delivery_id).state == "sent"
    monkeypatch.undo()
    assert post(client, *batch) == 204  # SendGrid posts the batch again: now it all applies
    assert stored_events(services) == 2
    assert get_delivery(services, world.delivery_id).state == "delivered"


def test_a_post_that_loses_a_race_is_applied_again(
    services: Services, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = email_events._apply_all
    calls: list[int] = []

    def lose_once(session: Session, *args: Any) -> email_events.EventsOutcome:
        calls.append(1)
        if len(calls) == 1:
            raise IntegrityError("INSERT", {}, Exception("duplicate sg_event_id"))
        return real(session, *args)

    monkeypatch.setattr(email_events, "_apply_all", lose_once)
    outcome = email_events.handle_events(services.sessions, [event("delivered", world.delivery_id)])
    assert (outcome.stored, outcome.duplicates, len(calls)) == (1, 0, 2)
    assert get_delivery(services, world.delivery_id).state == "delivered"


def test_the_same_batch_posted_concurrently_is_stored_once(
    signed_services: Services, services: Services, world: World
) -> None:
    app = create_app(signed_services.settings, signed_services)
    body = encode(
        [
            event("delivered", world.delivery_id),
            event("bounce", world.delivery_id, type="bounce", reason="550 gone"),
        ]
    )
    timestamp = now_stamp()
    signature = sign(body, timestamp)
    barrier = threading.Barrier(4)

    def send() -> int:
        barrier.wait()
        return post_raw(
            app.test_client(), body, timestamp=timestamp, signature=signature
        ).status_code

    with ThreadPoolExecutor(4) as pool:
        codes = list(pool.map(lambda _: send(), range(4)))
    assert codes == [204] * 4
    assert stored_events(services) == 2
    assert [row[0] for row in ledger(services)] == ["suppress"]


@pytest.mark.parametrize("bad_key", ["not base64!", base64.b64encode(b"junk").decode()])
def test_an_unreadable_key_refuses_everything_and_says_so(
    services: Services, world: World, caplog: pytest.LogCaptureFixture, bad_key: str
) -> None:
    settings = services.settings.with_overrides(sendgrid_event_public_key=bad_key)
    app = create_app(
        settings, Services(settings, services.engine, services.sessions, services.redis)
    )
    with caplog.at_level(logging.ERROR):
        response = post_raw(app.test_client(), encode([event("delivered", world.delivery_id)]))
    assert response.status_code == 403
    assert any("unusable public key" in r.getMessage() for r in caplog.records)
    assert stored_events(services) == 0
