"""The inbox through the API: texts come in through the signed Twilio webhook, as in production;
replies go out through the sandbox transport and land in its outbox."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select, update

from outreach import consent
from outreach.app.services import Services
from outreach.models import Huddle, IdempotencyKey, Organizer, OutboxMessage, Subscription
from outreach.models import members as m
from tests.web.api.conftest import Caller
from tests.webhooks.twilio_helpers import Phone

Api = Callable[[str], Caller]

LOGAN_NUMBER = "+16175550100"
MARIA = "+16175550111"
BEN = "+16175550112"
STRANGER = "+16175550113"
CARRIER_STOPPED = "+16175550101"  # the sandbox refuses it with 21610, as Twilio does after a STOP
PHOTO = ("https://api.twilio.com/2010-04-01/Accounts/AC00/Messages/MM01/Media/ME01", "image/jpeg")


@pytest.fixture
def texts(api_as: Api, services: Services) -> Callable[[str], Phone]:
    """A phone texting Logan's number (Logan gets one: the shared fixture gives it none)."""
    with services.sessions.begin() as session:
        session.scalars(
            select(Huddle).where(Huddle.slug == "logan")
        ).one().sender_number = LOGAN_NUMBER
    client = api_as("lee").client
    return lambda number: Phone(client, number, LOGAN_NUMBER)


def joined(texts: Callable[[str], Phone], number: str) -> Phone:
    phone = texts(number)
    phone.text("LOGAN")
    phone.text("YES")
    return phone


def member_id(api: Caller, phone: str) -> int:
    found = api("GET", "/huddles/logan/members", query_string={"q": phone}).json["data"]
    assert len(found) == 1, found
    return int(found[0]["id"])


def outbox(services: Services) -> list[OutboxMessage]:
    with services.sessions() as session:
        return list(session.scalars(select(OutboxMessage).order_by(OutboxMessage.id)))


def test_conversations_list_a_possible_opt_out_first_then_the_newest(
    api_as: Api, texts: Callable[[str], Phone]
) -> None:
    ben = joined(texts, BEN)
    assert ben.text("STOP KAVANAUGH") == "Reply STOP to stop texts from Logan."  # flagged
    maria = joined(texts, MARIA)
    maria.text("Is the meeting at 7?")
    texts(STRANGER).text("hello who is this")
    lee = api_as("lee")
    listed = lee("GET", "/huddles/logan/conversations")
    assert listed.status_code == 200, listed.json
    data = listed.json["data"]
    assert [(c["phone"], c["flagged"]) for c in data] == [
        (BEN, True),
        (STRANGER, False),
        (MARIA, False),
    ]
    assert [c["member_id"] for c in data] == [member_id(lee, BEN), None, member_id(lee, MARIA)]
    maria_row = data[2]
    assert maria_row["last_body"] == "Is the meeting at 7?"
    assert maria_row["unhandled"] == 3  # LOGAN, YES and the question
    assert maria_row["name"] is None
    assert maria_row["last_media"] == []
    assert listed.json["next_cursor"] is None

    pages, cursor = [], None
    while True:
        page = lee(
            "GET",
            "/huddles/logan/conversations",
            query_string={"limit": 1, **({"cursor": cursor} if cursor else {})},
        )
        assert page.status_code == 200, page.json
        pages += [c["phone"] for c in page.json["data"]]
        cursor = page.json["next_cursor"]
        if cursor is None:
            break
    assert pages == [BEN, STRANGER, MARIA]
    bad = lee("GET", "/huddles/logan/conversations", query_string={"cursor": "nonsense"})
    assert bad.status_code == 400
    assert bad.json["error"]["code"] == "bad_cursor"


def test_messages_are_oldest_first_with_pictures_and_our_answers(
    api_as: Api, texts: Callable[[str], Phone]
) -> None:
    maria = joined(texts, MARIA)
    maria.text("our sign for saturday", media=[PHOTO])
    rae = api_as("rae")
    mid = member_id(api_as("lee"), MARIA)
    response = rae("GET", f"/huddles/logan/conversations/{mid}/messages")
    assert response.status_code == 200, response.json
    messages = response.json["data"]
    assert [(x["direction"], x["kind"]) for x in messages] == [
        ("in", "text"),
        ("out", "auto"),
        ("in", "text"),
        ("out", "auto"),
        ("in", "text"),
    ]
    assert [x["body"] for x in messages[::2]] == ["LOGAN", "YES", "our sign for saturday"]
    assert messages[-1]["media"] == [{"url": PHOTO[0], "content_type": PHOTO[1]}]
    assert messages[-1]["intent"] == "other"
    assert messages[-1]["handled"] is False
    assert messages[1]["handled"] is None
    assert response.json["truncated"] is False
    listed = rae("GET", "/huddles/logan/conversations").json["data"]
    assert listed[0]["last_media"] == [{"url": PHOTO[0], "content_type": PHOTO[1]}]
    latest = rae(
        "GET", f"/huddles/logan/conversations/{mid}/messages", query_string={"limit": 2}
    ).json
    assert [x["body"] for x in latest["data"]] == [messages[3]["body"], "our sign for saturday"]
    assert latest["truncated"] is True


def test_a_reply_goes_out_once_from_the_huddles_number_and_shows_in_the_conversation(
    api_as: Api, texts: Callable[[str], Phone], services: Services
) -> None:
    joined(texts, MARIA).text("Is the meeting at 7?")
    mid = member_id(api_as("lee"), MARIA)
    rae = api_as("rae")  # responders answer the inbox
    headers = {"Idempotency-Key": "reply-1"}
    sent = rae(
        "POST",
        f"/huddles/logan/conversations/{mid}/reply",
        json={"body": "Yes, 7pm at the library"},
        headers=headers,
    )
    assert sent.status_code == 201, sent.json
    assert (sent.json["direction"], sent.json["kind"], sent.json["body"]) == (
        "out",
        "reply",
        "Yes, 7pm at the library",
    )
    again = rae(
        "POST",
        f"/huddles/logan/conversations/{mid}/reply",
        json={"body": "Yes, 7pm at the library"},
        headers=headers,
    )
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json == sent.json
    rows = outbox(services)
    assert [
        (r.kind, r.provider, r.to_address, r.from_address, r.body, r.member_id) for r in rows
    ] == [("reply", "sandbox", MARIA, LOGAN_NUMBER, "Yes, 7pm at the library", mid)]
    assert rows[0].id == sent.json["id"]
    thread = rae("GET", f"/huddles/logan/conversations/{mid}/messages").json["data"]
    assert thread[-1] == sent.json


@pytest.mark.parametrize("body", ["", "   ", "x" * 1601])
def test_a_reply_needs_a_body_of_one_text(
    api_as: Api, texts: Callable[[str], Phone], services: Services, body: str
) -> None:
    joined(texts, MARIA)
    lee = api_as("lee")
    response = lee(
        "POST", f"/huddles/logan/conversations/{member_id(lee, MARIA)}/reply", json={"body": body}
    )
    assert response.status_code == 422, response.json
    assert response.json["error"]["code"] == "invalid"
    assert outbox(services) == []


def test_no_reply_to_a_member_who_opted_out_or_whose_number_is_suppressed(
    api_as: Api, texts: Callable[[str], Phone], services: Services
) -> None:
    maria = joined(texts, MARIA)
    joined(texts, BEN)
    maria.text("STOP")
    lee = api_as("lee")
    refused = lee(
        "POST",
        f"/huddles/logan/conversations/{member_id(lee, MARIA)}/reply",
        json={"body": "Sorry to see you go"},
    )
    assert refused.status_code == 409, refused.json
    assert refused.json["error"]["code"] == "opted_out"
    joined(texts, STRANGER)  # then opted out by an organizer, as they asked: no suppression
    sid = member_id(lee, STRANGER)
    assert (
        lee("POST", f"/huddles/logan/members/{sid}/opt-out", json={"channel": "sms"}).status_code
        == 200
    )
    refused = lee("POST", f"/huddles/logan/conversations/{sid}/reply", json={"body": "Done!"})
    assert refused.status_code == 409, refused.json
    assert refused.json["error"]["code"] == "opted_out"
    with services.sessions.begin() as session:  # Ben is still subscribed; his number is not
        consent.suppress(session, channel=m.SMS, address=BEN, reason="stop", scope=LOGAN_NUMBER)
    refused = lee(
        "POST", f"/huddles/logan/conversations/{member_id(lee, BEN)}/reply", json={"body": "Hi Ben"}
    )
    assert refused.status_code == 409, refused.json
    assert refused.json["error"]["code"] == "opted_out"
    assert outbox(services) == []
    with services.sessions.begin() as session:
        consent.lift_suppression(session, channel=m.SMS, address=BEN, scope=LOGAN_NUMBER)
    assert (
        lee(
            "POST",
            f"/huddles/logan/conversations/{member_id(lee, BEN)}/reply",
            json={"body": "Hi Ben"},
        ).status_code
        == 201
    )


def test_no_reply_to_someone_who_neither_subscribed_nor_texted(
    api_as: Api, texts: Callable[[str], Phone], services: Services
) -> None:
    lee = api_as("lee")
    held = lee("POST", "/huddles/logan/members", json={"phone": BEN}).json  # imported, no consent
    assert lee("GET", f"/huddles/logan/conversations/{held['id']}/messages").json == {
        "data": [],
        "truncated": False,
    }
    empty = lee("GET", f"/huddles/logan/conversations/{held['id']}")
    assert empty.status_code == 200, empty.json
    assert (empty.json["phone"], empty.json["last_body"], empty.json["unhandled"]) == (BEN, None, 0)
    assert lee("GET", "/huddles/logan/conversations").json["data"] == []  # listed once they text
    refused = lee(
        "POST", f"/huddles/logan/conversations/{held['id']}/reply", json={"body": "Hello"}
    )
    assert refused.status_code == 409, refused.json
    assert refused.json["error"]["code"] == "no_consent"
    assert outbox(services) == []


def test_a_provider_refusal_is_a_502_records_nothing_and_applies_the_error_policy(
    api_as: Api, texts: Callable[[str], Phone], services: Services
) -> None:
    joined(texts, CARRIER_STOPPED)
    lee = api_as("lee")
    mid = member_id(lee, CARRIER_STOPPED)
    failed = lee("POST", f"/huddles/logan/conversations/{mid}/reply", json={"body": "Hello?"})
    assert failed.status_code == 502, failed.json
    assert failed.json["error"]["code"] == "provider_error"
    assert failed.json["error"]["details"] == {"provider_code": "21610"}
    assert outbox(services) == []
    with services.sessions() as session:  # 21610: they STOPped at the carrier
        assert (
            session.scalars(select(Subscription.state).where(Subscription.member_id == mid)).one()
            == m.OPTED_OUT
        )
    again = lee("POST", f"/huddles/logan/conversations/{mid}/reply", json={"body": "Hello?"})
    assert again.json["error"]["code"] == "opted_out"


def test_done_marks_the_texts_handled_and_clears_the_flag(
    api_as: Api, texts: Callable[[str], Phone]
) -> None:
    ben = joined(texts, BEN)
    ben.text("STOP KAVANAUGH")
    joined(texts, MARIA)
    rae = api_as("rae")
    mid = member_id(api_as("lee"), BEN)
    before = rae("GET", f"/huddles/logan/conversations/{mid}").json
    assert (before["flagged"], before["unhandled"]) == (True, 3)
    done = rae("POST", f"/huddles/logan/conversations/{mid}/done")
    assert done.status_code == 200, done.json
    assert (done.json["flagged"], done.json["unhandled"]) == (False, 0)
    assert done.json["last_body"] == "STOP KAVANAUGH"
    assert rae("GET", f"/huddles/logan/conversations/{mid}").json == done.json
    still_open = rae("GET", "/huddles/logan/conversations", query_string={"open": "true"}).json[
        "data"
    ]
    assert [c["phone"] for c in still_open] == [MARIA]
    everyone = rae("GET", "/huddles/logan/conversations").json["data"]
    assert [c["phone"] for c in everyone] == [MARIA, BEN]  # no longer flagged: by newest
    handled = rae("GET", f"/huddles/logan/conversations/{mid}/messages").json["data"]
    assert {x["handled"] for x in handled if x["direction"] == "in"} == {True}
    ben.text("one more thing")
    assert rae("GET", f"/huddles/logan/conversations/{mid}").json["unhandled"] == 1


def test_the_inbox_is_for_the_huddles_people_only(
    api_as: Api, texts: Callable[[str], Phone], client: FlaskClient, services: Services
) -> None:
    joined(texts, MARIA).text("hi")
    mid = member_id(api_as("lee"), MARIA)
    paths = [
        ("GET", "/huddles/logan/conversations", None),
        ("GET", f"/huddles/logan/conversations/{mid}", None),
        ("GET", f"/huddles/logan/conversations/{mid}/messages", None),
        ("POST", f"/huddles/logan/conversations/{mid}/reply", {"body": "hi"}),
        ("POST", f"/huddles/logan/conversations/{mid}/done", None),
    ]
    mo = api_as("mo")
    for method, path, body in paths:
        response = mo(method, path, json=body)
        assert response.status_code == 404, path
        assert response.json["error"]["code"] == "not_found"
        if str(mid) in path:  # Maria texted Logan, not Moab
            assert mo(method, path.replace("/logan/", "/moab/"), json=body).status_code == 404, path
        stranger = client.open(f"/api/v1{path}", method=method, json=body)
        assert stranger.status_code == 401, path
    assert mo("GET", "/huddles/moab/conversations").json == {"data": [], "next_cursor": None}
    assert (
        api_as("admin")("GET", "/huddles/logan/conversations").json["data"][0]["member_id"] == mid
    )
    assert outbox(services) == []
    assert api_as("lee")("GET", f"/huddles/logan/conversations/{mid}").json["unhandled"] == 3


def test_the_openapi_document_describes_the_inbox(api_as: Api) -> None:
    spec = api_as("lee").client.get("/api/v1/openapi.json").json
    assert "/api/v1/huddles/{slug}/conversations/{member_id}/reply" in spec["paths"]
    schemas = spec["components"]["schemas"]
    assert set(schemas["Conversation"]["required"]) >= {
        "member_id",
        "phone",
        "last_body",
        "flagged",
    }
    assert "null" in str(schemas["ConversationMessage"]["properties"]["intent"])


def test_a_reply_racing_another_with_its_key_texts_nobody_and_a_refused_one_frees_its_key(
    api_as: Api, texts: Callable[[str], Phone], services: Services
) -> None:
    joined(texts, MARIA)
    lee = api_as("lee")
    mid = member_id(lee, MARIA)
    path, body = f"/huddles/logan/conversations/{mid}/reply", {"body": "On my way"}
    with services.sessions() as session:
        organizer_id = session.scalars(
            select(Organizer.id).where(Organizer.email == "lee@example.org")
        ).one()
    claimed = lee("POST", path, json=body, headers={"Idempotency-Key": "race"})
    assert claimed.status_code == 201
    with services.sessions.begin() as session:  # as if that first request were still running
        session.execute(
            update(IdempotencyKey)
            .where(IdempotencyKey.organizer_id == organizer_id, IdempotencyKey.key == "race")
            .values(status_code=None, response_body=None)
        )
    racing = lee("POST", path, json=body, headers={"Idempotency-Key": "race"})
    assert (racing.status_code, racing.json["error"]["code"]) == (409, "in_progress")
    assert len(outbox(services)) == 1
    refused = lee("POST", path, json={"body": ""}, headers={"Idempotency-Key": "fix-me"})
    assert refused.status_code == 422
    fixed = lee("POST", path, json={"body": "Fixed"}, headers={"Idempotency-Key": "fix-me"})
    assert fixed.status_code == 201
    assert [r.body for r in outbox(services)] == ["On my way", "Fixed"]
