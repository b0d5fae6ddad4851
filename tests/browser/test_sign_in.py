"""Signing in and out in a real browser; another huddle's pages are not there."""

from __future__ import annotations

from playwright.sync_api import Page, expect

from tests.browser.conftest import sign_in


def test_an_organizer_signs_in_sees_their_huddle_and_signs_out(page: Page, people: None) -> None:
    sign_in(page, "lee@example.org")
    expect(page.get_by_role("cell", name="logan", exact=True)).to_be_visible()
    expect(page.get_by_role("cell", name="moab", exact=True)).to_have_count(0)
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("button", name="Sign in")).to_be_visible()


def test_a_wrong_password_is_refused_with_a_message(page: Page, people: None) -> None:
    page.goto("/login")
    page.get_by_label("Email").fill("lee@example.org")
    page.get_by_label("Password").fill("not it")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_text("Wrong email or password.")).to_be_visible()
