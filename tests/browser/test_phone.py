"""The test phone in a real browser: an admin texts JOIN, YES and STOP and sees each answer, and
a text sent later (as a worker sends it, into the sandbox outbox) appears without a reload."""

from __future__ import annotations

import re

from playwright.sync_api import Page, expect
from sqlalchemy import select

from outreach.app.services import Services
from outreach.app.settings import Settings
from outreach.models import Huddle, Member, Subscription
from outreach.models import members as m
from outreach.providers.sandbox.sms import SandboxSmsTransport
from outreach.providers.sms import OutboundSms
from tests.browser.conftest import LOGAN_SENDER, sign_in

NUMBER = "+16175550142"


def state_of(services: Services, phone: str) -> str | None:
    with services.read_sessions() as session:
        return session.scalar(
            select(Subscription.state)
            .join(Member, Member.id == Subscription.member_id)
            .join(Huddle, Huddle.id == Subscription.huddle_id)
            .where(Member.phone == phone, Huddle.slug == "logan")
        )


def test_an_admin_joins_confirms_and_stops_from_the_test_phone(
    page: Page, people: None, services: Services, settings: Settings, screenshot
) -> None:  # type: ignore[no-untyped-def]
    sign_in(page, "boss@example.org")
    page.goto("/h/logan/")
    page.get_by_role("link", name="Test phone").click()
    expect(page.get_by_role("heading", name="Test phone", level=1)).to_be_visible()
    expect(page.get_by_text("+1 617-555-0100")).to_be_visible()  # to: the huddle's sender
    page.get_by_label("From (your test number)").fill("(617) 555-0142")
    thread = page.locator("#thread")

    page.get_by_role("button", name="JOIN LOGAN").click()
    expect(thread.get_by_text("Logan: Reply YES to confirm")).to_be_visible()
    expect(thread.get_by_text("asked to confirm (pending)")).to_be_visible()
    expect(page.get_by_label("From (your test number)")).to_have_value(NUMBER)
    assert state_of(services, NUMBER) == m.PENDING

    page.get_by_role("button", name="YES", exact=True).click()
    expect(thread.get_by_text("Logan: You're in! Welcome.")).to_be_visible()
    assert state_of(services, NUMBER) == m.ACTIVE

    # A text the service sends later (an inbox reply, a campaign) shows up without a reload.
    SandboxSmsTransport(settings, services.sessions).send(
        OutboundSms(to=NUMBER, body="Rally at the library, Saturday 10am", from_number=LOGAN_SENDER)
    )
    expect(thread.get_by_text("Rally at the library, Saturday 10am")).to_be_visible()
    screenshot(page, "test-phone")

    page.get_by_label("Message").fill("stop texting me")
    page.get_by_role("button", name="Send").click()
    expect(thread.get_by_text("Logan: You're unsubscribed")).to_be_visible()
    expect(thread.get_by_text("opted out", exact=True)).to_be_visible()
    assert state_of(services, NUMBER) == m.OPTED_OUT
    bubbles = thread.locator(".thread-body")
    expect(bubbles.last).to_have_text(re.compile(r"^Logan: You're unsubscribed"))
    profile = thread.get_by_role("link", name="Open their member profile")
    if profile.count():  # the members pages link here once they are built
        profile.click()
        expect(page).to_have_url(re.compile(r"/h/logan/members/\d+$"))


def test_a_bad_number_is_shown_on_the_page_at_phone_width(
    phone_page: Page, people: None, services: Services, screenshot
) -> None:  # type: ignore[no-untyped-def]
    sign_in(phone_page, "boss@example.org")
    phone_page.goto("/h/logan/phone/")
    phone_page.get_by_label("From (your test number)").fill("555-01")
    phone_page.get_by_role("button", name="HELP").click()
    expect(phone_page.get_by_role("alert")).to_contain_text("That is not a phone number")
    phone_page.get_by_label("From (your test number)").fill(NUMBER)
    phone_page.get_by_role("button", name="HELP").click()
    expect(phone_page.locator("#thread").get_by_text("Logan: For help")).to_be_visible()
    width = phone_page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"the page scrolls sideways at phone width ({width}px)"
    screenshot(phone_page, "test-phone-mobile")
    assert state_of(services, NUMBER) is None  # HELP makes nobody a member
