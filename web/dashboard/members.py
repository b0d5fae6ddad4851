"""A huddle's members: find them, read one's consent story, change their tags and fields, opt
them out when they ask you to, import a CSV (a worker runs it) and export them all.

The pages call the domain functions the JSON API calls (``outreach.people.members``,
``outreach.people.imports``); every query is asked of the URL's huddle, so another huddle's
member, import or export is a 404 here.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import redis
from flask import (
    Blueprint,
    Response,
    abort,
    flash,
    redirect,
    render_template,
    request,
    stream_with_context,
    url_for,
)
from flask.typing import ResponseReturnValue
from sqlalchemy import ColumnElement, select
from sqlalchemy.orm import Session
from werkzeug.exceptions import RequestEntityTooLarge

from outreach.accounts import audit
from outreach.accounts.access import MEMBERS
from outreach.app.clock import utcnow
from outreach.campaigns import CampaignError, resolve_segment, segments
from outreach.consent import timeline
from outreach.models import Huddle, Organizer
from outreach.models import imports as import_states
from outreach.models import members as m
from outreach.people import imports
from outreach.people import members as people
from outreach.people.importer import ImportFileError, export_lines
from web.access import signed_in
from web.dashboard.core import current_huddle, huddle_page
from web.extensions import csrf, services
from workers import jobs

log = logging.getLogger(__name__)

bp = Blueprint("members", __name__, url_prefix="/h/<slug>/members")

PAGE_SIZE = 50
MAX_ID = 2**31 - 1  # ids are 32-bit: a bigger one names nobody (and must not reach the driver)
MAX_SEARCH = 254
MAX_FILTER = 2000
MAX_FIELDS_TEXT = 120_000
MAX_UPLOAD_BYTES = imports.MAX_UPLOAD_BYTES
UPLOAD_SUFFIXES = (".csv", ".txt")
FINISHED = (import_states.DONE, import_states.FAILED)
CHANNEL_NAMES = {m.SMS: "texts", m.EMAIL: "email"}
STATE_WORDS = {
    m.ACTIVE: "Subscribed",
    m.PENDING: "Asked to confirm",
    m.OPTED_OUT: "Opted out",
    m.NO_CONSENT: "No consent",
}


@bp.app_template_filter("consent_words")
def _consent_words(state: str) -> str:
    return STATE_WORDS.get(state, state)


def _huddle(session: Session) -> Huddle:
    return session.get_one(Huddle, current_huddle().id)


def _actor_email(session: Session) -> str:
    """Who the ledger and the audit log name: the organizer's email, as the API records it."""
    email: str = session.scalars(
        select(Organizer.email).where(Organizer.id == signed_in().organizer_id)
    ).one()
    return email


def _bounded(value: int) -> int:
    if value > MAX_ID:
        abort(404)
    return value


# ---------------------------------------------------------------------------------------------
# The list: search, filter, pages


@dataclass
class Listing:
    query: str
    filter: str
    channel: str
    after: int
    members: list[people.MemberView]
    next_after: int | None
    error: str | None = None
    error_position: int | None = None


def _listing() -> Listing:
    args = request.args
    query = args.get("q", "")[: MAX_SEARCH + 1]
    filter_text = args.get("filter", "")[: MAX_FILTER + 1]
    channel = args.get("channel", m.SMS)
    after_text = args.get("after", "0").strip()
    listing = Listing(query, filter_text, channel if channel in m.CHANNELS else m.SMS, 0, [], None)
    if len(query) > MAX_SEARCH:
        listing.error = f"Search for at most {MAX_SEARCH} characters."
        return listing
    if len(filter_text) > MAX_FILTER:
        listing.error = f"A filter has at most {MAX_FILTER} characters."
        return listing
    if not after_text.isdigit() or int(after_text) > MAX_ID:
        listing.error = "That page does not exist: start again from the first page."
        return listing
    listing.after = int(after_text)
    with services().read_sessions() as session:
        huddle = _huddle(session)
        condition = _filter_condition(session, huddle, listing)
        if listing.error is not None:
            return listing
        found = people.list_members_where(
            session,
            huddle,
            condition=condition,
            query=query,
            after=listing.after,
            limit=PAGE_SIZE + 1,
            default_region=services().settings.default_region,
        )
    listing.members = found[:PAGE_SIZE]
    listing.next_after = listing.members[-1].id if len(found) > PAGE_SIZE else None
    return listing


def _filter_condition(session: Session, huddle: Huddle, listing: Listing) -> Any:
    """The filter compiled as the segment builder compiles it; a bad one sets the error."""
    text = listing.filter
    if not text.strip():
        return None
    try:
        text = resolve_segment(session, huddle, text.strip()) if text.strip()[:1] == "@" else text
    except CampaignError as exc:
        listing.error = str(exc)
        return None
    try:
        condition: ColumnElement[bool] = segments.compile_filter(
            segments.parse(text),
            huddle_id=huddle.id,
            channel=listing.channel,
            now=utcnow(),
            huddle_slug=huddle.slug,
            tz=segments.huddle_zone(huddle.timezone),
        )
    except segments.SegmentError as exc:
        listing.error = exc.message
        listing.error_position = exc.position if text == listing.filter else None
        return None
    return condition


@bp.get("/")
@huddle_page(MEMBERS)
def index(slug: str) -> ResponseReturnValue:  # noqa: ARG001
    listing = _listing()
    return render_template("members/index.html", listing=listing), 200


@bp.get("/results")
@huddle_page(MEMBERS)
def results(slug: str) -> ResponseReturnValue:  # noqa: ARG001
    """The list alone, for the search form's live update."""
    return render_template("members/_results.html", listing=_listing())


# ---------------------------------------------------------------------------------------------
# A member: profile, timeline, edit, opt out


def _profile(
    member_id: int, *, form: dict[str, str] | None = None, errors: dict[str, str] | None = None
) -> ResponseReturnValue:
    with services().read_sessions() as session:
        huddle = _huddle(session)
        member = people.get_member(session, huddle, member_id)
        if member is None:
            abort(404)
        events = people.consent_history(session, huddle, member_id) or []
        names = timeline.organizer_names(session, events)
        entries = timeline.timeline(events, tz=timeline.zone(huddle.timezone), names=names)
        zone = huddle.timezone
    stoppable = [ch for ch in m.CHANNELS if member.consent.get(ch) in (m.ACTIVE, m.PENDING)]
    return render_template(
        "members/profile.html",
        member=member,
        entries=list(reversed(entries)),
        zone=zone,
        stoppable=stoppable,
        channel_names=CHANNEL_NAMES,
        form=form or _form_of(member),
        errors=errors or {},
    ), 422 if errors else 200


def _form_of(member: people.MemberView) -> dict[str, str]:
    return {
        "first_name": member.first_name or "",
        "last_name": member.last_name or "",
        "zip": member.zip or "",
        "phone": "",
        "email": "",
        "tags": ", ".join(member.tags),
        "fields": "\n".join(f"{name} = {value}" for name, value in member.fields.items()),
    }


@bp.get("/<int:member_id>")
@huddle_page(MEMBERS)
def profile(slug: str, member_id: int) -> ResponseReturnValue:  # noqa: ARG001
    return _profile(_bounded(member_id))


class _FormError(ValueError):
    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(message)
        self.field = field_name
        self.message = message


def _parse_fields(text: str) -> dict[str, str]:
    """``name = value`` per line; a value may hold ``=``."""
    if len(text) > MAX_FIELDS_TEXT:
        raise _FormError("fields", "That is too much text for the fields.")
    fields: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        name, sep, value = line.partition("=")
        name = name.strip().lower()
        if not sep or not name:
            raise _FormError("fields", f"Line {number}: write it as name = value.")
        if name in fields:
            raise _FormError("fields", f"Line {number}: {name[:64]} is there twice.")
        fields[name] = value.strip()
    return fields


def _changes(form: dict[str, str], current: people.MemberView) -> people.Changes:
    tags = [t for t in form["tags"].replace(";", ",").replace("\n", ",").split(",") if t.strip()]
    fields: dict[str, str | None] = dict(_parse_fields(form["fields"]))
    for gone in set(current.fields) - set(fields):
        fields[gone] = None  # a line taken out removes that field
    return people.Changes(
        first_name=form["first_name"],
        last_name=form["last_name"],
        zip=form["zip"],
        phone=form["phone"] or None,
        email=form["email"] or None,
        tags=tags,
        fields=fields,
    )


@bp.post("/<int:member_id>")
@huddle_page(MEMBERS)
def update(slug: str, member_id: int) -> ResponseReturnValue:
    """Save the profile form: names, zip, tags and fields (and a phone or email they lacked)."""
    member_id = _bounded(member_id)
    form = {
        name: request.form.get(name, "")
        for name in ("first_name", "last_name", "zip", "phone", "email", "tags", "fields")
    }
    try:
        with services().sessions.begin() as session:
            huddle = _huddle(session)
            current = people.get_member(session, huddle, member_id)
            if current is None:
                abort(404)
            updated = people.update_member(
                session,
                huddle,
                member_id,
                _changes(form, current),
                default_region=services().settings.default_region,
            )
    except (people.MemberError, _FormError) as exc:
        return _profile(member_id, form=form, errors={exc.field: exc.message})
    assert updated is not None  # noqa: S101 - held a moment ago, in the same transaction
    flash("Saved.", "message")
    return redirect(url_for(".profile", slug=slug, member_id=member_id))


@bp.post("/<int:member_id>/opt-out")
@huddle_page(MEMBERS)
def opt_out(slug: str, member_id: int) -> ResponseReturnValue:
    """Opt the member out (texts, email or both) as they asked; the ledger names the organizer."""
    member_id = _bounded(member_id)
    choice = request.form.get("channel", "")
    channels = list(m.CHANNELS) if choice == "both" else [choice]
    if not set(channels) <= set(m.CHANNELS):
        flash("Choose texts, email or both.", "error")
        return redirect(url_for(".profile", slug=slug, member_id=member_id))
    with services().sessions.begin() as session:
        huddle = _huddle(session)
        actor = _actor_email(session)
        view = None
        for channel in channels:
            view = people.opt_out_for_member(session, huddle, member_id, channel, actor=actor)
            if view is None:
                abort(404)
            audit.record(
                session,
                audit.OPTED_OUT_FOR_MEMBER,
                actor_id=signed_in().organizer_id,
                actor_email=actor,
                huddle_id=huddle.id,
                subject=f"member {member_id}",
                detail={"channel": channel},
                ip=request.remote_addr,
            )
    what = " and ".join(CHANNEL_NAMES[ch] for ch in channels)
    flash(f"Opted out of {what}. Only the member can start again.", "message")
    return redirect(url_for(".profile", slug=slug, member_id=member_id))


# ---------------------------------------------------------------------------------------------
# Import and export


def _import_form(error: str | None = None, status: int = 200) -> ResponseReturnValue:
    with services().read_sessions() as session:
        recent = imports.recent_for_huddle(session, current_huddle().id)
    return render_template(
        "members/import.html",
        error=error,
        recent=recent,
        max_megabytes=MAX_UPLOAD_BYTES // (1024 * 1024),
    ), status


@bp.get("/import")
@huddle_page(MEMBERS)
def import_form(slug: str) -> ResponseReturnValue:  # noqa: ARG001
    return _import_form()


@bp.post("/import")
@csrf.exempt  # checked below, once the upload's own size limit is set (the app's is 2 MiB)
@huddle_page(MEMBERS)
def start_import(slug: str) -> ResponseReturnValue:
    """Keep the file for a worker (as the API does) and show its progress page."""
    request.max_content_length = MAX_UPLOAD_BYTES + 64 * 1024  # the form's other parts
    try:
        upload = request.files.get("file")
    except RequestEntityTooLarge:
        return _import_form(f"That file is too big: at most {MAX_UPLOAD_BYTES:,} bytes.", 413)
    csrf.protect()  # the session's token, or a 400 (CSRFError) like every other form
    if upload is None or not upload.filename:
        return _import_form("Choose a CSV file to import.", 422)
    filename = upload.filename[:200]
    if not filename.lower().endswith(UPLOAD_SUFFIXES):
        return _import_form("That is not a CSV file: choose a file that ends in .csv.", 422)
    consent = frozenset(ch for ch in request.form.getlist("consent") if ch in m.CHANNELS)
    huddle = current_huddle()
    with services().read_sessions() as session:
        actor = _actor_email(session)
    try:
        import_id = imports.store(
            services().sessions,
            huddle_slug=huddle.slug,
            upload=upload.stream,
            source_name=filename,
            consent_channels=consent,
            default_region=services().settings.default_region,
            actor=actor,
            max_bytes=MAX_UPLOAD_BYTES,
        )
    except ImportFileError as exc:
        return _import_form(f"That file cannot be imported: {exc}.", 422)
    with services().sessions.begin() as session:
        audit.record(
            session,
            audit.MEMBERS_IMPORTED,
            actor_id=signed_in().organizer_id,
            actor_email=actor,
            huddle_id=huddle.id,
            subject=f"import {import_id}",
            detail={"filename": filename, "consent": sorted(consent)},
            ip=request.remote_addr,
        )
    try:
        jobs.enqueue_import(import_id)
    except redis.RedisError:
        log.warning("import %s stored; Redis is away, the sweep will give it a job", import_id)
    return redirect(url_for(".import_status", slug=slug, import_id=import_id))


SHOWN_ERRORS = 10


def _status(import_id: int) -> imports.ImportStatus:
    with services().read_sessions() as session:
        try:
            return imports.status(session, _bounded(import_id), huddle_ids={current_huddle().id})
        except LookupError:
            abort(404)


def _progress(template: str, import_id: int) -> ResponseReturnValue:
    job = _status(import_id)
    shown: list[tuple[int, str, str]] = []
    if job.state in FINISHED and job.error_count:
        with services().read_sessions() as session:
            page = imports.error_page(session, job.id, after=-1, limit=SHOWN_ERRORS)
        shown = [(e.line, imports.error_column(e.reason), e.reason) for e in page]
    return render_template(template, job=job, finished=FINISHED, shown_errors=shown)


@bp.get("/imports/<int:import_id>")
@huddle_page(MEMBERS)
def import_status(slug: str, import_id: int) -> ResponseReturnValue:  # noqa: ARG001
    return _progress("members/import_status.html", import_id)


@bp.get("/imports/<int:import_id>/progress")
@huddle_page(MEMBERS)
def import_progress(slug: str, import_id: int) -> ResponseReturnValue:  # noqa: ARG001
    """The progress box alone, polled until the import is done or failed."""
    return _progress("members/_progress.html", import_id)


@bp.get("/imports/<int:import_id>/errors.csv")
@huddle_page(MEMBERS)
def import_errors(slug: str, import_id: int) -> ResponseReturnValue:
    """The rows that were not imported: line, column, why."""
    job = _status(import_id)

    def lines() -> Iterator[str]:
        with services().read_sessions() as session:
            yield from imports.error_report_lines(session, job.id)

    response = Response(stream_with_context(lines()), mimetype="text/csv")
    response.headers["Content-Disposition"] = (
        f'attachment; filename="{slug}-import-{job.id}-errors.csv"'
    )
    return response


@bp.get("/export.csv")
@huddle_page(MEMBERS)
def export(slug: str) -> ResponseReturnValue:
    """Every member of the huddle as CSV, with their consent state per channel."""
    huddle_id = current_huddle().id
    with services().sessions.begin() as session:
        actor = _actor_email(session)
        audit.record(
            session,
            audit.MEMBERS_EXPORTED,
            actor_id=signed_in().organizer_id,
            actor_email=actor,
            huddle_id=huddle_id,
            subject=f"huddle {slug}",
            ip=request.remote_addr,
        )

    def rows() -> Iterator[str]:
        with services().read_sessions() as session:
            yield from export_lines(session, session.get_one(Huddle, huddle_id))

    response = Response(stream_with_context(rows()), mimetype="text/csv")
    response.headers["Content-Disposition"] = f'attachment; filename="{slug}-members.csv"'
    return response
