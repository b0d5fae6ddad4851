"""What every dashboard page shares: the huddle in its URL, checked against who is signed in.

Pages live under ``/h/<slug>/``. ``@huddle_page(capability)`` signs the visitor in, finds the
huddle and checks the capability *in that huddle*; an unknown slug and a huddle the visitor may
not use look the same (404), so another huddle's pages reveal nothing, not even that they exist.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flask import abort, g
from flask_login import login_required
from sqlalchemy import select

from outreach.accounts.access import CAMPAIGNS, INBOX, MEMBERS, SEGMENTS, SETTINGS
from outreach.models import Huddle
from web.access import View, signed_in
from web.extensions import services


@dataclass(frozen=True)
class HuddleRef:
    """The huddle a page is about, read once per request (no session attached)."""

    id: int
    slug: str
    name: str
    sender: str | None


# The huddle's tabs, in order: (label, endpoint, capability). Shown only where the visitor may go.
TABS: tuple[tuple[str, str, str], ...] = (
    ("Overview", "overview.show", INBOX),
    ("Inbox", "inbox.conversations", INBOX),
    ("Members", "members.index", MEMBERS),
    ("Segments", "segments.index", SEGMENTS),
    ("Campaigns", "campaigns.index", CAMPAIGNS),
    ("Settings", "huddle_settings.edit", SETTINGS),
    ("Test phone", "phone.show", SETTINGS),
)


def huddle_page(capability: str) -> Callable[[View], View]:
    """Sign in, then 404 unless the URL's ``slug`` names a huddle the visitor may use so."""

    def wrap(view: View) -> View:
        @functools.wraps(view)
        def checked(*args: Any, slug: str, **kwargs: Any) -> Any:
            huddle = _find(slug)
            if huddle is None or not signed_in().access.can(capability, huddle.id):
                abort(404)
            g.huddle = huddle
            return view(*args, slug=slug, **kwargs)

        guarded = login_required(checked)
        guarded.scope = capability
        return guarded

    return wrap


def current_huddle() -> HuddleRef:
    """The huddle of a ``@huddle_page`` view."""
    huddle: HuddleRef = g.huddle
    return huddle


def tabs(huddle: HuddleRef) -> list[tuple[str, str]]:
    """(label, endpoint) of the tabs the visitor may open in this huddle."""
    access = signed_in().access
    return [(label, ep) for label, ep, cap in TABS if access.can(cap, huddle.id)]


def _find(slug: str) -> HuddleRef | None:
    if len(slug) > 64:
        return None
    with services().read_sessions() as session:
        row = session.execute(
            select(Huddle.id, Huddle.slug, Huddle.name, Huddle.sender_number).where(
                Huddle.slug == slug
            )
        ).one_or_none()
    return None if row is None else HuddleRef(*row)
