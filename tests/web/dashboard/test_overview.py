"""The overview page: members by channel and consent, a month's growth, the opt-out rate, recent
campaigns and the inbox count, each for its own huddle only."""

from __future__ import annotations

import html
import re
from datetime import UTC, date, datetime, timedelta

import pytest
import time_machine
from argon2 import PasswordHasher, profiles
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from outreach.accounts import passwords, users
from outreach.app.services import Services
from outreach.campaigns import create_campaign
from outreach.models import Huddle
from outreach.models import accounts as a
from outreach.models import members as m
from outreach.people import members as people
from outreach.people.huddles import create_huddle
from outreach.people.overview import Day, day_starts, member_figures, unread
from outreach.sms.conversations import list_conversations
from outreach.sms.inbound import InboundSms, handle_inbound
from tests.web.dashboard.pages import PASSWORD, sign_in
from web.dashboard.overview import chart_bars

LOGAN_SENDER = "+16175550100"
MOAB_SENDER = "+14355550100"
NOW = datetime(2026, 12, 7, 19, 0, tzinfo=UTC)  # noon in Denver


@pytest.fixture(autouse=True)
def cheap_passwords(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(passwords, "_hasher", PasswordHasher.from_parameters(profiles.CHEAPEST))


@pytest.fixture
def huddles(services: Services) -> None:
    with services.sessions.begin() as session:
        create_huddle(
            session,
            slug="logan",
            name="Logan",
            keywords=["LOGAN"],
            sender=LOGAN_SENDER,
            timezone="America/Denver",
            email_from_address="logan@example.org",
            postal_address="1 Main St, Logan UT",
        )
        create_huddle(session, slug="moab", name="Moab", keywords=["MOAB"], sender=MOAB_SENDER)
        users.create_user(session, email="lee@example.org", password=PASSWORD, huddles=["logan"])
        users.create_user(session, email="mo@example.org", password=PASSWORD, huddles=["moab"])
        users.create_user(
            session,
            email="rae@example.org",
            password=PASSWORD,
            huddles=["logan"],
            role=a.RESPONDER,
        )


def add(services: Services, slug: str, consent: tuple[str, ...], **values: str) -> int:
    with services.sessions.begin() as session:
        huddle = session.scalars(select(Huddle).where(Huddle.slug == slug)).one()
        view, _ = people.add_member(
            session, huddle, people.Changes(**values), consent_channels=consent, actor="t"
        )
    return view.id


def text(services: Services, sid: str, phone: str, body: str, to: str = LOGAN_SENDER) -> None:
    handle_inbound(services.engine, InboundSms(sid, phone, to, body))


def visible(body: str) -> str:
    """The page's text as a reader gets it: tags dropped, spaces collapsed, entities read."""
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", body)))


def huddle_id(services: Services, slug: str) -> int:
    with services.read_sessions() as session:
        found = session.scalar(select(Huddle.id).where(Huddle.slug == slug))
    assert found is not None
    return found


@pytest.fixture
def seeded(services: Services, huddles: None) -> None:
    """logan: five members over two channels and every state, one STOP, a campaign, a reply.
    moab: members, an opt-out, a text and a campaign that logan must never count."""
    with time_machine.travel(NOW - timedelta(days=40), tick=False):
        add(services, "logan", (m.SMS,), phone="+16175550101", first_name="Ann")  # before
    with time_machine.travel(NOW - timedelta(days=3), tick=False):
        text(services, "SM1", "+16175550102", "LOGAN")  # pending (double opt-in)
    with time_machine.travel(NOW - timedelta(days=2), tick=False):
        add(services, "logan", (m.SMS, m.EMAIL), phone="+16175550103", email="cy@example.org")
    with time_machine.travel(NOW - timedelta(days=1), tick=False):
        text(services, "SM2", "+16175550103", "STOP")  # opted out of texts, still on email
    with time_machine.travel(NOW - timedelta(hours=1), tick=False):
        add(services, "logan", (m.EMAIL,), email="di@example.org")
        add(services, "logan", (), phone="+16175550105")  # held, no consent anywhere
        text(services, "SM3", "+16175550101", "See you Saturday!")  # a reply for the inbox
        with services.sessions.begin() as session:
            create_campaign(
                session,
                huddle_slug="logan",
                channel=m.SMS,
                segment_filter="",
                body="Rally <Saturday> at noon",
                name="Rally <Saturday>",
            )
        # moab, which logan must never count
        for i in range(3):
            add(services, "moab", (m.SMS, m.EMAIL), phone=f"+1435555020{i}", email=f"m{i}@ex.org")
        text(services, "SM4", "+14355550200", "STOP", to=MOAB_SENDER)
        text(services, "SM5", "+14355550201", "hello moab", to=MOAB_SENDER)
        with services.sessions.begin() as session:
            create_campaign(
                session, huddle_slug="moab", channel=m.SMS, segment_filter="", body="Moab secret"
            )


def test_the_figures_of_a_small_huddle(services: Services, seeded: None) -> None:
    logan = huddle_id(services, "logan")
    with services.read_sessions() as session:
        figures = member_figures(session, logan, timezone="America/Denver", now=NOW)
        inbox = unread(session, logan)
        conversations = list_conversations(session, logan, open_only=True)
    assert figures.members == 5
    sms, email = figures.channels
    assert (sms.channel, sms.active, sms.pending, sms.opted_out, sms.no_consent) == (
        m.SMS,
        1,
        1,
        1,
        2,
    )
    assert (email.channel, email.active, email.pending, email.opted_out, email.no_consent) == (
        m.EMAIL,
        2,
        0,
        0,
        3,
    )
    assert sms.opt_outs_recent == 1
    assert sms.opt_out_rate == pytest.approx(0.5)  # 1 stopped of the 2 subscribed this month
    assert email.opt_out_rate == 0
    # Growth: Ann joined 40 days ago (before the chart); four joined in the last three days.
    assert figures.joined_recently == 4
    by_day = {day.day: day for day in figures.growth}
    assert len(figures.growth) == 30
    assert figures.growth[-1].day == date(2026, 12, 7)  # today in Denver
    assert by_day[date(2026, 12, 4)].joined == 1
    assert by_day[date(2026, 12, 5)].joined == 1
    assert by_day[date(2026, 12, 7)].joined == 2
    assert figures.growth[0].total == 1  # Ann alone at the start
    assert figures.growth[-1].total == 5
    # The inbox: what the inbox itself lists as open (Ann's reply, B's LOGAN, C's STOP).
    assert inbox.conversations == len(conversations) == 3
    assert inbox.texts == sum(c.unhandled for c in conversations) == 3


def test_another_huddles_data_is_never_counted(services: Services, seeded: None) -> None:
    moab = huddle_id(services, "moab")
    with services.read_sessions() as session:
        figures = member_figures(session, moab, timezone="America/Denver", now=NOW)
        inbox = unread(session, moab)
    sms, email = figures.channels
    assert figures.members == 3
    assert (sms.active, sms.opted_out, sms.opt_outs_recent) == (2, 1, 1)
    assert email.active == 3
    assert (inbox.conversations, inbox.texts) == (2, 2)


def test_days_are_the_huddles_local_days() -> None:
    # 03:00 UTC on Dec 8 is still Dec 7 in Denver: today is Dec 7 there, Dec 8 in London.
    late = datetime(2026, 12, 8, 3, 0, tzinfo=UTC)
    assert day_starts(late, "America/Denver")[-1].date() == date(2026, 12, 7)
    assert day_starts(late, "Europe/London")[-1].date() == date(2026, 12, 8)
    starts = day_starts(late, "America/Denver")
    assert starts[-1].astimezone(UTC) == datetime(2026, 12, 7, 7, 0, tzinfo=UTC)
    assert len(starts) == 30


def test_the_page_shows_the_figures_the_chart_and_the_campaign(
    client: FlaskClient, services: Services, seeded: None, app: Flask
) -> None:
    with time_machine.travel(NOW, tick=False):  # a session cookie signed later is refused
        sign_in(client, "lee@example.org")
        page = client.get("/h/logan/")
    assert page.status_code == 200
    body = page.get_data(as_text=True)
    text_only = visible(body)
    assert "Members 5 +4 in the last 30 days" in text_only
    assert "Texts (SMS) 1 1 1 2" in text_only  # subscribed, waiting, opted out, no consent
    assert "Email 2 0 0 3" in text_only
    assert "50.0% opt-out rate" in text_only
    assert "3 conversations waiting (3 unread texts)" in text_only
    # The chart: an SVG with a title and a description, one bar per day, and the table.
    assert '<svg class="overview-chart"' in body
    assert 'role="img" aria-labelledby="growth-title growth-desc"' in body
    assert body.count("<rect ") == 30
    assert "4 joined in 30 days; 1 members on Nov 8, 5 on Dec 7" in text_only
    assert "Mon Dec 7 2 5" in text_only  # the table's row for today: joined, total
    # The campaign, its name escaped, linked when the campaigns page exists.
    assert "Rally &lt;Saturday&gt;" in body
    assert "<Saturday>" not in body
    assert "Moab secret" not in body
    if "campaigns.show" in app.view_functions:
        assert "/campaigns/" in body


def test_a_responder_sees_the_overview_without_links_they_cannot_follow(
    client: FlaskClient, seeded: None
) -> None:
    sign_in(client, "rae@example.org")
    page = client.get("/h/logan/")
    assert page.status_code == 200
    body = page.get_data(as_text=True)
    assert "All campaigns" not in body
    assert "See the members" not in body


def test_another_huddles_organizer_gets_404(client: FlaskClient, seeded: None) -> None:
    sign_in(client, "mo@example.org")
    assert client.get("/h/logan/").status_code == 404
    assert client.get("/h/moab/").status_code == 200
    assert client.get("/h/" + "x" * 300 + "/").status_code == 404


def test_the_member_figures_are_kept_a_minute(
    client: FlaskClient, services: Services, seeded: None
) -> None:
    """Two index-only counts of a huddle are the page's cost at a million members: they are
    cached in Redis, while the inbox count is read every time."""
    logan = huddle_id(services, "logan")
    with time_machine.travel(NOW, tick=False):  # a session cookie signed later is refused
        sign_in(client, "lee@example.org")
        client.get("/h/logan/")
        assert services.redis.ttl(f"overview:members:{logan}") > 0
        add(services, "logan", (m.SMS,), phone="+16175550109")
        text(services, "SM9", "+16175550105", "who is this?")
        body = visible(client.get("/h/logan/").get_data(as_text=True))
    assert "Members 5 +4" in body  # kept
    assert "4 conversations waiting" in body  # read again
    services.redis.delete(f"overview:members:{logan}")
    with time_machine.travel(NOW, tick=False):
        body = visible(client.get("/h/logan/").get_data(as_text=True))
    assert "Members 6 +5" in body


def test_chart_bars_scale_to_the_busiest_day() -> None:
    days = [Day(date(2026, 12, i + 1), joined, 10 + i) for i, joined in enumerate([0, 5, 10])]
    bars = chart_bars(days)
    assert [bar.height for bar in bars] == [0, 56, 112]
    assert bars[2].y == 8  # the tallest bar leaves room at the top
    assert bars[0].x < bars[1].x < bars[2].x
