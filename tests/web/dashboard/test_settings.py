"""The huddle settings page (admins only): a round trip of every field, each bad input refused at
its field with nothing changed, keywords unique across the network, the live segment counter,
the sending window new campaigns start from, and the audit log."""

from __future__ import annotations

import html
import re
from datetime import time
from typing import Any

import pytest
from argon2 import PasswordHasher, profiles
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from outreach.accounts import audit, passwords, users
from outreach.app.services import Services
from outreach.campaigns import create_campaign
from outreach.campaigns.quiet_hours import DEFAULT_WINDOW
from outreach.models import AuditEvent, Huddle
from outreach.models import members as m
from outreach.people import huddles as huddle_rules
from outreach.people.huddles import create_huddle

PASSWORD = "correct horse battery"
LOGAN_SENDER = "+16175550100"
SETTINGS = "/h/logan/settings/"

VALID: dict[str, str] = {
    "sender": "(617) 555-0199",
    "opt_in_mode": "single",
    "help_text": "Logan: questions? Write help@logan.example. Reply STOP to opt out.",
    "confirmation_text": "Logan: reply YES to get our texts. Reply STOP to opt out.",
    "welcome_text": "Welcome to Logan! Up to 4 msgs/month. Reply STOP to opt out.",
    "quiet_start": "09:30",
    "quiet_end": "20:00",
    "email_from_address": "Logan@Example.org",
    "email_from_name": "Logan Huddle",
    "postal_address": "1 Main St\nLogan, UT 84321",
}


@pytest.fixture(autouse=True)
def cheap_passwords(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(passwords, "_hasher", PasswordHasher.from_parameters(profiles.CHEAPEST))


@pytest.fixture
def huddles(services: Services) -> None:
    with services.sessions.begin() as session:
        create_huddle(session, slug="logan", name="Logan", keywords=["LOGAN"], sender=LOGAN_SENDER)
        create_huddle(session, slug="moab", name="Moab", keywords=["MOAB", "ARCHES"])
        users.create_user(session, email="boss@example.org", password=PASSWORD, admin=True)
        users.create_user(session, email="lee@example.org", password=PASSWORD, huddles=["logan"])
        users.create_user(session, email="mo@example.org", password=PASSWORD, huddles=["moab"])


def sign_in(client: FlaskClient, email: str) -> None:
    answer = client.post(
        "/login", data={"email": email, "password": PASSWORD, "csrf_token": token(client, "/login")}
    )
    assert answer.status_code == 302


def token(client: FlaskClient, path: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', client.get(path).get_data(as_text=True))
    assert found
    return found.group(1)


@pytest.fixture
def boss(client: FlaskClient, huddles: None) -> FlaskClient:
    sign_in(client, "boss@example.org")
    return client


def logan(services: Services) -> dict[str, Any]:
    """Everything the settings page may change, as stored."""
    with services.read_sessions() as session:
        huddle = session.scalars(
            select(Huddle).options(selectinload(Huddle.keywords)).where(Huddle.slug == "logan")
        ).one()
        return {
            "keywords": [k.keyword for k in huddle.keywords],
            "sender": huddle.sender_number,
            "opt_in_mode": huddle.opt_in_mode,
            "help_text": huddle.help_text,
            "confirmation_text": huddle.confirmation_text,
            "welcome_text": huddle.welcome_text,
            "quiet": (huddle.quiet_start, huddle.quiet_end),
            "email": (huddle.email_from_address, huddle.email_from_name, huddle.postal_address),
        }


def save(client: FlaskClient, **changes: str):  # type: ignore[no-untyped-def]
    return client.post(SETTINGS, data={**VALID, **changes, "csrf_token": token(client, SETTINGS)})


def error_at(body: str, field: str) -> str:
    """The error shown at ``field`` (the field points at it with aria-describedby)."""
    found = re.search(rf'<p class="field-error" id="{field}-error">([^<]*)</p>', body)
    assert found, f"no error at {field}"
    assert re.search(rf'id="{field}"[^>]*aria-describedby="[^"]*{field}-error', body)
    return html.unescape(found.group(1))


def audits(services: Services) -> list[AuditEvent]:
    with services.read_sessions() as session:
        return list(
            session.scalars(
                select(AuditEvent).where(AuditEvent.action == audit.HUDDLE_SETTINGS_CHANGED)
            )
        )


# ---------------------------------------------------------------------------------------------
# Saving


def test_the_page_shows_every_field_labelled(boss: FlaskClient) -> None:
    body = boss.get(SETTINGS).get_data(as_text=True)
    for field, label in (
        ("keyword", "New keyword"),
        ("sender", "Sender number"),
        ("opt_in_double", "Double opt-in"),
        ("opt_in_single", "Single opt-in"),
        ("help_text", "HELP answer"),
        ("confirmation_text", "Confirmation request"),
        ("welcome_text", "Welcome text"),
        ("quiet_start", "Send from"),
        ("quiet_end", "Send until"),
        ("email_from_address", "From address"),
        ("email_from_name", "From name"),
        ("postal_address", "Postal address"),
    ):
        assert re.search(rf'<label for="{field}">{label}', body), field
        assert f'id="{field}"' in body
    assert 'value="+16175550100"' in body
    assert '<button type="submit">Save settings</button>' in body
    assert 'aria-label="Remove LOGAN">Remove</button>' in body


def test_a_round_trip_of_every_field(boss: FlaskClient, services: Services) -> None:
    answer = save(boss)
    assert answer.status_code == 302
    assert logan(services) == {
        "keywords": ["LOGAN"],
        "sender": "+16175550199",
        "opt_in_mode": "single",
        "help_text": VALID["help_text"],
        "confirmation_text": VALID["confirmation_text"],
        "welcome_text": VALID["welcome_text"],
        "quiet": ("09:30", "20:00"),
        "email": ("logan@example.org", "Logan Huddle", "1 Main St\nLogan, UT 84321"),
    }
    body = boss.get(SETTINGS).get_data(as_text=True)
    assert "Settings saved." in body
    assert 'value="+16175550199"' in body
    assert 'id="opt_in_single" name="opt_in_mode" value="single" checked' in body
    assert 'value="09:30"' in body
    assert 'value="20:00"' in body
    assert f">{html.escape(VALID['welcome_text'])}</textarea>" in body
    (event,) = audits(services)
    assert event.actor_email == "boss@example.org"
    assert event.subject == "logan"
    assert set(event.detail["changed"]) == set(VALID)
    # Saving the same again changes nothing and writes no audit row.
    assert save(boss).status_code == 302
    assert "Nothing changed." in boss.get(SETTINGS).get_data(as_text=True)
    assert len(audits(services)) == 1


def test_empty_texts_and_window_mean_the_standard_ones(
    boss: FlaskClient, services: Services
) -> None:
    save(boss)
    save(boss, help_text="", confirmation_text="", welcome_text="", quiet_start="", quiet_end="")
    stored = logan(services)
    assert (stored["help_text"], stored["confirmation_text"], stored["welcome_text"]) == (
        None,
        None,
        None,
    )
    assert stored["quiet"] == (None, None)
    body = boss.get(SETTINGS).get_data(as_text=True)
    assert "Logan: You&#39;re in! Welcome." in body  # the standard text, as the placeholder


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("sender", "555-12", "Not a valid phone number"),
        ("sender", "+1617555019" + "9" * 80, "too long for a phone number"),
        ("opt_in_mode", "triple", "Choose double or single"),
        ("help_text", "Call us any time!", "must say how to stop"),
        ("confirmation_text", "Logan texts. Reply STOP to opt out.", "reply YES"),
        ("welcome_text", "Welcome! Reply STOP to opt out. " + "x" * 700, "640 at most"),
        ("quiet_start", "07:30", "before 08:00"),
        ("quiet_start", "9am", "HH:MM"),
        ("quiet_end", "21:30", "after 21:00"),
        ("quiet_end", "09:00", "must end after it starts"),
        ("email_from_address", "logan at example", "Not an email address"),
        ("email_from_name", "Logan\r\nBcc: all@example.org", "one line"),
        ("postal_address", "x" * 501, "500 characters at most"),
        ("postal_address", "", "postal address (CAN-SPAM)"),
    ],
)
def test_each_bad_input_shows_its_error_at_its_field_and_changes_nothing(
    boss: FlaskClient, services: Services, field: str, value: str, message: str
) -> None:
    before = logan(services)
    answer = save(boss, **{field: value})
    assert answer.status_code == 400
    body = answer.get_data(as_text=True)
    assert message in error_at(body, field)
    assert "Nothing was saved." in body
    assert logan(services) == before
    assert audits(services) == []
    # What was typed is kept, so it can be fixed rather than typed again.
    if field in ("help_text", "confirmation_text", "postal_address") and value:
        assert html.escape(value.replace("\r\n", "\n")) in body


def test_several_bad_fields_are_all_named_at_once(boss: FlaskClient, services: Services) -> None:
    answer = save(boss, sender="nope", quiet_end="22:00", email_from_address="@")
    body = answer.get_data(as_text=True)
    for field in ("sender", "quiet_end", "email_from_address"):
        assert error_at(body, field)
    assert "quiet_start-error" not in body


def test_a_huge_or_missing_value_is_refused_not_a_crash(
    boss: FlaskClient, services: Services
) -> None:
    before = logan(services)
    answer = save(boss, welcome_text="STOP " + "\u2019" * 100_000)
    assert answer.status_code == 400
    assert logan(services) == before
    # A form that sends only some fields changes only those.
    only = boss.post(
        SETTINGS, data={"email_from_name": "Just a name", "csrf_token": token(boss, SETTINGS)}
    )
    assert only.status_code == 302
    assert logan(services) == {**before, "email": (None, "Just a name", None)}


def test_a_post_without_the_csrf_token_changes_nothing(
    boss: FlaskClient, services: Services
) -> None:
    before = logan(services)
    assert boss.post(SETTINGS, data=VALID).status_code == 400
    assert logan(services) == before


# ---------------------------------------------------------------------------------------------
# Keywords


def add_keyword(client: FlaskClient, word: str):  # type: ignore[no-untyped-def]
    return client.post(
        "/h/logan/settings/keywords", data={"keyword": word, "csrf_token": token(client, SETTINGS)}
    )


def remove_keyword(client: FlaskClient, word: str):  # type: ignore[no-untyped-def]
    return client.post(
        "/h/logan/settings/keywords/remove",
        data={"keyword": word, "csrf_token": token(client, SETTINGS)},
    )


def test_keywords_are_added_normalized_and_removed(boss: FlaskClient, services: Services) -> None:
    assert add_keyword(boss, " cache valley ").status_code == 302
    assert logan(services)["keywords"] == ["CACHEVALLEY", "LOGAN"]
    assert remove_keyword(boss, "LOGAN").status_code == 302
    assert logan(services)["keywords"] == ["CACHEVALLEY"]
    details = [event.detail for event in audits(services)]
    assert details == [
        {"changed": ["keywords"], "keywords_added": ["CACHEVALLEY"]},
        {"changed": ["keywords"], "keywords_removed": ["LOGAN"]},
    ]


def test_another_huddles_keyword_is_already_used_and_says_no_more(
    boss: FlaskClient, services: Services
) -> None:
    answer = add_keyword(boss, "arches")
    assert answer.status_code == 400
    body = answer.get_data(as_text=True)
    found = re.search(r'<p class="field-error" id="keywords-error">([^<]*)</p>', body)
    assert found
    assert found.group(1) == "ARCHES is already used."
    assert 'aria-describedby="keywords-error"' in body
    assert "Moab" not in body.split("</nav>", 1)[1]
    assert "moab" not in body.split("</nav>", 1)[1]
    assert logan(services)["keywords"] == ["LOGAN"]


@pytest.mark.parametrize(
    ("word", "message"),
    [
        ("STOP", "reserved"),
        ("a", "2-40 letters or digits"),
        ("no-way!", "2-40 letters or digits"),
        ("", "Type the keyword"),
    ],
)
def test_a_bad_keyword_is_refused(
    boss: FlaskClient, services: Services, word: str, message: str
) -> None:
    answer = add_keyword(boss, word)
    assert answer.status_code == 400
    assert message in answer.get_data(as_text=True)
    assert logan(services)["keywords"] == ["LOGAN"]


def test_the_last_keyword_cannot_be_removed(boss: FlaskClient, services: Services) -> None:
    answer = remove_keyword(boss, "LOGAN")
    assert answer.status_code == 400
    assert "at least one join keyword" in answer.get_data(as_text=True)
    assert logan(services)["keywords"] == ["LOGAN"]


# ---------------------------------------------------------------------------------------------
# Who may


def test_an_organizer_who_is_not_admin_gets_404(
    client: FlaskClient, huddles: None, services: Services
) -> None:
    sign_in(client, "lee@example.org")
    assert client.get(SETTINGS).status_code == 404
    assert client.get("/h/logan/settings/counter?welcome_text=hi").status_code == 404
    assert client.post(SETTINGS, data=VALID).status_code in (400, 404)  # no token either way
    assert logan(services)["sender"] == LOGAN_SENDER


def test_every_settings_url_is_404_to_an_organizer_even_with_a_valid_token(
    client: FlaskClient, huddles: None, services: Services
) -> None:
    """Settings are for admins (there is no per-huddle admin): an organizer of logan or of moab
    gets 404 for each URL, also when the POST carries a good CSRF token."""
    before = logan(services)
    for email in ("lee@example.org", "mo@example.org"):
        sign_in(client, email)
        good_token = token(client, "/")
        for slug in ("logan", "moab"):
            for path in ("settings/", "settings/counter"):
                assert client.get(f"/h/{slug}/{path}").status_code == 404
            for path in ("settings/", "settings/keywords", "settings/keywords/remove"):
                data = {**VALID, "keyword": "LOGAN", "csrf_token": good_token}
                assert client.post(f"/h/{slug}/{path}", data=data).status_code == 404
        client.post("/logout", data={"csrf_token": good_token})
    assert logan(services) == before


# ---------------------------------------------------------------------------------------------
# The live counter


def test_the_counter_names_the_characters_that_force_ucs2(boss: FlaskClient) -> None:
    answer = boss.get(
        "/h/logan/settings/counter",
        query_string={"welcome_text": "We\u2019re \u201cin\u201d! \U0001f389 Reply STOP to stop"},
    )
    assert answer.status_code == 200
    body = answer.get_data(as_text=True)
    welcome = body.split('id="count-welcome_text"', 1)[1].split("</li>", 1)[0]
    assert 'data-encoding="UCS-2"' in welcome
    assert "UCS-2" in welcome
    assert "right single quotation mark, U+2019" in welcome
    assert "left double quotation mark, U+201C" in welcome
    assert "U+1F389" in welcome
    assert "\U0001f389" in welcome
    # The others are empty: the standard texts are measured, and they are plain GSM-7.
    help_line = body.split('id="count-help_text"', 1)[1].split("</li>", 1)[0]
    assert "(the standard text)" in help_line
    assert 'data-encoding="GSM-7"' in help_line


def test_the_counter_counts_gsm_segments_and_escapes(boss: FlaskClient) -> None:
    body = boss.get(
        "/h/logan/settings/counter",
        query_string={"help_text": "<b>" + "a" * 157},
    ).get_data(as_text=True)
    line = body.split('id="count-help_text"', 1)[1].split("</li>", 1)[0]
    assert "160 characters" in line
    assert "GSM-7" in line
    assert "1 segment<" in line
    body = boss.get("/h/logan/settings/counter", query_string={"help_text": "a" * 161}).get_data(
        as_text=True
    )
    assert "2 segments" in body.split('id="count-help_text"', 1)[1].split("</li>", 1)[0]
    assert "<b>" not in body


def test_the_settings_page_shows_the_counter_of_the_saved_texts(boss: FlaskClient) -> None:
    save(boss, welcome_text="Welcome \u2014 reply STOP to opt out")
    body = boss.get(SETTINGS).get_data(as_text=True)
    assert 'data-live="/h/logan/settings/counter"' in body
    assert 'data-live-target="text-counter"' in body
    welcome = body.split('id="count-welcome_text"', 1)[1].split("</li>", 1)[0]
    assert "em dash, U+2014" in welcome
    assert "With plain quotes, dashes and spaces it would be 1 segment" not in welcome  # 1 already


# ---------------------------------------------------------------------------------------------
# The window, and new campaigns


def test_the_federal_window_is_the_one_quiet_hours_enforces() -> None:
    ours = (huddle_rules.EARLIEST_SEND, huddle_rules.LATEST_SEND)
    assert ours == (DEFAULT_WINDOW.start, DEFAULT_WINDOW.end)
    assert DEFAULT_WINDOW.start == time(8)


def test_new_campaigns_start_from_the_huddles_window(boss: FlaskClient, services: Services) -> None:
    with services.sessions.begin() as session:
        before = create_campaign(
            session, huddle_slug="logan", channel=m.SMS, segment_filter="", body="Hi"
        )
    assert (before.quiet_start, before.quiet_end) == (None, None)  # the federal default
    save(boss, quiet_start="10:00", quiet_end="19:00")
    with services.sessions.begin() as session:
        default = create_campaign(
            session, huddle_slug="logan", channel=m.SMS, segment_filter="", body="Hi"
        )
        own = create_campaign(
            session,
            huddle_slug="logan",
            channel=m.SMS,
            segment_filter="",
            body="Hi",
            quiet_start="12:00",
            quiet_end="13:00",
        )
    assert (default.quiet_start, default.quiet_end) == ("10:00", "19:00")
    assert (own.quiet_start, own.quiet_end) == ("12:00", "13:00")
