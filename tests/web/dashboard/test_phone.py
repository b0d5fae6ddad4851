"""The test phone: a text sent from the page goes through the real inbound path (members, the
ledger, the answers), the thread shows both sides, bad input changes nothing, only a huddle's
admins reach it, and with Twilio configured nothing is handled at all."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from argon2 import PasswordHasher, profiles
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select, update

from outreach.accounts import passwords, users
from outreach.app.services import Services
from outreach.app.settings import Settings
from outreach.models import ConsentEvent, Huddle, InboundMessage, Member, Subscription
from outreach.models import accounts as a
from outreach.models import consent as c
from outreach.models import huddles as h
from outreach.models import members as m
from outreach.people.huddles import create_huddle
from outreach.providers.sandbox.sms import SandboxSmsTransport
from outreach.providers.sms import OutboundSms
from outreach.sms import test_phone
from tests.conftest import TEST_ACCOUNT_SID
from tests.web.dashboard.pages import csrf_of

PASSWORD = "correct horse battery"
LOGAN_SENDER = "+16175550100"
MOAB_SENDER = "+14355550100"
PROVO_SENDER = "+18015550100"
NEW_NUMBER = "+16175550142"
PHONE = "/h/logan/phone/"
HELP_TEXT = "Logan Huddle help: write to help@logan.example. Reply STOP to stop."

SignIn = Callable[[str], FlaskClient]


@pytest.fixture(autouse=True)
def cheap_passwords(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(passwords, "_hasher", PasswordHasher.from_parameters(profiles.CHEAPEST))


@pytest.fixture
def people(services: Services) -> None:
    """logan (double opt-in, its own HELP text), provo (single opt-in), moab; boss is an admin
    (the test phone is a settings page: admins only); lee organizes logan, mo moab, rae answers
    logan's inbox."""
    with services.sessions.begin() as session:
        create_huddle(session, slug="logan", name="Logan", keywords=["LOGAN"], sender=LOGAN_SENDER)
        create_huddle(session, slug="moab", name="Moab", keywords=["MOAB"], sender=MOAB_SENDER)
        create_huddle(
            session,
            slug="provo",
            name="Provo",
            keywords=["PROVO"],
            sender=PROVO_SENDER,
            opt_in_mode=h.OPT_IN_SINGLE,
        )
        session.execute(update(Huddle).where(Huddle.slug == "logan").values(help_text=HELP_TEXT))
        users.create_user(session, email="boss@example.org", password=PASSWORD, admin=True)
        for email, huddle, role in (
            ("lee@example.org", "logan", a.ORGANIZER),
            ("mo@example.org", "moab", a.ORGANIZER),
            ("rae@example.org", "logan", a.RESPONDER),
        ):
            users.create_user(session, email=email, password=PASSWORD, huddles=[huddle], role=role)


def signed_in(app: Flask, email: str) -> FlaskClient:
    client = app.test_client()
    token = csrf_of(client.get("/login").get_data(as_text=True))
    form = {"email": email, "password": PASSWORD, "csrf_token": token}
    assert client.post("/login", data=form).status_code == 302
    return client


@pytest.fixture
def sign_in(app: Flask, people: None) -> SignIn:
    return lambda email: signed_in(app, email)


@pytest.fixture
def boss(sign_in: SignIn) -> FlaskClient:
    return sign_in("boss@example.org")


def text(
    client: FlaskClient,
    body: str | None = None,
    *,
    quick: str | None = None,
    number: str = NEW_NUMBER,
    path: str = PHONE,
) -> tuple[int, str]:
    """Send from the test phone as the page's form does; (status, the page that follows)."""
    token = csrf_of(client.get(path).get_data(as_text=True))
    form = {"csrf_token": token, "from_number": number, "body": body or ""}
    if quick is not None:
        form["quick"] = quick
    response = client.post(path, data=form, follow_redirects=True)
    return response.status_code, response.get_data(as_text=True)


def thread(client: FlaskClient, number: str = NEW_NUMBER) -> str:
    response = client.get(f"{PHONE}thread", query_string={"from": number})
    assert response.status_code == 200
    return response.get_data(as_text=True)


def bodies(fragment: str) -> list[str]:
    """The thread's messages as shown, oldest first."""
    return [
        re.sub(r"\s+", " ", found).strip()
        for found in re.findall(r'<span class="thread-body">(.*?)</span>', fragment, re.S)
    ]


def member_state(services: Services, phone: str, slug: str = "logan") -> str | None:
    with services.read_sessions() as session:
        return session.scalar(
            select(Subscription.state)
            .join(Member, Member.id == Subscription.member_id)
            .join(Huddle, Huddle.id == Subscription.huddle_id)
            .where(Member.phone == phone, Huddle.slug == slug, Subscription.channel == m.SMS)
        )


def ledger(services: Services, phone: str) -> list[tuple[str, str, str | None]]:
    with services.read_sessions() as session:
        return [
            (e.action, e.source, e.provider_message_id)
            for e in session.scalars(
                select(ConsentEvent).where(ConsentEvent.address == phone).order_by(ConsentEvent.id)
            )
        ]


def counts(services: Services) -> tuple[int, int, int]:
    with services.read_sessions() as session:
        return (
            session.scalar(select(func.count()).select_from(InboundMessage)) or 0,
            session.scalar(select(func.count()).select_from(Member)) or 0,
            session.scalar(select(func.count()).select_from(ConsentEvent)) or 0,
        )


# ---------------------------------------------------------------------------------------------
# The page


def test_the_page_is_a_labelled_phone_from_a_made_up_number_to_the_huddles_sender(
    boss: FlaskClient,
) -> None:
    page = boss.get(PHONE).get_data(as_text=True)
    assert '<label for="from_number">From (your test number)</label>' in page
    assert '<label for="body">Message</label>' in page
    assert "+1 617-555-0100" in page  # to: the huddle's sender
    default = re.search(r'id="from_number" name="from_number" value="([^"]+)"', page)
    assert default
    assert re.fullmatch(r"\+161755501[1-9]\d", default.group(1))  # fiction, not a magic number
    assert '<button type="submit">Send</button>' in page
    for quick in ("JOIN LOGAN", "YES", "HELP", "STOP", "START"):
        assert f'value="{quick}" class="secondary">{quick}</button>' in page
    # the thread polls for what is sent later, for the number shown
    assert f'data-poll="/h/logan/phone/thread?from=%2B{default.group(1)[1:]}"' in page
    assert "No texts yet" in page
    assert f'value="{default.group(1)}"' in boss.get(PHONE).get_data(as_text=True)  # on reload


def test_join_from_a_new_number_makes_a_pending_member_and_shows_the_ask_to_confirm(
    boss: FlaskClient, services: Services
) -> None:
    status, page = text(boss, quick="JOIN LOGAN", number="(617) 555-0142")
    assert status == 200
    assert member_state(services, NEW_NUMBER) == m.PENDING
    assert ledger(services, NEW_NUMBER)[0][:2] == (c.OPT_IN_REQUESTED, c.SOURCE_KEYWORD)
    shown = bodies(page)
    assert shown[0] == "JOIN LOGAN"
    assert shown[1].startswith("Logan: Reply YES to confirm")
    assert "asked to confirm (pending)" in page
    assert f'value="{NEW_NUMBER}"' in page  # the number, normalized, stays in the field
    assert bodies(thread(boss)) == shown


def test_the_text_takes_the_webhooks_path_with_a_made_up_sid_per_send(
    boss: FlaskClient, services: Services
) -> None:
    text(boss, "LOGAN")
    text(boss, "LOGAN")
    with services.read_sessions() as session:
        rows = session.execute(
            select(InboundMessage.message_sid, InboundMessage.to_number, InboundMessage.intent)
        ).all()
    sids = [row.message_sid for row in rows]
    assert len(set(sids)) == 2
    assert all(re.fullmatch(r"SMtest[0-9a-f]{28}", sid) for sid in sids)
    assert {(row.to_number, row.intent) for row in rows} == {(LOGAN_SENDER, "join")}
    provider_ids = [event[2] for event in ledger(services, NEW_NUMBER)]
    assert provider_ids[0] in sids  # the ledger names the text, as for a real one


def test_yes_confirms_and_the_welcome_is_shown(boss: FlaskClient, services: Services) -> None:
    text(boss, quick="JOIN LOGAN")
    status, page = text(boss, quick="YES")
    assert status == 200
    assert member_state(services, NEW_NUMBER) == m.ACTIVE
    assert [event[0] for event in ledger(services, NEW_NUMBER)] == [c.OPT_IN_REQUESTED, c.OPT_IN]
    shown = bodies(thread(boss))
    assert len(shown) == 4
    assert shown[2] == "YES"
    assert shown[3].startswith("Logan: You&#39;re in! Welcome.")
    assert "<strong>subscribed</strong>" in page


def test_a_single_opt_in_huddle_subscribes_at_once(boss: FlaskClient, services: Services) -> None:
    status, page = text(boss, quick="JOIN PROVO", path="/h/provo/phone/")
    assert status == 200
    assert member_state(services, NEW_NUMBER, "provo") == m.ACTIVE
    assert "Provo: You&#39;re in! Welcome." in page


def test_help_answers_the_huddles_own_help_text(boss: FlaskClient, services: Services) -> None:
    before = counts(services)
    status, page = text(boss, quick="HELP")
    assert status == 200
    assert bodies(page) == ["HELP", HELP_TEXT]
    assert counts(services)[1:] == before[1:]  # no member, no consent change
    assert "not a member of Logan yet" in page


def test_stop_opts_out_with_a_ledger_row_and_the_answer_is_shown(
    boss: FlaskClient, services: Services
) -> None:
    text(boss, quick="JOIN LOGAN")
    text(boss, quick="YES")
    status, page = text(boss, "Stop")
    assert status == 200
    assert member_state(services, NEW_NUMBER) == m.OPTED_OUT
    assert ledger(services, NEW_NUMBER)[-1][:2] == (c.OPT_OUT, c.SOURCE_KEYWORD)
    shown = bodies(thread(boss))
    assert shown[-2:] == [
        "Stop",
        "Logan: You&#39;re unsubscribed and will get no more messages. Reply START to resubscribe.",
    ]
    assert "<strong>opted out</strong>" in page
    status, page = text(boss, quick="START")
    assert member_state(services, NEW_NUMBER) == m.ACTIVE
    assert bodies(page)[-1].startswith("Logan: You&#39;re resubscribed.")


def test_what_is_sent_later_through_the_outbox_joins_the_thread(
    boss: FlaskClient, services: Services, settings: Settings
) -> None:
    text(boss, quick="JOIN LOGAN")
    text(boss, quick="YES")
    transport = SandboxSmsTransport(settings, services.sessions)
    transport.send(
        OutboundSms(
            to=NEW_NUMBER,
            body="Rally Saturday <b>10am</b>",
            from_number=LOGAN_SENDER,
            reference="delivery:7",
        )
    )
    transport.send(OutboundSms(to=NEW_NUMBER, body="Moab news", from_number=MOAB_SENDER))
    transport.send(OutboundSms(to="+16175550143", body="Someone else", from_number=LOGAN_SENDER))
    fragment = thread(boss)
    shown = bodies(fragment)
    assert shown[-1] == "Rally Saturday &lt;b&gt;10am&lt;/b&gt;"  # newest last, escaped
    assert "Moab news" not in fragment  # another sender's text to the same phone
    assert "Someone else" not in fragment
    assert "campaign ·" in fragment


def test_a_text_with_no_automatic_answer_says_it_went_to_the_inbox(
    boss: FlaskClient,
) -> None:
    text(boss, quick="JOIN LOGAN")
    text(boss, quick="YES")
    _, page = text(boss, "Can I bring <script>alert(1)</script> signs?")
    assert "No automatic answer" in page
    assert bodies(page)[-1] == "Can I bring &lt;script&gt;alert(1)&lt;/script&gt; signs?"
    assert "<script>alert(1)" not in page


def test_the_members_profile_is_linked_once_the_number_is_a_member(
    app: Flask, boss: FlaskClient, services: Services
) -> None:
    assert "profile" not in thread(boss).lower()
    text(boss, quick="JOIN LOGAN")
    with services.read_sessions() as session:
        member_id = session.scalar(select(Member.id).where(Member.phone == NEW_NUMBER))
    fragment = thread(boss)
    if {"members.show", "members.profile"} & set(app.view_functions):
        assert f'href="/h/logan/members/{member_id}"' in fragment
    else:  # the members pages are not there yet: no broken link
        assert "href" not in fragment


# ---------------------------------------------------------------------------------------------
# Bad input changes nothing


@pytest.mark.parametrize(
    ("number", "body", "message"),
    [
        ("555-01", "LOGAN", "That is not a phone number"),
        ("call me maybe", "LOGAN", "That is not a phone number"),
        ("", "LOGAN", "That is not a phone number"),
        ("9" * 5000, "LOGAN", "That is not a phone number"),
        (LOGAN_SENDER, "LOGAN", "the huddle&#39;s own number"),
        (NEW_NUMBER, "   ", "Type a message"),
        (NEW_NUMBER, "x" * 1601, "at most 1,600 characters; this one has 1,601"),
        (NEW_NUMBER, "x" * 200_000, "this one has 200,000"),
    ],
)
def test_a_bad_number_or_message_is_a_clear_error_and_changes_nothing(
    boss: FlaskClient, services: Services, number: str, body: str, message: str
) -> None:
    before = counts(services)
    status, page = text(boss, body, number=number)
    assert status == 400
    assert message in page
    assert 'aria-invalid="true"' in page
    assert counts(services) == before


def test_a_bad_number_in_the_threads_url_is_no_error_page(boss: FlaskClient) -> None:
    for number in ("nope", "1" * 100, ""):
        response = boss.get(f"{PHONE}thread", query_string={"from": number})
        assert response.status_code == 400
        assert "not a phone number" in response.get_data(as_text=True)
    page = boss.get(PHONE, query_string={"from": "garbage"})
    assert page.status_code == 200  # the made-up number instead


def test_a_post_without_the_csrf_token_changes_nothing(
    boss: FlaskClient, services: Services
) -> None:
    before = counts(services)
    response = boss.post(PHONE, data={"from_number": NEW_NUMBER, "body": "LOGAN"})
    assert response.status_code == 400
    assert counts(services) == before


# ---------------------------------------------------------------------------------------------
# Who may use it


def test_only_an_admin_may_use_the_phone_and_organizers_of_any_huddle_get_404(
    sign_in: SignIn, services: Services
) -> None:
    for email in ("lee@example.org", "rae@example.org", "mo@example.org"):
        client = sign_in(email)
        token = csrf_of(client.get("/").get_data(as_text=True))
        form = {"csrf_token": token, "from_number": NEW_NUMBER, "body": "MOAB"}
        for path in (PHONE, "/h/moab/phone/"):
            assert client.get(path).status_code == 404, (email, path)
            thread_of = client.get(f"{path}thread", query_string={"from": NEW_NUMBER})
            assert thread_of.status_code == 404, (email, path)
            assert client.post(path, data=form).status_code == 404, (email, path)
    assert counts(services)[0] == 0
    boss = sign_in("boss@example.org")
    status, page = text(boss, quick="JOIN MOAB", path="/h/moab/phone/")
    assert status == 200
    assert member_state(services, NEW_NUMBER, "moab") == m.PENDING
    assert bodies(page)[-1].startswith("Moab: Reply YES")
    assert bodies(thread(boss)) == []  # logan's phone: a thread with logan's sender only


def test_the_tab_shows_for_admins_only(sign_in: SignIn) -> None:
    assert "/h/logan/phone/" in sign_in("boss@example.org").get("/h/logan/").get_data(as_text=True)
    lee = sign_in("lee@example.org").get("/h/logan/").get_data(as_text=True)
    assert "/h/logan/phone/" not in lee


# ---------------------------------------------------------------------------------------------
# Sandbox only


@pytest.fixture
def twilio_app(services: Services, test_env: dict[str, str], people: None) -> Flask:
    """The same database and Redis, with Twilio as the SMS backend (as in production)."""
    from web import create_app

    env = {**test_env, "SMS_BACKEND": "twilio", "TWILIO_ACCOUNT_SID": TEST_ACCOUNT_SID}
    twilio = Services(
        Settings.from_env(env, dotenv=False), services.engine, services.sessions, services.redis
    )
    assert twilio.settings.sms_backend == "twilio"
    flask_app = create_app(twilio.settings, twilio)
    flask_app.config["TESTING"] = True
    return flask_app


def test_with_twilio_the_page_says_sandbox_only_and_nothing_is_handled(
    twilio_app: Flask, services: Services
) -> None:
    client = signed_in(twilio_app, "boss@example.org")
    page = client.get(PHONE)
    assert page.status_code == 200
    shown = page.get_data(as_text=True)
    assert "only available in sandbox mode" in shown
    assert 'name="from_number"' not in shown
    before = counts(services)
    token = csrf_of(shown)
    form = {"csrf_token": token, "from_number": NEW_NUMBER, "body": "LOGAN", "quick": "STOP"}
    assert client.post(PHONE, data=form).status_code == 404
    assert client.get(f"{PHONE}thread", query_string={"from": NEW_NUMBER}).status_code == 404
    assert counts(services) == before


def test_the_domain_refuses_a_test_text_without_the_sandbox(
    services: Services, test_env: dict[str, str], people: None
) -> None:
    env = {**test_env, "SMS_BACKEND": "twilio", "TWILIO_ACCOUNT_SID": TEST_ACCOUNT_SID}
    settings = Settings.from_env(env, dotenv=False)
    with services.read_sessions() as session:
        huddle_id = session.scalar(select(Huddle.id).where(Huddle.slug == "logan"))
        assert huddle_id is not None
        line = test_phone.read_line(session, huddle_id)
    assert line is not None
    before = counts(services)
    with pytest.raises(test_phone.TestPhoneUnavailable):
        test_phone.send_as(services.engine, settings, line, from_e164=NEW_NUMBER, body="STOP")
    assert counts(services) == before


def test_the_made_up_number_avoids_the_sandboxs_magic_numbers() -> None:
    made_up = {test_phone.default_number(LOGAN_SENDER, seed) for seed in range(200)}
    assert len(made_up) == 90
    for number in made_up:
        assert re.fullmatch(r"\+161755501[1-9]\d", number), number
    assert test_phone.default_number("+447700900123", 1).startswith("+1201555")
    assert test_phone.default_number(None, 1) == "+12015550111"
