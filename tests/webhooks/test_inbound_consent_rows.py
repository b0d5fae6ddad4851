"""The exact rows STOP and a join keyword write: the ledger's provenance, suppressions added,
re-armed and lifted, subscriptions' states, steps and times, the text's own row.

These texts write their consent rows through ``outreach.consent`` from the webhook's hot path
(``outreach.sms.inbound.store``); the rows must be the ones written everywhere else.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import time_machine
from flask.testing import FlaskClient
from sqlalchemy import select, update

from outreach.app.services import Services
from outreach.models import ConsentEvent, Huddle, InboundMessage, Member, Subscription, Suppression
from outreach.models import members as m
from outreach.people.huddles import create_huddle
from tests.webhooks.conftest import LOGAN_NUMBER, MARIA
from tests.webhooks.twilio_helpers import Phone

T0 = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
BOSTON_NUMBER = "+16175550199"


def ledger_rows(services: Services) -> list[dict[str, object]]:
    with services.sessions() as session:
        return [
            {
                "member": e.member_id,
                "huddle": e.huddle_id,
                "channel": e.channel,
                "address": e.address,
                "action": e.action,
                "source": e.source,
                "detail": e.detail,
                "sid": e.provider_message_id,
                "ip": e.ip,
                "user_agent": e.user_agent,
                "actor": e.actor,
                "at": e.created_at,
            }
            for e in session.scalars(select(ConsentEvent).order_by(ConsentEvent.id))
        ]


def suppression(services: Services, scope: str) -> Suppression:
    with services.sessions() as session:
        return session.scalars(
            select(Suppression).where(Suppression.address == MARIA, Suppression.scope == scope)
        ).one()


def subscriptions(services: Services) -> dict[str, tuple[str, str | None, datetime]]:
    with services.sessions() as session:
        rows = session.execute(
            select(Huddle.slug, Subscription.state, Subscription.conversation_step)
            .add_columns(Subscription.updated_at)
            .join(Huddle, Huddle.id == Subscription.huddle_id)
        )
        return {slug: (state, step, updated) for slug, state, step, updated in rows}


def ids(services: Services) -> tuple[int, dict[str, int]]:
    with services.sessions() as session:
        member = session.scalars(select(Member.id).where(Member.phone == MARIA)).one()
        huddles = {h.slug: h.id for h in session.scalars(select(Huddle))}
        return member, huddles


def text_at(phone: Phone, when: datetime, body: str, sid: str) -> str:
    with time_machine.travel(when, tick=False):
        return phone.text(body, sid=sid)


def three_huddles(services: Services) -> None:
    """Logan (asks the profile questions) and Eastie on one number, Boston on another."""
    with services.sessions.begin() as session:
        create_huddle(
            session, slug="logan", name="Logan", keywords=["LOGAN"], sender=LOGAN_NUMBER
        ).profile_questions = True
        create_huddle(
            session, slug="eastie", name="Eastie", keywords=["EASTIE"], sender=LOGAN_NUMBER
        )
        create_huddle(
            session, slug="boston", name="Boston", keywords=["BOSTON"], sender=BOSTON_NUMBER
        )


def test_stop_writes_a_ledger_row_per_subscription_it_moves_and_one_suppression(
    client: FlaskClient, services: Services
) -> None:
    three_huddles(services)
    with services.sessions.begin() as session:
        create_huddle(
            session, slug="revere", name="Revere", keywords=["REVERE"], sender=LOGAN_NUMBER
        )
    phone = Phone(client, MARIA, LOGAN_NUMBER)
    text_at(phone, T0, "LOGAN", "SM1")
    text_at(phone, T0, "YES", "SM2")
    text_at(phone, T0, "EASTIE", "SM3")  # pending, never confirmed
    text_at(phone, T0, "REVERE", "SM4")
    text_at(phone, T0, "YES", "SM5")
    text_at(Phone(client, MARIA, BOSTON_NUMBER), T0, "BOSTON", "SM6")
    # Revere's number bounced mid-conversation (21610 moves it without clearing the step).
    with services.sessions.begin() as session:
        session.execute(
            update(Subscription)
            .where(
                Subscription.huddle_id
                == select(Huddle.id).where(Huddle.slug == "revere").scalar_subquery()
            )
            .values(state=m.OPTED_OUT, conversation_step="zip")
        )
    member, huddle = ids(services)
    before = len(ledger_rows(services))
    stop_at = T0 + timedelta(minutes=5)

    reply = text_at(phone, stop_at, "Stop please", "SMSTOP")

    # named for a huddle it stopped: the latest changed (Eastie, joined after Logan), not Revere
    assert reply.startswith("Eastie: You're unsubscribed")
    provenance = {
        "member": member,
        "channel": "sms",
        "address": MARIA,
        "action": "opt_out",
        "source": "keyword",
        "detail": "Stop please",
        "sid": "SMSTOP",
        "ip": None,
        "user_agent": None,
        "actor": "member",
        "at": stop_at,
    }
    new = ledger_rows(services)[before:]
    assert sorted(new, key=lambda row: str(row["huddle"])) == sorted(
        [{**provenance, "huddle": huddle["logan"]}, {**provenance, "huddle": huddle["eastie"]}],
        key=lambda row: str(row["huddle"]),
    )  # nothing for Revere: its consent did not change
    assert subscriptions(services) == {
        "logan": (m.OPTED_OUT, None, stop_at),
        "eastie": (m.OPTED_OUT, None, stop_at),
        "revere": (m.OPTED_OUT, None, stop_at),  # its conversation is over all the same
        "boston": (m.PENDING, None, T0),
    }
    stopped = suppression(services, LOGAN_NUMBER)
    assert (stopped.channel, stopped.reason, stopped.detail) == (
        "sms",
        "stop",
        "SMSTOP: Stop please",
    )
    assert (stopped.created_at, stopped.lifted_at) == (stop_at, None)
    with services.sessions() as session:
        assert session.scalars(select(Suppression.scope)).all() == [LOGAN_NUMBER]
        row = session.scalars(
            select(InboundMessage).where(InboundMessage.message_sid == "SMSTOP")
        ).one()
        assert (row.intent, row.member_id, row.huddle_id) == ("opt_out", member, huddle["eastie"])
        assert row.reply_text == reply


def test_stop_again_rearms_a_lifted_suppression_and_leaves_a_standing_one_alone(
    phone: Phone, services: Services
) -> None:
    text_at(phone, T0, "LOGAN", "SM1")
    text_at(phone, T0, "YES", "SM2")
    text_at(phone, T0 + timedelta(hours=1), "STOP", "SM3")
    text_at(phone, T0 + timedelta(hours=2), "START", "SM4")
    lifted = suppression(services, LOGAN_NUMBER)
    assert (lifted.created_at, lifted.lifted_at) == (
        T0 + timedelta(hours=1),
        T0 + timedelta(hours=2),
    )

    text_at(phone, T0 + timedelta(hours=3), "quit", "SM5")
    rearmed = suppression(services, LOGAN_NUMBER)
    assert (rearmed.created_at, rearmed.lifted_at) == (T0 + timedelta(hours=3), None)
    assert rearmed.detail == "SM5: quit"

    # Already suppressed: a second STOP is on the ledger, the suppression keeps its first cause.
    text_at(phone, T0 + timedelta(hours=4), "STOP", "SM6")
    standing = suppression(services, LOGAN_NUMBER)
    assert (standing.created_at, standing.detail) == (T0 + timedelta(hours=3), "SM5: quit")
    assert ledger_rows(services)[-1]["detail"] == "STOP"
    assert ledger_rows(services)[-1]["huddle"] is None  # nothing moved: the revocation alone


def test_a_join_by_a_number_we_never_met_creates_the_member_pending_with_provenance(
    phone: Phone, services: Services
) -> None:
    reply = text_at(phone, T0, "join logan", "SMJOIN")

    assert "Reply YES to confirm" in reply
    member, huddle = ids(services)
    with services.sessions() as session:
        created = session.scalars(select(Member)).one()
        assert (created.phone, created.created_at) == (MARIA, T0)
        row = session.scalars(select(InboundMessage)).one()
        assert (row.intent, row.member_id, row.huddle_id, row.reply_text) == (
            "join",
            member,
            huddle["logan"],
            reply,
        )
    assert subscriptions(services) == {"logan": (m.PENDING, None, T0)}
    assert ledger_rows(services) == [
        {
            "member": member,
            "huddle": huddle["logan"],
            "channel": "sms",
            "address": MARIA,
            "action": "opt_in_requested",
            "source": "keyword",
            "detail": "join logan",
            "sid": "SMJOIN",
            "ip": None,
            "user_agent": None,
            "actor": "member",
            "at": T0,
        }
    ]
    # The same keyword again while pending asks again and writes nothing more.
    assert text_at(phone, T0 + timedelta(minutes=1), "LOGAN", "SMJOIN2") == reply
    assert len(ledger_rows(services)) == 1
    assert subscriptions(services) == {"logan": (m.PENDING, None, T0)}


def test_a_single_opt_in_join_activates_asks_the_first_question_and_lifts_a_stop(
    client: FlaskClient, services: Services
) -> None:
    with services.sessions.begin() as session:
        create_huddle(
            session,
            slug="boston",
            name="Boston",
            keywords=["BOSTON"],
            sender=BOSTON_NUMBER,
            opt_in_mode="single",
        ).profile_questions = True
    phone = Phone(client, MARIA, BOSTON_NUMBER)
    text_at(phone, T0, "BOSTON", "SM1")
    text_at(phone, T0, "STOP", "SM2")
    assert suppression(services, BOSTON_NUMBER).lifted_at is None

    rejoined = T0 + timedelta(days=1)
    reply = text_at(phone, rejoined, "Boston", "SM3")

    assert "You're in" in reply
    assert reply.endswith("What's your first name? (Reply SKIP to skip)")
    assert subscriptions(services) == {"boston": (m.ACTIVE, "first_name", rejoined)}
    assert suppression(services, BOSTON_NUMBER).lifted_at == rejoined
    assert [(row["action"], row["sid"], row["at"]) for row in ledger_rows(services)] == [
        ("opt_in", "SM1", T0),
        ("opt_out", "SM2", T0),
        ("opt_in", "SM3", rejoined),
    ]
    assert "What's your 5-digit ZIP" in text_at(phone, rejoined, "Maria", "SM4")


def test_yes_activates_every_pending_join_on_the_sender_with_one_welcome(
    client: FlaskClient, services: Services
) -> None:
    three_huddles(services)
    phone = Phone(client, MARIA, LOGAN_NUMBER)
    text_at(phone, T0, "LOGAN", "SM1")
    text_at(phone, T0 + timedelta(minutes=1), "EASTIE", "SM2")
    text_at(Phone(client, MARIA, BOSTON_NUMBER), T0, "BOSTON", "SM3")
    member, huddle = ids(services)
    yes_at = T0 + timedelta(minutes=2)

    reply = text_at(phone, yes_at, "yes!", "SMYES")

    # The welcome of the huddle joined last (Eastie), which asks nothing; every pending join on
    # this number is active, and only there; Logan's question waits for a text of its own.
    assert reply == (
        "Eastie: You're in! Welcome. Up to 4 msgs/month. Msg & data rates may apply. "
        "Reply HELP for help, STOP to opt out."
    )
    assert subscriptions(services) == {
        "logan": (m.ACTIVE, None, yes_at),
        "eastie": (m.ACTIVE, None, yes_at),
        "boston": (m.PENDING, None, T0),
    }
    provenance = {
        "member": member,
        "channel": "sms",
        "address": MARIA,
        "action": "opt_in",
        "source": "keyword",
        "detail": "yes!",
        "sid": "SMYES",
        "ip": None,
        "user_agent": None,
        "actor": "member",
        "at": yes_at,
    }
    assert sorted(ledger_rows(services)[3:], key=lambda row: str(row["huddle"])) == sorted(
        [{**provenance, "huddle": huddle["logan"]}, {**provenance, "huddle": huddle["eastie"]}],
        key=lambda row: str(row["huddle"]),
    )
    with services.sessions() as session:
        row = session.scalars(
            select(InboundMessage).where(InboundMessage.message_sid == "SMYES")
        ).one()
        assert (row.intent, row.member_id, row.huddle_id, row.reply_text) == (
            "confirm",
            member,
            huddle["eastie"],
            reply,
        )


def test_yes_to_a_huddle_that_asks_starts_the_profile_and_lifts_an_old_stop(
    client: FlaskClient, services: Services
) -> None:
    three_huddles(services)
    phone = Phone(client, MARIA, LOGAN_NUMBER)
    text_at(phone, T0, "STOP", "SM1")  # before ever joining: suppressed on this number
    text_at(phone, T0 + timedelta(minutes=1), "LOGAN", "SM2")
    yes_at = T0 + timedelta(minutes=2)

    reply = text_at(phone, yes_at, "Y", "SM3")

    assert reply.startswith("Logan: You're in! Welcome.")
    assert reply.endswith("\nWhat's your first name? (Reply SKIP to skip)")
    assert subscriptions(services) == {"logan": (m.ACTIVE, "first_name", yes_at)}
    assert suppression(services, LOGAN_NUMBER).lifted_at == yes_at
    assert [row["action"] for row in ledger_rows(services)] == [
        "opt_out",
        "opt_in_requested",
        "opt_in",
    ]


def test_start_brings_back_only_what_was_opted_out_on_that_number(
    client: FlaskClient, services: Services
) -> None:
    three_huddles(services)
    phone = Phone(client, MARIA, LOGAN_NUMBER)
    boston = Phone(client, MARIA, BOSTON_NUMBER)
    for p, keyword, sid in (
        (phone, "LOGAN", "SM1"),
        (phone, "EASTIE", "SM2"),
        (boston, "BOSTON", "SM3"),
    ):
        text_at(p, T0, keyword, sid)
        text_at(p, T0, "YES", sid + "Y")
    text_at(phone, T0 + timedelta(hours=1), "STOPALL", "SM4")
    member, huddle = ids(services)
    before = len(ledger_rows(services))
    start_at = T0 + timedelta(hours=2)

    reply = text_at(phone, start_at, "Start", "SMSTART")

    assert reply.startswith(("Logan: You're resubscribed.", "Eastie: You're resubscribed."))
    states = subscriptions(services)
    assert states["logan"] == (m.ACTIVE, None, start_at)
    assert states["eastie"] == (m.ACTIVE, None, start_at)
    assert states["boston"][0] == m.OPTED_OUT  # STOPALL covered it; START here does not
    new = ledger_rows(services)[before:]
    assert {
        (row["huddle"], row["action"], row["sid"], row["detail"], row["at"]) for row in new
    } == {
        (huddle["logan"], "resubscribe", "SMSTART", "Start", start_at),
        (huddle["eastie"], "resubscribe", "SMSTART", "Start", start_at),
    }
    assert all(row["member"] == member and row["actor"] == "member" for row in new)
    # STOPALL's suppression is of every sender: START on one number does not lift it...
    assert suppression(services, "*").lifted_at is None
    # ...but a STOP on this number is lifted, and a STOP on another number is not.
    text_at(phone, start_at, "STOP", "SM5")
    text_at(boston, start_at, "STOP", "SM6")
    restart_at = start_at + timedelta(hours=1)
    assert "resubscribed" in text_at(phone, restart_at, "unstop", "SM7")
    assert suppression(services, LOGAN_NUMBER).lifted_at == restart_at
    assert suppression(services, BOSTON_NUMBER).lifted_at is None


def test_start_or_yes_with_nothing_to_bring_back_writes_nothing(
    phone: Phone, services: Services
) -> None:
    text_at(phone, T0, "LOGAN", "SM1")
    text_at(phone, T0, "YES", "SM2")
    before = (ledger_rows(services), subscriptions(services))

    assert "already signed up" in text_at(phone, T0 + timedelta(hours=1), "START", "SM3")
    assert text_at(phone, T0 + timedelta(hours=1), "yes", "SM4") == ""  # a reply for the inbox

    assert (ledger_rows(services), subscriptions(services)) == before
    with services.sessions() as session:
        member = session.scalars(select(Member)).one()
        assert member.last_replied_at == T0 + timedelta(hours=1)
