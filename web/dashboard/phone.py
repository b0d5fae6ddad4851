"""The test phone (sandbox only): text the huddle's sender as any number, and see its answers.

A text sent here goes through :mod:`outreach.sms.test_phone` into the inbound path a real
Twilio text takes, so the answers shown are the ones a supporter would get. The thread below the
form polls a fragment: what the worker sends later (an inbox reply, a campaign text) appears
without a reload. With Twilio configured the page says so and every other URL here is a 404.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue

from outreach.accounts.access import SETTINGS
from outreach.addresses.phones import MAX_INPUT_LENGTH, InvalidPhoneNumber, normalize_phone
from outreach.sms import test_phone
from outreach.sms.test_phone import HuddleLine
from web.access import signed_in
from web.dashboard.core import current_huddle, huddle_page
from web.extensions import services

bp = Blueprint("phone", __name__, url_prefix="/h/<slug>/phone")

QUICK_TEXTS = ("YES", "HELP", "STOP", "START")
MAX_JOIN_BUTTONS = 3
POLL_MS = 2000
# The members feature's profile page, by whichever name it has (when it is there at all).
MEMBER_PAGES = ("members.show", "members.profile")
NO_ANSWER = (
    "Sent. No automatic answer: a text like this goes to the Inbox for an organizer to read."
)
KIND_WORDS = {  # who sent an answer, in the thread
    "auto": "automatic answer",
    "reply": "inbox reply",
    "campaign": "campaign",
    "test": "test send",
}
STATE_WORDS = {
    "pending": "asked to confirm (pending)",
    "active": "subscribed",
    "opted_out": "opted out",
}


@dataclass
class Typed:
    """The form as the organizer filled it, with what is wrong with it."""

    from_number: str
    body: str = ""
    errors: dict[str, str] = field(default_factory=dict)


@bp.get("/")
@huddle_page(SETTINGS)
def show(slug: str) -> ResponseReturnValue:  # noqa: ARG001 (@huddle_page read it)
    if not test_phone.available(services().settings):
        return render_template("phone/unavailable.html")
    line = _line()
    phone = _phone_or_none(request.args.get("from", "")) or _default_number(line)
    return _page(line, Typed(from_number=phone), phone=phone)


@bp.post("/")
@huddle_page(SETTINGS)
def send(slug: str) -> ResponseReturnValue:
    svc = services()
    if not test_phone.available(svc.settings):
        abort(404)
    line = _line()
    typed = Typed(
        from_number=request.form.get("from_number", "")[: MAX_INPUT_LENGTH * 4],
        body=request.form.get("quick") or request.form.get("body", ""),
    )
    phone = _check(typed, line)
    if phone is None:
        shown = _phone_or_none(typed.from_number)
        return _page(line, typed, phone=shown), 400
    result = test_phone.send_as(
        svc.engine, svc.settings, line, from_e164=phone, body=typed.body.strip()
    )
    if result.reply is None:
        flash(NO_ANSWER, "message")
    return redirect(url_for(".show", slug=slug, **_from(phone)) + "#thread")


@bp.get("/thread")
@huddle_page(SETTINGS)
def thread(slug: str) -> ResponseReturnValue:  # noqa: ARG001 (@huddle_page read it)
    if not test_phone.available(services().settings):
        abort(404)
    phone = _phone_or_none(request.args.get("from", ""))
    if phone is None:
        return render_template("phone/_thread.html", phone=None), 400
    return render_template("phone/_thread.html", **_thread(_line(), phone))


def _page(line: HuddleLine, typed: Typed, *, phone: str | None) -> str:
    shown = _thread(line, phone) if phone else {"phone": None}
    return render_template(
        "phone/show.html",
        line=line,
        typed=typed,
        quick_texts=[*(f"JOIN {k}" for k in line.keywords[:MAX_JOIN_BUTTONS]), *QUICK_TEXTS],
        pretty=test_phone.pretty,
        max_body=test_phone.MAX_BODY_CHARS,
        poll_ms=POLL_MS,
        **shown,
    )


def _thread(line: HuddleLine, phone: str) -> dict[str, object]:
    huddle = current_huddle()
    with services().read_sessions() as session:
        messages = test_phone.thread(session, line, phone)
        member = test_phone.membership(session, huddle.id, phone)
    profile = None
    endpoint = next((e for e in MEMBER_PAGES if e in current_app.view_functions), None)
    if member is not None and endpoint is not None:
        profile = url_for(endpoint, slug=huddle.slug, member_id=member.member_id)
    return {
        "phone": phone,
        "thread_url": url_for(".thread", slug=huddle.slug, **_from(phone)),
        "kind_words": KIND_WORDS,
        "local_time": functools.partial(_local_time, zone=line.timezone),
        "messages": messages,
        "member": member,
        "member_state": STATE_WORDS.get(member.state or "", "no texts") if member else None,
        "profile_url": profile,
    }


def _check(typed: Typed, line: HuddleLine) -> str | None:
    """The number to text from, in E.164, or None with ``typed.errors`` saying why."""
    if line.to is None:
        typed.errors["form"] = (
            "This huddle has no number to text yet. Give it a sender in Settings first."
        )
    phone = None
    try:
        phone = normalize_phone(typed.from_number, services().settings.default_region)
    except InvalidPhoneNumber as exc:
        typed.errors["from_number"] = f"That is not a phone number ({exc.reason})."
    if phone is not None and phone in line.senders:
        typed.errors["from_number"] = "That is the huddle's own number: text from another one."
    body = typed.body.strip()
    if not body:
        typed.errors["body"] = "Type a message, or use one of the quick buttons."
    elif len(body) > test_phone.MAX_BODY_CHARS:
        typed.errors["body"] = (
            f"A text has at most {test_phone.MAX_BODY_CHARS:,} characters; "
            f"this one has {len(body):,}."
        )
        typed.body = body[: test_phone.MAX_BODY_CHARS * 2]  # shown back, not the whole flood
    return None if typed.errors else phone


def _line() -> HuddleLine:
    with services().read_sessions() as session:
        line = test_phone.read_line(session, current_huddle().id)
    if line is None:  # deleted since the page's check
        abort(404)
    return line


def _default_number(line: HuddleLine) -> str:
    """The same made-up number each time for one organizer: a reload shows their thread."""
    return test_phone.default_number(line.sender_number, signed_in().organizer_id)


def _local_time(at: datetime, *, zone: str) -> str:
    """When a text was sent, on the huddle's clock (its zone is checked when it is set)."""
    try:
        local = at.astimezone(ZoneInfo(zone))
    except (ZoneInfoNotFoundError, ValueError):
        local = at
    return f"{local:%b} {local.day}, {local:%H:%M:%S %Z}"


def _from(phone: str) -> dict[str, Any]:
    """The ``from`` query parameter (a Python keyword, so not an argument name)."""
    return {"from": phone}


def _phone_or_none(raw: str) -> str | None:
    if not raw or len(raw) > MAX_INPUT_LENGTH:
        return None
    try:
        return normalize_phone(raw, services().settings.default_region)
    except InvalidPhoneNumber:
        return None
