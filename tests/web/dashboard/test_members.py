"""The members pages: find, filter and page; a profile's consent story; edit; opt out for a
member; import a CSV (run by an in-process worker) and its error report; export; scoping."""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, datetime

import pytest
import redis
import time_machine
from argon2 import PasswordHasher, profiles
from flask.testing import FlaskClient
from rq import SimpleWorker
from sqlalchemy import select
from sqlalchemy.orm import Session

from outreach.accounts import passwords, users
from outreach.app.services import Services
from outreach.consent import timeline
from outreach.models import AuditEvent, ConsentEvent, Huddle
from outreach.models import consent as c
from outreach.models import members as m
from outreach.people import importer, imports
from outreach.people import members as people
from outreach.people.huddles import create_huddle
from outreach.sms.inbound import InboundSms, handle_inbound
from tests.web.dashboard.pages import PASSWORD, sign_in
from web.dashboard import members as members_pages
from workers import jobs

LOGAN_SENDER = "+16175550100"
LEE = "lee@example.org"


@pytest.fixture(autouse=True)
def cheap_passwords(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(passwords, "_hasher", PasswordHasher.from_parameters(profiles.CHEAPEST))


@pytest.fixture
def huddles(services: Services) -> None:
    """logan (Denver time) with lee as organizer; moab with mo."""
    with services.sessions.begin() as session:
        create_huddle(
            session,
            slug="logan",
            name="Logan",
            keywords=["LOGAN"],
            sender=LOGAN_SENDER,
            timezone="America/Denver",
        )
        create_huddle(session, slug="moab", name="Moab", keywords=["MOAB"], sender="+14355550100")
        users.create_user(session, email=LEE, password=PASSWORD, huddles=["logan"], name="Lee")
        users.create_user(
            session, email="mo@example.org", password=PASSWORD, huddles=["moab"], name="Mo"
        )


def token_of(client: FlaskClient, path: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', client.get(path).get_data(as_text=True))
    assert found
    return found.group(1)


@pytest.fixture
def lee(client: FlaskClient, huddles: None) -> FlaskClient:
    sign_in(client, LEE)
    return client


def add(
    services: Services,
    slug: str = "logan",
    *,
    consent: tuple[str, ...] = (m.SMS,),
    **values: object,
) -> int:
    with services.sessions.begin() as session:
        huddle = session.scalars(select(Huddle).where(Huddle.slug == slug)).one()
        view, _ = people.add_member(
            session,
            huddle,
            people.Changes(**values),  # type: ignore[arg-type]
            consent_channels=consent,
            actor=LEE,
        )
    return view.id


def logan_of(session: Session) -> Huddle:
    return session.scalars(select(Huddle).where(Huddle.slug == "logan")).one()


def text(services: Services, sid: str, phone: str, body: str) -> None:
    handle_inbound(services.engine, InboundSms(sid, phone, LOGAN_SENDER, body))


# ---------------------------------------------------------------------------------------------
# The list


def test_the_list_shows_each_member_with_phone_email_and_both_states(
    lee: FlaskClient, services: Services
) -> None:
    ann = add(services, phone="6175550101", email="ann@example.org", first_name="Ann")
    add(services, "moab", phone="4355550199", first_name="Moabite")
    page = lee.get("/h/logan/members/").get_data(as_text=True)
    assert f'href="/h/logan/members/{ann}"' in page
    assert "+16175550101" in page  # in full: organizers own their members' numbers
    assert "ann@example.org" in page
    assert "Subscribed" in page
    assert "No consent" in page
    assert "Moabite" not in page
    assert '<label for="q">Search</label>' in page
    assert '<label for="filter">Filter</label>' in page


def test_search_finds_by_name_prefix_phone_and_email(lee: FlaskClient, services: Services) -> None:
    add(services, phone="6175550101", email="ann@example.org", first_name="Ann", last_name="Lu")
    add(services, phone="6175550102", first_name="Bo")
    for query in ("an", "LU", "(617) 555-0101", "ANN@example.org"):
        found = lee.get("/h/logan/members/results", query_string={"q": query}).get_data(
            as_text=True
        )
        assert "Ann" in found, query
        assert "Bo" not in found, query
    nobody = lee.get("/h/logan/members/results", query_string={"q": "zed"}).get_data(as_text=True)
    assert "No member matches." in nobody


def test_the_filter_uses_the_segment_language_and_shows_an_error_at_its_place(
    lee: FlaskClient, services: Services
) -> None:
    add(services, phone="6175550101", first_name="Ann", tags=["volunteer"], zip="84321")
    add(services, phone="6175550102", first_name="Bo", tags=["donor"])
    found = lee.get("/h/logan/members/", query_string={"filter": "tag:volunteer zip:843*"})
    assert "Ann" in found.get_data(as_text=True)
    assert "Bo" not in found.get_data(as_text=True)
    broken = lee.get("/h/logan/members/", query_string={"filter": "tag:volunteer or"})
    page = broken.get_data(as_text=True)
    assert broken.status_code == 200
    assert "Filter problem at character" in page
    assert '<pre class="filter-echo"' in page
    assert "<mark>" in page
    assert "Ann" not in page
    foreign = lee.get("/h/logan/members/results", query_string={"filter": "huddle:moab"})
    assert 'class="error"' in foreign.get_data(as_text=True)
    assert lee.get("/h/logan/members/", query_string={"filter": "x" * 5000}).status_code == 200


def test_pages_go_fifty_at_a_time_with_a_next_link(lee: FlaskClient, services: Services) -> None:
    for i in range(members_pages.PAGE_SIZE + 3):
        add(services, phone=f"617555{1000 + i}", first_name=f"P{i:03d}")
    first = lee.get("/h/logan/members/").get_data(as_text=True)
    assert "P000" in first
    assert f"P{members_pages.PAGE_SIZE - 1:03d}" in first
    assert f"P{members_pages.PAGE_SIZE:03d}" not in first
    following = re.search(r'rel="next" href="([^"]+)"', first)
    assert following
    second = lee.get(following.group(1).replace("&amp;", "&")).get_data(as_text=True)
    assert f"P{members_pages.PAGE_SIZE:03d}" in second
    assert "P000" not in second
    assert 'rel="next"' not in second
    for bad in ("abc", "-1", "9" * 30):
        answer = lee.get("/h/logan/members/", query_string={"after": bad})
        assert answer.status_code == 200
        assert "That page does not exist" in answer.get_data(as_text=True)


# ---------------------------------------------------------------------------------------------
# The profile and its timeline


def test_the_profile_tells_the_consent_story_in_words_and_local_time(
    lee: FlaskClient, services: Services
) -> None:
    phone = "+16175550123"
    with time_machine.travel(datetime(2026, 12, 3, 21, 2, tzinfo=UTC), tick=False):
        text(services, "SM1", phone, "LOGAN")
    with time_machine.travel(datetime(2026, 12, 3, 21, 5, tzinfo=UTC), tick=False):
        text(services, "SM2", phone, "yes")
    with time_machine.travel(datetime(2026, 12, 4, 16, 30, tzinfo=UTC), tick=False):
        text(services, "SM3", phone, "please remove me")
    with services.read_sessions() as session:
        member_id = session.scalars(
            select(ConsentEvent.member_id).where(ConsentEvent.address == phone)
        ).first()
    page = lee.get(f"/h/logan/members/{member_id}").get_data(as_text=True)
    # Denver is UTC-7 in December
    assert (
        "Texted &#39;LOGAN&#39; and was asked to reply YES to confirm on 3 Dec 2026 at 14:02"
        in (page)
    )
    assert "Confirmed by replying &#39;yes&#39; on 3 Dec 2026 at 14:05" in page
    assert "Stopped by texting &#39;please remove me&#39; on 4 Dec 2026 at 09:30" in page
    assert page.index("please remove me") < page.index("Confirmed by")  # newest first
    assert "Times in America/Denver" in page
    assert "Opted out" in page


def test_every_source_and_action_of_the_ledger_has_words() -> None:
    """A new source or action in models/consent.py fails here until it has words."""
    constants = {k: v for k, v in vars(c).items() if k.isupper() and isinstance(v, str)}
    sources = {v for k, v in constants.items() if k.startswith("SOURCE_")}
    actions = {v for k, v in constants.items() if not k.startswith("SOURCE_")} - {c.ALL_SENDERS}
    assert set(timeline.SOURCE_WORDS) == sources
    assert set(timeline.ACTION_WORDS) == actions
    for source in sources:
        for action in actions:
            for channel in m.CHANNELS:
                event = ConsentEvent(
                    source=source, action=action, channel=channel, huddle_id=1, detail="x"
                )
                words = timeline.describe(event)
                assert words[:1].isupper(), (source, action)
                assert "_" not in words, words  # no code word (opt_in, opt_out…) shows
    for source, action in timeline.WRITTEN:  # the kinds the code writes: a sentence of their own
        event = ConsentEvent(source=source, action=action, channel=m.SMS, huddle_id=1, detail="x")
        generic = timeline.ACTION_WORDS[action].format(channel="texts")
        assert not timeline.describe(event).startswith(generic), (source, action)


@pytest.mark.parametrize(
    ("source", "action", "channel", "detail", "actor", "expected"),
    [
        (c.SOURCE_KEYWORD, c.OPT_IN, m.SMS, "LOGAN", "member", "Joined by texting 'LOGAN'"),
        (c.SOURCE_KEYWORD, c.RESUBSCRIBE, m.SMS, "START", "member", "Came back by texting"),
        (
            c.SOURCE_ORGANIZER,
            c.OPT_OUT,
            m.EMAIL,
            "opted out on the member's behalf",
            LEE,
            "Opted out of email by Lee (organizer), on their behalf",
        ),
        (
            c.SOURCE_IMPORT,
            c.OPT_IN,
            m.SMS,
            "members.csv line 12",
            LEE,
            "Imported from members.csv (line 12) by Lee (organizer), who said they agreed to texts",
        ),
        (
            c.SOURCE_FORM,
            c.OPT_OUT,
            m.EMAIL,
            "List-Unsubscribe one-click (RFC 8058)",
            "member",
            "Unsubscribed from email by the one-click link in their mail app",
        ),
        (
            c.SOURCE_FORM,
            c.OPT_IN,
            m.EMAIL,
            "clicked the email confirmation link (web join form)",
            "member",
            "Confirmed email by clicking the link",
        ),
        (c.SOURCE_PROVIDER, c.OPT_OUT, m.SMS, "twilio error 21610", None, "(Twilio error 21610)"),
        (
            c.SOURCE_PROVIDER,
            c.SUPPRESS,
            m.EMAIL,
            "sendgrid bounce: 550 no such user",
            None,
            "Email blocked: a message bounced (550 no such user)",
        ),
        (c.SOURCE_API, c.OPT_IN, m.EMAIL, "asserted through the API", "x@y.org", "by x@y.org"),
    ],
)
def test_each_kind_of_event_reads_as_a_sentence(
    source: str, action: str, channel: str, detail: str, actor: str | None, expected: str
) -> None:
    event = ConsentEvent(
        source=source, action=action, channel=channel, huddle_id=1, detail=detail, actor=actor
    )
    assert expected in timeline.describe(event, names={LEE: "Lee"})


def test_an_unknown_or_foreign_member_is_a_404(lee: FlaskClient, services: Services) -> None:
    theirs = add(services, "moab", phone="4355550199", first_name="Moabite")
    for path in (f"/h/logan/members/{theirs}", "/h/logan/members/99999", "/h/logan/members/x"):
        assert lee.get(path).status_code == 404, path
    assert lee.get(f"/h/logan/members/{10**20}").status_code == 404


# ---------------------------------------------------------------------------------------------
# Editing


def edit(client: FlaskClient, member_id: int, **values: str):  # type: ignore[no-untyped-def]
    path = f"/h/logan/members/{member_id}"
    form = {
        "first_name": "Ann",
        "last_name": "",
        "zip": "",
        "tags": "",
        "fields": "",
        "csrf_token": token_of(client, path),
        **values,
    }
    return client.post(path, data=form)


def test_an_organizer_edits_tags_and_fields(lee: FlaskClient, services: Services) -> None:
    ann = add(services, phone="6175550101", first_name="Ann", fields={"old": "gone soon"})
    saved = edit(
        lee,
        ann,
        last_name="Lu",
        zip="84321",
        tags="Volunteer, host",
        fields="language = es\nnote = likes = signs",
        email="ann@example.org",
    )
    assert saved.status_code == 302
    with services.read_sessions() as session:
        view = people.get_member(session, logan_of(session), ann)
    assert view is not None
    assert (view.last_name, view.zip, view.email) == ("Lu", "84321", "ann@example.org")
    assert view.tags == ["host", "volunteer"]
    assert view.fields == {"language": "es", "note": "likes = signs"}
    page = lee.get(f"/h/logan/members/{ann}").get_data(as_text=True)
    assert "Saved." in page
    assert "likes = signs" in page


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"tags": "good, bad tag!"}, "Tags are letters"),
        ({"fields": "no equals sign here"}, "Line 1: write it as name = value."),
        ({"fields": "Bad Name = x"}, "is not a field name"),
        ({"fields": "note = " + "x" * 3000}, "at most 2000 bytes"),
        ({"zip": "12"}, "Not a US ZIP code."),
        ({"first_name": "A" * 101}, "At most 100 characters."),
        ({"email": "not-an-email"}, "Not an email address"),
        ({"fields": "x = 1\n" * 70_000}, "too much text"),
    ],
)
def test_bad_input_is_explained_on_the_page_and_changes_nothing(
    lee: FlaskClient, services: Services, values: dict[str, str], message: str
) -> None:
    ann = add(services, phone="6175550101", first_name="Ann", tags=["keep"])
    answer = edit(lee, ann, **{"first_name": "Changed", **values})
    assert answer.status_code == 422
    page = answer.get_data(as_text=True)
    assert message in page
    assert 'class="field-error"' in page
    with services.read_sessions() as session:
        view = people.get_member(session, logan_of(session), ann)
    assert view is not None
    assert (view.first_name, view.tags, view.email) == ("Ann", ["keep"], None)


def test_another_huddles_organizer_cannot_edit_or_opt_out(
    client: FlaskClient, huddles: None, services: Services
) -> None:
    ann = add(services, phone="6175550101", first_name="Ann")
    sign_in(client, "mo@example.org")
    token = token_of(client, "/h/moab/members/")
    for path in (f"/h/logan/members/{ann}", f"/h/moab/members/{ann}"):
        data = {"first_name": "Mo was here", "csrf_token": token, "channel": "sms"}
        assert client.post(path, data=data).status_code == 404
        assert client.post(f"{path}/opt-out", data=data).status_code == 404
    with services.read_sessions() as session:
        view = people.get_member(session, logan_of(session), ann)
    assert view is not None
    assert (view.first_name, view.consent[m.SMS]) == ("Ann", m.ACTIVE)


# ---------------------------------------------------------------------------------------------
# Opting out for a member


def test_opting_out_for_a_member_names_the_organizer_in_the_ledger(
    lee: FlaskClient, services: Services
) -> None:
    ann = add(services, phone="6175550101", email="ann@example.org", consent=(m.SMS, m.EMAIL))
    path = f"/h/logan/members/{ann}"
    before = lee.get(path).get_data(as_text=True)
    assert 'data-confirm="Opt this member out?' in before
    assert '<label for="opt-out-channel">Stop</label>' in before
    done = lee.post(f"{path}/opt-out", data={"channel": "both", "csrf_token": token_of(lee, path)})
    assert done.status_code == 302
    with services.read_sessions() as session:
        rows = session.scalars(
            select(ConsentEvent).where(
                ConsentEvent.member_id == ann, ConsentEvent.action == c.OPT_OUT
            )
        ).all()
        audited = session.scalars(
            select(AuditEvent.actor_email).where(AuditEvent.action == "opted_out_for_member")
        ).all()
    assert sorted(r.channel for r in rows) == [m.EMAIL, m.SMS]
    assert {(r.source, r.actor) for r in rows} == {(c.SOURCE_ORGANIZER, LEE)}
    assert audited == [LEE, LEE]
    after = lee.get(path).get_data(as_text=True)
    assert "Opted out of texts by Lee (organizer), on their behalf" in after
    assert "Opted out of email by Lee (organizer), on their behalf" in after
    assert 'data-channel="sms">Opted out<' in after
    assert 'data-channel="email">Opted out<' in after
    assert "Opt out on their behalf" not in after  # nothing left to stop
    refused = lee.post(
        f"{path}/opt-out", data={"channel": "fax", "csrf_token": token_of(lee, path)}
    )
    assert refused.status_code == 302
    assert "Choose texts, email or both." in lee.get(path).get_data(as_text=True)


# ---------------------------------------------------------------------------------------------
# Import


def upload(client: FlaskClient, data: bytes, name: str = "members.csv", **form: object):  # type: ignore[no-untyped-def]
    return client.post(
        "/h/logan/members/import",
        data={
            "file": (io.BytesIO(data), name),
            "csrf_token": token_of(client, "/h/logan/members/import"),
            **form,
        },
        content_type="multipart/form-data",
    )


def test_an_import_with_a_bad_row_runs_and_reports_it(lee: FlaskClient, services: Services) -> None:
    page = lee.get("/h/logan/members/import").get_data(as_text=True)
    assert '<label for="file">CSV file</label>' in page
    csv_text = (
        "phone,first_name,zip\n"
        "6175550101,Ann,84321\n"
        "not a phone,=HYPERLINK(1),84321\n"
        "6175550103,Cy,=1+2\n"
        "6175550104,Di,84321\n"
    )
    started = upload(lee, csv_text.encode(), consent="sms")
    assert started.status_code == 302
    status_url = started.headers["Location"]
    queued = lee.get(status_url).get_data(as_text=True)
    assert "Queued" in queued
    assert "data-poll=" in queued
    assert "data-final" not in queued
    SimpleWorker([jobs.IMPORT_QUEUE], connection=services.redis).work(burst=True)
    progress = lee.get(f"{status_url}/progress").get_data(as_text=True)
    assert "data-final" in progress
    assert "Finished" in progress
    assert re.search(r'<div class="figure">4</div>rows read', progress)
    assert re.search(r'<div class="figure">2</div>added', progress)
    assert re.search(r'<div class="figure">2</div>failed', progress)
    assert "Download the 2 row errors (CSV)" in progress
    report = lee.get(f"{status_url}/errors.csv")
    assert report.mimetype == "text/csv"
    rows = list(csv.reader(io.StringIO(report.get_data(as_text=True))))
    assert rows[0] == ["line", "column", "error"]
    assert [(r[0], r[1]) for r in rows[1:]] == [("3", "phone"), ("4", "zip")]
    assert "not a phone" in rows[1][2]
    assert all(not cell.startswith(("=", "+", "-", "@")) for row in rows for cell in row)
    members = lee.get("/h/logan/members/").get_data(as_text=True)
    assert "Ann" in members
    assert "Di" in members
    assert "Cy" not in members
    with services.read_sessions() as session:
        ann = session.scalars(
            select(ConsentEvent.member_id).where(ConsentEvent.address == "+16175550101")
        ).one()
    profile = lee.get(f"/h/logan/members/{ann}").get_data(as_text=True)
    assert "Imported from members.csv (line 2) by Lee (organizer), who said they agreed" in profile


def test_the_row_error_report_is_formula_safe() -> None:
    assert imports.formula_safe("=SUM(A1)") == "'=SUM(A1)"
    for risky in ("+1", "-1", "@x", "\tx", "\rx"):
        assert imports.formula_safe(risky).startswith("'")
    assert imports.formula_safe("phone 'x': too short") == "phone 'x': too short"
    assert imports.error_column("needs a phone or an email") == "phone, email"
    assert imports.error_column("tag 'a b' must be letters, digits, - or _") == "tags"
    assert imports.error_column("sms_consent must be yes or no, not 'maybe'") == "sms_consent"
    assert imports.error_column("expected 3 cells, found 2") == ""


@pytest.mark.parametrize(
    ("data", "name", "message"),
    [
        (b"phone\n6175550101\n", "members.xlsx", "That is not a CSV file"),
        (b"name,color\nAnn,red\n", "members.csv", "must have a phone or an email column"),
        (b"", "members.csv", "the file is empty"),
        (b"\xff\xfe\x00p\x00h\n", "members.csv", "not UTF-8"),
    ],
)
def test_a_file_that_cannot_be_imported_is_refused_on_the_form(
    lee: FlaskClient, services: Services, data: bytes, name: str, message: str
) -> None:
    answer = upload(lee, data, name)
    assert answer.status_code == 422
    assert message in answer.get_data(as_text=True)
    assert '<label for="file">CSV file</label>' in answer.get_data(as_text=True)
    with services.read_sessions() as session:
        assert imports.recent_for_huddle(session, logan_of(session).id) == []


def test_a_file_too_big_is_refused_on_the_form(
    lee: FlaskClient, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(members_pages, "MAX_UPLOAD_BYTES", 1000)
    answer = upload(lee, b"phone\n" + b"6175550101\n" * 200_000)
    assert answer.status_code == 413
    assert "That file is too big" in answer.get_data(as_text=True)
    no_file = lee.post(
        "/h/logan/members/import", data={"csrf_token": token_of(lee, "/h/logan/members/import")}
    )
    assert no_file.status_code == 422
    assert "Choose a CSV file to import." in no_file.get_data(as_text=True)


def test_a_file_over_the_apps_request_limit_is_taken_and_an_upload_needs_the_csrf_token(
    lee: FlaskClient, services: Services
) -> None:
    big = b"phone,note\n" + b"".join(
        b"61755%05d,%s\n" % (i, b"x" * 20) for i in range(90_000)
    )  # about 3 MiB: over the app's 2 MiB for a request body
    assert len(big) > 2 * 1024 * 1024
    started = upload(lee, big, "big.csv")
    assert started.status_code == 302, started.get_data(as_text=True)[:300]
    forged = lee.post(
        "/h/logan/members/import",
        data={"file": (io.BytesIO(b"phone\n6175550101\n"), "forged.csv")},
        content_type="multipart/form-data",
    )
    assert forged.status_code == 400
    with services.read_sessions() as session:
        stored = imports.recent_for_huddle(session, logan_of(session).id)
    assert [(job.source_name, job.size_bytes) for job in stored] == [("big.csv", len(big))]


def test_an_import_is_queued_when_redis_is_away(
    lee: FlaskClient, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    def away(import_id: int) -> None:
        raise redis.ConnectionError("no Redis")

    monkeypatch.setattr(jobs, "enqueue_import", away)
    started = upload(lee, b"phone\n6175550101\n")
    assert started.status_code == 302
    assert "Queued" in lee.get(started.headers["Location"]).get_data(as_text=True)


# ---------------------------------------------------------------------------------------------
# Export


def test_the_export_streams_every_member_with_names_made_formula_safe(
    lee: FlaskClient, services: Services
) -> None:
    for i, name in enumerate(("=HYPERLINK(1)", "+1", "-2", "@SUM(A1)", "Plain")):
        add(services, phone=f"61755501{10 + i}", first_name=name)
    add(services, "moab", phone="4355550199", first_name="Moabite")
    page = lee.get("/h/logan/members/").get_data(as_text=True)
    assert 'href="/h/logan/members/export.csv"' in page
    answer = lee.get("/h/logan/members/export.csv")
    assert answer.mimetype == "text/csv"
    assert 'filename="logan-members.csv"' in answer.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(answer.get_data(as_text=True))))
    assert [r["first_name"] for r in rows] == ["'=HYPERLINK(1)", "'+1", "'-2", "'@SUM(A1)", "Plain"]
    assert {r["sms_status"] for r in rows} == {m.ACTIVE}
    with services.read_sessions() as session:
        exported = session.scalars(
            select(AuditEvent.actor_email).where(AuditEvent.action == "members_exported")
        ).all()
    assert exported == [LEE]


def test_the_export_makes_an_email_that_looks_like_a_formula_safe(
    lee: FlaskClient, services: Services
) -> None:
    add(services, email="=1+2@example.org", consent=(m.EMAIL,))
    rows = list(csv.DictReader(io.StringIO(lee.get("/h/logan/members/export.csv").get_data(True))))
    assert rows[0]["email"].startswith("'")


def test_export_lines_defuse_every_formula_prefix_in_names(services: Services) -> None:
    with services.sessions.begin() as session:
        huddle = create_huddle(session, slug="x", name="X", keywords=["XX"])
        view, _ = people.add_member(
            session,
            huddle,
            people.Changes(phone="6175550177", last_name="=cmd|'/C calc'!A0"),
            actor=LEE,
        )
        text_out = "".join(importer.export_lines(session, huddle))
    assert ",'=cmd|'/C calc'!A0," in text_out
    assert view.id


# ---------------------------------------------------------------------------------------------
# Scoping


def test_an_organizer_of_moab_gets_404_for_everything_of_logan(
    client: FlaskClient, huddles: None, services: Services
) -> None:
    ann = add(services, phone="6175550101", first_name="Ann")
    sign_in(client, LEE)
    started = upload(client, b"phone\nnope\n")
    import_path = started.headers["Location"]
    SimpleWorker([jobs.IMPORT_QUEUE], connection=services.redis).work(burst=True)
    other = client.application.test_client()
    sign_in(other, "mo@example.org")
    import_id = import_path.rstrip("/").rsplit("/", 1)[1]
    for path in (
        "/h/logan/members/",
        "/h/logan/members/results",
        f"/h/logan/members/{ann}",
        "/h/logan/members/import",
        import_path,
        f"{import_path}/progress",
        f"{import_path}/errors.csv",
        "/h/logan/members/export.csv",
        f"/h/moab/members/{ann}",
        f"/h/moab/members/imports/{import_id}",
        f"/h/moab/members/imports/{import_id}/progress",
        f"/h/moab/members/imports/{import_id}/errors.csv",
    ):
        assert other.get(path).status_code == 404, path
    moab_export = other.get("/h/moab/members/export.csv").get_data(as_text=True)
    assert "+16175550101" not in moab_export
    assert other.get("/h/moab/members/").status_code == 200
