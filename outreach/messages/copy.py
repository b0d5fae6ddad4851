"""Default message copy (templates/messages/*.txt) and the huddle's own overrides.

These are compliance texts (CTIA): the confirmation ask names the program, frequency, rates, HELP
and STOP; HELP names a contact; the STOP reply confirms and carries no marketing.
"""

from __future__ import annotations

import functools
from typing import Any

from jinja2 import Environment, StrictUndefined

from outreach.app.resources import template_loader
from outreach.models import Huddle

NETWORK_NAME = "Huddle Outreach"


@functools.cache
def _environment() -> Environment:
    return Environment(
        loader=template_loader("messages"),
        undefined=StrictUndefined,
        keep_trailing_newline=False,
        autoescape=False,  # noqa: S701 - plain-text SMS copy, never HTML
    )


def render(name: str, **context: Any) -> str:
    return _environment().get_template(f"{name}.txt").render(**context).strip()


def _huddle_context(huddle: Huddle | None) -> dict[str, Any]:
    if huddle is None:
        return {
            "program": NETWORK_NAME,
            "frequency": "Msg frequency varies",
            "support": "the organizers (reply to this text)",
        }
    frequency = huddle.message_frequency or "Msg frequency varies"
    return {
        "program": huddle.name,
        "frequency": frequency[:1].upper() + frequency[1:],
        "support": huddle.support_contact
        or huddle.email_from_address
        or "the organizers (reply to this text)",
    }


def confirmation_ask(huddle: Huddle) -> str:
    return huddle.confirmation_text or render("confirm_ask", **_huddle_context(huddle))


def welcome(huddle: Huddle) -> str:
    return huddle.welcome_text or render("welcome", **_huddle_context(huddle))


def help_text(huddle: Huddle | None) -> str:
    if huddle is not None and huddle.help_text:
        return huddle.help_text
    return render("help", **_huddle_context(huddle))


def stop_reply(huddle: Huddle | None, *, all_senders: bool = False) -> str:
    if all_senders:
        return render("stop_all")
    return render("stop", **_huddle_context(huddle))


def message(name: str, huddle: Huddle | None = None, **extra: Any) -> str:
    return render(name, **_huddle_context(huddle), **extra)
