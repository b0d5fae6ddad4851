"""People in a real browser: an admin invites, the invited person sets a password from the email's
link and is in; someone who forgot a password gets a new one the same way."""

from __future__ import annotations

import re

from playwright.sync_api import Page, expect
from sqlalchemy import select

from outreach.app.services import Services
from outreach.models import OutboxMessage
from tests.browser.conftest import sign_in

LINK = re.compile(r"https://outreach\.test(/(?:invite|reset)/[A-Za-z0-9_.\-]+)")
NEW_PASSWORD = "a brand new staple"


def link_sent_to(services: Services, address: str) -> str:
    """The path of the newest link emailed to ``address`` (the sandbox's outbox)."""
    with services.read_sessions() as session:
        body = session.scalars(
            select(OutboxMessage.body)
            .where(OutboxMessage.to_address == address)
            .order_by(OutboxMessage.id.desc())
        ).first()
    assert body is not None, f"nothing was emailed to {address}"
    found = LINK.search(body)
    assert found, body
    return found.group(1)


def invite(page: Page, email: str, name: str, role: str, huddle: str) -> None:
    invitation = page.get_by_role("region", name="Invite someone")
    invitation.get_by_label("Email").fill(email)
    invitation.get_by_label("Name").fill(name)
    invitation.get_by_label("Role").select_option(label=role)
    invitation.get_by_label("Huddle").select_option(label=huddle)
    invitation.get_by_role("button", name="Send invitation").click()
    expect(page.get_by_text(f"Invitation sent to {email}.")).to_be_visible()


def test_an_admin_invites_a_person_who_sets_a_password_and_is_signed_in(
    page: Page, phone_page: Page, services: Services, people: None, screenshot
) -> None:  # type: ignore[no-untyped-def]
    sign_in(page, "boss@example.org")
    page.goto("/people")
    expect(page.get_by_role("heading", name="People", exact=True)).to_be_visible()
    invite(page, "noor@example.org", "Noor Haddad", "Organizer", "Logan")
    invite(page, "sam@example.org", "Sam Ortiz", "Responder", "Moab")
    noor = page.get_by_role("listitem").filter(has=page.get_by_role("heading", name="Noor Haddad"))
    expect(noor.get_by_text("Invited: no password yet")).to_be_visible()

    # Noor opens the email's link on her phone
    phone_page.goto(link_sent_to(services, "noor@example.org"))
    expect(phone_page.get_by_text("You were invited as noor@example.org")).to_be_visible()
    expect(phone_page.get_by_label("Your name")).to_have_value("Noor Haddad")
    phone_page.get_by_label("Password", exact=True).fill(NEW_PASSWORD)
    phone_page.get_by_label("Password again").fill("not the same one")
    phone_page.get_by_role("button", name="Set password and sign in").click()
    expect(phone_page.get_by_text("The two passwords are not the same.")).to_be_visible()
    phone_page.get_by_label("Password", exact=True).fill(NEW_PASSWORD)
    phone_page.get_by_label("Password again").fill(NEW_PASSWORD)
    phone_page.get_by_role("button", name="Set password and sign in").click()
    expect(phone_page.get_by_text("Welcome, Noor Haddad.")).to_be_visible()
    expect(phone_page.get_by_role("button", name="Sign out")).to_be_visible()
    expect(phone_page.get_by_role("cell", name="logan", exact=True)).to_be_visible()
    expect(phone_page.get_by_role("cell", name="moab", exact=True)).to_have_count(0)

    # the admin sees her as a member of Logan now, and gives Rae Moab too
    page.goto("/people")
    expect(noor.get_by_text("Invited: no password yet")).to_have_count(0)
    expect(noor.get_by_text("Logan: Organizer")).to_be_visible()
    rae = page.get_by_role("listitem").filter(has=page.get_by_role("heading", name="Rae"))
    rae.get_by_label("Huddle").select_option(label="Moab")
    rae.get_by_label("Role").select_option(label="Responder")
    rae.get_by_role("button", name="Save access of Rae").click()
    expect(page.get_by_text("Rae is now responder of Moab.")).to_be_visible()
    expect(rae.get_by_text("Moab: Responder")).to_be_visible()
    screenshot(page, "people")


def test_a_person_who_forgot_the_password_sets_a_new_one_from_the_email(
    page: Page, services: Services, people: None
) -> None:
    page.goto("/login")
    page.get_by_role("link", name="Forgot your password?").click()
    page.get_by_label("Email").fill("lee@example.org")
    page.get_by_role("button", name="Email me a link").click()
    expect(page.get_by_text("If lee@example.org has an account, we sent it a link")).to_be_visible()
    link = link_sent_to(services, "lee@example.org")
    page.goto(link)
    page.get_by_label("Password", exact=True).fill(NEW_PASSWORD)
    page.get_by_label("Password again").fill(NEW_PASSWORD)
    page.get_by_role("button", name="Set password and sign in").click()
    expect(page.get_by_text("Your new password is set.")).to_be_visible()
    page.get_by_role("button", name="Sign out").click()
    page.goto(link)
    expect(page.get_by_role("heading", name="This link was used already")).to_be_visible()
    page.get_by_role("link", name="Sign in").click()
    sign_in(page, "lee@example.org", NEW_PASSWORD)


def test_an_admin_disables_an_account_after_confirming(page: Page, people: None) -> None:
    sign_in(page, "boss@example.org")
    page.goto("/people")
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Disable account of Mo").click()
    expect(page.get_by_text("mo@example.org is disabled")).to_be_visible()
    mo = page.get_by_role("listitem").filter(has=page.get_by_role("heading", name="Mo"))
    expect(mo.get_by_text("Disabled", exact=True)).to_be_visible()
