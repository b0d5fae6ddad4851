"""A real browser (Debian's Chromium, driven by Playwright) against the app served on loopback.

The app runs in a thread of the test process (so the test's database and Redis are its own);
campaign sends and imports go through a real ``outreach worker`` process, as the Procfile
starts it. Screenshots land in the test's folder, and in ``$OUTREACH_SCREENSHOTS`` when set
(``make screenshots`` points it at docs/screenshots).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from argon2 import PasswordHasher, profiles
from flask import Flask
from playwright.sync_api import Browser, Page, expect, sync_playwright
from werkzeug.serving import make_server

from outreach.accounts import passwords, users
from outreach.app.services import Services
from outreach.models import accounts as a
from outreach.people.huddles import create_huddle

# Debian's Chromium where it is installed, else the build `playwright install chromium` fetched.
CHROMIUM = os.environ.get("CHROMIUM") or shutil.which("chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PASSWORD = "correct horse battery"
LOGAN_SENDER = "+16175550100"
MOAB_SENDER = "+14355550100"


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture(autouse=True)
def cheap_passwords(monkeypatch: pytest.MonkeyPatch) -> None:
    """argon2's test profile: the browser tests are about pages, not the cost of a password."""
    monkeypatch.setattr(passwords, "_hasher", PasswordHasher.from_parameters(profiles.CHEAPEST))


@pytest.fixture
def live_server(app: Flask) -> Iterator[str]:
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(timeout=5)


@pytest.fixture
def people(services: Services) -> None:
    """Huddles logan and moab; admin boss, lee (organizer of logan), mo (organizer of moab),
    rae (responder of logan)."""
    with services.sessions.begin() as session:
        create_huddle(session, slug="logan", name="Logan", keywords=["LOGAN"], sender=LOGAN_SENDER)
        create_huddle(session, slug="moab", name="Moab", keywords=["MOAB"], sender=MOAB_SENDER)
        users.create_user(session, email="boss@example.org", password=PASSWORD, admin=True)
        users.create_user(
            session, email="lee@example.org", password=PASSWORD, huddles=["logan"], name="Lee"
        )
        users.create_user(
            session, email="mo@example.org", password=PASSWORD, huddles=["moab"], name="Mo"
        )
        users.create_user(
            session,
            email="rae@example.org",
            password=PASSWORD,
            huddles=["logan"],
            role=a.RESPONDER,
            name="Rae",
        )


@pytest.fixture
def page(browser: Browser, live_server: str) -> Iterator[Page]:
    context = browser.new_context(base_url=live_server, viewport={"width": 1280, "height": 860})
    context.set_default_timeout(10_000)
    opened = context.new_page()
    yield opened
    context.close()


@pytest.fixture
def phone_page(browser: Browser, live_server: str) -> Iterator[Page]:
    """A second visitor at phone width (a person of another huddle, or a phone screenshot)."""
    context = browser.new_context(base_url=live_server, viewport={"width": 390, "height": 844})
    context.set_default_timeout(10_000)
    opened = context.new_page()
    yield opened
    context.close()


def sign_in(page: Page, email: str, password: str = PASSWORD) -> None:
    page.goto("/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()


@pytest.fixture
def worker(test_env: dict[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    """``outreach worker`` as the Procfile starts it, on the test's database and Redis."""
    env = {**os.environ, **test_env}
    command = [str(Path(sys.executable).with_name("outreach")), "worker"]
    process = subprocess.Popen(command, env=env)
    yield process
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.fixture
def screenshot(tmp_path: Path):  # type: ignore[no-untyped-def]
    """Save the page as ``name.png``; also into $OUTREACH_SCREENSHOTS when it is set."""

    def take(page: Page, name: str, *, full_page: bool = True) -> Path:
        path = tmp_path / f"{name}.png"
        page.screenshot(path=str(path), full_page=full_page)
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        if target := os.environ.get("OUTREACH_SCREENSHOTS"):
            Path(target).mkdir(parents=True, exist_ok=True)
            shutil.copy(path, Path(target) / path.name)
        return path

    return take
