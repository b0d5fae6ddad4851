"""The inbox in a real browser: members text in through the signed Twilio webhook, Lee adds a
canned reply, finds the unread conversation (a possible opt-out on top), answers with the
canned reply, marks it done; another huddle's organizer finds none of it."""

from __future__ import annotations

import re

from flask import Flask
from playwright.sync_api import Page, expect
from sqlalchemy import select

from outreach.app.services import Services
from outreach.models import Member, OutboxMessage
from tests.browser.conftest import LOGAN_SENDER, sign_in
from tests.webhooks.twilio_helpers import Phone

MARIA = "+16175550111"
BEN = "+16175550112"
STRANGER = "+16175550113"
CANNED = "Yes! We meet Thursdays at 7pm at the Logan library, room 2."


def texts_in(app: Flask, services: Services) -> None:
    """Three people text Logan's number, as Twilio posts it (signed)."""
    client = app.test_client()
    maria, ben = Phone(client, MARIA, LOGAN_SENDER), Phone(client, BEN, LOGAN_SENDER)
    for phone in (maria, ben):
        phone.text("LOGAN")
        phone.text("YES")
    ben.text("STOP KAVANAUGH")  # STOP, or a slogan? A possible opt-out: a person reads it
    Phone(client, STRANGER, LOGAN_SENDER).text("hi, who is this?")
    maria.text("Is there a meeting this week? <b>I can bring snacks</b>")
    with services.sessions.begin() as session:
        for phone, first, last in ((MARIA, "Maria", "Lopez"), (BEN, "Ben", "Okafor")):
            member = session.scalars(select(Member).where(Member.phone == phone)).one()
            member.first_name, member.last_name = first, last


def test_lee_answers_an_unread_text_with_a_canned_reply_and_marks_it_done(
    page: Page,
    phone_page: Page,
    people: None,
    app: Flask,
    services: Services,
    screenshot,  # type: ignore[no-untyped-def]
) -> None:
    texts_in(app, services)
    sign_in(page, "lee@example.org")
    page.goto("/h/logan/")
    page.get_by_role("navigation", name="Logan").get_by_role("link", name="Inbox").click()
    expect(page.get_by_role("heading", name="Inbox", level=1)).to_be_visible()
    expect(page.get_by_text("3 unread conversations")).to_be_visible()

    # the canned reply first, as an organizer
    page.get_by_role("link", name="Canned replies").click()
    page.get_by_label("Title").fill("Meeting time")
    page.get_by_label("Text", exact=True).fill(CANNED)
    page.get_by_role("button", name="Add canned reply").click()
    expect(page.get_by_text("Canned reply “Meeting time” saved.")).to_be_visible()
    page.get_by_role("link", name="← Inbox").click()

    rows = page.get_by_role("list", name="Conversations").get_by_role("listitem")
    expect(rows).to_have_count(3)
    expect(rows.nth(0)).to_contain_text("Ben Okafor")
    expect(rows.nth(0)).to_contain_text("Possible opt-out")
    expect(rows.nth(1)).to_contain_text("Maria Lopez")
    expect(rows.nth(1)).to_contain_text("3 unread")
    expect(rows.nth(1)).to_contain_text("<b>I can bring snacks</b>")  # as text
    expect(rows.nth(2)).to_contain_text("not a member")
    screenshot(page, "inbox")

    page.get_by_role("link", name="Maria Lopez").click()
    expect(page.get_by_role("heading", name="Maria Lopez")).to_be_visible()
    conversation_path = re.sub(r"^https?://[^/]+", "", page.url)
    expect(page.get_by_role("list", name="Messages")).to_contain_text("I can bring snacks")
    page.get_by_label("Canned reply").select_option(label="Meeting time")
    expect(page.get_by_label("Your reply")).to_have_value(CANNED)
    page.get_by_label("Your reply").fill(CANNED + " See you there!")
    page.get_by_role("button", name="Send reply", exact=True).dblclick()  # one text, not two
    expect(page.get_by_text("Reply sent.")).to_be_visible()
    expect(page.locator("#latest")).to_contain_text("See you there!")
    page.get_by_label("Who answers this conversation").select_option(label="Rae")
    page.get_by_role("button", name="Assign").click()
    expect(page.get_by_text("Assigned to Rae.")).to_be_visible()
    screenshot(page, "conversation")
    with services.read_sessions() as session:
        sent = session.scalars(select(OutboxMessage.body).where(OutboxMessage.to_address == MARIA))
        assert list(sent) == [CANNED + " See you there!"]

    page.get_by_role("button", name="Mark done", exact=True).click()
    expect(page.get_by_text("Marked done.")).to_be_visible()
    expect(page.get_by_text("2 unread conversations")).to_be_visible()
    maria_row = page.get_by_role("listitem").filter(has_text="Maria Lopez")
    expect(maria_row).not_to_contain_text("unread")
    expect(maria_row).to_contain_text("Assigned to Rae")

    # Moab's organizer, at phone width: none of it is there
    sign_in(phone_page, "mo@example.org")
    for path in ("/h/logan/inbox/", conversation_path):
        response = phone_page.goto(path)
        assert response is not None
        assert response.status == 404
    phone_page.goto("/h/moab/inbox/")
    expect(phone_page.get_by_text("Nothing unread")).to_be_visible()
    expect(phone_page.get_by_text("Maria")).to_have_count(0)
