"""Who may reach each page: every view says it, and a test checks every route does.

``@public(why)`` marks what strangers may use (the join form, sign-in, health). ``@requires(c)``
signs the visitor in and checks the capability (``outreach.accounts.access``); a signed-in
visitor without it gets a 404, so a page's existence reveals nothing. Provider webhooks are
checked by their own signatures (the ``webhooks`` package) and are not listed here.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from flask import abort
from flask_login import UserMixin, current_user, login_required

from outreach.accounts.access import Access

SIGNED_IN = "signed-in"  # any role: the home page, signing out
PUBLIC = "public"

View = TypeVar("View", bound=Callable[..., Any])


@dataclass(frozen=True)
class SignedIn(UserMixin):
    """The organizer of this request and what they may see."""

    organizer_id: int
    session_version: int
    name: str
    access: Access

    def get_id(self) -> str:
        return f"{self.organizer_id}.{self.session_version}"


def signed_in() -> SignedIn:
    """The organizer of a ``login_required`` view."""
    user: SignedIn = current_user._get_current_object()
    return user


def public(why: str) -> Callable[[View], View]:
    def mark(view: View) -> View:
        view.scope = PUBLIC  # type: ignore[attr-defined]
        view.public_because = why  # type: ignore[attr-defined]
        return view

    return mark


def requires(capability: str) -> Callable[[View], View]:
    def wrap(view: View) -> View:
        @functools.wraps(view)
        def checked(*args: Any, **kwargs: Any) -> Any:
            if capability != SIGNED_IN and not signed_in().access.can(capability):
                abort(404)
            return view(*args, **kwargs)

        guarded = login_required(checked)
        guarded.scope = capability
        return guarded

    return wrap


def scope_of(view: Callable[..., Any]) -> str | None:
    found: str | None = getattr(view, "scope", None)
    return found
