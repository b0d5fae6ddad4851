"""The segments pages: the builder's live count, sample and error position; saving, editing and
deleting; the composer's audience fragment; and that one huddle never sees another's.

Real database (SQLite, or PostgreSQL with TEST_DATABASE_URL) and Redis; the test client signs in
as the organizers would.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass

import pytest
from argon2 import PasswordHasher, profiles
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import insert, literal, select, text

from outreach import consent
from outreach.accounts import passwords, users
from outreach.app.services import Services
from outreach.campaigns import create_campaign, segments
from outreach.models import (
    Campaign,
    Huddle,
    Member,
    MemberField,
    MemberTag,
    Segment,
    Subscription,
)
from outreach.models import accounts as a
from outreach.models import members as m
from outreach.models.base import UTCDateTime
from outreach.people.huddles import create_huddle
from tests.members import active_member

PASSWORD = "correct horse battery"
SCRIPT = "<script>alert(1)</script>"


@dataclass
class World:
    logan: int
    moab: int


def _tag(session, huddle: Huddle, member_id: int, *tags: str) -> None:  # type: ignore[no-untyped-def]
    for tag in tags:
        session.add(MemberTag(huddle_id=huddle.id, member_id=member_id, tag=tag))


@pytest.fixture(autouse=True)
def cheap_passwords(monkeypatch: pytest.MonkeyPatch) -> None:
    """argon2's test profile: these tests are about segments, not the cost of a password."""
    monkeypatch.setattr(passwords, "_hasher", PasswordHasher.from_parameters(profiles.CHEAPEST))


@pytest.fixture
def world(services: Services) -> World:
    """logan: Ana, Ben (opted out), <script> and Cy are volunteers…; moab: Hal, a volunteer."""
    with services.sessions.begin() as session:
        logan = create_huddle(
            session, slug="logan", name="Logan", keywords=["LOGAN"], sender="+16175550100"
        )
        moab = create_huddle(
            session, slug="moab", name="Moab", keywords=["MOAB"], sender="+14355550100"
        )
        users.create_user(session, email="lee@example.org", password=PASSWORD, huddles=["logan"])
        users.create_user(session, email="mo@example.org", password=PASSWORD, huddles=["moab"])
        users.create_user(
            session, email="rae@example.org", password=PASSWORD, huddles=["logan"], role=a.RESPONDER
        )
        ana = active_member(session, logan, phone="+16175550001", first_name="Ana", zip="02128")
        ben = active_member(session, logan, phone="+16175550002", first_name="Ben", zip="02129")
        consent.set_subscription_state(
            session,
            member=ben,
            huddle=logan,
            channel=m.SMS,
            state=m.OPTED_OUT,
            provenance=consent.Provenance(source="keyword"),
        )
        xss = active_member(session, logan, phone="+16175550003", first_name=SCRIPT, zip="02130")
        # Active on SMS, but the number is suppressed (a landline): a campaign would skip Cy.
        cy = active_member(session, logan, phone="+16175550004", first_name="Cy", zip="84321")
        consent.suppress(session, channel=m.SMS, address="+16175550004", reason="landline")
        # Active on email only.
        dee = active_member(
            session, logan, email="dee@example.org", channel=m.EMAIL, first_name="Dee"
        )
        _tag(session, logan, ana.id, "volunteer", "host")
        _tag(session, logan, ben.id, "volunteer")
        _tag(session, logan, xss.id, "volunteer")
        _tag(session, logan, cy.id, "volunteer", "donor")
        _tag(session, logan, dee.id, "volunteer")
        session.add(
            MemberField(huddle_id=logan.id, member_id=ana.id, name="city", value="East Boston")
        )
        hal = active_member(session, moab, phone="+14355550001", first_name="Hal", zip="84532")
        _tag(session, moab, hal.id, "volunteer")
        return World(logan=logan.id, moab=moab.id)


def _csrf(client: FlaskClient, path: str) -> str:
    page = client.get(path).get_data(as_text=True)
    found = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert found, page
    return found.group(1)


@pytest.fixture
def sign_in(app: Flask, world: World):  # type: ignore[no-untyped-def]
    def signed(email: str) -> FlaskClient:
        client = app.test_client()
        form = {"email": email, "password": PASSWORD, "csrf_token": _csrf(client, "/login")}
        assert client.post("/login", data=form).status_code == 302
        return client

    return signed


@pytest.fixture
def lee(sign_in) -> FlaskClient:  # type: ignore[no-untyped-def]
    return sign_in("lee@example.org")


def preview(client: FlaskClient, definition: str, channel: str = "sms", slug: str = "logan") -> str:
    response = client.get(
        f"/h/{slug}/segments/preview", query_string={"definition": definition, "channel": channel}
    )
    assert response.status_code == 200
    return response.get_data(as_text=True)


def audience(client: FlaskClient, definition: str, channel: str = "sms") -> str:
    response = client.get(
        "/h/logan/segments/audience", query_string={"definition": definition, "channel": channel}
    )
    assert response.status_code == 200
    return response.get_data(as_text=True)


def caret(column: int) -> str:
    """The marker line under a filter's error, pointing at ``column``."""
    return '<span class="caret" aria-hidden="true">' + " " * column + "^</span>"


def shown_count(fragment: str) -> int:
    found = re.search(r'data-count="(\d+)"', fragment)
    assert found, fragment
    return int(found.group(1))


def save(client: FlaskClient, name: str, definition: str, path: str = "/h/logan/segments/"):  # type: ignore[no-untyped-def]
    token = _csrf(client, "/h/logan/segments/")
    return client.post(path, data={"name": name, "definition": definition, "csrf_token": token})


def saved(services: Services) -> dict[str, tuple[int, str]]:
    with services.read_sessions() as session:
        rows = session.execute(select(Segment.name, Segment.huddle_id, Segment.filter)).all()
    return {name: (huddle_id, filter_text) for name, huddle_id, filter_text in rows}


# ---------------------------------------------------------------------------------------------
# The live preview


def test_the_preview_counts_active_members_and_shows_a_few(lee: FlaskClient) -> None:
    fragment = preview(lee, "tag:volunteer")
    # Ana, <script> and Cy are active on SMS; Ben opted out, Dee is email only, Hal is moab's.
    assert shown_count(fragment) == 3
    assert "members match" in fragment
    assert "Ana" in fragment
    assert "Cy" in fragment
    assert "Ben" not in fragment
    assert "Dee" not in fragment
    assert "Hal" not in fragment
    assert shown_count(preview(lee, "tag:volunteer", channel="email")) == 1
    assert "Dee" in preview(lee, "tag:volunteer", channel="email")
    narrower = preview(lee, 'tag:volunteer field:city="East Boston"')
    assert shown_count(narrower) == 1
    assert "Ana" in narrower
    assert "(everyone)" in preview(lee, "")


def test_the_sample_shows_five_members_at_most(lee: FlaskClient, services: Services) -> None:
    with services.sessions.begin() as session:
        logan = session.get_one(Huddle, _id(services, "logan"))
        for n in range(7):
            member = active_member(session, logan, phone=f"+1617555020{n}", first_name=f"Extra{n}")
            _tag(session, logan, member.id, "extra")
    fragment = preview(lee, "tag:extra")
    assert shown_count(fragment) == 7
    assert fragment.count("<li>") == 5


def test_an_unknown_term_is_shown_at_its_position(lee: FlaskClient) -> None:
    fragment = preview(lee, "tag:volunteer tagg:x")
    assert "data-count" not in fragment
    assert "did you mean &#39;tag&#39;?" in fragment
    assert "at character 15" in fragment
    assert 'data-position="14"' in fragment
    assert "<code>tag:volunteer <mark>t</mark>agg:x" in fragment
    assert caret(14) in fragment


def test_an_unclosed_quote_is_shown_where_it_opens(lee: FlaskClient) -> None:
    fragment = preview(lee, 'field:city="East Boston')
    assert "Unclosed quote opened at character 12" in fragment
    assert "<code>field:city=<mark>&#34;</mark>East Boston" in fragment
    assert caret(11) in fragment


def test_an_error_at_the_end_and_on_a_later_line_is_marked(lee: FlaskClient) -> None:
    fragment = preview(lee, "tag:volunteer\nor")
    assert "Expected a term after &#39;or&#39; at character 17" in fragment
    assert "(line 2)" in fragment
    assert "<code>or<mark> </mark>" in fragment
    assert caret(2) in fragment


def test_another_huddle_named_in_a_filter_is_an_error(lee: FlaskClient) -> None:
    fragment = preview(lee, "tag:volunteer huddle:moab")
    assert "this filter applies to huddle logan only" in fragment
    assert 'data-position="14"' in fragment
    assert "data-count" not in fragment


def test_member_names_are_escaped_in_the_sample(lee: FlaskClient) -> None:
    fragment = preview(lee, "zip:02130")
    assert SCRIPT not in fragment
    assert "<li>&lt;script&gt;alert(1)&lt;/script&gt; " in fragment


def test_segment_names_and_filters_are_escaped(lee: FlaskClient, services: Services) -> None:
    definition = 'first_name:"<script>alert(1)</script>"'
    assert save(lee, SCRIPT, definition).status_code == 302
    listing = lee.get("/h/logan/segments/").get_data(as_text=True)
    assert SCRIPT not in listing
    assert "&lt;script&gt;alert(1)&lt;/script&gt;</a>" in listing
    (segment_id,) = _segment_ids(services)
    page = lee.get(f"/h/logan/segments/{segment_id}").get_data(as_text=True)
    assert SCRIPT not in page
    assert shown_count(preview(lee, definition)) == 1
    assert SCRIPT not in preview(lee, definition + " tagg:x")


def test_bad_input_gets_a_message_not_an_error_page(lee: FlaskClient) -> None:
    assert "Choose SMS or email." in preview(lee, "tag:volunteer", channel="fax")
    assert "2,000 characters at most" in preview(lee, "tag:x " * 400)
    fragment = preview(lee, "(" * 200 + "tag:x")
    assert "Too deeply nested" in fragment
    assert "Unexpected" in preview(lee, "tag:a )")


def test_a_filter_too_broad_to_count_in_time_says_so(
    lee: FlaskClient, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A count that outlives its bound is stopped by the database and the page says so (the
    bound is made tiny here; 20,000 members take longer than that to count on either database)."""
    crowd(services, _id(services, "logan"), 20_000)
    assert (
        shown_count(preview(lee, "-tag:donor has:phone")) == 20_002
    )  # and Ana and <script> (Cy is a donor, Ben opted out)
    monkeypatch.setattr(segments, "LIVE_COUNT_SECONDS", 0.0)
    fragment = preview(lee, "-tag:donor has:phone")
    assert "too broad to count live" in fragment
    assert "data-count" not in fragment
    assert "too broad to count live" in audience(lee, "-tag:donor has:phone")


def crowd(services: Services, huddle_id: int, size: int) -> None:
    """``size`` members active on SMS in the huddle, written in bulk (no ledger: only counted)."""
    now = _now()
    with services.sessions.begin() as session:
        session.execute(
            insert(Member),
            [{"phone": f"+1999{n:07d}", "first_name": f"Crowd{n}"} for n in range(size)],
        )
        session.execute(
            insert(Subscription).from_select(
                ["member_id", "huddle_id", "channel", "state", "created_at", "updated_at"],
                select(
                    Member.id,
                    literal(huddle_id),
                    literal(m.SMS),
                    literal(m.ACTIVE),
                    literal(now, UTCDateTime),
                    literal(now, UTCDateTime),
                ).where(Member.phone.like("+1999%")),
            )
        )


def test_give_up_after_stops_a_slow_statement_on_the_database(services: Services) -> None:
    """The bound is the database's: PostgreSQL cancels the statement, SQLite interrupts it."""
    slow = (
        "SELECT pg_sleep(2)"
        if services.engine.dialect.name == "postgresql"
        else "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 50000000)"
        " SELECT count(*) FROM n"
    )
    with services.read_sessions() as session:
        assert segments.give_up_after(session, 0.05, lambda: session.execute(text(slow))) is None
        # The session is usable again, and a quick statement is not cut short.
        assert segments.give_up_after(session, 2.0, lambda: session.scalar(text("SELECT 7"))) == 7


# ---------------------------------------------------------------------------------------------
# The campaign composer's audience fragment


def test_the_audience_counts_who_a_campaign_would_message_per_channel(
    lee: FlaskClient, services: Services
) -> None:
    # SMS: Ana and <script>; Ben opted out, Cy's number is suppressed, Dee has no SMS.
    fragment = audience(lee, "tag:volunteer")
    assert shown_count(fragment) == 2
    assert "members will get this text" in fragment
    with services.read_sessions() as session:
        assert segments.count(
            session, huddle_id=_id(services, "logan"), channel="sms",
            filter_text="tag:volunteer", now=_now(),
        ) == 3  # fmt: skip
    # status: terms do not bring opted-out or pending people back into a send.
    assert shown_count(audience(lee, "status:opted_out")) == 0
    email = audience(lee, "tag:volunteer", channel="email")
    assert shown_count(email) == 1
    assert "1 member will get this email" in re.sub(r"<[^>]+>|\s+", " ", email).replace("  ", " ")
    assert "Choose SMS or email." in audience(lee, "", channel="pigeon")


def test_the_audience_takes_a_saved_segment_by_name(lee: FlaskClient) -> None:
    assert save(lee, "hosts", "tag:host").status_code == 302
    assert shown_count(audience(lee, "@hosts")) == 1
    assert "no saved segment named “nobody”" in audience(lee, "@nobody")
    wrong = audience(lee, "tag:host zip:abc")
    assert "Bad zip" in wrong
    assert 'data-position="13"' in wrong


# ---------------------------------------------------------------------------------------------
# Saving, editing, deleting


def test_save_edit_delete_round_trip(lee: FlaskClient, services: Services) -> None:
    response = save(lee, "Volunteers", "tag:volunteer")
    assert response.status_code == 302
    listing = lee.get("/h/logan/segments/").get_data(as_text=True)
    assert "Saved segment “Volunteers”." in listing
    assert "<code>tag:volunteer</code>" in listing
    (segment_id,) = list(_segment_ids(services))
    edit_url = f"/h/logan/segments/{segment_id}"

    page = lee.get(edit_url).get_data(as_text=True)
    assert 'value="Volunteers"' in page
    assert ">tag:volunteer</textarea>" in page
    response = save(lee, "Volunteers in 021", "tag:volunteer zip:021*", path=edit_url)
    assert response.status_code == 302
    assert saved(services) == {
        "Volunteers in 021": (_id(services, "logan"), "tag:volunteer zip:021*")
    }

    counted = lee.get("/h/logan/segments/", query_string={"count": segment_id}).get_data(
        as_text=True
    )
    assert re.search(r"<strong>2</strong> on SMS\s*·\s*<strong>0</strong> on email", counted)

    token = _csrf(lee, edit_url)
    response = lee.post(f"{edit_url}/delete", data={"csrf_token": token})
    assert response.status_code == 302
    assert saved(services) == {}
    assert "Deleted segment “Volunteers in 021”." in lee.get("/h/logan/segments/").get_data(
        as_text=True
    )
    assert lee.get(edit_url).status_code == 404


def test_deleting_a_segment_leaves_campaigns_made_from_it_alone(
    lee: FlaskClient, services: Services
) -> None:
    """Campaigns copy the filter when drafted, so a delete cannot break one (nothing to refuse)."""
    assert save(lee, "hosts", "tag:host").status_code == 302
    with services.sessions.begin() as session:
        campaign = create_campaign(
            session, huddle_slug="logan", channel="sms", segment_filter="@hosts", body="Hi!"
        )
        campaign_id = campaign.id
    (segment_id,) = _segment_ids(services)
    token = _csrf(lee, "/h/logan/segments/")
    assert (
        lee.post(f"/h/logan/segments/{segment_id}/delete", data={"csrf_token": token}).status_code
        == 302
    )
    with services.read_sessions() as session:
        assert session.get_one(Campaign, campaign_id).segment_filter == "tag:host"


@pytest.mark.parametrize(
    ("name", "definition", "message"),
    [
        ("", "tag:volunteer", "Give the segment a name."),
        ("   ", "tag:volunteer", "Give the segment a name."),
        ("x" * 101, "tag:volunteer", "A name has 100 characters at most (this one has 101)."),
        ("Oops", "tagg:volunteer", "did you mean &#39;tag&#39;?"),
        ("Oops", 'field:city="East', "Unclosed quote opened at character 12"),
        ("Oops", "huddle:moab", "this filter applies to huddle logan only"),
        ("Oops", "tag:x " * 400, "A filter has 2,000 characters at most."),
    ],
)
def test_bad_names_and_filters_are_refused_with_a_reason(
    lee: FlaskClient, services: Services, name: str, definition: str, message: str
) -> None:
    response = save(lee, name, definition)
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert message in page
    assert "Nothing was saved" in page
    assert saved(services) == {}


def test_a_taken_name_is_refused_and_the_filter_kept(lee: FlaskClient, services: Services) -> None:
    assert save(lee, "hosts", "tag:host").status_code == 302
    response = save(lee, "hosts", "tag:donor")
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert "already has a segment named &#39;hosts&#39;" in page
    assert ">tag:donor</textarea>" in page
    assert saved(services) == {"hosts": (_id(services, "logan"), "tag:host")}


def test_an_edit_with_a_mistake_changes_nothing(lee: FlaskClient, services: Services) -> None:
    assert save(lee, "hosts", "tag:host").status_code == 302
    assert save(lee, "donors", "tag:donor").status_code == 302
    hosts = _segment_ids(services, "hosts")[0]
    path = f"/h/logan/segments/{hosts}"
    response = save(lee, "donors", "tag:host", path=path)
    assert response.status_code == 422
    assert "already has a segment named" in response.get_data(as_text=True)
    response = save(lee, "hosts", "tag:host or", path=path)
    assert response.status_code == 422
    assert "Expected a term after" in response.get_data(as_text=True)
    assert saved(services)["hosts"][1] == "tag:host"


def test_the_page_lists_every_term_and_working_examples(lee: FlaskClient) -> None:
    page = lee.get("/h/logan/segments/").get_data(as_text=True)
    for help_line in segments.cheat_sheet("logan"):
        assert f"<code>{html.escape(help_line.example)}</code>" in page
        segments.parse(help_line.example)
    for example, _ in segments.EXAMPLES:
        segments.parse(example)
        assert f'data-example="{html.escape(example)}"' in page
    assert "<code>host</code>" in page
    assert "<code>city</code>" in page
    assert 'for="segment-name"' in page
    assert 'for="definition"' in page


def test_every_term_the_parser_knows_has_help() -> None:
    assert [h.term for h in segments.cheat_sheet("logan")] == list(segments.TERMS)


# ---------------------------------------------------------------------------------------------
# Scoping: another huddle's segments and members are never counted or shown


def test_an_organizer_of_another_huddle_gets_404_for_every_segment_url(
    lee: FlaskClient,
    sign_in,
    services: Services,  # type: ignore[no-untyped-def]
) -> None:
    assert save(lee, "Logan volunteers", "tag:volunteer").status_code == 302
    (segment_id,) = _segment_ids(services)
    mo = sign_in("mo@example.org")
    token = _csrf(mo, "/h/moab/segments/")
    for path in (
        "/h/logan/segments/",
        f"/h/logan/segments/{segment_id}",
        "/h/logan/segments/preview?definition=tag:volunteer",
        "/h/logan/segments/audience?definition=tag:volunteer",
    ):
        assert mo.get(path).status_code == 404, path
    form = {"name": "mine", "definition": "", "csrf_token": token}
    assert mo.post(f"/h/logan/segments/{segment_id}", data=form).status_code == 404
    assert (
        mo.post(f"/h/logan/segments/{segment_id}/delete", data={"csrf_token": token}).status_code
        == 404
    )
    assert mo.post("/h/logan/segments/", data=form).status_code == 404
    # moab's own URLs with logan's segment id: no such segment in moab.
    assert mo.get(f"/h/moab/segments/{segment_id}").status_code == 404
    assert mo.post(f"/h/moab/segments/{segment_id}", data=form).status_code == 404
    assert (
        mo.post(f"/h/moab/segments/{segment_id}/delete", data={"csrf_token": token}).status_code
        == 404
    )
    assert "Logan volunteers" not in mo.get(
        "/h/moab/segments/", query_string={"count": segment_id}
    ).get_data(as_text=True)
    assert saved(services) == {"Logan volunteers": (_id(services, "logan"), "tag:volunteer")}
    # moab counts only moab's members, whatever the filter says.
    fragment = preview(mo, "tag:volunteer", slug="moab")
    assert shown_count(fragment) == 1
    assert "Hal" in fragment
    assert "Ana" not in fragment
    assert "applies to huddle moab only" in preview(mo, "huddle:logan", slug="moab")


def test_a_responder_cannot_reach_segments(sign_in) -> None:  # type: ignore[no-untyped-def]
    rae = sign_in("rae@example.org")
    assert rae.get("/h/logan/segments/").status_code == 404
    assert rae.get("/h/logan/segments/preview?definition=").status_code == 404


@pytest.mark.parametrize("segment", ["abc", "99999999999999999999", "2147483648", "-1", "0"])
def test_malformed_or_huge_ids_are_not_found(lee: FlaskClient, segment: str) -> None:
    assert lee.get(f"/h/logan/segments/{segment}").status_code == 404
    token = _csrf(lee, "/h/logan/segments/")
    response = lee.post(f"/h/logan/segments/{segment}/delete", data={"csrf_token": token})
    assert response.status_code == 404
    assert lee.get("/h/logan/segments/", query_string={"count": segment}).status_code == 200


# ---------------------------------------------------------------------------------------------


def _id(services: Services, slug: str) -> int:
    with services.read_sessions() as session:
        return session.scalars(select(Huddle.id).where(Huddle.slug == slug)).one()


def _segment_ids(services: Services, name: str | None = None) -> list[int]:
    query = select(Segment.id).order_by(Segment.id)
    if name is not None:
        query = query.where(Segment.name == name)
    with services.read_sessions() as session:
        return list(session.scalars(query))


def _now():  # type: ignore[no-untyped-def]
    from outreach.app.clock import utcnow

    return utcnow()
