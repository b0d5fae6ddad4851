"""The inbox pages: the list's order and counts, a conversation's thread, replies through the
sandbox (once per form, never to someone who opted out), mark done, assignments, canned
replies, escaping, bad input and scoping. Texts come in through the real inbound path."""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable

import pytest
from argon2 import PasswordHasher, profiles
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select, update

from outreach.accounts import passwords, users
from outreach.app.services import Services
from outreach.models import (
    CannedReply,
    Huddle,
    IdempotencyKey,
    InboundMessage,
    InboxAssignment,
    Member,
    Organizer,
    OutboxMessage,
    Subscription,
    Suppression,
)
from outreach.models import accounts as a
from outreach.models import members as m
from outreach.people.huddles import create_huddle
from outreach.sms import inbox as inbox_domain
from outreach.sms.inbound import InboundSms, handle_inbound
from outreach.sms.inbound.message import Media
from tests.web.dashboard.pages import csrf_of
from web.dashboard import inbox as inbox_pages

PASSWORD = "correct horse battery"
LOGAN_SENDER = "+16175550100"
MOAB_SENDER = "+14355550100"
CARRIER_STOPPED = "+16175550101"  # the sandbox refuses it with 21610, as Twilio does after a STOP
UNCERTAIN = "+16175550104"  # the sandbox stores it, then loses the answer (a 500)
MARIA = "+16175550111"
BEN = "+16175550112"
CARL = "+16175550113"
DANA = "+16175550114"
STRANGER = "+16175550115"
INBOX = "/h/logan/inbox/"
XSS = "<img src=x onerror=alert(1)>"

SignIn = Callable[[str], FlaskClient]
_sids = itertools.count(1)


@pytest.fixture(autouse=True)
def cheap_passwords(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(passwords, "_hasher", PasswordHasher.from_parameters(profiles.CHEAPEST))


@pytest.fixture
def people(services: Services) -> None:
    """logan and moab; boss is an admin, lee organizes logan, rae answers logan's inbox, mo
    organizes moab."""
    with services.sessions.begin() as session:
        create_huddle(session, slug="logan", name="Logan", keywords=["LOGAN"], sender=LOGAN_SENDER)
        create_huddle(session, slug="moab", name="Moab", keywords=["MOAB"], sender=MOAB_SENDER)
        users.create_user(session, email="boss@example.org", password=PASSWORD, admin=True)
        for email, name, huddle, role in (
            ("lee@example.org", "Lee", "logan", a.ORGANIZER),
            ("rae@example.org", "Rae", "logan", a.RESPONDER),
            ("mo@example.org", "Mo", "moab", a.ORGANIZER),
        ):
            users.create_user(
                session, email=email, password=PASSWORD, huddles=[huddle], role=role, name=name
            )


def form_key_of(page: str) -> str:
    found = re.search(r'name="form_key" value="([^"]+)"', page)
    assert found, page
    return found.group(1)


@pytest.fixture
def sign_in(app: Flask, people: None) -> SignIn:
    def signed_in(email: str) -> FlaskClient:
        client = app.test_client()
        token = csrf_of(client.get("/login").get_data(as_text=True))
        form = {"email": email, "password": PASSWORD, "csrf_token": token}
        assert client.post("/login", data=form).status_code == 302
        return client

    return signed_in


@pytest.fixture
def lee(sign_in: SignIn) -> FlaskClient:
    return sign_in("lee@example.org")


@pytest.fixture
def rae(sign_in: SignIn) -> FlaskClient:
    return sign_in("rae@example.org")


@pytest.fixture
def mo(sign_in: SignIn) -> FlaskClient:
    return sign_in("mo@example.org")


def text(services: Services, phone: str, body: str, *, media: tuple[Media, ...] = ()) -> None:
    """A text to Logan's number, through the inbound path the Twilio webhook takes."""
    sms = InboundSms(f"SM{next(_sids):032x}", phone, LOGAN_SENDER, body, media=media)
    handle_inbound(services.engine, sms)


def joined(services: Services, phone: str, name: str | None = None) -> int:
    """A member who texted LOGAN and YES (both unread in the inbox); their id."""
    text(services, phone, "LOGAN")
    text(services, phone, "YES")
    with services.sessions.begin() as session:
        member = session.scalars(select(Member).where(Member.phone == phone)).one()
        if name is not None:
            member.first_name = name
        return member.id


def replies_to(services: Services, phone: str) -> list[str]:
    with services.read_sessions() as session:
        return list(
            session.scalars(
                select(OutboxMessage.body)
                .where(OutboxMessage.to_address == phone, OutboxMessage.kind == "reply")
                .order_by(OutboxMessage.id)
            )
        )


def names_in_order(page: str) -> list[str]:
    return re.findall(r'class="who"[^>]*>([^<]+)<', page)


def conversation(client: FlaskClient, member_id: int) -> str:
    response = client.get(f"{INBOX}{member_id}")
    assert response.status_code == 200
    return response.get_data(as_text=True)


def send_reply(
    client: FlaskClient,
    member_id: int,
    body: str,
    *,
    form_key: str | None = None,
    then: str = "stay",
    follow: bool = True,
) -> tuple[int, str]:
    page = conversation(client, member_id)
    form = {
        "csrf_token": csrf_of(page),
        "form_key": form_key if form_key is not None else form_key_of(page),
        "body": body,
        "then": then,
    }
    response = client.post(f"{INBOX}{member_id}/reply", data=form, follow_redirects=follow)
    return response.status_code, response.get_data(as_text=True)


def post(client: FlaskClient, path: str, **fields: str) -> tuple[int, str]:
    token = csrf_of(client.get(INBOX).get_data(as_text=True))
    response = client.post(path, data={"csrf_token": token, **fields}, follow_redirects=True)
    return response.status_code, response.get_data(as_text=True)


def unhandled(services: Services, phone: str) -> int:
    with services.read_sessions() as session:
        return (
            session.scalar(
                select(func.count())
                .select_from(InboundMessage)
                .where(InboundMessage.from_e164 == phone, InboundMessage.handled.is_(False))
            )
            or 0
        )


def organizer_id(services: Services, email: str) -> int:
    with services.read_sessions() as session:
        return session.scalars(select(Organizer.id).where(Organizer.email == email)).one()


# ---------------------------------------------------------------------------------------------
# The list


def test_flagged_first_then_unread_then_done_newest_first_with_counts(
    lee: FlaskClient, services: Services
) -> None:
    ben = joined(services, BEN, "Ben")
    text(services, BEN, "STOP KAVANAUGH")  # a possible opt-out, the oldest text of all
    joined(services, MARIA, "Maria")
    text(services, MARIA, "Is the meeting at 7?")
    carl = joined(services, CARL, "Carl")
    joined(services, DANA, "Dana")
    text(services, DANA, "Can I bring my kids?")
    text(services, CARL, "See you there")  # the newest text, but Carl is handled below
    assert post(lee, f"{INBOX}{carl}/done")[0] == 200

    page = lee.get(INBOX).get_data(as_text=True)
    assert names_in_order(page) == ["Ben", "Dana", "Maria", "Carl"]
    assert "<strong>3 unread conversations</strong>" in page
    assert "1 possible opt-out</span>" in page
    ben_row = page[page.index(f"/inbox/{ben}") : page.index("Dana")]
    assert "Possible opt-out" in ben_row
    assert "3 unread" in ben_row  # LOGAN, YES and the maybe-STOP
    assert "STOP KAVANAUGH" in ben_row
    assert page.count('class="badge count"') == 3  # Carl's row has no unread count
    assert "Can I bring my kids?" in page

    unread = lee.get(INBOX, query_string={"filter": "unread"}).get_data(as_text=True)
    assert names_in_order(unread) == ["Ben", "Dana", "Maria"]


def test_the_list_pages_in_the_same_order(
    lee: FlaskClient, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(inbox_pages, "PAGE_SIZE", 2)
    for phone, name in ((BEN, "Ben"), (MARIA, "Maria"), (CARL, "Carl"), (DANA, "Dana")):
        joined(services, phone, name)
    text(services, BEN, "STOP KAVANAUGH")
    seen: list[str] = []
    url: str | None = INBOX
    while url is not None:
        page = lee.get(url).get_data(as_text=True)
        seen += names_in_order(page)
        found = re.search(r'href="([^"]+)">Older conversations', page)
        url = found.group(1).replace("&amp;", "&") if found else None
    assert seen == ["Ben", "Dana", "Carl", "Maria"]
    # a cursor that is not one is the first page, not an error
    for bad in ("nonsense", "-3", "9" * 40, "１２"):
        response = lee.get(INBOX, query_string={"after": bad, "filter": "bogus"})
        assert response.status_code == 200
        assert names_in_order(response.get_data(as_text=True)) == ["Ben", "Dana"]


def test_the_times_are_on_the_huddles_clock(lee: FlaskClient, services: Services) -> None:
    joined(services, MARIA, "Maria")
    with services.sessions.begin() as session:
        session.execute(
            update(Huddle).where(Huddle.slug == "logan").values(timezone="America/Denver")
        )
    page = lee.get(INBOX).get_data(as_text=True)
    assert re.search(r'<time class="when" datetime="[^"]+">\w{3} \d+, \d+:\d\d [AP]M M[SD]T<', page)


def test_a_strangers_texts_show_masked_and_can_be_marked_done(
    lee: FlaskClient, services: Services
) -> None:
    text(services, STRANGER, "who is this?")
    page = lee.get(INBOX).get_data(as_text=True)
    assert "+1617***15" in page
    assert STRANGER not in page  # nor hidden in a form: the button names a text, not a number
    assert "not a member" in page
    action = re.search(r'action="(/h/logan/inbox/numbers/\d+/done)"', page)
    assert action
    status, after = post(lee, action.group(1))
    assert status == 200
    assert "Marked done." in after
    assert unhandled(services, STRANGER) == 0
    assert "Nothing unread" in after
    assert post(lee, "/h/logan/inbox/numbers/999999/done")[0] == 404


# ---------------------------------------------------------------------------------------------
# A conversation and replies


def test_the_thread_shows_their_texts_our_answers_and_pictures(
    rae: FlaskClient, services: Services
) -> None:
    maria = joined(services, MARIA, "Maria")
    photo = "https://api.twilio.com/2010-04-01/Accounts/AC00/Messages/MM01/Media/ME01"
    text(services, MARIA, "our sign", media=(Media(photo, "image/jpeg"),))
    page = conversation(rae, maria)
    bodies = re.findall(r'<span class="thread-body">(.*?)</span>', page, re.S)
    assert bodies[0::2] == ["LOGAN", "YES", "our sign"]
    assert len(bodies) == 5  # two automatic answers between
    assert f'<a href="{photo}" rel="noopener noreferrer" target="_blank">Attachment 1</a>' in page
    assert "(image/jpeg)" in page
    assert '<label for="body">Your reply</label>' in page
    assert "Send reply</button>" in page
    assert "+1617***11" in page
    assert MARIA not in page


def test_a_reply_goes_out_through_the_sandbox_and_shows_in_the_thread(
    rae: FlaskClient, services: Services
) -> None:
    maria = joined(services, MARIA, "Maria")
    text(services, MARIA, "Is the meeting at 7?")
    status, page = send_reply(rae, maria, "  Yes, 7pm at the library  ")
    assert status == 200
    assert "Reply sent." in page
    assert replies_to(services, MARIA) == ["Yes, 7pm at the library"]
    with services.read_sessions() as session:
        row = session.scalars(select(OutboxMessage).where(OutboxMessage.kind == "reply")).one()
        assert (row.from_address, row.member_id) == (LOGAN_SENDER, maria)
    bodies = re.findall(r'<span class="thread-body">(.*?)</span>', page, re.S)
    assert bodies[-1] == "Yes, 7pm at the library"
    assert unhandled(services, MARIA) == 3  # answering is not marking done


def test_send_and_mark_done(rae: FlaskClient, services: Services) -> None:
    maria = joined(services, MARIA, "Maria")
    status, page = send_reply(rae, maria, "Welcome!", then="done")
    assert status == 200
    assert "Reply sent, and the conversation marked done." in page
    assert "Nothing unread" in page
    assert replies_to(services, MARIA) == ["Welcome!"]
    assert unhandled(services, MARIA) == 0


def test_a_member_who_opted_out_is_refused_and_nothing_is_sent(
    rae: FlaskClient, services: Services
) -> None:
    maria = joined(services, MARIA, "Maria")
    page = conversation(rae, maria)  # the form, opened before they stop
    text(services, MARIA, "STOP")
    form = {
        "csrf_token": csrf_of(page),
        "form_key": form_key_of(page),
        "body": "Are you sure?",
        "then": "stay",
    }
    response = rae.post(f"{INBOX}{maria}/reply", data=form)
    assert response.status_code == 409
    assert "Not sent: This member opted out of this huddle&#39;s texts." in response.get_data(
        as_text=True
    )
    assert replies_to(services, MARIA) == []
    now = conversation(rae, maria)
    assert "You cannot text them: This member opted out" in now
    assert 'id="reply-form"' not in now
    with services.read_sessions() as session:  # the key was released: nothing to remember
        assert session.scalar(select(func.count()).select_from(IdempotencyKey)) == 0


def test_two_clicks_on_send_text_once(rae: FlaskClient, services: Services) -> None:
    maria = joined(services, MARIA, "Maria")
    page = conversation(rae, maria)
    form = {"csrf_token": csrf_of(page), "form_key": form_key_of(page), "body": "See you!"}
    first = rae.post(f"{INBOX}{maria}/reply", data=form)
    second = rae.post(f"{INBOX}{maria}/reply", data=form, follow_redirects=True)
    assert first.status_code == 302
    assert second.status_code == 200
    assert "already sent" in second.get_data(as_text=True)
    assert replies_to(services, MARIA) == ["See you!"]
    # a new page is a new form: a second reply is a second text
    assert send_reply(rae, maria, "One more thing")[0] == 200
    assert replies_to(services, MARIA) == ["See you!", "One more thing"]


def test_a_form_whose_key_is_claimed_by_a_send_in_progress_sends_nothing(
    rae: FlaskClient, services: Services
) -> None:
    maria = joined(services, MARIA, "Maria")
    page = conversation(rae, maria)
    key = form_key_of(page)
    with services.sessions.begin() as session:  # the first click, still talking to the provider
        session.add(
            IdempotencyKey(
                organizer_id=organizer_id(services, "rae@example.org"),
                key=inbox_domain.FORM_KEY_PREFIX + key,
                fingerprint="x" * 64,
            )
        )
    status, _ = send_reply(rae, maria, "Hello", form_key=key)
    assert status == 200
    assert replies_to(services, MARIA) == []


def test_a_provider_refusal_is_shown_and_applied(rae: FlaskClient, services: Services) -> None:
    stopped = joined(services, CARRIER_STOPPED, "Sam")
    status, page = send_reply(rae, stopped, "Hello Sam", follow=False)
    assert status == 502
    assert "the provider refused the text" in page
    assert "Hello Sam" in page  # typed text kept
    with services.read_sessions() as session:  # 21610: they stopped at the carrier
        state = session.scalar(select(Subscription.state).where(Subscription.member_id == stopped))
        suppressed = session.scalars(
            select(Suppression.address).where(Suppression.address == CARRIER_STOPPED)
        ).all()
    assert (state, suppressed) == (m.OPTED_OUT, [CARRIER_STOPPED])
    assert replies_to(services, CARRIER_STOPPED) == []
    assert "You cannot text them" in conversation(rae, stopped)


def test_a_lost_provider_answer_keeps_the_key(rae: FlaskClient, services: Services) -> None:
    lost = joined(services, UNCERTAIN, "Una")
    page = conversation(rae, lost)
    key = form_key_of(page)
    status, shown = send_reply(rae, lost, "Hi Una", form_key=key, follow=False)
    assert status == 502
    assert "may have gone out" in shown
    again, _ = send_reply(rae, lost, "Hi Una", form_key=key)
    assert again == 200  # the same form again: refused as a duplicate, not texted twice
    with services.read_sessions() as session:
        sandbox_rows = session.scalar(
            select(func.count())
            .select_from(OutboxMessage)
            .where(OutboxMessage.to_address == UNCERTAIN)
        )
    assert sandbox_rows == 1


@pytest.mark.parametrize(
    ("body", "form_key", "status", "message"),
    [
        ("   ", None, 400, "A reply needs some text."),
        ("x" * 1601, None, 400, "A reply has 1600 characters at most."),
        ("hello", "", 400, "This form is out of date"),
        ("hello", "not-a-uuid", 400, "This form is out of date"),
    ],
)
def test_bad_replies_say_why_and_send_nothing(
    rae: FlaskClient,
    services: Services,
    body: str,
    form_key: str | None,
    status: int,
    message: str,
) -> None:
    maria = joined(services, MARIA, "Maria")
    got, page = send_reply(rae, maria, body, form_key=form_key, follow=False)
    assert got == status
    assert message in page
    assert replies_to(services, MARIA) == []


def test_mark_done_clears_unread(lee: FlaskClient, services: Services) -> None:
    ben = joined(services, BEN, "Ben")
    text(services, BEN, "STOP KAVANAUGH")
    assert "Possible opt-out." in conversation(lee, ben)
    status, page = post(lee, f"{INBOX}{ben}/done")
    assert status == 200
    assert "Marked done." in page
    assert "Nothing unread" in page
    assert "Possible opt-out" not in page
    assert unhandled(services, BEN) == 0


# ---------------------------------------------------------------------------------------------
# Assignments


def test_assign_unassign_and_the_mine_and_unassigned_filters(
    lee: FlaskClient, rae: FlaskClient, services: Services
) -> None:
    maria = joined(services, MARIA, "Maria")
    joined(services, BEN, "Ben")
    rae_id = organizer_id(services, "rae@example.org")
    page = conversation(lee, maria)
    assert '<label for="organizer_id">Who answers this conversation</label>' in page
    offered = re.findall(r'<option value="(\d+)"[^>]*>([^<]+)</option>', page)
    assert sorted(name for _, name in offered) == ["Lee", "Rae", "boss"]

    status, shown = post(lee, f"{INBOX}{maria}/assign", organizer_id=str(rae_id))
    assert status == 200
    assert "Assigned to Rae." in shown
    mine = rae.get(INBOX, query_string={"filter": "mine"}).get_data(as_text=True)
    assert names_in_order(mine) == ["Maria"]
    assert "Assigned to you" in mine
    assert (
        names_in_order(lee.get(INBOX, query_string={"filter": "mine"}).get_data(as_text=True)) == []
    )
    unassigned = lee.get(INBOX, query_string={"filter": "unassigned"}).get_data(as_text=True)
    assert names_in_order(unassigned) == ["Ben"]
    assert "Assigned to Rae" in lee.get(INBOX).get_data(as_text=True)

    status, shown = post(lee, f"{INBOX}{maria}/assign", organizer_id="")
    assert "Nobody is assigned now" in shown
    assert (
        names_in_order(rae.get(INBOX, query_string={"filter": "mine"}).get_data(as_text=True)) == []
    )
    with services.read_sessions() as session:
        assert session.scalar(select(func.count()).select_from(InboxAssignment)) == 0


@pytest.mark.parametrize("chosen", ["mo", "nonsense", "99999999999999", "424242"])
def test_assigning_to_someone_outside_the_huddle_is_refused(
    lee: FlaskClient, services: Services, chosen: str
) -> None:
    maria = joined(services, MARIA, "Maria")
    rae_id = organizer_id(services, "rae@example.org")
    post(lee, f"{INBOX}{maria}/assign", organizer_id=str(rae_id))
    value = str(organizer_id(services, "mo@example.org")) if chosen == "mo" else chosen
    status, page = post(lee, f"{INBOX}{maria}/assign", organizer_id=value)
    assert status == 200
    assert "Not assigned" in page or "Choose a person from the list." in page
    with services.read_sessions() as session:  # unchanged: still Rae's
        assert session.scalars(select(InboxAssignment.organizer_id)).all() == [rae_id]


# ---------------------------------------------------------------------------------------------
# Canned replies


def test_canned_replies_add_edit_delete_and_use(
    lee: FlaskClient, rae: FlaskClient, services: Services
) -> None:
    replies = f"{INBOX}replies"
    page = lee.get(replies).get_data(as_text=True)
    assert '<label for="title">Title</label>' in page
    assert '<label for="reply-body">Text</label>' in page
    status, page = post(lee, replies, title="Meeting time", body="We meet at 7pm, library.")
    assert status == 200
    assert "Canned reply “Meeting time” saved." in page
    with services.read_sessions() as session:
        saved = session.scalars(select(CannedReply)).one()
        reply_id = saved.id

    edit = lee.get(f"{replies}/{reply_id}").get_data(as_text=True)
    assert 'value="Meeting time"' in edit
    status, page = post(lee, f"{replies}/{reply_id}", title="Meeting", body="7pm at the library.")
    assert "Canned reply “Meeting” saved." in page

    # a responder uses it: the picker offers it, and (without JavaScript) fills the reply box
    maria = joined(services, MARIA, "Maria")
    shown = conversation(rae, maria)
    assert '<label for="canned">Canned reply</label>' in shown
    assert f'<option value="{reply_id}" data-body="7pm at the library.">Meeting</option>' in shown
    filled = rae.get(f"{INBOX}{maria}", query_string={"canned": reply_id}).get_data(as_text=True)
    assert re.search(r"<textarea[^>]*>7pm at the library.</textarea>", filled)
    assert rae.get(f"{INBOX}{maria}", query_string={"canned": "x"}).status_code == 200

    status, page = post(lee, f"{replies}/{reply_id}/delete")
    assert "Canned reply “Meeting” deleted." in page
    with services.read_sessions() as session:
        assert session.scalar(select(func.count()).select_from(CannedReply)) == 0


@pytest.mark.parametrize(
    ("title", "body", "message"),
    [
        ("", "text", "Give the reply a short title"),
        ("x" * 81, "text", "A title has at most 80 characters."),
        ("Hello", "   ", "Type the text the reply sends."),
        ("Hello", "x" * 1601, "A reply has at most 1,600 characters; this one has 1,601."),
        ("meeting TIME", "again", "Another canned reply has this title"),
    ],
)
def test_bad_canned_replies_say_why_and_change_nothing(
    lee: FlaskClient, services: Services, title: str, body: str, message: str
) -> None:
    post(lee, f"{INBOX}replies", title="Meeting time", body="7pm")
    token = csrf_of(lee.get(f"{INBOX}replies").get_data(as_text=True))
    response = lee.post(f"{INBOX}replies", data={"csrf_token": token, "title": title, "body": body})
    assert response.status_code == 400
    assert message in response.get_data(as_text=True)
    with services.read_sessions() as session:
        assert session.scalars(select(CannedReply.title)).all() == ["Meeting time"]


def test_responders_use_canned_replies_but_do_not_manage_them(
    lee: FlaskClient, rae: FlaskClient, services: Services
) -> None:
    post(lee, f"{INBOX}replies", title="Hi", body="Hello!")
    with services.read_sessions() as session:
        reply_id = session.scalars(select(CannedReply.id)).one()
    assert "Canned replies</a>" in lee.get(INBOX).get_data(as_text=True)
    assert "Canned replies</a>" not in rae.get(INBOX).get_data(as_text=True)
    token = csrf_of(rae.get(INBOX).get_data(as_text=True))
    assert rae.get(f"{INBOX}replies").status_code == 404
    assert rae.get(f"{INBOX}replies/{reply_id}").status_code == 404
    for path in ("replies", f"replies/{reply_id}", f"replies/{reply_id}/delete"):
        got = rae.post(f"{INBOX}{path}", data={"csrf_token": token, "title": "X", "body": "Y"})
        assert got.status_code == 404
    with services.read_sessions() as session:
        assert session.scalars(select(CannedReply.title)).all() == ["Hi"]


# ---------------------------------------------------------------------------------------------
# Escaping, bad ids, scoping


def test_names_and_bodies_are_text_never_html(lee: FlaskClient, services: Services) -> None:
    maria = joined(services, MARIA, "<script>alert(2)</script>")
    text(services, MARIA, XSS, media=(Media("javascript:alert(3)", "image/png"),))
    post(lee, f"{INBOX}replies", title="<b>bold</b>", body='"><script>alert(4)</script>')
    for page in (
        lee.get(INBOX).get_data(as_text=True),
        conversation(lee, maria),
        lee.get(f"{INBOX}replies").get_data(as_text=True),
    ):
        assert XSS not in page
        assert "<script>alert" not in page
        assert "<b>bold</b>" not in page
        assert 'href="javascript:' not in page
    shown = conversation(lee, maria)
    assert "&lt;img src=x onerror=alert(1)&gt;" in shown
    assert "&lt;script&gt;alert(2)&lt;/script&gt;" in shown
    assert "Attachment 1 (image/png)" in shown


def test_another_huddles_organizer_gets_404_and_changes_nothing(
    mo: FlaskClient, lee: FlaskClient, services: Services
) -> None:
    maria = joined(services, MARIA, "Maria")
    post(lee, f"{INBOX}replies", title="Hi", body="Hello!")
    with services.read_sessions() as session:
        reply_id = session.scalars(select(CannedReply.id)).one()
    token = csrf_of(mo.get("/h/moab/inbox/").get_data(as_text=True))
    for prefix in ("/h/logan/inbox", "/h/moab/inbox"):
        if prefix == "/h/logan/inbox":
            assert mo.get(f"{prefix}/").status_code == 404
        assert mo.get(f"{prefix}/{maria}").status_code == 404
        assert mo.get(f"{prefix}/replies/{reply_id}").status_code == 404
        for path, data in (
            (f"{maria}/reply", {"body": "hi", "form_key": inbox_domain.new_form_key()}),
            (f"{maria}/done", {}),
            (f"{maria}/assign", {"organizer_id": ""}),
            (f"replies/{reply_id}", {"title": "X", "body": "Y"}),
            (f"replies/{reply_id}/delete", {}),
        ):
            got = mo.post(f"{prefix}/{path}", data={"csrf_token": token, **data})
            assert got.status_code == 404, (prefix, path)
    assert replies_to(services, MARIA) == []
    assert unhandled(services, MARIA) == 2
    with services.read_sessions() as session:
        assert session.scalars(select(CannedReply.title)).all() == ["Hi"]
    assert "Maria" not in mo.get("/h/moab/inbox/").get_data(as_text=True)


@pytest.mark.parametrize("member", ["99999999999999999999", "123456", "abc", "-1"])
def test_unknown_and_malformed_ids_are_404(lee: FlaskClient, member: str) -> None:
    assert lee.get(f"{INBOX}{member}").status_code == 404
    token = csrf_of(lee.get(INBOX).get_data(as_text=True))
    assert lee.post(f"{INBOX}{member}/done", data={"csrf_token": token}).status_code == 404
    assert lee.get(f"{INBOX}replies/{member}").status_code == 404
