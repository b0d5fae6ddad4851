"""People: inviting by email, accepting, resetting a password, and what only admins may do."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from argon2 import PasswordHasher, profiles
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from outreach.accounts import invites, passwords, users
from outreach.app.clock import utcnow
from outreach.app.services import Services
from outreach.models import AuditEvent, Huddle, Organizer, OrganizerHuddle, OutboxMessage
from outreach.models import accounts as a
from outreach.people.huddles import create_huddle

PASSWORD = "correct horse battery"
NEW_PASSWORD = "a brand new staple"
LINK = re.compile(r"https://outreach\.test(/(?:invite|reset)/[A-Za-z0-9_.\-]+)")


@pytest.fixture(autouse=True)
def cheap_passwords(monkeypatch: pytest.MonkeyPatch) -> None:
    """argon2's test profile: these tests are about links and pages, not the cost of a hash."""
    monkeypatch.setattr(passwords, "_hasher", PasswordHasher.from_parameters(profiles.CHEAPEST))


@pytest.fixture
def people(services: Services) -> None:
    with services.sessions.begin() as session:
        create_huddle(session, slug="logan", name="Logan Huddle", keywords=["LOGAN"])
        create_huddle(session, slug="provo", name="Provo Huddle", keywords=["PROVO"])
        users.create_user(
            session, email="boss@example.org", password=PASSWORD, admin=True, name="Boss"
        )
        users.create_user(
            session, email="lee@example.org", password=PASSWORD, huddles=["logan"], name="Lee"
        )
        users.create_user(
            session,
            email="rae@example.org",
            password=PASSWORD,
            huddles=["logan"],
            role=a.RESPONDER,
            name="Rae",
        )


def csrf(client: FlaskClient, path: str = "/login") -> str:
    page = client.get(path).get_data(as_text=True)
    found = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert found, page
    return found.group(1)


def sign_in(app: Flask, email: str, password: str = PASSWORD) -> FlaskClient:
    client = app.test_client()
    response = client.post(
        "/login", data={"email": email, "password": password, "csrf_token": csrf(client)}
    )
    assert response.status_code == 302, response.get_data(as_text=True)
    return client


def can_sign_in(app: Flask, email: str, password: str) -> bool:
    client = app.test_client()
    form = {"email": email, "password": password, "csrf_token": csrf(client)}
    return client.post("/login", data=form).status_code == 302


def post(client: FlaskClient, path: str, form_page: str = "/people", **form: str):  # type: ignore[no-untyped-def]
    return client.post(path, data={"csrf_token": csrf(client, form_page), **form})


def invite(client: FlaskClient, **form: str):  # type: ignore[no-untyped-def]
    fields = {"email": "noor@example.org", "name": "Noor", "huddle": "logan", "role": "responder"}
    return post(client, "/people/invite", **{**fields, **form})


def emails_to(services: Services, address: str) -> list[OutboxMessage]:
    with services.read_sessions() as session:
        return list(
            session.scalars(
                select(OutboxMessage)
                .where(OutboxMessage.to_address == address)
                .order_by(OutboxMessage.id)
            )
        )


def link_in(message: OutboxMessage) -> str:
    found = LINK.search(message.body)
    assert found, message.body
    return found.group(1)


def outbox_count(services: Services) -> int:
    with services.read_sessions() as session:
        return session.scalar(select(func.count()).select_from(OutboxMessage)) or 0


def organizer(services: Services, email: str) -> Organizer | None:
    with services.read_sessions() as session:
        found = session.scalars(select(Organizer).where(Organizer.email == email)).one_or_none()
        if found is not None:
            session.expunge(found)
        return found


def actions(services: Services) -> list[tuple[str, str, str | None]]:
    with services.read_sessions() as session:
        return [
            (e.action, e.actor_email, e.subject)
            for e in session.scalars(select(AuditEvent).order_by(AuditEvent.id))
        ]


def page_text(response) -> str:  # type: ignore[no-untyped-def]
    return str(response.get_data(as_text=True))


# --- inviting and accepting -----------------------------------------------------------------


def test_an_invited_person_gets_a_link_sets_a_password_and_is_signed_in(
    app: Flask, services: Services, people: None
) -> None:
    boss = sign_in(app, "boss@example.org")
    form = page_text(boss.get("/people"))
    for label in ("Email", "Role", "Huddle"):
        assert re.search(rf'<label for="invite-\w+">{label}</label>', form), label
    assert "Send invitation</button>" in form

    response = invite(boss)
    assert response.status_code == 302
    assert "Invitation sent to noor@example.org." in page_text(boss.get("/people"))

    (email,) = emails_to(services, "noor@example.org")
    assert email.subject == "You're invited to Huddle Outreach"
    assert email.from_address == "no-reply@outreach.test"
    assert "Boss invited you" in email.body
    assert "read and answer texts to Logan Huddle" in email.body
    assert "for 7 days" in email.body
    # the account exists with its role, and nobody can sign in to it before the link is used
    noor = organizer(services, "noor@example.org")
    assert noor is not None
    assert noor.password_hash is None
    with services.read_sessions() as session:
        role = session.scalar(
            select(OrganizerHuddle.role).where(OrganizerHuddle.organizer_id == noor.id)
        )
    assert role == a.RESPONDER
    assert not can_sign_in(app, "noor@example.org", "")

    visitor = app.test_client()
    link = link_in(email)
    accept_page = page_text(visitor.get(link))
    assert "noor@example.org" in accept_page
    assert '<label for="password">Password</label>' in accept_page
    assert '<label for="password_again">Password again</label>' in accept_page
    done = post(
        visitor, link, link, name="Noor Haddad", password=NEW_PASSWORD, password_again=NEW_PASSWORD
    )
    assert done.status_code == 302
    assert done.headers["Location"] == "/"
    home = page_text(visitor.get("/"))
    assert "Noor Haddad" in home
    assert "Logan Huddle" in home
    assert "Provo Huddle" not in home
    assert can_sign_in(app, "noor@example.org", NEW_PASSWORD)
    assert [(act, who) for act, who, subject in actions(services) if subject == "noor@example.org"][
        :4
    ] == [
        ("user_created", "boss@example.org"),
        ("access_granted", "boss@example.org"),
        ("invitation_sent", "boss@example.org"),
        ("invitation_accepted", "noor@example.org"),
    ]


def test_an_invitation_link_works_once(app: Flask, services: Services, people: None) -> None:
    invite(sign_in(app, "boss@example.org"))
    link = link_in(emails_to(services, "noor@example.org")[0])
    first = app.test_client()
    post(first, link, link, name="Noor", password=NEW_PASSWORD, password_again=NEW_PASSWORD)

    again = app.test_client()
    refused = again.get(link)
    assert refused.status_code == 410
    assert "This link was used already" in page_text(refused)
    assert 'href="/forgot"' in page_text(refused)
    token = csrf(again)
    replay = again.post(
        link,
        data={"name": "X", "password": "someone else's", "password_again": "someone else's"},
        headers={"X-CSRFToken": token},
    )
    assert replay.status_code == 410
    assert can_sign_in(app, "noor@example.org", NEW_PASSWORD)


def test_an_invitation_link_is_good_for_seven_days_and_not_a_second_more(
    client: FlaskClient, services: Services, people: None
) -> None:
    with services.sessions.begin() as session:
        noor = users.invite_user(session, email="noor@example.org", huddles=["logan"])
        sent_then = {
            age: invites.make_token(services.settings, invites.INVITE, noor, now=utcnow() - age)
            for age in (timedelta(days=7) - timedelta(seconds=5), timedelta(days=7, seconds=1))
        }
    fresh, stale = sent_then.values()
    assert client.get(f"/invite/{fresh}").status_code == 200
    expired = client.get(f"/invite/{stale}")
    assert expired.status_code == 410
    assert "This link has expired" in page_text(expired)
    assert "Invitation links work for 7 days" in page_text(expired)


def test_the_clock_is_injected_into_the_link_check(services: Services, people: None) -> None:
    with services.sessions.begin() as session:
        noor = users.invite_user(session, email="noor@example.org", huddles=["logan"])
        token = invites.make_token(services.settings, invites.RESET, noor)
        later = utcnow() + timedelta(hours=1, seconds=1)
        assert invites.open_link(session, services.settings, invites.RESET, token).id == noor.id
        with pytest.raises(invites.ExpiredLink):
            invites.open_link(session, services.settings, invites.RESET, token, now=later)
        with pytest.raises(invites.InvalidLink):  # an invitation is not a reset, nor the reverse
            invites.open_link(session, services.settings, invites.INVITE, token)


@pytest.mark.parametrize(
    "token",
    ["nonsense", "x" * 5000, "WzEsImFiYyJd.ZZZZZZ.c2lnbmF0dXJl", "%00%ff"],
)
def test_a_made_up_or_tampered_link_gets_a_clear_page(
    client: FlaskClient, people: None, token: str
) -> None:
    for path in (f"/invite/{token}", f"/reset/{token}"):
        response = client.get(path)
        assert response.status_code == 400, path
        assert "This link doesn't work" in page_text(response)
        assert 'href="/forgot"' in page_text(response)


def test_a_link_for_a_disabled_account_is_refused(
    client: FlaskClient, services: Services, people: None
) -> None:
    with services.sessions.begin() as session:
        noor = users.invite_user(session, email="noor@example.org", huddles=["logan"])
        token = invites.make_token(services.settings, invites.INVITE, noor)
        users.disable(session, email="noor@example.org")
    assert client.get(f"/invite/{token}").status_code == 410


@pytest.mark.parametrize(
    ("form", "message"),
    [
        (
            {"password": NEW_PASSWORD, "password_again": NEW_PASSWORD + "x"},
            "The two passwords are not the same.",
        ),
        ({"password": "short", "password_again": "short"}, "at least 10 characters"),
        ({"password": "p" * 5000, "password_again": "p" * 5000}, "at most 1,024 characters"),
        (
            {"name": "", "password": NEW_PASSWORD, "password_again": NEW_PASSWORD},
            "Enter your name",
        ),
        (
            {"name": "N" * 201, "password": NEW_PASSWORD, "password_again": NEW_PASSWORD},
            "A name has at most 200 characters.",
        ),
    ],
)
def test_bad_input_when_accepting_is_explained_and_changes_nothing(
    app: Flask, services: Services, people: None, form: dict[str, str], message: str
) -> None:
    invite(sign_in(app, "boss@example.org"))
    link = link_in(emails_to(services, "noor@example.org")[0])
    visitor = app.test_client()
    response = post(visitor, link, link, **{"name": "Noor", **form})
    assert response.status_code == 400
    assert message in page_text(response)
    assert 'role="alert"' in page_text(response)
    noor = organizer(services, "noor@example.org")
    assert noor is not None
    assert noor.password_hash is None
    assert noor.name == "Noor"
    assert visitor.get(link).status_code == 200  # the link still works
    assert visitor.get("/").status_code == 302  # and nobody is signed in


# --- the people page is for admins --------------------------------------------------------


@pytest.mark.parametrize("email", ["lee@example.org", "rae@example.org"])
def test_only_admins_reach_the_people_page_and_its_forms(
    app: Flask, services: Services, people: None, email: str
) -> None:
    client = sign_in(app, email)
    assert client.get("/people").status_code == 404
    token = csrf(client, "/")  # a real token, so the 404 is the access check, not CSRF
    for path, form in (
        ("/people/invite", {"email": "x@example.org", "huddle": "logan", "role": "admin"}),
        ("/people/resend", {"email": "lee@example.org"}),
        ("/people/access", {"email": email, "huddle": "provo", "role": "organizer"}),
        ("/people/remove", {"email": "boss@example.org", "huddle": "logan"}),
        ("/people/disable", {"email": "boss@example.org"}),
    ):
        assert client.post(path, data={"csrf_token": token, **form}).status_code == 404, path
    assert organizer(services, "x@example.org") is None
    boss = organizer(services, "boss@example.org")
    assert boss is not None
    assert boss.disabled_at is None
    assert outbox_count(services) == 0
    with services.read_sessions() as session:
        assert session.scalar(select(func.count()).select_from(OrganizerHuddle)) == 2


def test_the_people_page_lists_everyone_with_their_roles(app: Flask, people: None) -> None:
    page = page_text(sign_in(app, "boss@example.org").get("/people"))
    assert "Everyone (3)" in page
    for text in ("boss@example.org", "Lee", "lee@example.org", "Rae", "Responder", "Organizer"):
        assert text in page, text
    assert "Remove from Logan Huddle" in page
    assert page.count("Disable account") == 2  # not for yourself


@pytest.mark.parametrize(
    ("form", "message"),
    [
        ({"email": "not-an-email"}, "That is not an email address"),
        ({"email": ""}, "Enter the email address"),
        ({"email": "a" * 300 + "@example.org"}, "at most 254 characters"),
        ({"name": "N" * 5000}, "A name has at most 200 characters."),
        ({"huddle": ""}, "Choose the huddle they will work in"),
        ({"huddle": "nowhere"}, "No huddle with slug &#39;nowhere&#39;."),
        ({"role": "owner"}, "Choose a role."),
        ({"email": "LEE@example.org"}, "There is already a user lee@example.org."),
    ],
)
def test_bad_invitations_are_explained_and_change_nothing(
    app: Flask, services: Services, people: None, form: dict[str, str], message: str
) -> None:
    boss = sign_in(app, "boss@example.org")
    before = actions(services)
    response = invite(boss, **form)
    assert response.status_code == 400
    assert message in page_text(response)
    assert outbox_count(services) == 0
    assert actions(services) == before
    assert organizer(services, "noor@example.org") is None


def test_an_admin_invitation_needs_no_huddle(app: Flask, services: Services, people: None) -> None:
    assert invite(sign_in(app, "boss@example.org"), huddle="", role="admin").status_code == 302
    noor = organizer(services, "noor@example.org")
    assert noor is not None
    assert noor.is_admin
    assert "run every huddle as an admin" in emails_to(services, "noor@example.org")[0].body


def test_names_are_shown_as_text(app: Flask, people: None) -> None:
    boss = sign_in(app, "boss@example.org")
    invite(boss, name="<script>alert(1)</script>")
    page = page_text(boss.get("/people"))
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_an_admin_changes_roles_removes_access_and_disables(
    app: Flask, services: Services, people: None
) -> None:
    boss = sign_in(app, "boss@example.org")
    rae = sign_in(app, "rae@example.org")
    for path, form in (
        ("/people/access", {"email": "lee@example.org", "huddle": "provo", "role": "responder"}),
        ("/people/access", {"email": "rae@example.org", "huddle": "logan", "role": "organizer"}),
        ("/people/remove", {"email": "lee@example.org", "huddle": "logan"}),
    ):
        assert post(boss, path, **form).status_code == 302, (path, form)
    assert "Lee no longer has access to Logan Huddle." in page_text(boss.get("/people"))
    with services.read_sessions() as session:
        roles = set(
            session.execute(
                select(Organizer.email, Huddle.slug, OrganizerHuddle.role)
                .join(OrganizerHuddle, OrganizerHuddle.organizer_id == Organizer.id)
                .join(Huddle, Huddle.id == OrganizerHuddle.huddle_id)
            ).all()
        )
    assert roles == {
        ("lee@example.org", "provo", a.RESPONDER),
        ("rae@example.org", "logan", a.ORGANIZER),
    }

    response = post(boss, "/people/disable", email="rae@example.org")
    assert response.status_code == 302
    assert "rae@example.org is disabled" in page_text(boss.get("/people"))
    assert rae.get("/").status_code == 302  # signed out at once
    assert not can_sign_in(app, "rae@example.org", PASSWORD)
    done = [(act, who) for act, who, subject in actions(services) if who == "boss@example.org"]
    assert ("access_granted", "boss@example.org") in done
    assert ("access_revoked", "boss@example.org") in done
    assert ("user_disabled", "boss@example.org") in done


LEE, BOSS = "lee@example.org", "boss@example.org"


@pytest.mark.parametrize(
    ("path", "form", "message"),
    [
        ("/people/access", {"email": LEE, "huddle": "provo", "role": "admin"}, "Choose a role"),
        ("/people/access", {"email": LEE, "huddle": "x" * 999, "role": "organizer"}, "No huddle"),
        ("/people/access", {"email": "no@x.org", "huddle": "provo"}, "Choose a role"),
        (
            "/people/access",
            {"email": "no@x.org", "huddle": "provo", "role": "organizer"},
            "no such",
        ),
        ("/people/access", {"email": BOSS, "huddle": "provo", "role": "organizer"}, "is an admin"),
        ("/people/remove", {"email": LEE, "huddle": "provo"}, "nothing to remove"),
        ("/people/remove", {"email": "not an email", "huddle": "logan"}, "nothing to remove"),
        ("/people/disable", {"email": BOSS}, "can&#39;t disable your own account"),
        ("/people/disable", {"email": "99"}, "no such account"),
        ("/people/resend", {"email": LEE}, "has a password already"),
    ],
)
def test_role_changes_with_bad_input_are_explained_and_change_nothing(
    app: Flask, services: Services, people: None, path: str, form: dict[str, str], message: str
) -> None:
    boss = sign_in(app, BOSS)
    before = actions(services)
    response = post(boss, path, **form)
    assert response.status_code == 400
    assert message in page_text(response)
    assert 'role="alert"' in page_text(response)
    assert actions(services) == before
    assert outbox_count(services) == 0


def test_an_invitation_can_be_sent_again_and_the_new_link_works(
    app: Flask, services: Services, people: None
) -> None:
    boss = sign_in(app, "boss@example.org")
    invite(boss)
    assert "Send the invitation again" in page_text(boss.get("/people"))
    assert post(boss, "/people/resend", email="noor@example.org").status_code == 302
    first, second = emails_to(services, "noor@example.org")
    visitor = app.test_client()
    link = link_in(second)
    post(visitor, link, link, name="Noor", password=NEW_PASSWORD, password_again=NEW_PASSWORD)
    assert visitor.get("/").status_code == 200
    assert app.test_client().get(link_in(first)).status_code == 410  # the older one died too
    assert "Send the invitation again" not in page_text(boss.get("/people"))


# --- forgot and reset -----------------------------------------------------------------------


def test_forgot_answers_the_same_for_unknown_addresses_and_sends_them_nothing(
    app: Flask, services: Services, people: None
) -> None:
    assert 'href="/forgot">Forgot your password?</a>' in page_text(app.test_client().get("/login"))
    client = app.test_client()
    form_page = client.get("/forgot")
    assert '<label for="email">Email</label>' in page_text(form_page)
    known = post(client, "/forgot", "/forgot", email="lee@example.org")
    unknown = post(client, "/forgot", "/forgot", email="nobody@example.org")
    assert known.status_code == unknown.status_code == 200
    assert page_text(known).replace("lee@example.org", "X") == page_text(unknown).replace(
        "nobody@example.org", "X"
    )
    assert "If lee@example.org has an account, we sent it a link" in page_text(known)
    assert emails_to(services, "nobody@example.org") == []
    (email,) = emails_to(services, "lee@example.org")
    assert email.subject == "Set a new Huddle Outreach password"
    assert "/reset/" in link_in(email)
    assert "60 minutes" in email.body


def test_a_disabled_account_is_sent_no_reset_link(
    app: Flask, services: Services, people: None
) -> None:
    with services.sessions.begin() as session:
        users.disable(session, email="lee@example.org")
    client = app.test_client()
    assert post(client, "/forgot", "/forgot", email="lee@example.org").status_code == 200
    assert emails_to(services, "lee@example.org") == []


@pytest.mark.parametrize(
    ("email", "message"),
    [("not an email", "That is not an email address"), ("a" * 5000, "at most 254 characters")],
)
def test_forgot_with_a_malformed_address_says_so(
    client: FlaskClient, services: Services, people: None, email: str, message: str
) -> None:
    response = post(client, "/forgot", "/forgot", email=email)
    assert response.status_code == 400
    assert message in page_text(response)
    assert outbox_count(services) == 0


def test_forgot_is_throttled_per_address(
    client: FlaskClient, services: Services, people: None
) -> None:
    for _ in range(3):
        assert post(client, "/forgot", "/forgot", email="lee@example.org").status_code == 200
    refused = post(client, "/forgot", "/forgot", email="LEE@example.org")
    assert refused.status_code == 429
    assert "Too many links asked for" in page_text(refused)
    assert len(emails_to(services, "lee@example.org")) == 3
    assert post(client, "/forgot", "/forgot", email="rae@example.org").status_code == 200


def test_a_reset_ends_every_other_session_and_signs_this_one_in(
    app: Flask, services: Services, people: None
) -> None:
    laptop = sign_in(app, "lee@example.org")
    phone = app.test_client()
    post(phone, "/forgot", "/forgot", email="lee@example.org")
    link = link_in(emails_to(services, "lee@example.org")[0])
    page = page_text(phone.get(link))
    assert "Choose a new password" in page
    assert "lee@example.org" in page
    done = post(phone, link, link, password=NEW_PASSWORD, password_again=NEW_PASSWORD)
    assert done.status_code == 302
    assert phone.get("/").status_code == 200
    assert laptop.get("/").status_code == 302  # signed out there
    assert not can_sign_in(app, "lee@example.org", PASSWORD)
    assert can_sign_in(app, "lee@example.org", NEW_PASSWORD)
    assert phone.get("/").status_code == 200  # another sign-in doesn't end this one
    again = app.test_client().get(link)
    assert again.status_code == 410
    assert "used already" in page_text(again)
    assert ("password_reset", "lee@example.org", "lee@example.org") in actions(services)


def test_a_reset_link_expires_after_an_hour(
    client: FlaskClient, services: Services, people: None
) -> None:
    with services.read_sessions() as session:
        lee = session.scalars(select(Organizer).where(Organizer.email == "lee@example.org")).one()
        stale = invites.make_token(
            services.settings, invites.RESET, lee, now=utcnow() - timedelta(hours=1, seconds=1)
        )
    response = client.get(f"/reset/{stale}")
    assert response.status_code == 410
    assert "Password links work for 60 minutes" in page_text(response)
    token = csrf(client, "/forgot")
    posted = client.post(
        f"/reset/{stale}",
        data={"csrf_token": token, "password": NEW_PASSWORD, "password_again": NEW_PASSWORD},
    )
    assert posted.status_code == 410
    assert can_sign_in(client.application, "lee@example.org", PASSWORD)


def test_a_short_or_mismatched_new_password_is_refused(
    app: Flask, services: Services, people: None
) -> None:
    client = app.test_client()
    post(client, "/forgot", "/forgot", email="lee@example.org")
    link = link_in(emails_to(services, "lee@example.org")[0])
    short = post(client, link, link, password="short", password_again="short")
    assert short.status_code == 400
    assert "at least 10 characters" in page_text(short)
    mismatched = post(client, link, link, password=NEW_PASSWORD, password_again="other one!!")
    assert mismatched.status_code == 400
    assert "not the same" in page_text(mismatched)
    assert can_sign_in(app, "lee@example.org", PASSWORD)
    assert client.get(link).status_code == 200
