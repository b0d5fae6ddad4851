"""An organizer composes an SMS campaign to a saved segment, previews it, tests it, launches it
through the confirmation and watches it complete, with a real worker process sending it.

Quiet hours are real (the worker is not patched): the members and the huddle live in a fixed-
offset zone where it is now about noon, worked out from the real clock, so the test passes at
any hour of the day.
"""

from __future__ import annotations

import re
import subprocess
from datetime import UTC, datetime

import pytest
from playwright.sync_api import Page, expect

from outreach.app.services import Services
from outreach.models import MemberTag, Segment
from outreach.people.huddles import get_huddle
from tests.browser.conftest import sign_in
from tests.members import active_member

VOLUNTEERS = 4
REFUSED = 2  # magic numbers among the volunteers
AUDIENCE = VOLUNTEERS + REFUSED


def noon_zone(now: datetime) -> str:
    """An Etc/GMT zone where it is about 12:00 at ``now`` (Etc signs are inverted)."""
    offset = 12 - now.astimezone(UTC).hour  # -11 … +12
    if offset == 0:
        return "Etc/GMT"
    return f"Etc/GMT{-offset:+d}"


@pytest.fixture
def test_env(test_env: dict[str, str]) -> dict[str, str]:
    """No public URL: sandbox receipts would be posted to a name that never resolves."""
    return {**test_env, "PUBLIC_BASE_URL": ""}


@pytest.fixture
def volunteers(services: Services, people: None) -> str:
    zone = noon_zone(datetime.now(UTC))
    with services.sessions.begin() as session:
        logan = get_huddle(session, "logan")
        logan.timezone = zone
        logan.sms_rate = 10.0
        for i in range(VOLUNTEERS):
            member = active_member(
                session, logan, phone=f"+1617200{i:04d}", first_name=f"Vol{i}", timezone=zone
            )
            session.add(MemberTag(huddle_id=logan.id, member_id=member.id, tag="volunteer"))
        for phone in ("+16175550101", "+16175550102"):  # the sandbox refuses: 21610, 21211
            member = active_member(session, logan, phone=phone, first_name="Magic", timezone=zone)
            session.add(MemberTag(huddle_id=logan.id, member_id=member.id, tag="volunteer"))
        active_member(session, logan, phone="+16172009999", first_name="Other", timezone=zone)
        session.add(Segment(huddle_id=logan.id, name="volunteers", filter="tag:volunteer"))
    return zone


def test_lee_composes_previews_launches_and_watches_an_sms_campaign_complete(
    page: Page,
    volunteers: str,
    worker: subprocess.Popen[bytes],
    screenshot,  # type: ignore[no-untyped-def]
) -> None:
    sign_in(page, "lee@example.org")
    page.goto("/h/logan/campaigns/")
    page.get_by_role("link", name="New campaign").click()

    page.get_by_label("Name").fill("Saturday canvass")
    page.get_by_label("Saved segment").select_option("@volunteers")
    expect(page.get_by_label("Filter")).to_have_value("@volunteers")
    expect(page.locator("#audience-count")).to_contain_text(
        f"{AUDIENCE} members will get this text"
    )
    page.get_by_label("Message").fill("Hi {{ first_name }}, we’re canvassing Saturday at 10!")
    counter = page.locator("#counter")
    expect(counter).to_contain_text("UCS-2")
    expect(counter).to_contain_text("curly quote")
    replace = page.get_by_role("button", name="Replace ’ with '")
    expect(replace).to_be_visible()
    screenshot(page, "campaign-composer")

    replace.click()
    expect(page.get_by_label("Message")).to_have_value(
        "Hi {{ first_name }}, we're canvassing Saturday at 10!"
    )
    expect(page.locator("#counter")).to_contain_text("GSM-7 · 1 segment")
    page.get_by_role("button", name="Save draft").click()

    expect(page.get_by_text("Draft saved.")).to_be_visible()
    expect(page.locator(".bubble.out")).to_contain_text("Hi Vol0, we're canvassing Saturday at 10!")
    page.get_by_label("Your phone number").fill("617-555-0100")
    page.get_by_role("button", name="Send test").click()
    expect(page.get_by_text("Test sent to +16175550100.")).to_be_visible()

    page.get_by_role("link", name="Review and send").click()
    expect(page.get_by_text(f"Send to {AUDIENCE} members?")).to_be_visible()
    expect(page.get_by_text("Under a minute at 10 messages/second.")).to_be_visible()
    page.get_by_role("button", name="Send now").click()

    expect(page.get_by_text("Launched: it is sending now.")).to_be_visible()
    report = page.locator("#progress [data-final]")
    expect(report).to_be_attached(timeout=30_000)  # the poll brings the report in by itself
    expect(page.get_by_role("heading", name="Report")).to_be_visible()
    expect(report.locator('[data-figure="sent"]')).to_have_text(str(VOLUNTEERS))
    expect(report.locator('[data-figure="skipped"]')).to_have_text(str(REFUSED))
    expect(report.locator('[data-figure="remaining"]')).to_have_text("0")
    expect(report.get_by_role("cell", name="Not a valid phone number")).to_be_visible()
    page.reload()
    expect(page.locator("h1 .badge")).to_have_text("Completed")
    screenshot(page, "campaign-report")

    page.goto("/h/logan/campaigns/")
    row = page.get_by_role("row", name=re.compile("Saturday canvass"))
    expect(row).to_contain_text(f"{VOLUNTEERS} / {AUDIENCE}")
    expect(row).to_contain_text("Completed")
