"""A huddle's inbox: what members texted, answered from the huddle's number.

The list puts possible opt-outs nobody looked at on top (the classifier's hint: "please stop
texting me" is not a STOP keyword, a person must read it), then the other unread
conversations, then the rest, newest first. A conversation shows the whole thread, a reply form
with the huddle's canned replies, "mark done" and who answers it.

Who may do what: everyone with INBOX in the huddle (responders, organizers, admins) reads,
answers, marks done, assigns and *uses* canned replies; *managing* the canned replies is
CAMPAIGNS (organizers and admins), because they speak for the huddle as a campaign does.

A reply goes through :func:`outreach.sms.inbox.send_reply_once`: the consent checks of the API's
reply, the provider called with no transaction open, and a one-time form key so two clicks
text once. Every query is asked of the URL's huddle: another huddle's ids are a 404.
"""

from __future__ import annotations

import functools
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue

from outreach.accounts.access import CAMPAIGNS, INBOX, MEMBERS
from outreach.addresses.phones import mask_phone
from outreach.models import Huddle
from outreach.providers import UncertainSendError, sms_transport
from outreach.sms import conversations as talk
from outreach.sms import inbox
from web.access import signed_in
from web.dashboard.core import current_huddle, huddle_page
from web.extensions import services

bp = Blueprint("inbox", __name__, url_prefix="/h/<slug>/inbox")

PAGE_SIZE = 25
THREAD_LIMIT = 200
MAX_ID = 2**31 - 1  # ids are 32-bit: a bigger one names nothing (and must not reach the driver)
MAX_CURSOR = MAX_ID * 3 + 2
FILTERS = {
    "all": "All",
    "unread": "Unread",
    "mine": "Assigned to me",
    "unassigned": "Unassigned",
}
KIND_WORDS = {
    "text": "texted",
    "auto": "automatic answer",
    "reply": "reply",
    "campaign": "campaign",
}
MEDIA_SCHEMES = ("https://", "http://")


def _bounded(value: int) -> int:
    if value > MAX_ID:
        abort(404)
    return value


def _huddle_zone() -> ZoneInfo | None:
    with services().read_sessions() as session:
        zone = session.get_one(Huddle, current_huddle().id).timezone
    try:
        return ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        return None


def _local_time(at: datetime | None, *, zone: ZoneInfo | None) -> str:
    """When, on the huddle's clock: "Mar 3, 2:05 PM EST"."""
    if at is None:
        return ""
    local = at.astimezone(zone) if zone is not None else at
    return f"{local:%b} {local.day}, {local.hour % 12 or 12}:{local:%M %p %Z}".strip()


def _who(name: str | None, phone: str | None) -> str:
    return name or mask_phone(phone)


def _render_helpers(zone: ZoneInfo | None) -> dict[str, Any]:
    return {
        "local_time": functools.partial(_local_time, zone=zone),
        "who": _who,
        "kind_words": KIND_WORDS,
        "linkable": lambda url: str(url).lower().startswith(MEDIA_SCHEMES),
        "can_manage_replies": signed_in().access.can(CAMPAIGNS, current_huddle().id),
    }


# ---------------------------------------------------------------------------------------------
# The list


@bp.get("/")
@huddle_page(INBOX)
def conversations(slug: str) -> ResponseReturnValue:  # noqa: ARG001 (@huddle_page read it)
    huddle = current_huddle()
    shown = request.args.get("filter", "all")
    if shown not in FILTERS:
        shown = "all"
    after = _cursor(request.args.get("after", ""))
    me = signed_in().organizer_id
    with services().read_sessions() as session:
        found = talk.list_inbox(
            session,
            huddle.id,
            after=after,
            limit=PAGE_SIZE + 1,
            unread_only=shown == "unread",
            assigned_to=me if shown == "mine" else None,
            unassigned_only=shown == "unassigned",
        )
        unread, flagged = talk.open_count(session, huddle.id)
        page = found[:PAGE_SIZE]
        owners = inbox.assignees_of(
            session, huddle.id, [c.member_id for c in page if c.member_id is not None]
        )
    more = len(found) > PAGE_SIZE
    return render_template(
        "inbox/conversations.html",
        conversations=page,
        owners=owners,
        me=me,
        shown=shown,
        filters=FILTERS,
        unread=unread,
        flagged=flagged,
        first_page=after == 0,
        next_after=talk.inbox_key(page[-1]) if more else None,
        **_render_helpers(_huddle_zone()),
    )


def _cursor(raw: str) -> int:
    """The page cursor, or 0 (the first page) for anything that is not one."""
    if not raw.isascii() or not raw.isdigit() or len(raw) > len(str(MAX_CURSOR)):
        return 0
    value = int(raw)
    return value if value <= MAX_CURSOR else 0


@bp.post("/numbers/<int:inbound_id>/done")
@huddle_page(INBOX)
def stranger_done(slug: str, inbound_id: int) -> ResponseReturnValue:
    """Texts from a number that is not a member: nothing to answer from here, only to clear."""
    with services().sessions.begin() as session:
        done = talk.mark_stranger_handled(session, current_huddle().id, _bounded(inbound_id))
    if done is None:
        abort(404)
    flash("Marked done.", "message")
    return redirect(url_for(".conversations", slug=slug))


# ---------------------------------------------------------------------------------------------
# One conversation


@bp.get("/<int:member_id>")
@huddle_page(INBOX)
def conversation(slug: str, member_id: int) -> ResponseReturnValue:  # noqa: ARG001
    body = ""
    canned = request.args.get("canned", "")
    if canned:
        body = _canned_body(canned)
    return _conversation_page(_bounded(member_id), body=body)


def _canned_body(raw: str) -> str:
    """The text of the canned reply the picker chose (the no-JavaScript way: a GET)."""
    if not raw.isdigit() or int(raw) > MAX_ID:
        flash("Choose one of the canned replies in the list.", "error")
        return ""
    with services().read_sessions() as session:
        chosen = inbox.get_canned_reply(session, current_huddle().id, int(raw))
        if chosen is None:
            flash("That canned reply is gone: choose another.", "error")
            return ""
        return chosen.body


def _conversation_page(
    member_id: int, *, body: str = "", error: str | None = None, status: int = 200
) -> ResponseReturnValue:
    huddle = current_huddle()
    with services().read_sessions() as session:
        found = talk.get_conversation(session, huddle.id, member_id)
        if found is None:
            abort(404)
        thread, truncated = talk.messages(session, huddle.id, member_id, limit=THREAD_LIMIT)
        blocked = inbox.why_no_reply(session, session.get_one(Huddle, huddle.id), member_id)
        canned = inbox.canned_replies(session, huddle.id)
        people = inbox.assignees(session, huddle.id)
        owner = inbox.assignees_of(session, huddle.id, [member_id]).get(member_id)
    profile = None
    if "members.profile" in current_app.view_functions and signed_in().access.can(
        MEMBERS, huddle.id
    ):
        profile = url_for("members.profile", slug=huddle.slug, member_id=member_id)
    return render_template(
        "inbox/conversation.html",
        conversation=found,
        thread=thread,
        truncated=truncated,
        blocked=blocked,
        canned=canned,
        people=people,
        owner=owner,
        body=body,
        error=error,
        form_key=inbox.new_form_key(),
        max_reply=talk.MAX_REPLY_CHARS,
        profile_url=profile,
        **_render_helpers(_huddle_zone()),
    ), status


@bp.post("/<int:member_id>/reply")
@huddle_page(INBOX)
def reply(slug: str, member_id: int) -> ResponseReturnValue:
    member_id = _bounded(member_id)
    body = request.form.get("body", "")[: talk.MAX_REPLY_CHARS * 2]
    form_key = request.form.get("form_key", "")
    if not inbox.valid_form_key(form_key):
        return _conversation_page(
            member_id, body=body, error="This form is out of date: send it again.", status=400
        )
    svc = services()
    transport = sms_transport(svc.settings, sessions=svc.sessions)
    try:
        inbox.send_reply_once(
            svc.sessions,
            svc.settings,
            transport,
            huddle_id=current_huddle().id,
            member_id=member_id,
            body=body,
            organizer_id=signed_in().organizer_id,
            form_key=form_key,
        )
    except inbox.DuplicateReply:
        flash(
            "That reply was already sent (the form was submitted twice): it went once.", "message"
        )
        return redirect(url_for(".conversation", slug=slug, member_id=member_id))
    except inbox.NoConversation:
        abort(404)
    except talk.ReplyRefused as refused:
        status = 400 if refused.code == "invalid" else 409
        return _conversation_page(
            member_id, body=body, error=f"Not sent: {refused.message}", status=status
        )
    except talk.ReplyFailed as failed:
        if isinstance(failed.error, UncertainSendError):
            error = (
                "The provider's answer was lost: the text may have gone out. "
                "Check with the member before sending it again."
            )
        else:
            error = f"Not sent: the provider refused the text ({failed.error.message})."
        return _conversation_page(member_id, body=body, error=error, status=502)
    finally:
        transport.close()
    if request.form.get("then") == "done":
        with svc.sessions.begin() as session:
            talk.mark_handled(session, current_huddle().id, member_id)
        flash("Reply sent, and the conversation marked done.", "message")
        return redirect(url_for(".conversations", slug=slug))
    flash("Reply sent.", "message")
    return redirect(url_for(".conversation", slug=slug, member_id=member_id) + "#latest")


@bp.post("/<int:member_id>/done")
@huddle_page(INBOX)
def done(slug: str, member_id: int) -> ResponseReturnValue:
    huddle = current_huddle()
    with services().sessions.begin() as session:
        if not talk.has_conversation(session, huddle.id, _bounded(member_id)):
            abort(404)
        talk.mark_handled(session, huddle.id, member_id)
    flash("Marked done.", "message")
    return redirect(url_for(".conversations", slug=slug))


@bp.post("/<int:member_id>/assign")
@huddle_page(INBOX)
def assign(slug: str, member_id: int) -> ResponseReturnValue:
    huddle = current_huddle()
    member_id = _bounded(member_id)
    raw = request.form.get("organizer_id", "").strip()
    if raw and (not raw.isascii() or not raw.isdigit() or int(raw) > MAX_ID):
        flash("Choose a person from the list.", "error")
        return redirect(url_for(".conversation", slug=slug, member_id=member_id))
    try:
        with services().sessions.begin() as session:
            if not talk.has_conversation(session, huddle.id, member_id):
                abort(404)
            chosen = inbox.assign(
                session,
                huddle.id,
                member_id,
                int(raw) if raw else None,
                by=signed_in().organizer_id,
            )
    except ValueError as refused:
        flash(f"Not assigned: {refused}", "error")
        return redirect(url_for(".conversation", slug=slug, member_id=member_id))
    if chosen is None:
        flash("Nobody is assigned now: anyone may answer.", "message")
    else:
        flash(f"Assigned to {chosen.name}.", "message")
    return redirect(url_for(".conversation", slug=slug, member_id=member_id))


# ---------------------------------------------------------------------------------------------
# Canned replies (managed by organizers and admins)


@bp.get("/replies")
@huddle_page(CAMPAIGNS)
def replies(slug: str) -> ResponseReturnValue:  # noqa: ARG001
    return _replies_page()


def _replies_page(
    *, title: str = "", body: str = "", errors: dict[str, str] | None = None, status: int = 200
) -> ResponseReturnValue:
    with services().read_sessions() as session:
        saved = inbox.canned_replies(session, current_huddle().id)
    return render_template(
        "inbox/replies.html",
        saved=saved,
        title=title,
        body=body,
        errors=errors or {},
        max_title=inbox.MAX_TITLE_CHARS,
        max_reply=talk.MAX_REPLY_CHARS,
    ), status


def _typed() -> tuple[str, str]:
    title = request.form.get("title", "")[: inbox.MAX_TITLE_CHARS * 4]
    body = request.form.get("body", "")[: talk.MAX_REPLY_CHARS * 2]
    return title, body


@bp.post("/replies")
@huddle_page(CAMPAIGNS)
def add_reply(slug: str) -> ResponseReturnValue:
    title, body = _typed()
    try:
        with services().sessions.begin() as session:
            inbox.add_canned_reply(session, current_huddle().id, title=title, body=body)
    except inbox.CannedReplyError as exc:
        return _replies_page(title=title, body=body, errors={exc.field: exc.message}, status=400)
    flash(f"Canned reply “{title.strip()}” saved.", "message")
    return redirect(url_for(".replies", slug=slug))


@bp.get("/replies/<int:reply_id>")
@huddle_page(CAMPAIGNS)
def edit_reply(slug: str, reply_id: int) -> ResponseReturnValue:  # noqa: ARG001
    with services().read_sessions() as session:
        found = inbox.get_canned_reply(session, current_huddle().id, _bounded(reply_id))
        if found is None:
            abort(404)
        return _edit_page(reply_id, found.title, found.body)


def _edit_page(
    reply_id: int, title: str, body: str, errors: dict[str, str] | None = None, status: int = 200
) -> ResponseReturnValue:
    return render_template(
        "inbox/reply_edit.html",
        reply_id=reply_id,
        title=title,
        body=body,
        errors=errors or {},
        max_title=inbox.MAX_TITLE_CHARS,
        max_reply=talk.MAX_REPLY_CHARS,
    ), status


@bp.post("/replies/<int:reply_id>")
@huddle_page(CAMPAIGNS)
def save_reply(slug: str, reply_id: int) -> ResponseReturnValue:
    title, body = _typed()
    try:
        with services().sessions.begin() as session:
            found = inbox.get_canned_reply(session, current_huddle().id, _bounded(reply_id))
            if found is None:
                abort(404)
            inbox.edit_canned_reply(session, found, title=title, body=body)
    except inbox.CannedReplyError as exc:
        return _edit_page(reply_id, title, body, {exc.field: exc.message}, status=400)
    flash(f"Canned reply “{title.strip()}” saved.", "message")
    return redirect(url_for(".replies", slug=slug))


@bp.post("/replies/<int:reply_id>/delete")
@huddle_page(CAMPAIGNS)
def delete_reply(slug: str, reply_id: int) -> ResponseReturnValue:
    with services().sessions.begin() as session:
        found = inbox.get_canned_reply(session, current_huddle().id, _bounded(reply_id))
        if found is None:
            abort(404)
        title = found.title
        inbox.delete_canned_reply(session, found)
    flash(f"Canned reply “{title}” deleted.", "message")
    return redirect(url_for(".replies", slug=slug))
