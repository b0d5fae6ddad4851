"""Campaign pages: compose (with its errors and the segment counter), preview, test send, the
confirmation, launch (once), pause / resume / cancel, the report, and who may see any of it.

Real database, real Redis, a real in-process RQ worker; the clock is set to a January morning in
Boston so the members' sending hours are open.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from argon2 import PasswordHasher, profiles
from flask import Flask
from flask.testing import FlaskClient
from rq import Queue
from sqlalchemy import func, select

from outreach import consent
from outreach.accounts import passwords, users
from outreach.app.services import Services
from outreach.campaigns import launches
from outreach.models import (
    AuditEvent,
    Campaign,
    Delivery,
    InboundMessage,
    Member,
    MemberTag,
    OutboxMessage,
    Segment,
)
from outreach.models import accounts as a
from outreach.models import members as m
from outreach.people.huddles import create_huddle, get_huddle
from outreach.providers import sms_transport
from outreach.providers.sandbox.sms import SandboxSmsTransport
from outreach.sms import receipts
from tests.members import active_member
from tests.workers.campaign_helpers import run_worker
from workers import jobs
from workers.queues import DEFAULT_QUEUE

PASSWORD = "correct horse battery"
MORNING = datetime(2027, 1, 12, 15, 0, tzinfo=UTC)  # 10:00 in Boston
LOGAN_SENDER = "+16175550100"
TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')
VOLUNTEERS = 6


@pytest.fixture
def test_env(test_env: dict[str, str]) -> dict[str, str]:
    """No public URL: sandbox receipts would be posted to a name that never resolves."""
    return {**test_env, "PUBLIC_BASE_URL": ""}


@pytest.fixture(autouse=True)
def cheap_passwords(monkeypatch: pytest.MonkeyPatch) -> None:
    """argon2's test profile: these tests are about pages, not the cost of a password."""
    monkeypatch.setattr(passwords, "_hasher", PasswordHasher.from_parameters(profiles.CHEAPEST))


@pytest.fixture(autouse=True)
def clock() -> Iterator[time_machine.Coordinates]:
    with time_machine.travel(MORNING, tick=True) as traveller:
        yield traveller


@pytest.fixture
def people(services: Services) -> None:
    """Logan (6 volunteers, 2 others, magic numbers for failures, one opted out, a saved
    segment, email identity) and moab; lee organizes logan, mo moab, rae answers logan's inbox."""
    with services.sessions.begin() as session:
        logan = create_huddle(
            session, slug="logan", name="Logan", keywords=["LOGAN"], sender=LOGAN_SENDER
        )
        logan.sms_rate = 10.0
        logan.email_from_address = "logan@example.org"
        logan.postal_address = "1 Main St, Boston MA 02128"
        create_huddle(session, slug="moab", name="Moab", keywords=["MOAB"], sender="+14355550100")
        users.create_user(session, email="lee@example.org", password=PASSWORD, huddles=["logan"])
        users.create_user(session, email="mo@example.org", password=PASSWORD, huddles=["moab"])
        users.create_user(
            session,
            email="rae@example.org",
            password=PASSWORD,
            huddles=["logan"],
            role=a.RESPONDER,
        )
        for i in range(VOLUNTEERS):
            name = "<script>alert(1)</script>" if i == 0 else f"Vol{i}"
            member = active_member(
                session, logan, phone=f"+1617200{i:04d}", first_name=name, zip="02128"
            )
            session.add(MemberTag(huddle_id=logan.id, member_id=member.id, tag="volunteer"))
        for phone, name in (
            ("+16175550101", "Stopped"),  # refused on send: 21610
            ("+16175550102", "Invalid"),  # refused on send: 21211
            ("+16175550105", "Away"),  # sent, then undelivered: 30003
            ("+16175550106", "Unknown"),  # sent, then undelivered: 30005
        ):
            member = active_member(session, logan, phone=phone, first_name=name, zip="02128")
            session.add(MemberTag(huddle_id=logan.id, member_id=member.id, tag="magic"))
        gone = active_member(session, logan, phone="+16172009999", first_name="Gone", zip="02128")
        session.add(MemberTag(huddle_id=logan.id, member_id=gone.id, tag="magic"))
        consent.set_subscription_state(
            session,
            member=gone,
            huddle=logan,
            channel=m.SMS,
            state=m.OPTED_OUT,
            provenance=consent.Provenance(source="keyword", detail="STOP"),
        )
        active_member(session, logan, email="ann@example.org", channel=m.EMAIL, first_name="Ann")
        session.add(Segment(huddle_id=logan.id, name="volunteers", filter="tag:volunteer"))


def _sign_in(app: Flask, email: str) -> FlaskClient:
    client = app.test_client()
    token = TOKEN.search(client.get("/login").get_data(as_text=True))
    assert token
    form = {"email": email, "password": PASSWORD, "csrf_token": token.group(1)}
    assert client.post("/login", data=form).status_code == 302
    return client


@pytest.fixture
def lee(app: Flask, people: None) -> FlaskClient:
    return _sign_in(app, "lee@example.org")


def _token(client: FlaskClient, path: str = "/h/logan/campaigns/new") -> str:
    found = TOKEN.search(client.get(path).get_data(as_text=True))
    assert found
    return found.group(1)


def _post(client: FlaskClient, path: str, **form: str) -> tuple[int, str]:
    response = client.post(path, data={"csrf_token": _token(client), **form})
    return response.status_code, response.get_data(as_text=True)


TEXT = {
    "name": "Saturday canvass",
    "channel": "sms",
    "segment": "",
    "definition": "tag:volunteer",
    "body": "Hi {{ first_name }}, canvass Saturday!",
}


def _compose(client: FlaskClient, **changes: str) -> int:
    """Save a draft through the composer; its id."""
    response = client.post(
        "/h/logan/campaigns/new", data={"csrf_token": _token(client), **TEXT, **changes}
    )
    assert response.status_code == 302, response.get_data(as_text=True)
    found = re.search(r"/campaigns/(\d+)$", response.headers["Location"])
    assert found
    return int(found.group(1))


def _campaign(services: Services, campaign_id: int) -> Campaign:
    with services.sessions() as session:
        found = session.get_one(Campaign, campaign_id)
        session.expunge(found)
        return found


def _count(services: Services, model: type[object]) -> int:
    with services.sessions() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def _launch_jobs(services: Services) -> list[str]:
    ids = Queue(DEFAULT_QUEUE, connection=services.redis).get_job_ids()
    return [i for i in ids if i.startswith(jobs.LAUNCH_JOB_PREFIX)]


def _text(html: str) -> str:
    """The page's words, without tags and with spaces collapsed."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html)).strip()


# --- list and composer -------------------------------------------------------------------------


def test_the_list_shows_each_campaign_and_a_new_campaign_button(
    lee: FlaskClient, services: Services
) -> None:
    empty = lee.get("/h/logan/campaigns/").get_data(as_text=True)
    assert "No campaigns yet" in empty
    assert 'href="/h/logan/campaigns/new">New campaign</a>' in empty
    made = _compose(lee)
    page = lee.get("/h/logan/campaigns/").get_data(as_text=True)
    assert f'href="/h/logan/campaigns/{made}">Saturday canvass</a>' in page
    assert "Draft" in page
    assert "Text" in _text(page)


def test_the_composer_labels_every_field_and_counts_the_audience_with_the_segments_fragment(
    lee: FlaskClient,
) -> None:
    page = lee.get("/h/logan/campaigns/new").get_data(as_text=True)
    for field_id in ("name", "channel", "segment", "definition", "subject", "body", "send_at"):
        assert f'<label for="{field_id}"' in page, field_id
    assert 'data-live="/h/logan/segments/audience"' in page
    assert '<option value="@volunteers">volunteers</option>' in page
    counted = lee.get(
        "/h/logan/segments/audience", query_string={"definition": "@volunteers", "channel": "sms"}
    ).get_data(as_text=True)
    assert f'data-count="{VOLUNTEERS}"' in counted


def test_a_draft_is_saved_with_its_fields_and_on_the_audit_log(
    lee: FlaskClient, services: Services
) -> None:
    made = _compose(lee, window_start="09:00", window_end="20:00")
    found = _campaign(services, made)
    assert (found.state, found.channel, found.segment_filter) == ("draft", "sms", "tag:volunteer")
    assert (found.quiet_start, found.quiet_end, found.created_by) == (
        "09:00",
        "20:00",
        "lee@example.org",
    )
    with services.sessions() as session:
        logged = session.scalars(select(AuditEvent.action)).all()
    assert "campaign_created" in logged


def test_a_saved_segment_chosen_in_the_select_is_the_audience(
    lee: FlaskClient, services: Services
) -> None:
    made = _compose(lee, segment="@volunteers", definition="")
    assert _campaign(services, made).segment_filter == "tag:volunteer"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"body": "Hi {{ frist_name }}!"}, "frist_name"),
        ({"body": "Line one\nHi {% for x in y %}{% endfor %}"}, "on line 2"),
        ({"body": "   "}, "Write the message."),
        ({"definition": "@nobody"}, "There is no saved segment named “nobody”."),
        ({"segment": "@nobody", "definition": ""}, "There is no saved segment named “nobody”."),
        ({"definition": "tag:volunteer (zip:021*"}, "This filter has a mistake"),
        ({"window_start": "09:00"}, "Give both the start and the end"),
        ({"window_start": "22:00", "window_end": "09:00"}, "must start before it ends"),
        ({"send_at": "not a time"}, "is not a date and time"),
        ({"send_at": "2020-01-01T10:00"}, "That time has passed"),
        ({"name": "n" * 201}, "Keep the name under 200 characters."),
        ({"channel": "email"}, "An email needs a subject."),
        ({"channel": "fax"}, "Choose text message or email."),
    ],
)
def test_a_draft_with_a_mistake_is_shown_again_with_the_reason_and_nothing_is_saved(
    lee: FlaskClient, services: Services, changes: dict[str, str], message: str
) -> None:
    status, page = _post(lee, "/h/logan/campaigns/new", **{**TEXT, **changes})
    assert status == 422
    assert message in page
    assert "Nothing was saved" in page
    assert _count(services, Campaign) == 0


def test_a_template_error_is_shown_with_its_line(lee: FlaskClient) -> None:
    status, page = _post(
        lee, "/h/logan/campaigns/new", **{**TEXT, "body": "Hello\nHi {{ first_name.upper() }}"}
    )
    assert status == 422
    assert "The message has a mistake on line 2" in page
    assert "<mark>Hi {{ first_name.upper() }}</mark>" in page


def test_a_filter_error_marks_the_character(lee: FlaskClient) -> None:
    _, page = _post(lee, "/h/logan/campaigns/new", **{**TEXT, "definition": "tag:volunteer )"})
    assert re.search(r"<code>tag:volunteer <mark>\)</mark></code>", page), page


def test_the_counter_names_the_characters_that_force_ucs2_and_offers_replacements(
    lee: FlaskClient,
) -> None:
    body = "We’re meeting at “the hall” – bring snacks…"
    page = lee.get("/h/logan/campaigns/counter", query_string={"body": body, "channel": "sms"})
    html = page.get_data(as_text=True)
    words = _text(html)
    assert "UCS-2" in words
    assert "These characters switch the whole text to UCS-2" in words
    for shown, label, replacement in (
        ("’", "curly quote", "'"),
        ("“", "curly quote", '"'),
        ("”", "curly quote", '"'),
        ("–", "long dash", "-"),
        ("…", "ellipsis", "..."),
    ):
        assert f"{shown} {label}" in words
        assert f"Replace {shown} with {replacement}" in words.replace("&#34;", '"').replace(
            "&#39;", "'"
        )
    assert 'value="*">Replace them all</button>' in html
    plain = lee.get(
        "/h/logan/campaigns/counter",
        query_string={"body": "Hi {{ first_name }}!", "channel": "sms"},
    ).get_data(as_text=True)
    assert 'data-encoding="GSM-7"' in plain
    assert 'data-segments="1"' in plain
    assert "UCS-2" not in plain


def test_the_counter_shows_a_template_error_at_its_line(lee: FlaskClient) -> None:
    html = lee.get(
        "/h/logan/campaigns/counter",
        query_string={"body": "ok\n{{ nope }}", "channel": "sms"},
    ).get_data(as_text=True)
    assert "Line 2:" in html
    assert "nope" in html


def test_a_replacement_click_rewrites_the_body_and_saves_nothing(
    lee: FlaskClient, services: Services
) -> None:
    body = "We’re here – come"
    _, page = _post(lee, "/h/logan/campaigns/new", **{**TEXT, "body": body, "replace": "’"})
    assert "We're here – come</textarea>" in page.replace("&#39;", "'")
    _, page = _post(lee, "/h/logan/campaigns/new", **{**TEXT, "body": body, "replace": "*"})
    assert "We're here - come</textarea>" in page.replace("&#39;", "'")
    assert _count(services, Campaign) == 0


def test_a_draft_is_edited_and_a_launched_one_is_not(lee: FlaskClient, services: Services) -> None:
    made = _compose(lee)
    form = lee.get(f"/h/logan/campaigns/{made}/edit").get_data(as_text=True)
    assert "Hi {{ first_name }}, canvass Saturday!</textarea>" in form
    edited = lee.post(
        f"/h/logan/campaigns/{made}/edit",
        data={"csrf_token": _token(lee), **TEXT, "body": "New words, {{ first_name }}"},
    )
    assert edited.status_code == 302
    assert _campaign(services, made).body == "New words, {{ first_name }}"
    status, page = _post(lee, f"/h/logan/campaigns/{made}/edit", **{**TEXT, "body": ""})
    assert (status, "Write the message." in page) == (422, True)
    assert _campaign(services, made).body == "New words, {{ first_name }}"
    _post(lee, f"/h/logan/campaigns/{made}/launch")
    refused = lee.get(f"/h/logan/campaigns/{made}/edit")
    assert refused.status_code == 302
    assert "only a draft is edited" in lee.get(refused.headers["Location"]).get_data(as_text=True)


# --- preview and test send ---------------------------------------------------------------------


def test_the_preview_shows_a_members_text_escaped(lee: FlaskClient) -> None:
    made = _compose(lee)
    page = lee.get(f"/h/logan/campaigns/{made}").get_data(as_text=True)
    assert "<script>alert(1)</script>" not in page
    assert (
        "Hi &lt;script&gt;alert(1)&lt;/script&gt;, canvass Saturday!\nReply STOP to opt out" in page
    )
    assert "6 members match today" in page
    assert "GSM-7 · 1 segment" in page


def test_an_email_preview_is_a_sandboxed_iframe_with_escaped_html(lee: FlaskClient) -> None:
    made = _compose(
        lee,
        channel="email",
        definition="",
        subject="News for {{ first_name }}",
        body="**Hello** {{ first_name }}",
    )
    page = lee.get(f"/h/logan/campaigns/{made}").get_data(as_text=True)
    frame = re.search(r"<iframe[^>]*>", page)
    assert frame
    assert " sandbox " in frame.group(0)
    srcdoc = re.search(r'srcdoc="([^"]*)"', frame.group(0))
    assert srcdoc
    assert "&lt;strong&gt;Hello&lt;/strong&gt; Ann" in srcdoc.group(1)
    assert "<strong>" not in srcdoc.group(1)
    assert "News for Ann" in page


def test_a_test_send_goes_through_the_provider_marked_test(
    lee: FlaskClient, services: Services
) -> None:
    made = _compose(lee)
    response = lee.post(
        f"/h/logan/campaigns/{made}/test", data={"csrf_token": _token(lee), "to": "617-555-0100"}
    )
    assert response.status_code == 302
    page = lee.get(response.headers["Location"]).get_data(as_text=True)
    assert "Test sent to +16175550100." in page
    with services.sessions() as session:
        sent = session.scalars(select(OutboxMessage)).one()
    assert (sent.to_address, sent.kind) == ("+16175550100", "test")
    assert sent.body.startswith("[TEST] Hi Maria, canvass Saturday!")
    assert _campaign(services, made).state == "draft"


@pytest.mark.parametrize(
    ("to", "message"),
    [
        ("+16175550101", "because it replied STOP to this sender (error 21610)"),
        ("+16175550102", "Not a valid phone number (error 21211)"),
        ("12345", "Test not sent:"),
        ("", "Test not sent: give your phone number or email address."),
        ("9" * 300, "too long for a phone number"),
    ],
)
def test_a_refused_test_send_says_why(
    lee: FlaskClient, services: Services, to: str, message: str
) -> None:
    made = _compose(lee)
    response = lee.post(
        f"/h/logan/campaigns/{made}/test", data={"csrf_token": _token(lee), "to": to}
    )
    page = lee.get(response.headers["Location"]).get_data(as_text=True)
    assert message in page
    assert "Test sent" not in page


# --- confirmation, launch, report --------------------------------------------------------------


def test_the_confirmation_states_the_audience_and_the_time_at_the_senders_rate(
    lee: FlaskClient, services: Services
) -> None:
    made = _compose(lee)
    page = _text(lee.get(f"/h/logan/campaigns/{made}/launch").get_data(as_text=True))
    assert "Send to 6 members? Under a minute at 10 messages/second." in page
    assert "Send now" in page
    long_text = _compose(lee, body="x" * 200)  # with the STOP line: 2 segments
    page = _text(lee.get(f"/h/logan/campaigns/{long_text}/launch").get_data(as_text=True))
    assert "Send to 6 members? Under a minute at 5 messages/second." in page
    assert "Each text is 2 segments; this number sends 10 segments a second." in page
    assert _campaign(services, made).state == "draft"


def test_the_estimate_reads_like_a_person_would_say_it() -> None:
    assert launches.duration_words(12_480 / 10) == "About 21 minutes"
    assert launches.duration_words(30) == "Under a minute"
    assert launches.duration_words(3 * 3600 + 600) == "About 3 hours 10 minutes"
    assert launches.duration_words(None) == "As fast as the provider takes them"


def test_a_campaign_nobody_would_get_cannot_be_sent(lee: FlaskClient) -> None:
    made = _compose(lee, definition="tag:nobody")
    page = lee.get(f"/h/logan/campaigns/{made}/launch").get_data(as_text=True)
    assert "Nobody would get it." in page
    assert "Send now" not in page


def test_launch_runs_and_the_report_counts_sent_failed_by_code_and_skipped_by_reason(
    lee: FlaskClient, services: Services, clock: time_machine.Coordinates
) -> None:
    made = _compose(lee, definition="tag:volunteer or tag:magic")
    status, page = _post(lee, f"/h/logan/campaigns/{made}/launch")
    assert status == 302
    assert len(_launch_jobs(services)) == 1
    live = lee.get(f"/h/logan/campaigns/{made}").get_data(as_text=True)
    assert f'data-poll="/h/logan/campaigns/{made}/progress" data-every="2000"' in live
    assert "Launched: it is sending now." in live
    assert "data-final" not in live
    run_worker(services)
    _apply_sandbox_receipts(services)

    clock.shift(timedelta(minutes=5))
    with services.sessions.begin() as session:  # a reply and a STOP from two recipients
        logan = get_huddle(session, "logan")
        vol1, vol2 = (
            session.scalars(select(Member).where(Member.first_name == n)).one()
            for n in ("Vol1", "Vol2")
        )
        session.add(
            InboundMessage(
                message_sid="SM" + "1" * 32,
                from_raw=vol1.phone,
                from_e164=vol1.phone,
                to_number=LOGAN_SENDER,
                body="Count me in!",
                member_id=vol1.id,
                huddle_id=logan.id,
                intent="other",
            )
        )
        consent.set_subscription_state(
            session,
            member=vol2,
            huddle=logan,
            channel=m.SMS,
            state=m.OPTED_OUT,
            provenance=consent.Provenance(source="keyword", detail="STOP"),
        )

    fragment = lee.get(f"/h/logan/campaigns/{made}/progress").get_data(as_text=True)
    assert "data-final" in fragment
    figures = dict(re.findall(r'data-figure="([a-z-]+)">([\d,]+)<', fragment))
    assert figures == {
        "sent": "8",  # 6 volunteers and the two that were accepted, then undelivered
        "delivered": "6",
        "failed": "2",
        "skipped": "3",
        "remaining": "0",
        "opt-outs": "1",
        "replies": "1",
    }
    failures = dict(re.findall(r'<tr data-code="(\d+)"><td>([^<]+)</td>', fragment))
    assert failures == {
        "30003": "Phone unreachable (switched off or out of coverage)",
        "30005": "Unknown number, or no longer in service",
    }
    skips = dict(
        re.findall(r'<tr data-reason="([a-z-]+)"><td>[^<]+</td><td class="n">(\d+)<', fragment)
    )
    assert skips == {"opted-out": "2", "invalid-number": "1"}  # Gone, and 21610 on the send
    assert "Had opted out (a STOP, or the carrier said so)" in fragment
    page = lee.get(f"/h/logan/campaigns/{made}").get_data(as_text=True)
    assert "Report" in page
    assert "Completed" in page
    assert "within 3 days of the campaign finishing" in page


def _apply_sandbox_receipts(services: Services) -> None:
    """Play Twilio's status callbacks for the sandbox's texts (the worker posts them to our
    webhook when the app has a public URL; the tests have none)."""
    transport = sms_transport(services.settings, sessions=services.sessions)
    assert isinstance(transport, SandboxSmsTransport)
    with services.sessions() as session:
        sids = session.scalars(
            select(Delivery.provider_message_id).where(Delivery.provider_message_id.is_not(None))
        ).all()
    for sid in sids:
        assert sid
        for status, code in transport.simulated_receipts(sid):
            receipts.handle_status(services.engine, message_sid=sid, status=status, error_code=code)


def test_a_second_launch_is_refused_and_nothing_is_launched_twice(
    lee: FlaskClient, services: Services
) -> None:
    made = _compose(lee)
    assert _post(lee, f"/h/logan/campaigns/{made}/launch")[0] == 302
    again = lee.post(f"/h/logan/campaigns/{made}/launch", data={"csrf_token": _token(lee)})
    assert again.status_code == 302
    page = lee.get(again.headers["Location"]).get_data(as_text=True)
    assert "it was launched once already, and is not sent twice" in page
    assert len(_launch_jobs(services)) == 1
    back = lee.get(f"/h/logan/campaigns/{made}/launch")  # the back button to the confirmation
    assert back.status_code == 302
    run_worker(services)
    _post(lee, f"/h/logan/campaigns/{made}/launch")
    with services.sessions() as session:
        launched = session.scalar(
            select(func.count()).where(AuditEvent.action == "campaign_launched")
        )
        sent = session.scalar(select(func.count()).select_from(OutboxMessage))
    assert (launched, sent) == (1, VOLUNTEERS)


def test_a_campaign_with_a_send_time_is_scheduled(lee: FlaskClient, services: Services) -> None:
    made = _compose(lee, send_at="2027-01-13T18:30")
    found = _campaign(services, made)
    assert found.send_at == datetime(2027, 1, 13, 23, 30, tzinfo=UTC)  # 18:30 in Boston
    page = _text(lee.get(f"/h/logan/campaigns/{made}/launch").get_data(as_text=True))
    assert "Send to 6 members on Wed 13 Jan 2027, 18:30?" in page
    _post(lee, f"/h/logan/campaigns/{made}/launch")
    assert _campaign(services, made).state == "scheduled"
    assert _launch_jobs(services) == []


def test_pause_resume_and_cancel(lee: FlaskClient, services: Services) -> None:
    made = _compose(lee)
    _post(lee, f"/h/logan/campaigns/{made}/launch")
    sending = lee.get(f"/h/logan/campaigns/{made}/progress").get_data(as_text=True)
    assert ">Pause</button>" in sending
    assert 'data-confirm="Cancel this campaign for good?' in sending
    _post(lee, f"/h/logan/campaigns/{made}/pause")
    assert _campaign(services, made).state == "paused"
    paused = lee.get(f"/h/logan/campaigns/{made}/progress").get_data(as_text=True)
    assert ">Resume</button>" in paused
    assert "data-final" not in paused
    _post(lee, f"/h/logan/campaigns/{made}/resume")
    assert _campaign(services, made).state == "sending"
    run_worker(services)
    assert _campaign(services, made).state == "completed"
    response = lee.post(f"/h/logan/campaigns/{made}/cancel", data={"csrf_token": _token(lee)})
    page = lee.get(response.headers["Location"]).get_data(as_text=True)
    assert "Cannot cancel it: this campaign is completed." in page
    assert _campaign(services, made).state == "completed"


def test_a_discarded_draft_says_nothing_was_sent(lee: FlaskClient, services: Services) -> None:
    made = _compose(lee)
    _post(lee, f"/h/logan/campaigns/{made}/cancel")
    assert _campaign(services, made).state == "cancelled"
    page = lee.get(f"/h/logan/campaigns/{made}").get_data(as_text=True)
    assert "Nothing was sent: it was stopped before anyone was queued." in page
    assert _launch_jobs(services) == []


def test_cancel_skips_what_was_not_sent(lee: FlaskClient, services: Services) -> None:
    made = _compose(lee)
    _post(lee, f"/h/logan/campaigns/{made}/launch")
    # The launch job snapshots the audience; its send jobs are dropped, as if not run yet.
    from workers.jobs import launch_campaign

    launch_campaign(made)
    Queue(DEFAULT_QUEUE, connection=services.redis).empty()
    _post(lee, f"/h/logan/campaigns/{made}/cancel")
    assert _campaign(services, made).state == "cancelled"
    with services.sessions() as session:
        reasons = session.execute(
            select(Delivery.state, Delivery.skip_reason, func.count()).group_by(
                Delivery.state, Delivery.skip_reason
            )
        ).all()
    assert [tuple(r) for r in reasons] == [("skipped", "cancelled", VOLUNTEERS)]
    fragment = lee.get(f"/h/logan/campaigns/{made}/progress").get_data(as_text=True)
    assert "data-final" in fragment
    assert "The campaign was cancelled first" in fragment
    assert ">Pause</button>" not in fragment


# --- who may see it ----------------------------------------------------------------------------


def _campaign_urls(campaign_id: int, slug: str = "logan") -> list[tuple[str, str]]:
    base = f"/h/{slug}/campaigns"
    one = f"{base}/{campaign_id}"
    return [
        ("GET", f"{one}"),
        ("GET", f"{one}/edit"),
        ("POST", f"{one}/edit"),
        ("GET", f"{one}/progress"),
        ("POST", f"{one}/test"),
        ("GET", f"{one}/launch"),
        ("POST", f"{one}/launch"),
        ("POST", f"{one}/pause"),
        ("POST", f"{one}/resume"),
        ("POST", f"{one}/cancel"),
    ]


def test_another_huddles_organizer_gets_404_on_every_campaign_url(
    app: Flask, lee: FlaskClient, services: Services
) -> None:
    made = _compose(lee)
    mo = _sign_in(app, "mo@example.org")
    token = _token(mo, "/h/moab/campaigns/new")
    for path in ("/h/logan/campaigns/", "/h/logan/campaigns/new", "/h/logan/campaigns/counter"):
        assert mo.get(path).status_code == 404, path
    for slug in ("logan", "moab"):  # logan's campaign id under moab's own URL too
        for method, path in _campaign_urls(made, slug):
            response = mo.open(path, method=method, data={"csrf_token": token, **TEXT})
            assert response.status_code == 404, (method, path)
    assert _campaign(services, made).state == "draft"
    assert _count(services, OutboxMessage) == 0


def test_a_responder_gets_404(app: Flask, lee: FlaskClient) -> None:
    made = _compose(lee)
    rae = _sign_in(app, "rae@example.org")
    assert rae.get("/h/logan/campaigns/").status_code == 404
    assert rae.get(f"/h/logan/campaigns/{made}").status_code == 404
    assert rae.get("/h/logan/campaigns/new").status_code == 404


def test_odd_ids_are_not_found(lee: FlaskClient) -> None:
    for path in ("/h/logan/campaigns/abc", "/h/logan/campaigns/99999999", "/h/logan/campaigns/-1"):
        assert lee.get(path).status_code == 404, path
    assert lee.get(f"/h/logan/campaigns/{10**30}").status_code == 404
