"""In a real browser: an admin edits the welcome text, watches the segment counter follow their
typing, saves; the overview of a huddle with some life in it. Screenshots "settings", "overview"."""

from __future__ import annotations

from datetime import timedelta

import time_machine
from playwright.sync_api import Page, expect
from sqlalchemy import select

from outreach.app.clock import utcnow
from outreach.app.services import Services
from outreach.campaigns import create_campaign
from outreach.models import Huddle
from outreach.models import members as m
from outreach.people import members as people
from outreach.sms.inbound import InboundSms, handle_inbound
from tests.browser.conftest import LOGAN_SENDER, sign_in


def test_an_admin_edits_the_welcome_text_with_the_live_counter(
    page: Page, people: None, services: Services, screenshot
) -> None:  # type: ignore[no-untyped-def]
    sign_in(page, "boss@example.org")
    page.goto("/h/logan/settings/")
    expect(page.get_by_role("heading", name="Settings")).to_be_visible()
    welcome = page.get_by_label("Welcome text")
    line = page.locator("#count-welcome_text")
    expect(line).to_contain_text("(the standard text)")
    expect(line).to_contain_text("GSM-7")

    welcome.fill("Welcome to Logan! Reply STOP to opt out.")
    expect(line).not_to_contain_text("(the standard text)")
    expect(line).to_contain_text("40 characters, GSM-7, 1 segment")

    welcome.press_sequentially(" We\u2019re glad")  # a curly apostrophe, as phones type it
    expect(line).to_contain_text("UCS-2")
    expect(line).to_contain_text("right single quotation mark")
    page.get_by_label("Send from").fill("09:00")
    page.get_by_label("Send until").fill("20:00")
    screenshot(page, "settings")

    page.get_by_role("button", name="Save settings").click()
    expect(page.get_by_role("status")).to_have_text("Settings saved.")
    expect(page.get_by_label("Welcome text")).to_have_value(
        "Welcome to Logan! Reply STOP to opt out. We\u2019re glad"
    )
    with services.read_sessions() as session:
        huddle = session.scalars(select(Huddle).where(Huddle.slug == "logan")).one()
        assert huddle.welcome_text == "Welcome to Logan! Reply STOP to opt out. We\u2019re glad"
        assert (huddle.quiet_start, huddle.quiet_end) == ("09:00", "20:00")


def test_a_bad_window_is_shown_at_its_field(page: Page, people: None) -> None:
    sign_in(page, "boss@example.org")
    page.goto("/h/logan/settings/")
    page.get_by_label("Send from").fill("19:00")
    page.get_by_label("Send until").fill("10:00")
    page.get_by_role("button", name="Save settings").click()
    expect(page.locator("#quiet_end-error")).to_have_text("The window must end after it starts.")
    expect(page.get_by_label("Send until")).to_have_attribute("aria-invalid", "true")


def _seed(services: Services) -> None:
    """A few weeks of a small huddle: joins most days, a STOP, a reply, two campaigns."""
    start = utcnow() - timedelta(days=26)
    names = ["Ana", "Ben", "Cleo", "Dev", "Eli", "Fay", "Gus", "Hana", "Ira", "Jo"]
    for index in range(40):
        at = start + timedelta(days=index * 0.65)
        with time_machine.travel(at, tick=False), services.sessions.begin() as session:
            huddle = session.scalars(select(Huddle).where(Huddle.slug == "logan")).one()
            channels = (m.SMS, m.EMAIL) if index % 3 == 0 else (m.SMS,)
            people.add_member(
                session,
                huddle,
                people.Changes(
                    phone=f"+1617555{1000 + index}",
                    email=f"p{index}@example.org" if index % 3 == 0 else None,
                    first_name=names[index % len(names)],
                ),
                consent_channels=channels,
                actor="boss@example.org",
            )
    handle_inbound(services.engine, InboundSms("SMa", "+16175551003", LOGAN_SENDER, "STOP"))
    handle_inbound(
        services.engine, InboundSms("SMb", "+16175551004", LOGAN_SENDER, "Can I bring my kids?")
    )
    handle_inbound(services.engine, InboundSms("SMc", "+16175559999", LOGAN_SENDER, "LOGAN"))
    with services.sessions.begin() as session:
        for name in ("Saturday canvass", "Town hall reminder"):
            create_campaign(
                session,
                huddle_slug="logan",
                channel=m.SMS,
                segment_filter="",
                body=f"{name}: details soon. Reply STOP to opt out",
                name=name,
            )


def test_the_overview_of_a_lively_huddle(
    page: Page, people: None, services: Services, screenshot
) -> None:  # type: ignore[no-untyped-def]
    _seed(services)
    sign_in(page, "lee@example.org")
    page.goto("/h/logan/")
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    expect(page.get_by_role("img", name="New members per day")).to_be_visible()
    by_channel = page.get_by_role("region", name="Members by channel and consent")
    sms = by_channel.get_by_role("row", name="Texts (SMS)")
    # 40 added with consent, one texted STOP; one stranger texted LOGAN and waits to confirm
    expect(sms.get_by_role("cell")).to_have_text(["39", "1", "1", "0"])
    expect(page.get_by_role("cell", name="Saturday canvass")).to_be_visible()
    screenshot(page, "overview")
    page.get_by_text("The numbers by day").click()  # the chart's numbers, as a table
    expect(page.get_by_role("row", name="Members at day's end")).to_be_visible()
