"""Inbound texts end to end: signed webhooks through the Flask app, state read from the DB."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import time_machine
from flask.testing import FlaskClient
from sqlalchemy import Connection, delete, func, select, update

from outreach import consent
from outreach.app.services import Services
from outreach.models import (
    ConsentEvent,
    Huddle,
    HuddleDirectoryStamp,
    InboundMessage,
    JoinKeyword,
    Member,
    Subscription,
    Suppression,
)
from outreach.models import members as m
from outreach.people.huddles import create_huddle
from outreach.sms.inbound import directory, store
from tests.webhooks.conftest import LOGAN_NUMBER, MARIA
from tests.webhooks.twilio_helpers import Phone, new_sid, signed_post
from tests.workers.campaign_helpers import add_members


def sub_state(services: Services, number: str = MARIA, slug: str = "logan") -> str | None:
    with services.sessions() as session:
        return session.scalar(
            select(Subscription.state)
            .join(Member, Member.id == Subscription.member_id)
            .join(Huddle, Huddle.id == Subscription.huddle_id)
            .where(Member.phone == number, Huddle.slug == slug, Subscription.channel == "sms")
        )


def ledger(services: Services, number: str = MARIA) -> list[tuple[str, str]]:
    with services.sessions() as session:
        return [
            (e.action, e.source)
            for e in session.scalars(
                select(ConsentEvent).where(ConsentEvent.address == number).order_by(ConsentEvent.id)
            )
        ]


def join_and_confirm(phone: Phone) -> None:
    phone.text("JOIN LOGAN")
    phone.text("YES")


@pytest.mark.parametrize(
    "body", ["LOGAN", "join logan", "Logan!", " logan ", "JOIN: Logan", "LOGNA"]
)
def test_keyword_forms_start_a_double_opt_in(phone: Phone, services: Services, body: str) -> None:
    reply = phone.text(body)
    assert "Logan Huddle" in reply
    for required in ("Reply YES to confirm", "Msg & data rates may apply", "HELP", "STOP"):
        assert required in reply
    assert sub_state(services) == m.PENDING
    assert ledger(services) == [("opt_in_requested", "keyword")]


def test_keywords_added_or_removed_count_from_the_next_text(
    phone: Phone, services: Services
) -> None:
    """Texts are classified early with the keywords last seen on the number: never stale ones."""
    assert "To join" in phone.text("hello")  # the number's keywords (LOGAN, EASTIE) now known
    with services.sessions.begin() as session:
        logan = session.scalars(select(Huddle).where(Huddle.slug == "logan")).one()
        logan.keywords.append(JoinKeyword(keyword="ROSES"))
        logan.keywords.remove(next(k for k in logan.keywords if k.keyword == "EASTIE"))
    assert "Reply YES to confirm" in phone.text("roses")
    other = Phone(phone.client, "+16175550122", LOGAN_NUMBER)
    assert "To join" in other.text("eastie")
    assert sub_state(services, "+16175550122") is None


def _count_huddle_reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The numbers whose huddles the hot path reads from the database, one entry per read."""
    reads: list[str] = []
    read = directory.read_huddles

    def counted(db: Connection, number: directory.Number) -> Any:
        reads.append(number[0])
        return read(db, number)

    monkeypatch.setattr(directory, "read_huddles", counted)
    return reads


def test_the_huddles_on_a_number_are_read_again_only_when_they_changed(
    phone: Phone, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads = _count_huddle_reads(monkeypatch)
    assert "Reply YES to confirm" in phone.text("LOGAN")
    assert "You're in" in phone.text("YES")
    assert phone.text("See you Saturday") == ""
    assert reads == [LOGAN_NUMBER]  # once for the three texts
    with services.sessions.begin() as session:
        session.scalars(select(Huddle)).one().help_text = "Logan: call 617-555-0100."
    assert phone.text("HELP") == "Logan: call 617-555-0100."
    assert phone.text("HELP") == "Logan: call 617-555-0100."
    assert reads == [LOGAN_NUMBER] * 2


def test_without_the_stamp_row_the_huddles_are_read_for_every_text(
    phone: Phone, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    with services.sessions.begin() as session:
        session.execute(delete(HuddleDirectoryStamp))
    reads = _count_huddle_reads(monkeypatch)
    assert "Reply YES to confirm" in phone.text("LOGAN")
    assert "You're in" in phone.text("YES")
    assert reads == [LOGAN_NUMBER] * 2
    with services.sessions.begin() as session:
        session.scalars(select(Huddle)).one().help_text = "Logan: call 617-555-0100."
    assert phone.text("HELP") == "Logan: call 617-555-0100."


def test_yes_confirms_and_welcomes(phone: Phone, services: Services) -> None:
    phone.text("JOIN LOGAN")
    reply = phone.text("Yes!")
    assert "You're in" in reply
    assert sub_state(services) == m.ACTIVE
    assert ledger(services) == [("opt_in_requested", "keyword"), ("opt_in", "keyword")]
    with services.sessions() as session:
        sid = session.scalars(
            select(ConsentEvent.provider_message_id).order_by(ConsentEvent.id)
        ).all()
        assert all(s and s.startswith("SM") for s in sid)


def test_profile_conversation_never_swallows_stop_or_help(phone: Phone, services: Services) -> None:
    with services.sessions.begin() as session:
        session.scalars(select(Huddle)).one().profile_questions = True
    phone.text("LOGAN")
    assert "What's your first name?" in phone.text("YES")
    assert "Logan Huddle: For help" in phone.text("HELP")  # HELP answered, conversation waits
    assert "What's your 5-digit ZIP" in phone.text("Maria")
    assert "5-digit ZIP" in phone.text("somewhere")
    assert phone.text("02128") == "Thanks, you're all set!"
    with services.sessions() as session:
        member = session.scalars(select(Member)).one()
        assert (member.first_name, member.zip) == ("Maria", "02128")
    # A second member skips, then STOP ends everything mid-conversation.
    other = Phone(phone.client, "+16175550112", LOGAN_NUMBER)
    other.text("LOGAN")
    other.text("YES")
    assert "ZIP" in other.text("SKIP")
    assert "unsubscribed" in other.text("stop")
    assert sub_state(services, "+16175550112") == m.OPTED_OUT
    assert other.text("02128") == ""  # no longer in a conversation: it is just a reply


OPT_OUTS = [
    "STOP",
    "stop",
    "Stop.",
    " STOP ",
    "STOPALL",
    "UNSUBSCRIBE",
    "cancel",
    "END",
    "quit",
    "Revoke",
    "OPTOUT",
    "opt out",
    "Opt-out",
    "stop texting me",
    "Please remove me",
    "unsubscribe me",
    "don't text me",
    "Stop texting me!!",
    "para",
    "ALTO",
    "cancelar",
    "baja",
    "STOP 🙏",
]


@pytest.mark.parametrize("body", OPT_OUTS)
def test_every_opt_out_form_is_committed_with_one_confirmation(
    phone: Phone, services: Services, body: str
) -> None:
    join_and_confirm(phone)
    reply = phone.text(body)
    assert "unsubscribed" in reply
    assert "no more messages" in reply
    assert reply.count("\n") == 0  # one message, no marketing
    assert sub_state(services) == m.OPTED_OUT
    actions = ledger(services)
    assert actions[-1] == ("opt_out", "keyword")
    with services.sessions() as session:
        event = session.scalars(select(ConsentEvent).order_by(ConsentEvent.id.desc())).first()
        assert event is not None
        assert event.detail == body
        assert event.provider_message_id is not None
        assert event.provider_message_id.startswith("SM")
        scopes = set(session.scalars(select(Suppression.scope).where(Suppression.address == MARIA)))
        assert scopes == ({"*"} if body.upper() == "STOPALL" else {LOGAN_NUMBER})


def test_stop_from_someone_we_never_met_is_still_recorded(phone: Phone, services: Services) -> None:
    assert "unsubscribed" in phone.text("STOP")
    assert ledger(services) == [("opt_out", "keyword")]
    with services.sessions() as session:
        assert consent.is_suppressed(session, "sms", MARIA, LOGAN_NUMBER)


def test_stop_covers_every_huddle_on_that_sender_and_only_those(
    client: FlaskClient, services: Services
) -> None:
    with services.sessions.begin() as session:
        create_huddle(session, slug="logan", name="Logan", keywords=["LOGAN"], sender=LOGAN_NUMBER)
        create_huddle(
            session, slug="eastie", name="Eastie", keywords=["EASTIE"], sender=LOGAN_NUMBER
        )
        create_huddle(
            session, slug="boston", name="Boston", keywords=["BOSTON"], sender="+16175550199"
        )
    shared = Phone(client, MARIA, LOGAN_NUMBER)
    other = Phone(client, MARIA, "+16175550199")
    for p, keyword in ((shared, "LOGAN"), (shared, "EASTIE"), (other, "BOSTON")):
        p.text(keyword)
        p.text("YES")
    assert {sub_state(services, slug=s) for s in ("logan", "eastie", "boston")} == {m.ACTIVE}
    # One confirmation, naming the huddle the member joined last on this sender.
    assert shared.text("STOP").startswith("Eastie: You're unsubscribed")
    with services.sessions() as session:
        stop = session.scalars(select(InboundMessage).where(InboundMessage.body == "STOP")).one()
        assert session.get_one(Huddle, stop.huddle_id).slug == "eastie"
    assert sub_state(services, slug="logan") == m.OPTED_OUT
    assert sub_state(services, slug="eastie") == m.OPTED_OUT
    assert sub_state(services, slug="boston") == m.ACTIVE
    other.text("stopall")
    assert sub_state(services, slug="boston") == m.OPTED_OUT


def test_start_resubscribes_only_what_was_opted_out_on_that_sender(
    phone: Phone, services: Services
) -> None:
    join_and_confirm(phone)
    phone.text("STOP")
    reply = phone.text("START")
    assert "resubscribed" in reply
    assert sub_state(services) == m.ACTIVE
    assert ledger(services)[-1] == ("resubscribe", "keyword")
    with services.sessions() as session:
        assert not consent.is_suppressed(session, "sms", MARIA, LOGAN_NUMBER)
    phone.text("STOP")
    assert "resubscribed" in phone.text("yes")  # YES with nothing pending acts as START
    assert sub_state(services) == m.ACTIVE


def test_help_is_the_huddles_help_text_and_changes_nothing(
    phone: Phone, services: Services
) -> None:
    reply = phone.text("help")
    assert reply.startswith("Logan Huddle: For help")
    assert "Msg & data rates may apply" in reply
    assert "STOP" in reply
    with services.sessions.begin() as session:
        session.scalars(select(Huddle)).one().help_text = "Logan: call 617-555-0100. STOP to end."
    assert phone.text("INFO") == "Logan: call 617-555-0100. STOP to end."
    assert ledger(services) == []


def test_ambiguous_stop_is_flagged_not_applied(phone: Phone, services: Services) -> None:
    join_and_confirm(phone)
    start = datetime.now(UTC)
    with time_machine.travel(start, tick=False):
        assert phone.text("STOP KAVANAUGH") == "Reply STOP to stop texts from Logan Huddle."
    assert sub_state(services) == m.ACTIVE
    with services.sessions() as session:
        message = session.scalars(select(InboundMessage).order_by(InboundMessage.id.desc())).first()
        assert message is not None
        assert message.flagged is True
        assert message.intent == "maybe_opt_out"
    with time_machine.travel(start + timedelta(hours=23), tick=False):
        assert phone.text("stop line 3") == ""  # told once a day, still flagged
        assert "text a group keyword like" not in phone.text("hello who is this")
    with time_machine.travel(start + timedelta(hours=24, minutes=1), tick=False):
        assert phone.text("STOP KAVANAUGH") == "Reply STOP to stop texts from Logan Huddle."
    assert sub_state(services) == m.ACTIVE
    with services.sessions() as session:
        flagged = session.scalars(select(InboundMessage).where(InboundMessage.flagged)).all()
        assert len(flagged) == 3


def test_replies_go_to_the_inbox_without_an_answer(phone: Phone, services: Services) -> None:
    join_and_confirm(phone)
    assert phone.text("What time is the rally? 🎉 ¿dónde?") == ""
    with services.sessions() as session:
        message = session.scalars(select(InboundMessage).order_by(InboundMessage.id.desc())).first()
        assert message is not None
        assert message.intent == "other"
        assert message.huddle_id is not None
        assert message.body == "What time is the rally? 🎉 ¿dónde?"
        assert session.scalars(select(Member)).one().last_replied_at is not None


def test_a_member_texting_in_another_format_is_the_same_member(
    phone: Phone, services: Services
) -> None:
    join_and_confirm(phone)
    national = Phone(phone.client, "(617) 555-0111", LOGAN_NUMBER)  # MARIA, not as E.164
    assert national.text("on my way") == ""
    with services.sessions() as session:
        message = session.scalars(select(InboundMessage).order_by(InboundMessage.id.desc())).first()
        assert message is not None
        assert message.from_e164 == MARIA
        assert message.member_id == session.scalars(select(Member.id)).one()
        assert message.intent == "other"


def test_a_member_on_file_is_recognized_without_revalidating_the_number(
    client: FlaskClient, logan: None, services: Services
) -> None:
    """A number stored when valid stays the member's, even if the numbering plan changes.

    +1 555 200 0000 is not a valid number today (555 is no area code). Stored as if validated
    under older metadata, its STOP is still applied: a member is never lost to a metadata update.
    """
    with services.sessions.begin() as session:
        (member,) = add_members(session, session.scalars(select(Huddle)).one(), 1, area="555")
        stored = member.phone
    assert stored == "+15552000000"
    assert "unsubscribed" in Phone(client, stored, LOGAN_NUMBER).text("STOP").lower()
    assert sub_state(services, stored) == m.OPTED_OUT
    stranger = Phone(client, "+15552000001", LOGAN_NUMBER)  # same shape, not on file, invalid
    assert stranger.text("STOP") == ""
    with services.sessions() as session:
        ignored = session.scalars(select(InboundMessage).order_by(InboundMessage.id.desc())).first()
        assert ignored is not None
        assert ignored.intent == "ignored"
        assert ignored.from_e164 is None


def test_strangers_get_one_join_hint_a_day(phone: Phone, client: FlaskClient) -> None:
    start = datetime.now(UTC)
    with time_machine.travel(start, tick=False):
        assert "text a group keyword like" in phone.text("hello who is this")
    with time_machine.travel(start + timedelta(hours=23), tick=False):
        assert phone.text("hello??") == ""
        other = Phone(client, "+16175550112", LOGAN_NUMBER)  # the hint is per number
        assert "text a group keyword like" in other.text("hi")
    with time_machine.travel(start + timedelta(hours=24, minutes=1), tick=False):
        assert "text a group keyword like" in phone.text("still there?")
        assert phone.text("hello?") == ""


def test_the_hint_check_reads_the_hint_index(services: Services) -> None:
    """Only texts answered with the hint are indexed by number (an index on every text's number
    cost each text a page written): the check must name the index's predicate word for word, or
    it scans every text ever received."""
    dialect = services.engine.dialect
    compiled = store.HINTED_SINCE.compile(dialect=dialect)
    with services.engine.connect() as connection:
        if dialect.name == "postgresql":
            connection.exec_driver_sql("SET LOCAL enable_seqscan = off")
            values = {"phone": MARIA, "intent": "unknown", "since": datetime.now(UTC), "param_1": 1}
            rows = connection.exec_driver_sql(f"EXPLAIN {compiled}", values)
        else:
            values = {
                "phone": MARIA,
                "intent": "unknown",
                "since": "2026",
                "param_1": 1,
                "param_2": 0,
            }
            ordered = tuple(values[name] for name in compiled.positiontup or ())
            rows = connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}", ordered)
        plan = " ".join(str(value) for row in rows for value in row)
    assert "ix_inbound_messages_hints" in plan, plan


def test_the_join_hint_names_the_program_only_when_the_number_has_one(
    client: FlaskClient, phone: Phone, services: Services
) -> None:
    # Keywords come first to last; the sender's first huddle's first keyword is the example.
    assert phone.text("hi").startswith("Logan Huddle: To join, text a group keyword like EASTIE ")
    with services.sessions.begin() as session:
        create_huddle(
            session, slug="revere", name="Revere", keywords=["REVERE"], sender=LOGAN_NUMBER
        )
    other = Phone(client, "+16175550112", LOGAN_NUMBER)
    assert other.text("hi").startswith(
        "Huddle Outreach: To join, text a group keyword like EASTIE "
    )


def test_the_zip_question_greets_by_the_name_given_or_on_file(
    phone: Phone, services: Services
) -> None:
    with services.sessions.begin() as session:
        session.scalars(select(Huddle)).one().profile_questions = True
    join_and_confirm(phone)
    assert phone.text("  Maria   Luisa ").startswith("Thanks, Maria Luisa! What's your 5-digit ZIP")
    with services.sessions.begin() as session:
        session.execute(update(Subscription).values(conversation_step="first_name"))
    assert phone.text("SKIP").startswith("Thanks, Maria Luisa! What's")  # the name on file
    with services.sessions() as session:
        assert session.scalars(select(Member.first_name)).one() == "Maria Luisa"


def test_a_conversation_step_we_do_not_know_ends_and_the_text_is_a_reply(
    phone: Phone, services: Services
) -> None:
    join_and_confirm(phone)
    with services.sessions.begin() as session:
        session.execute(update(Subscription).values(conversation_step="favorite_color"))
    assert phone.text("blue") == ""
    with services.sessions() as session:
        subscription = session.scalars(select(Subscription)).one()
        assert (subscription.state, subscription.conversation_step) == (m.ACTIVE, None)
        assert session.scalars(select(Member.last_replied_at)).one() is not None
        row = session.scalars(select(InboundMessage).where(InboundMessage.body == "blue")).one()
        assert (row.intent, row.reply_text) == ("other", None)


def test_duplicate_delivery_changes_nothing_and_gets_the_same_answer(
    phone: Phone, services: Services
) -> None:
    sid = new_sid()
    first = phone.send("JOIN LOGAN", sid=sid)
    second = phone.send("JOIN LOGAN", sid=sid)
    assert first.get_data() == second.get_data()
    assert ledger(services) == [("opt_in_requested", "keyword")]
    with services.sessions() as session:
        assert session.scalar(select(func.count(InboundMessage.id))) == 1


@pytest.mark.parametrize(
    ("body", "intent"), [("See you Saturday!", "other"), ("HELP", "help"), ("info", "help")]
)
def test_a_duplicate_reply_or_help_changes_nothing_and_gets_the_same_answer(
    phone: Phone, services: Services, body: str, intent: str
) -> None:
    """Replies and HELP claim their MessageSid with the row complete, after reading: a retry
    finds it taken and writes nothing, not even the reply's last_replied_at."""
    join_and_confirm(phone)
    sid = new_sid()
    start = datetime.now(UTC)
    with time_machine.travel(start, tick=False):
        first = phone.send(body, sid=sid)
    with time_machine.travel(start + timedelta(hours=1), tick=False):
        second = phone.send(body, sid=sid)
    assert first.status_code == second.status_code == 200
    assert first.get_data() == second.get_data()
    with services.sessions() as session:
        member = session.scalars(select(Member)).one()
        row = session.scalars(select(InboundMessage).where(InboundMessage.message_sid == sid)).one()
        assert (row.intent, row.member_id, row.from_e164) == (intent, member.id, MARIA)
        assert row.huddle_id is not None
        assert row.received_at == start
        if intent == "other":  # for the inbox: no answer, the member's last reply is this one
            assert (row.reply_text, member.last_replied_at) == (None, start)
        else:
            assert row.reply_text is not None
            assert member.last_replied_at is None


@pytest.mark.parametrize("sender", ["262966", "TWILIO", "", "+1", "garbage<script>"])
def test_non_number_senders_are_stored_and_ignored(
    client: FlaskClient, logan: None, services: Services, sender: str
) -> None:
    assert Phone(client, sender, LOGAN_NUMBER).text("STOP") == ""
    with services.sessions() as session:
        assert session.scalar(select(func.count(InboundMessage.id))) == 1
        assert session.scalar(select(func.count(Member.id))) == 0


@pytest.mark.parametrize(
    "body", ["", "\x00\x01", "ש" * 2000, "🎉" * 1600, "a" * 100_000, "\u202eSTOP"]
)
def test_any_body_is_handled(phone: Phone, services: Services, body: str) -> None:
    response = phone.send(body)
    assert response.status_code == 200
    with services.sessions() as session:
        assert session.scalar(select(func.count(InboundMessage.id))) == 1


def test_undecodable_bytes_in_the_raw_form_are_survivable(phone: Phone, services: Services) -> None:
    """A body with a lone surrogate encoded as bytes (%ED%A0%80) is not valid UTF-8."""
    from twilio.request_validator import RequestValidator

    from tests.conftest import TEST_AUTH_TOKEN

    raw = "MessageSid=SMsurrogate&From=%2B16175550111&To=%2B16175550100&Body=%ED%A0%80hello"
    # Werkzeug keeps an undecodable escape as it came; the signature covers what the app sees.
    params = {
        "MessageSid": "SMsurrogate",
        "From": MARIA,
        "To": LOGAN_NUMBER,
        "Body": "%ED%A0%80hello",
    }
    signature = RequestValidator(TEST_AUTH_TOKEN).compute_signature(
        "https://outreach.test/webhooks/twilio/sms", params
    )
    response = phone.client.post(
        "/webhooks/twilio/sms",
        data=raw,
        content_type="application/x-www-form-urlencoded",
        headers={"X-Twilio-Signature": signature},
    )
    assert response.status_code == 200
    with services.sessions() as session:
        assert session.scalars(select(InboundMessage.body)).one() == "%ED%A0%80hello"


def test_optouttype_from_advanced_opt_out_is_honored_without_a_second_reply(
    phone: Phone, services: Services
) -> None:
    join_and_confirm(phone)
    assert phone.text("Basta ya", OptOutType="STOP") == ""
    assert sub_state(services) == m.OPTED_OUT


@pytest.mark.parametrize("signature", [None, "", "bm90IGEgc2lnbmF0dXJl", "wrong"])
def test_forged_or_missing_signatures_get_403_and_change_nothing(
    client: FlaskClient, logan: None, services: Services, signature: str | None
) -> None:
    headers = {} if signature is None else {"X-Twilio-Signature": signature}
    params = {"MessageSid": new_sid(), "From": MARIA, "To": LOGAN_NUMBER, "Body": "STOP"}
    for path in ("/webhooks/twilio/sms", "/webhooks/twilio/status"):
        assert client.post(path, data=params, headers=headers).status_code == 403
    with services.sessions() as session:
        assert session.scalar(select(func.count(InboundMessage.id))) == 0
        assert session.scalar(select(func.count(ConsentEvent.id))) == 0


def test_signature_with_another_token_or_tampered_body_is_refused(
    client: FlaskClient, logan: None
) -> None:
    params = {"MessageSid": new_sid(), "From": MARIA, "To": LOGAN_NUMBER, "Body": "hi"}
    assert (
        signed_post(client, "/webhooks/twilio/sms", params, token="another-token").status_code
        == 403
    )
    from twilio.request_validator import RequestValidator

    from tests.conftest import TEST_AUTH_TOKEN

    signature = RequestValidator(TEST_AUTH_TOKEN).compute_signature(
        "https://outreach.test/webhooks/twilio/sms", params
    )
    tampered = {**params, "Body": "STOP"}
    response = client.post(
        "/webhooks/twilio/sms", data=tampered, headers={"X-Twilio-Signature": signature}
    )
    assert response.status_code == 403


def test_parameters_twilio_adds_later_are_covered_by_the_signature(phone: Phone) -> None:
    assert phone.send("hi", FromCity="BOSTON", SomeNewParam="x").status_code == 200


def test_log_lines_mask_the_number_and_keep_info_for_consent_changes(
    phone: Phone, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="outreach.sms.inbound")
    join_and_confirm(phone)
    phone.text("See you Saturday!")
    phone.text("STOP")
    lines = [
        (r.levelno, r.getMessage()) for r in caplog.records if r.name == "outreach.sms.inbound"
    ]
    assert [(level, text.rsplit(": ", 1)[1]) for level, text in lines] == [
        (logging.INFO, "join"),
        (logging.INFO, "confirm"),
        (logging.DEBUG, "other"),
        (logging.INFO, "opt_out"),
    ]
    assert all("+1617***11" in text and MARIA not in text for _, text in lines)
