"""Texts that arrive at the same moment, in two web threads, against the real database.

Twilio sends a member's texts as they come, each on its own request, and delivers one again
when our answer is slow: two texts about the same member can be in flight at once. Twilio does
not retry an inbound text that got a 500 (it calls the fallback URL, if there is one), so every
one of them must be stored and answered, whatever the other did.

To make them meet, each test holds the table they collide on (``tests.webhooks.concurrency``),
starts both requests and lets go once both wait there.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from flask import Flask
from sqlalchemy import func, select
from werkzeug.test import TestResponse

from outreach.app.services import Services
from outreach.models import (
    ConsentEvent,
    Huddle,
    InboundMessage,
    Member,
    Subscription,
    Suppression,
)
from tests.webhooks.concurrency import held
from tests.webhooks.conftest import LOGAN_NUMBER, MARIA
from tests.webhooks.twilio_helpers import Phone, new_sid, reply_text


def at_once(
    app: Flask,
    services: Services,
    *sends: Callable[[Phone], TestResponse],
    table: str = "members",
) -> list[str]:
    """Send the texts together, each from a thread of its own; their replies, in order."""
    phones = [Phone(app.test_client(), MARIA, LOGAN_NUMBER) for _ in sends]
    with ThreadPoolExecutor(len(sends)) as pool, held(services, table) as hold:
        futures = [pool.submit(send, p) for send, p in zip(sends, phones, strict=True)]
        hold.wait(len(sends))
    responses = [future.result(timeout=30) for future in futures]
    for response in responses:
        assert response.status_code == 200, response.get_data(as_text=True)
    return [reply_text(response.get_data(as_text=True)) for response in responses]


def stored(services: Services) -> list[tuple[str, str, int | None]]:
    with services.sessions() as session:
        rows = session.execute(
            select(InboundMessage.body, InboundMessage.intent, InboundMessage.member_id).order_by(
                InboundMessage.body
            )
        )
        return [tuple(row) for row in rows]  # type: ignore[misc]


def consent_actions(services: Services) -> list[str]:
    with services.sessions() as session:
        return list(session.scalars(select(ConsentEvent.action).order_by(ConsentEvent.id)))


def assert_joined_once(services: Services, replies: list[str]) -> None:
    """Both joins ("JOIN LOGAN", "EASTIE") answered and stored; one pending subscription."""
    assert all("Reply YES to confirm" in reply for reply in replies)
    with services.sessions() as session:
        member_id = session.scalars(select(Member.id).where(Member.phone == MARIA)).one()
        subscription = session.scalars(select(Subscription)).one()
        assert (subscription.member_id, subscription.state) == (member_id, "pending")
    assert stored(services) == [("EASTIE", "join", member_id), ("JOIN LOGAN", "join", member_id)]
    assert consent_actions(services) == ["opt_in_requested"]


def test_two_joins_from_a_new_number_at_once_make_one_member(
    app: Flask, services: Services, logan: None
) -> None:
    replies = at_once(
        app,
        services,
        lambda p: p.send("JOIN LOGAN"),
        lambda p: p.send("EASTIE"),  # the same huddle's other keyword
    )
    assert_joined_once(services, replies)


def test_a_join_and_a_stop_from_a_new_number_at_once_are_both_kept(
    app: Flask, services: Services, logan: None
) -> None:
    """Held where they claim their MessageSid, both have read that the number is new. Whatever
    the join does, the STOP is on record and the number is suppressed on that sender."""
    replies = at_once(
        app,
        services,
        lambda p: p.send("JOIN LOGAN"),
        lambda p: p.send("STOP"),
        table="inbound_messages",
    )
    assert "Reply YES to confirm" in replies[0]
    assert "Logan Huddle" in replies[1]
    with services.sessions() as session:
        assert session.scalar(select(func.count(Member.id))) == 1
        intents = dict(session.execute(select(InboundMessage.body, InboundMessage.intent)).all())
        suppressed = session.scalar(
            select(func.count(Suppression.id)).where(
                Suppression.address == MARIA,
                Suppression.scope == LOGAN_NUMBER,
                Suppression.lifted_at.is_(None),
            )
        )
    assert intents == {"JOIN LOGAN": "join", "STOP": "opt_out"}
    assert "opt_out" in consent_actions(services)
    assert suppressed == 1


def test_two_joins_from_a_member_at_once_make_one_subscription(
    app: Flask, services: Services, logan: None
) -> None:
    """A member we know (from another huddle's list) joins by text twice at once: both texts
    insert the subscription, the second is decided again and finds it pending."""
    with services.sessions.begin() as session:
        session.add(Member(phone=MARIA, email="maria@example.org"))
    replies = at_once(
        app,
        services,
        lambda p: p.send("JOIN LOGAN"),
        lambda p: p.send("EASTIE"),
        table="subscriptions",
    )
    assert_joined_once(services, replies)


def test_the_same_text_delivered_twice_at_once_is_stored_once(
    app: Flask, services: Services, logan: None
) -> None:
    """A retry that overtakes the first delivery: one row, one ledger row, the same answer."""
    sid = new_sid()
    replies = at_once(
        app,
        services,
        lambda p: p.send("JOIN LOGAN", sid=sid),
        lambda p: p.send("JOIN LOGAN", sid=sid),
    )
    assert replies[0] == replies[1]
    assert "Reply YES to confirm" in replies[0]
    with services.sessions() as session:
        assert session.scalar(select(func.count(InboundMessage.id))) == 1
        assert session.scalar(select(func.count(Member.id))) == 1
    assert consent_actions(services) == ["opt_in_requested"]


def test_a_text_held_back_is_not_answered_before_it_is_stored(
    app: Flask, services: Services, logan: None
) -> None:
    """The hold above really holds: a text cannot finish while it is in place."""
    finished = threading.Event()

    def send(p: Phone) -> TestResponse:
        response = p.send("JOIN LOGAN")
        finished.set()
        return response

    phone = Phone(app.test_client(), MARIA, LOGAN_NUMBER)
    with ThreadPoolExecutor(1) as pool, held(services) as hold:
        future = pool.submit(send, phone)
        hold.wait(1)
        assert not finished.is_set()
    assert future.result(timeout=30).status_code == 200


def test_a_profile_answer_read_before_a_stop_does_not_undo_it(
    app: Flask, services: Services, logan: None
) -> None:
    """The member answers the name question and texts STOP a moment later. The answer has read
    the subscription active and waits to write the name when the STOP comes in. Whatever order
    they then finish in, the answer must not write the state it read over the STOP's: the
    ledger's last word is the opt-out, and so is the subscription's.
    """
    with services.sessions.begin() as session:
        session.scalars(select(Huddle)).one().profile_questions = True
    answering = Phone(app.test_client(), MARIA, LOGAN_NUMBER)
    stopping = Phone(app.test_client(), MARIA, LOGAN_NUMBER)
    answering.text("JOIN LOGAN")
    assert "first name" in answering.text("YES")
    with ThreadPoolExecutor(2) as pool, held(services, "members") as hold:
        answer = pool.submit(answering.send, "Maria")
        hold.wait(1)  # read, and waiting to write members.first_name
        stop = pool.submit(stopping.send, "STOP")
        hold.wait(2, or_until=stop.done)  # STOP writes no member column: it may finish here
    assert answer.result(timeout=30).status_code == stop.result(timeout=30).status_code == 200
    with services.sessions() as session:
        subscription = session.scalars(select(Subscription)).one()
        assert subscription.state == "opted_out"
    assert consent_actions(services)[-1] == "opt_out"
