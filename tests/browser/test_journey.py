"""One organizer's first day, end to end in a real browser, with a real worker sending:

an admin makes a huddle, imports members (one row is bad), builds a segment and sees its count,
composes and launches an SMS campaign and watches it complete, tries JOIN / YES from the test
phone, answers the reply in the inbox, sees the member's timeline change when they STOP, and an
organizer of another huddle sees none of it.

Quiet hours are real: the huddle lives in a fixed-offset zone where it is about noon now, and
the members' numbers are non-geographic (NANP 533), so their local time is the huddle's.
"""

from __future__ import annotations

import re
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import sign_in

MEMBERS_CSV = """phone,email,first_name,last_name,zip,tags
533-555-0201,ann@example.org,Ann,Lu,,volunteer
533-555-0202,,Bo,Diaz,,volunteer
533-555-0203,,Cy,Park,,donor
533-555,,Di,Moss,,volunteer
"""
SUPPORTER = "+15335550210"


def noon_zone(now: datetime) -> str:
    """An Etc/GMT zone where it is about 12:00 at ``now`` (Etc signs are inverted)."""
    offset = 12 - now.astimezone(UTC).hour
    return "Etc/GMT" if offset == 0 else f"Etc/GMT{-offset:+d}"


@pytest.fixture
def test_env(test_env: dict[str, str]) -> dict[str, str]:
    """No public URL: sandbox receipts would be posted to a name that never resolves."""
    return {**test_env, "PUBLIC_BASE_URL": ""}


def test_an_organizers_first_day(
    page: Page,
    phone_page: Page,
    people: None,
    worker: subprocess.Popen[bytes],
    tmp_path: Path,
    screenshot,  # type: ignore[no-untyped-def]
) -> None:
    page.on("dialog", lambda dialog: dialog.accept())
    sign_in(page, "boss@example.org")

    # A new huddle.
    page.get_by_role("link", name="New huddle").click()
    page.get_by_label("Name", exact=True).fill("Salt Lake")
    page.get_by_label("Short name for links").fill("slc")
    page.get_by_label("Join keywords").fill("SLC")
    page.get_by_label("Number to text from").fill("(801) 555-0150")
    page.get_by_label("Time zone").fill(noon_zone(datetime.now(UTC)))
    page.get_by_role("button", name="Create huddle").click()
    expect(page.get_by_text("Huddle Salt Lake created.")).to_be_visible()
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    tabs = page.get_by_role("navigation", name="Salt Lake")

    # Members from a file, one row of it bad.
    tabs.get_by_role("link", name="Members").click()
    page.get_by_role("link", name="Import a CSV file").click()
    upload = tmp_path / "first-list.csv"
    upload.write_text(MEMBERS_CSV)
    page.get_by_label("CSV file").set_input_files(str(upload))
    page.get_by_label("Everyone in this file agreed to get texts from Salt Lake").check()
    page.get_by_role("button", name="Import").click()
    expect(page.get_by_text("Finished", exact=True)).to_be_visible(timeout=30_000)
    expect(page.get_by_text("Done: 3 of 4 rows imported.")).to_be_visible()
    expect(page.get_by_role("link", name="Download the 1 row error (CSV)")).to_be_visible()

    # A segment, counted as it is typed.
    tabs.get_by_role("link", name="Segments").click()
    page.get_by_label("Name").fill("Volunteers")
    page.get_by_label("Filter", exact=True).fill("tag:volunteer")
    expect(page.locator("#segment-preview")).to_contain_text("2 members match")
    page.get_by_role("button", name="Save segment").click()
    expect(page.get_by_role("status")).to_contain_text("Saved segment “Volunteers”.")

    # A campaign to it, launched through the confirmation, watched to the end.
    tabs.get_by_role("link", name="Campaigns").click()
    page.get_by_role("link", name="New campaign").click()
    page.get_by_label("Name").fill("First canvass")
    page.get_by_label("Saved segment").select_option(label="Volunteers")
    expect(page.locator("#audience-count")).to_contain_text("2 members will get this text")
    page.get_by_label("Message").fill("Hi {{ first_name }}, canvass Saturday at 10?")
    page.get_by_role("button", name="Save draft").click()
    expect(page.get_by_text("Draft saved.")).to_be_visible()
    page.get_by_role("link", name="Review and send").click()
    expect(page.get_by_text("Send to 2 members?")).to_be_visible()
    page.get_by_role("button", name="Send now").click()
    report = page.locator("#progress [data-final]")
    expect(report).to_be_attached(timeout=30_000)
    expect(report.locator('[data-figure="sent"]')).to_have_text("2")
    campaign_url = page.url

    # A supporter joins from the test phone and writes in.
    tabs.get_by_role("link", name="Test phone").click()
    page.get_by_label("From (your test number)").fill(SUPPORTER)
    thread = page.locator("#thread")
    page.get_by_role("button", name="JOIN SLC").click()
    expect(thread.get_by_text("Reply YES to confirm")).to_be_visible()
    page.get_by_role("button", name="YES", exact=True).click()
    expect(thread.get_by_text("You're in!")).to_be_visible()
    page.get_by_label("Message").fill("Can I bring my kids on Saturday?")
    page.get_by_role("button", name="Send", exact=True).click()
    expect(thread.get_by_text("Can I bring my kids on Saturday?")).to_be_visible()

    # The reply waits in the inbox; answering it reaches the supporter's phone.
    tabs.get_by_role("link", name="Inbox").click()
    conversations = page.get_by_role("list", name="Conversations")
    expect(conversations).to_contain_text("Can I bring my kids on Saturday?")
    conversations.get_by_role("link").first.click()
    page.get_by_label("Your reply").fill("Of course, kids are welcome!")
    page.get_by_role("button", name="Send reply", exact=True).click()
    expect(page.get_by_text("Reply sent.")).to_be_visible()
    tabs.get_by_role("link", name="Test phone").click()
    page.get_by_label("From (your test number)").fill(SUPPORTER)
    page.get_by_role("button", name="HELP").click()  # shows this number's thread
    expect(page.locator("#thread").get_by_text("Of course, kids are welcome!")).to_be_visible()

    # Their timeline, before and after STOP.
    page.locator("#thread").get_by_role("link", name="Open their member profile").click()
    timeline = page.locator(".timeline")
    expect(timeline).to_contain_text("Texted 'JOIN SLC' and was asked to reply YES")
    expect(timeline).to_contain_text("Confirmed by replying")
    member_url = page.url
    tabs.get_by_role("link", name="Test phone").click()
    page.get_by_label("From (your test number)").fill(SUPPORTER)
    page.get_by_label("Message").fill("please stop texting me")
    page.get_by_role("button", name="Send", exact=True).click()
    expect(page.locator("#thread").get_by_text("You're unsubscribed")).to_be_visible()
    page.goto(member_url)
    expect(page.locator(".timeline")).to_contain_text("Stopped by texting")
    tabs.get_by_role("link", name="Overview").click()
    screenshot(page, "overview")

    # An organizer of another huddle sees none of it.
    sign_in(phone_page, "mo@example.org")
    expect(phone_page.get_by_role("cell", name="slc", exact=True)).to_have_count(0)
    for path in ("/h/slc/", "/h/slc/members/", "/h/slc/inbox/", campaign_url, member_url):
        assert phone_page.request.get(path).status == 404, path
    assert re.search(r"/h/slc/campaigns/\d+", campaign_url)
