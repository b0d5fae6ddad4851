"""Inbound MMS: a picture, with or without words, through the signed webhook to the database."""

from __future__ import annotations

from typing import Any

import pytest
from click.testing import CliRunner
from flask.testing import FlaskClient
from sqlalchemy import select

from cli.main import main
from outreach.app.services import Services
from outreach.models import Huddle, InboundMessage, Member, Subscription
from outreach.models import members as m
from tests.webhooks.conftest import MARIA
from tests.webhooks.twilio_helpers import Phone, new_sid

PHOTO = (
    "https://api.twilio.com/2010-04-01/Accounts/AC00/Messages/MM01/Media/ME01",
    "image/jpeg",
)


def join_and_confirm(phone: Phone) -> None:
    phone.text("JOIN LOGAN")
    phone.text("YES")


def last_text(services: Services) -> InboundMessage:
    with services.sessions() as session:
        row = session.scalars(select(InboundMessage).order_by(InboundMessage.id.desc())).first()
        assert row is not None
        return row


def stored_media(services: Services) -> list[tuple[str, str]] | None:
    media = last_text(services).media
    return None if media is None else [(a["url"], a["content_type"]) for a in media]


def test_a_picture_without_words_is_a_reply_for_the_inbox(phone: Phone, services: Services) -> None:
    join_and_confirm(phone)
    assert phone.text("", media=[PHOTO]) == ""  # replies go unanswered
    row = last_text(services)
    assert (row.body, row.intent, row.flagged) == ("", "other", False)
    assert row.huddle_id is not None
    assert stored_media(services) == [PHOTO]
    with services.sessions() as session:
        assert session.scalars(select(Member.last_replied_at)).one() is not None
        assert session.scalars(select(Subscription.state)).one() == m.ACTIVE


def test_a_picture_answers_no_profile_question(phone: Phone, services: Services) -> None:
    """An empty body would otherwise be taken as a skipped name or a ZIP that is no ZIP."""
    with services.sessions.begin() as session:
        session.scalars(select(Huddle)).one().profile_questions = True
    phone.text("LOGAN")
    assert "What's your first name?" in phone.text("YES")
    assert phone.text(" ", media=[PHOTO]) == ""  # filed as a reply; the question still open
    assert last_text(services).intent == "other"
    with services.sessions() as session:
        assert session.scalars(select(Subscription.conversation_step)).one() == "first_name"
    assert "What's your 5-digit ZIP" in phone.text("Maria")
    assert phone.text("", media=[PHOTO]) == ""
    assert phone.text("02128") == "Thanks, you're all set!"
    with services.sessions() as session:
        member = session.scalars(select(Member)).one()
        assert (member.first_name, member.zip) == ("Maria", "02128")


def test_a_picture_from_a_stranger_gets_the_hint_a_text_would(
    phone: Phone, services: Services
) -> None:
    """Not a member here: the same once-a-day how-to-join as "hello" (and no second one)."""
    assert "text a group keyword like" in phone.text("", media=[PHOTO])
    assert last_text(services).intent == "unknown"
    assert stored_media(services) == [PHOTO]
    assert phone.text("", media=[PHOTO]) == ""


def test_words_with_a_picture_are_still_classified(phone: Phone, services: Services) -> None:
    join_and_confirm(phone)
    assert "unsubscribed" in phone.text("STOP", media=[PHOTO])
    assert last_text(services).intent == "opt_out"
    assert stored_media(services) == [PHOTO]
    with services.sessions() as session:
        assert session.scalars(select(Subscription.state)).one() == m.OPTED_OUT


def test_a_join_keyword_with_a_picture_joins(phone: Phone, services: Services) -> None:
    assert "Reply YES to confirm" in phone.text("JOIN LOGAN", media=[PHOTO])
    assert last_text(services).intent == "join"
    assert stored_media(services) == [PHOTO]


def test_several_attachments_keep_their_order_and_types(phone: Phone, services: Services) -> None:
    join_and_confirm(phone)
    media = [
        PHOTO,
        ("https://api.twilio.com/media/ME02", "image/png"),
        ("https://api.twilio.com/media/ME03", "video/mp4"),
    ]
    assert phone.text("from the rally", media=media) == ""
    assert last_text(services).body == "from the rally"
    assert stored_media(services) == media


def test_a_text_without_media_stores_none(phone: Phone, services: Services) -> None:
    phone.text("hello")
    assert last_text(services).media is None


@pytest.mark.parametrize("num_media", ["", "abc", "-1", "1.5", " ", "١", "²", "0x1", "+1"])
def test_an_unreadable_num_media_is_no_media(
    phone: Phone, services: Services, num_media: str
) -> None:
    join_and_confirm(phone)
    response = phone.send("", NumMedia=num_media, MediaUrl0=PHOTO[0], MediaContentType0=PHOTO[1])
    assert response.status_code == 200
    row = last_text(services)
    assert (row.body, row.intent, row.media) == ("", "other", None)


def test_more_than_ten_attachments_are_ten(phone: Phone, services: Services) -> None:
    media = [(f"https://api.twilio.com/media/ME{i:02}", "image/gif") for i in range(12)]
    for num_media in ("12", "1000000", "9" * 5000, " 00011 "):
        assert phone.send("pics", media=media, NumMedia=num_media).status_code == 200
        assert stored_media(services) == media[:10]


def test_broken_attachments_are_skipped_and_types_cut(phone: Phone, services: Services) -> None:
    extra: dict[str, Any] = {
        "NumMedia": "6",
        # 0: no URL at all
        "MediaContentType0": "image/jpeg",
        "MediaUrl1": "javascript:alert(1)",  # not a link Twilio gives
        "MediaUrl2": "https://api.twilio.com/" + "a" * 2000,  # cut, it would point nowhere
        "MediaUrl3": " https://api.twilio.com/media/ME03 ",
        "MediaContentType3": "image/" + "x" * 500,
        "MediaUrl4": "https://api.twilio.com/media/ME04",  # no content type
        "MediaUrl5": "https://api.twilio.com/media/ME05\x00",
        "MediaContentType5": "text/\x00vcard",
    }
    assert phone.send("look", **extra).status_code == 200
    assert stored_media(services) == [
        ("https://api.twilio.com/media/ME03", ("image/" + "x" * 500)[:128]),
        ("https://api.twilio.com/media/ME04", ""),
        ("https://api.twilio.com/media/ME05\ufffd", "text/\ufffdvcard"),
    ]


def test_a_repeated_mms_is_stored_once(phone: Phone, services: Services) -> None:
    join_and_confirm(phone)
    sid = new_sid()
    assert phone.send("", sid=sid, media=[PHOTO]).status_code == 200
    assert phone.send("", sid=sid, media=[PHOTO, PHOTO]).status_code == 200
    with services.sessions() as session:
        rows = session.scalars(select(InboundMessage).where(InboundMessage.message_sid == sid))
        assert [len(row.media or ()) for row in rows] == [1]


def test_the_inbox_command_shows_each_attachment_under_its_text(
    phone: Phone, client: FlaskClient, services: Services, cli: CliRunner
) -> None:
    join_and_confirm(phone)
    phone.text("", media=[PHOTO])
    phone.text("two\nlines \x1b[31m", media=[PHOTO, ("https://api.twilio.com/media/ME02", "")])
    Phone(client, "+16175550199", "+16175550999").text("wrong number")  # no huddle there

    result = cli.invoke(main, ["inbox", "--huddle", "logan", "--limit", "2"])

    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert len(lines) == 5
    assert lines[0].endswith("two lines [31m")  # one line, no escape sequence
    assert MARIA in lines[0]
    assert " other " in lines[0]
    assert lines[1:3] == [
        f"    [{PHOTO[1]}] {PHOTO[0]}",
        "    [?] https://api.twilio.com/media/ME02",
    ]
    assert lines[3].endswith("(no text)")
    assert lines[4] == f"    [{PHOTO[1]}] {PHOTO[0]}"

    everything = cli.invoke(main, ["inbox"])
    assert "wrong number" in everything.output
    assert cli.invoke(main, ["inbox", "--huddle", "nope"]).exit_code == 1


def test_the_inbox_command_says_when_there_is_nothing(cli: CliRunner, services: Services) -> None:
    result = cli.invoke(main, ["inbox"])
    assert (result.exit_code, result.output) == (0, "no texts received\n")
