"""Building a segment in a real browser: the count follows the typing, a mistake is shown where
it is, and the segment is saved, counted and deleted; another huddle's organizer sees none of it."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from outreach import consent
from outreach.app.services import Services
from outreach.models import Huddle, MemberField, MemberTag, Segment
from outreach.models import members as m
from tests.browser.conftest import sign_in
from tests.members import active_member

# (first name, last name, zip, tags, language)
LOGAN_PEOPLE = [
    ("Rosa", "Khan", "02128", ("volunteer", "host"), "es"),
    ("Ivan", "Lopez", "02128", ("volunteer",), "es"),
    ("Mei", "Chen", "02130", ("volunteer", "donor"), "en"),
    ("Omar", "Haddad", "02129", ("donor",), "en"),
    ("Grace", "Okafor", "84321", ("volunteer",), "en"),
    ("Tom", "Berg", "84321", ("host",), None),
    ("<script>alert(1)</script>", "Test", "02128", ("volunteer",), None),
]


@pytest.fixture
def logan_members(people: None, services: Services) -> None:
    """Logan's members (one opted out), a saved segment, and a moab volunteer."""
    with services.sessions.begin() as session:
        logan = session.query(Huddle).filter_by(slug="logan").one()
        moab = session.query(Huddle).filter_by(slug="moab").one()
        for n, (first, last, zip_code, tags, language) in enumerate(LOGAN_PEOPLE):
            member = active_member(
                session,
                logan,
                phone=f"+1617555{n:04d}",
                first_name=first,
                last_name=last,
                zip=zip_code,
            )
            for tag in tags:
                session.add(MemberTag(huddle_id=logan.id, member_id=member.id, tag=tag))
            if language:
                session.add(
                    MemberField(
                        huddle_id=logan.id, member_id=member.id, name="language", value=language
                    )
                )
        gone = active_member(session, logan, phone="+16175559999", first_name="Una", zip="02128")
        session.add(MemberTag(huddle_id=logan.id, member_id=gone.id, tag="volunteer"))
        consent.set_subscription_state(
            session,
            member=gone,
            huddle=logan,
            channel=m.SMS,
            state=m.OPTED_OUT,
            provenance=consent.Provenance(source="keyword"),
        )
        hal = active_member(session, moab, phone="+14355550001", first_name="Hal", zip="02128")
        session.add(MemberTag(huddle_id=moab.id, member_id=hal.id, tag="volunteer"))
        session.add(
            Segment(huddle_id=logan.id, name="Spanish speakers", filter="field:language=es")
        )
        session.add(Segment(huddle_id=logan.id, name="Hosts", filter="tag:host"))


def test_lee_builds_a_segment_with_a_live_count_and_fixes_a_mistake(
    page: Page,
    logan_members: None,
    screenshot,  # type: ignore[no-untyped-def]
) -> None:
    sign_in(page, "lee@example.org")
    page.goto("/h/logan/")
    page.get_by_role("link", name="Segments").click()
    expect(page.get_by_role("heading", name="Segments", exact=True)).to_be_visible()
    preview = page.locator("#segment-preview")
    expect(preview).to_contain_text("7 members match (everyone)")  # Una opted out

    page.get_by_label("Name").fill("Volunteers in 021")
    definition = page.get_by_label("Filter", exact=True)
    definition.press_sequentially("tag:volunteer", delay=20)
    expect(preview).to_contain_text("5 members match")
    definition.press_sequentially(" zip:021*", delay=20)
    expect(preview).to_contain_text("4 members match")
    expect(preview).to_contain_text("Rosa Khan")
    expect(preview.get_by_text("<script>alert(1)</script> Test")).to_be_visible()  # as text
    expect(preview).not_to_contain_text("Una")
    expect(preview).not_to_contain_text("Hal")

    definition.press_sequentially(" tagg:donor", delay=20)
    expect(preview).to_contain_text("did you mean 'tag'?")
    expect(preview).to_contain_text("at character 24")
    expect(preview.locator("mark")).to_have_text("t")
    expect(preview.locator(".caret")).to_have_text(re.compile(r"^ {23}\^$"))

    definition.fill("tag:volunteer zip:021* -tag:donor")
    expect(preview).to_contain_text("3 members match")
    expect(preview).not_to_contain_text("Mei Chen")
    screenshot(page, "segments")

    page.get_by_role("button", name="Save segment").click()
    expect(page.get_by_role("status")).to_contain_text("Saved segment “Volunteers in 021”.")
    row = page.get_by_role("row", name=re.compile("Volunteers in 021"))
    expect(row).to_contain_text("tag:volunteer zip:021* -tag:donor")
    row.get_by_role("button", name="Count").click()
    row = page.get_by_role("row", name=re.compile("Volunteers in 021"))
    expect(row).to_contain_text("3 on SMS · 0 on email")

    # An example from the cheat sheet fills the filter and counts it.
    page.get_by_role("button", name="field:language=es joined<30d").click()
    expect(definition).to_have_value("field:language=es joined<30d")
    expect(preview).to_contain_text("2 members match")


def test_lee_edits_and_deletes_a_segment_behind_a_confirmation(
    page: Page, logan_members: None
) -> None:
    sign_in(page, "lee@example.org")
    page.goto("/h/logan/segments/")
    page.get_by_role("link", name="Edit Hosts").click()
    expect(page.locator("#segment-preview")).to_contain_text("2 members match")
    page.get_by_label("Filter", exact=True).fill("tag:host zip:84321")
    expect(page.locator("#segment-preview")).to_contain_text("1 member matches")
    page.get_by_role("button", name="Save changes").click()
    expect(page.get_by_role("row", name=re.compile("Hosts"))).to_contain_text("tag:host zip:84321")

    page.once("dialog", lambda dialog: dialog.dismiss())
    page.get_by_role("button", name="Delete Hosts").click()
    expect(page.get_by_role("row", name=re.compile("Hosts"))).to_have_count(1)
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Delete Hosts").click()
    expect(page.get_by_role("status")).to_contain_text("Deleted segment “Hosts”.")
    expect(page.get_by_role("row", name=re.compile("Hosts"))).to_have_count(0)


def test_another_huddles_organizer_sees_none_of_it_at_phone_width(
    phone_page: Page, logan_members: None, services: Services
) -> None:
    sign_in(phone_page, "mo@example.org")
    with services.read_sessions() as session:
        hosts = session.query(Segment).filter_by(name="Hosts").one().id
    for path in ("/h/logan/segments/", f"/h/logan/segments/{hosts}", f"/h/moab/segments/{hosts}"):
        response = phone_page.goto(path)
        assert response is not None
        assert response.status == 404, path
    phone_page.goto("/h/moab/segments/")
    expect(phone_page.locator("#segment-preview")).to_contain_text("1 member matches")
    expect(phone_page.get_by_role("link", name="Spanish speakers")).to_have_count(0)
    expect(phone_page.get_by_text("No saved segments yet")).to_be_visible()
    phone_page.get_by_label("Filter", exact=True).fill("tag:volunteer")
    expect(phone_page.locator("#segment-preview")).to_contain_text("Hal")
    expect(phone_page.locator("#segment-preview")).not_to_contain_text("Rosa")
    width = phone_page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390
