"""The public join page: form, validation, CSRF, honeypot, rate limit, email and SMS opt-in."""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from werkzeug.test import TestResponse

from outreach import consent
from outreach import join as wj
from outreach.app.clock import utcnow
from outreach.app.services import Services
from outreach.messages import copy
from outreach.models import (
    ConsentEvent,
    Huddle,
    Member,
    OutboxMessage,
    Subscription,
)
from outreach.models import members as m
from outreach.people.huddles import create_huddle
from tests.webhooks.twilio_helpers import Phone

LOGAN_NUMBER = "+16175550100"
PHONE = "+16175550111"
PHONE_TYPED = "(617) 555-0111"
EMAIL = "maria@example.org"
UA = "Mozilla/5.0 (Linux; Android 14) TestBrowser/2.0"
IP = "198.51.100.77"


@pytest.fixture
def logan(services: Services) -> Huddle:
    with services.sessions.begin() as session:
        huddle = create_huddle(
            session,
            slug="logan",
            name="Logan Huddle",
            keywords=["LOGAN"],
            sender=LOGAN_NUMBER,
            email_from_address="logan@example.org",
            postal_address="1 Main St, Boston MA 02128",
        )
        huddle.support_contact = "logan-organizers@example.org"
    return huddle


def csrf(client: FlaskClient, slug: str = "logan") -> str:
    page = client.get(f"/join/{slug}").get_data(as_text=True)
    found = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert found is not None
    return found.group(1)


def fields(**overrides: str) -> dict[str, str]:
    data = {
        "first_name": "Maria",
        "email": "  Maria@Example.org ",
        "phone": "",
        "zip": "02128",
        "website": "",
    }
    data.update(overrides)
    return data


def submit(
    client: FlaskClient,
    data: dict[str, str],
    *,
    token: str | None = None,
    ip: str = IP,
    slug: str = "logan",
) -> TestResponse:
    if token is None:
        token = csrf(client, slug)
    return client.post(
        f"/join/{slug}",
        data={**data, "csrf_token": token} if token else data,
        headers={"User-Agent": UA},
        environ_base={"REMOTE_ADDR": ip},
    )


def text_of(response: TestResponse) -> str:
    return html.unescape(response.get_data(as_text=True))


def visible(response: TestResponse) -> str:
    return " ".join(re.sub(r"<[^>]+>", " ", text_of(response)).split())


def sub_state(
    services: Services, channel: str, *, email: str | None = None, phone: str | None = None
) -> str | None:
    with services.sessions() as session:
        query = select(Subscription.state).join(Member, Member.id == Subscription.member_id)
        query = query.where(Subscription.channel == channel)
        if email is not None:
            query = query.where(Member.email == email)
        if phone is not None:
            query = query.where(Member.phone == phone)
        return session.scalar(query)


def ledger(services: Services, address: str) -> list[ConsentEvent]:
    with services.sessions() as session:
        return list(
            session.scalars(
                select(ConsentEvent)
                .where(ConsentEvent.address == address)
                .order_by(ConsentEvent.id)
            )
        )


def outbox(services: Services, channel: str) -> list[OutboxMessage]:
    with services.sessions() as session:
        return list(
            session.scalars(
                select(OutboxMessage)
                .where(OutboxMessage.channel == channel)
                .order_by(OutboxMessage.id)
            )
        )


def count(services: Services, model: type) -> int:
    with services.sessions() as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


def confirm_path(message: OutboxMessage) -> str:
    found = re.search(r"https://outreach\.test(/join/logan/confirm/[A-Za-z0-9._-]+)", message.body)
    assert found is not None, message.body
    return found.group(1)


# --- the page -------------------------------------------------------------------------------


def test_form_shows_an_unticked_box_and_the_disclosure(
    client: FlaskClient, services: Services, logan: Huddle
) -> None:
    response = client.get("/join/logan")
    assert response.status_code == 200
    page = text_of(response)
    box = re.search(r"<input[^>]*name=\"sms_consent\"[^>]*>", page)
    assert box is not None
    assert 'type="checkbox"' in box.group(0)
    assert "checked" not in box.group(0)
    disclosure = wj.sms_disclosure(logan)
    assert disclosure in page
    for required in (
        "Logan Huddle",
        "Up to 4 msgs/month",
        "Msg & data rates may apply",
        "Reply HELP for help, STOP to cancel",
        "Consent is not a condition",
    ):
        assert required in disclosure
    assert 'name="website"' in page
    assert 'name="csrf_token"' in page
    for name in ("first_name", "email", "phone", "zip"):
        assert f'name="{name}"' in page


def test_unknown_huddle_is_404(client: FlaskClient, logan: Huddle) -> None:
    assert client.get("/join/nowhere").status_code == 404
    assert "couldn't find that huddle" in text_of(client.get("/join/nowhere"))


# --- email double opt-in --------------------------------------------------------------------


def test_email_join_confirms_only_by_the_link(
    client: FlaskClient, services: Services, logan: Huddle
) -> None:
    response = submit(client, fields())
    assert response.status_code == 200
    assert "Check your email" in visible(response)
    assert "m***@example.org" in visible(response)
    assert sub_state(services, m.EMAIL, email=EMAIL) == m.PENDING
    (requested,) = ledger(services, EMAIL)
    assert (requested.action, requested.source, requested.channel) == (
        "opt_in_requested",
        "form",
        "email",
    )
    assert (requested.ip, requested.user_agent) == (IP, UA)
    assert requested.detail == wj.email_disclosure(logan)
    with services.sessions() as session:
        member = session.scalars(select(Member).where(Member.email == EMAIL)).one()
        assert (member.first_name, member.zip, member.phone) == ("Maria", "02128", None)

    (email,) = outbox(services, "email")
    assert email.to_address == EMAIL
    assert email.kind == "confirmation"
    assert email.from_address == "logan@example.org"
    assert "Logan Huddle" in (email.subject or "")
    assert "1 Main St, Boston MA 02128" in email.body

    link = confirm_path(email)
    # Opening the link (or a mail scanner fetching it) shows a button and changes nothing.
    for _ in range(2):
        opened = client.get(link)
        assert opened.status_code == 200
        assert "Yes, confirm my email" in visible(opened)
        assert opened.headers["Referrer-Policy"] == "no-referrer"
        assert opened.headers["Cache-Control"] == "no-store"
    assert client.head(link).status_code == 200
    assert sub_state(services, m.EMAIL, email=EMAIL) == m.PENDING
    assert len(ledger(services, EMAIL)) == 1
    other_ua = "Mozilla/5.0 (Macintosh) MailClient/3.0"
    page = client.post(
        link,
        headers={"User-Agent": other_ua, "X-Forwarded-For": "203.0.113.5"},
        environ_base={"REMOTE_ADDR": "10.0.0.1"},
    )
    assert page.status_code == 200
    assert "You're in" in visible(page)
    assert page.headers["Referrer-Policy"] == "no-referrer"
    assert sub_state(services, m.EMAIL, email=EMAIL) == m.ACTIVE
    events = ledger(services, EMAIL)
    assert [(e.action, e.source) for e in events] == [
        ("opt_in_requested", "form"),
        ("opt_in", "form"),
    ]
    confirmed = events[1]
    assert (confirmed.ip, confirmed.user_agent) == ("203.0.113.5", other_ua)
    assert confirmed.detail == wj.CONFIRMED_BY_LINK
    assert confirmed.created_at is not None

    again = client.post(link)
    assert again.status_code == 200
    assert "Already confirmed" in visible(again)
    assert len(ledger(services, EMAIL)) == 2
    assert sub_state(services, m.EMAIL, email=EMAIL) == m.ACTIVE


def test_tampered_confirm_link_is_400_and_changes_nothing(
    client: FlaskClient, services: Services, logan: Huddle
) -> None:
    submit(client, fields())
    link = confirm_path(outbox(services, "email")[0])
    for bad in (link[:-3] + "xyz", link[:-20], "/join/logan/confirm/garbage"):
        for response in (client.get(bad), client.post(bad)):
            assert response.status_code == 400
            assert "doesn't work" in visible(response)
    assert sub_state(services, m.EMAIL, email=EMAIL) == m.PENDING
    assert len(ledger(services, EMAIL)) == 1


def test_confirm_link_for_another_huddle_does_nothing(
    client: FlaskClient, services: Services, logan: Huddle
) -> None:
    with services.sessions.begin() as session:
        create_huddle(session, slug="eastie", name="Eastie Huddle", keywords=["EASTIE"])
    submit(client, fields())
    link = confirm_path(outbox(services, "email")[0])
    elsewhere = link.replace("/join/logan/", "/join/eastie/")
    assert client.get(elsewhere).status_code == 400
    assert client.post(elsewhere).status_code == 400
    assert sub_state(services, m.EMAIL, email=EMAIL) == m.PENDING


def test_expired_confirm_link_is_410(
    client: FlaskClient, services: Services, logan: Huddle
) -> None:
    with services.sessions() as session:
        member_id = session.scalar(select(func.coalesce(func.max(Member.id), 0))) or 0
    with time_machine.travel(datetime.now(UTC) - timedelta(days=8), tick=False):
        token = wj.make_confirm_token(services.settings, member_id + 1, logan.id, EMAIL)
    for response in (
        client.get(f"/join/logan/confirm/{token}"),
        client.post(f"/join/logan/confirm/{token}"),
    ):
        assert response.status_code == 410
        assert "expired" in visible(response)


def test_unsubscribed_after_asking_an_old_link_does_not_resubscribe(
    client: FlaskClient, services: Services, logan: Huddle
) -> None:
    from outreach.consent import unsubscribe as u

    submit(client, fields())
    link = confirm_path(outbox(services, "email")[0])
    with services.sessions() as session:
        member = session.scalars(select(Member).where(Member.email == EMAIL)).one()
    token = u.make_token(services.settings, member.id, logan.id, m.EMAIL)
    client.post(f"/unsubscribe/{token}", data={"scope": "huddle"})
    response = client.post(link)
    assert "Nothing to confirm" in visible(response)
    assert sub_state(services, m.EMAIL, email=EMAIL) == m.OPTED_OUT


def test_rejoining_after_unsubscribing_from_everything(
    client: FlaskClient, services: Services, logan: Huddle
) -> None:
    from outreach.consent import unsubscribe as u

    submit(client, fields())
    client.post(confirm_path(outbox(services, "email")[0]))
    with services.sessions() as session:
        member = session.scalars(select(Member).where(Member.email == EMAIL)).one()
    client.post(
        f"/unsubscribe/{u.make_token(services.settings, member.id, logan.id, m.EMAIL)}",
        data={"scope": "all"},
    )
    assert consent_suppressed(services, EMAIL)
    response = submit(client, fields())
    assert "Check your email" in visible(response)
    assert sub_state(services, m.EMAIL, email=EMAIL) == m.PENDING
    client.post(confirm_path(outbox(services, "email")[-1]))
    assert sub_state(services, m.EMAIL, email=EMAIL) == m.ACTIVE
    assert not consent_suppressed(services, EMAIL)


def consent_suppressed(services: Services, address: str) -> bool:
    with services.sessions() as session:
        return consent.is_suppressed(session, m.EMAIL, address)


def test_a_bounced_address_gets_no_email(
    client: FlaskClient, services: Services, logan: Huddle
) -> None:
    with services.sessions.begin() as session:
        consent.suppress(session, channel=m.EMAIL, address=EMAIL, reason="bounce")
    response = submit(client, fields())
    assert response.status_code == 200
    assert "We can't send email" in visible(response)
    assert outbox(services, "email") == []
    assert sub_state(services, m.EMAIL, email=EMAIL) is None


def test_an_active_member_is_told_so_and_not_emailed_again(
    client: FlaskClient, services: Services, logan: Huddle
) -> None:
    submit(client, fields())
    client.post(confirm_path(outbox(services, "email")[0]))
    response = submit(client, fields())
    assert "already on Logan Huddle's email list" in visible(response)
    assert len(outbox(services, "email")) == 1


def test_existing_profile_is_not_overwritten(
    client: FlaskClient, services: Services, logan: Huddle
) -> None:
    with services.sessions.begin() as session:
        session.add(Member(email=EMAIL, first_name="Maria", zip="02128", created_at=utcnow()))
    submit(client, fields(first_name="Mallory", zip="90210"))
    with services.sessions() as session:
        member = session.scalars(select(Member).where(Member.email == EMAIL)).one()
        assert (member.first_name, member.zip) == ("Maria", "02128")
        assert session.scalar(select(func.count(Member.id))) == 1


# --- SMS double opt-in ----------------------------------------------------------------------


def test_sms_box_starts_the_text_double_opt_in(
    client: FlaskClient, services: Services, logan: Huddle
) -> None:
    response = submit(client, fields(phone=PHONE_TYPED, sms_consent="yes"))
    assert response.status_code == 200
    page = visible(response)
    assert "Check your email" in page
    assert "Reply YES to the text" in page
    assert sub_state(services, m.SMS, phone=PHONE) == m.PENDING
    assert sub_state(services, m.EMAIL, email=EMAIL) == m.PENDING
    with services.sessions() as session:
        assert session.scalar(select(func.count(Member.id))) == 1  # one person, one record
    (requested,) = ledger(services, PHONE)
    assert (requested.action, requested.source, requested.channel) == (
        "opt_in_requested",
        "form",
        "sms",
    )
    assert requested.detail == wj.sms_disclosure(logan)
    assert (requested.ip, requested.user_agent) == (IP, UA)
    (text,) = outbox(services, "sms")
    assert text.to_address == PHONE
    assert text.from_address == LOGAN_NUMBER
    assert text.body == copy.confirmation_ask(logan)

    reply = Phone(client, PHONE, LOGAN_NUMBER).text("YES")
    assert "You're in" in reply
    assert sub_state(services, m.SMS, phone=PHONE) == m.ACTIVE
    assert [(e.action, e.source) for e in ledger(services, PHONE)] == [
        ("opt_in_requested", "form"),
        ("opt_in", "keyword"),
    ]
    assert sub_state(services, m.EMAIL, email=EMAIL) == m.PENDING  # email still needs its link


def test_phone_without_the_box_gets_no_text(
    client: FlaskClient, services: Services, logan: Huddle
) -> None:
    response = submit(client, fields(phone=PHONE_TYPED))
    assert response.status_code == 200
    assert "Reply YES" not in visible(response)
    assert outbox(services, "sms") == []
    assert sub_state(services, m.SMS, phone=PHONE) is None
    with services.sessions() as session:
        assert session.scalar(select(Member.phone).where(Member.email == EMAIL)) == PHONE


def test_member_who_joined_by_text_is_merged(
    client: FlaskClient, services: Services, logan: Huddle
) -> None:
    phone = Phone(client, PHONE, LOGAN_NUMBER)
    phone.text("JOIN LOGAN")  # pending, asked a minute ago
    response = submit(client, fields(phone=PHONE_TYPED, sms_consent="yes"))
    assert "Reply YES to the text we sent you earlier" in visible(response)
    assert outbox(services, "sms") == []  # not asked twice in a day
    with services.sessions() as session:
        (member,) = session.scalars(select(Member)).all()
        assert (member.phone, member.email, member.first_name) == (PHONE, EMAIL, "Maria")
    phone.text("YES")
    assert sub_state(services, m.SMS, phone=PHONE) == m.ACTIVE


def test_a_pending_number_is_asked_again_after_a_day(
    client: FlaskClient, services: Services, logan: Huddle
) -> None:
    with time_machine.travel(datetime.now(UTC) - timedelta(days=2)):
        Phone(client, PHONE, LOGAN_NUMBER).text("JOIN LOGAN")
    response = submit(client, fields(phone=PHONE_TYPED, sms_consent="yes"))
    assert "Reply YES to the text we just sent" in visible(response)
    assert len(outbox(services, "sms")) == 1
    assert [e.source for e in ledger(services, PHONE)] == ["keyword", "form"]


def test_phone_of_another_member_is_not_attached(
    client: FlaskClient, services: Services, logan: Huddle
) -> None:
    with services.sessions.begin() as session:
        session.add(Member(phone=PHONE, email="someone-else@example.org", created_at=utcnow()))
    submit(client, fields(phone=PHONE_TYPED, sms_consent="yes"))
    with services.sessions() as session:
        new = session.scalars(select(Member).where(Member.email == EMAIL)).one()
        old = session.scalars(select(Member).where(Member.phone == PHONE)).one()
        assert new.phone is None
        assert old.email == "someone-else@example.org"
        sms = session.scalars(select(Subscription).where(Subscription.channel == m.SMS)).one()
        assert sms.member_id == old.id  # the number's own record is asked, and must say YES
    assert len(outbox(services, "sms")) == 1


def test_an_opted_out_number_is_not_texted(
    client: FlaskClient, services: Services, logan: Huddle
) -> None:
    phone = Phone(client, PHONE, LOGAN_NUMBER)
    phone.text("JOIN LOGAN")
    phone.text("YES")
    phone.text("STOP")
    before = len(ledger(services, PHONE))
    response = submit(client, fields(phone=PHONE_TYPED, sms_consent="yes"))
    assert response.status_code == 200
    page = visible(response)
    assert "We didn't text you" in page
    assert "text START to (617) 555-0100" in page
    assert outbox(services, "sms") == []
    assert sub_state(services, m.SMS, phone=PHONE) == m.OPTED_OUT
    assert len(ledger(services, PHONE)) == before
    assert sub_state(services, m.EMAIL, email=EMAIL) == m.PENDING  # email goes on as asked


def test_a_carrier_opt_out_found_when_texting_is_recorded(
    client: FlaskClient, services: Services, logan: Huddle
) -> None:
    refused = "+16175550101"  # the sandbox answers 21610, as Twilio does after a STOP
    response = submit(client, fields(phone=refused, sms_consent="yes"))
    assert "We didn't text you" in visible(response)
    assert sub_state(services, m.SMS, phone=refused) == m.OPTED_OUT
    with services.sessions() as session:
        assert consent.is_suppressed(session, m.SMS, refused, LOGAN_NUMBER)


def test_huddle_without_a_sender_says_so(
    client: FlaskClient, services: Services, logan: Huddle
) -> None:
    with services.sessions.begin() as session:
        create_huddle(session, slug="quiet", name="Quiet Huddle", keywords=["QUIET"])
    response = submit(client, fields(phone=PHONE_TYPED, sms_consent="yes"), slug="quiet")
    assert "doesn't send texts yet" in visible(response)
    assert outbox(services, "sms") == []
    assert sub_state(services, m.SMS, phone=PHONE) is None


# --- validation, honeypot, CSRF, rate limit ---------------------------------------------------


def test_validation_errors_keep_what_was_typed(
    client: FlaskClient, services: Services, logan: Huddle
) -> None:
    typed = fields(
        first_name="Maria José",
        email="maria@@example",
        phone="555-12",
        zip="2128",
        sms_consent="yes",
    )
    response = submit(client, typed)
    assert response.status_code == 400
    page = text_of(response)
    assert "doesn't look like an email address" in page
    assert "That phone number doesn't work" in page
    assert "5-digit ZIP code" in page
    assert 'value="Maria José"' in page
    assert 'value="maria@@example"' in page
    assert 'value="555-12"' in page
    assert 'value="2128"' in page
    box = re.search(r"<input[^>]*name=\"sms_consent\"[^>]*>", page)
    assert box is not None
    assert "checked" in box.group(0)
    assert count(services, Member) == 0
    assert count(services, ConsentEvent) == 0
    assert outbox(services, "email") == []


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        ({"first_name": ""}, "first_name", "Please tell us your first name."),
        ({"first_name": "x" * 101}, "first_name", "under 100 characters"),
        ({"email": ""}, "email", "Please enter your email address."),
        ({"zip": "ABCDE"}, "zip", "5-digit ZIP code"),
        ({"sms_consent": "yes"}, "phone", "Add your mobile number"),
    ],
)
def test_each_field_error(
    client: FlaskClient,
    services: Services,
    logan: Huddle,
    overrides: dict[str, str],
    field: str,
    message: str,
) -> None:
    response = submit(client, fields(**overrides))
    assert response.status_code == 400
    assert message in text_of(response)
    assert f'aria-describedby="{field}-error"' in text_of(response)
    assert count(services, Member) == 0


def test_validate_normalizes() -> None:
    valid, errors = wj.validate(
        wj.JoinForm(
            first_name="  Maria   José ",
            email=" MARIA@Example.ORG",
            phone="617.555.0111",
            zip="02128-1234",
            sms_consent=True,
        )
    )
    assert errors == {}
    assert valid == wj.ValidJoin("Maria José", EMAIL, PHONE, "02128", True)


def test_honeypot_pretends_and_stores_nothing(
    client: FlaskClient, services: Services, logan: Huddle
) -> None:
    response = submit(client, fields(website="http://spam.example", phone=PHONE, sms_consent="yes"))
    assert response.status_code == 200
    assert "Check your email" in visible(response)
    assert count(services, Member) == 0
    assert count(services, ConsentEvent) == 0
    assert count(services, OutboxMessage) == 0


@pytest.mark.parametrize("token", ["", "forged-token-value-forged-token-value"])
def test_bad_or_missing_csrf_is_400(
    client: FlaskClient, services: Services, logan: Huddle, token: str
) -> None:
    csrf(client)  # the visitor has a session, but the POST doesn't carry its token
    data = fields()
    if token:
        data["csrf_token"] = token
    response = client.post("/join/logan", data=data, environ_base={"REMOTE_ADDR": IP})
    assert response.status_code == 400
    assert "form had expired" in text_of(response)
    assert 'value="  Maria@Example.org "' in text_of(response)  # nothing typed is lost
    assert count(services, Member) == 0


def test_post_without_a_session_is_400(app: Flask, services: Services, logan: Huddle) -> None:
    stranger = app.test_client(use_cookies=False)
    response = stranger.post("/join/logan", data={**fields(), "csrf_token": "x" * 43})
    assert response.status_code == 400
    assert count(services, Member) == 0


def test_sixth_submission_from_one_ip_is_429(
    client: FlaskClient, services: Services, logan: Huddle
) -> None:
    token = csrf(client)
    for n in range(5):
        response = submit(client, fields(email=f"person{n}@example.org"), token=token)
        assert response.status_code == 200
    sixth = submit(client, fields(email="person5@example.org"), token=token)
    assert sixth.status_code == 429
    assert "Too many sign-ups" in visible(sixth)
    assert 0 < int(sixth.headers["Retry-After"]) <= 601  # the rest of a ten-minute window
    assert count(services, Member) == 5
    other_ip = submit(client, fields(email="person6@example.org"), token=token, ip="192.0.2.1")
    assert other_ip.status_code == 200


def test_rate_limit_window_expires(
    app: Flask, client: FlaskClient, services: Services, logan: Huddle
) -> None:
    app.config["JOIN_RATE_LIMIT"] = "2 per 10 minutes"
    token = csrf(client)
    for n in range(2):
        assert submit(client, fields(email=f"w{n}@example.org"), token=token).status_code == 200
    assert submit(client, fields(email="w2@example.org"), token=token).status_code == 429
    windows = services.redis.keys("LIMITS*")
    assert windows
    assert all(0 < services.redis.ttl(key) <= 600 for key in windows)
    services.redis.delete(*windows)  # what Redis does when the window's ten minutes are up
    assert submit(client, fields(email="w3@example.org"), token=token).status_code == 200
