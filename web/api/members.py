"""``/api/v1/huddles/<slug>/members``: list and search, read, add, change, opt out, consent
history, CSV export, and CSV imports run as worker jobs."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import marshmallow as ma
import redis
from flask import Response, request, stream_with_context
from flask_smorest import Blueprint

from outreach.accounts import audit
from outreach.accounts.access import MEMBERS
from outreach.models import Huddle
from outreach.models import members as m
from outreach.people import imports
from outreach.people import members as people
from outreach.people.importer import ImportFileError, export_lines
from web.api.core import (
    Page,
    PageArgs,
    access,
    actor,
    decode_cursor,
    encode_cursor,
    fail,
    not_found,
    reading,
    token,
    writing,
)
from web.api.huddles import huddle_for
from web.api.idempotency import writes
from web.extensions import services
from workers import jobs

log = logging.getLogger(__name__)

bp = Blueprint("api_members", __name__, url_prefix="/api/v1", description="Members")

_CHANNEL = ma.validate.OneOf(m.CHANNELS)
_STATE = ma.validate.OneOf((*m.SUBSCRIPTION_STATES, m.NO_CONSENT))


class ConsentStates(ma.Schema):
    sms = ma.fields.String(required=True, validate=_STATE)
    email = ma.fields.String(required=True, validate=_STATE)


class MemberSchema(ma.Schema):
    id = ma.fields.Integer(required=True)
    phone = ma.fields.String(required=True, allow_none=True)
    email = ma.fields.String(required=True, allow_none=True)
    first_name = ma.fields.String(required=True, allow_none=True)
    last_name = ma.fields.String(required=True, allow_none=True)
    zip = ma.fields.String(required=True, allow_none=True)
    joined_at = ma.fields.DateTime(required=True, metadata={"description": "Held by this huddle"})
    source = ma.fields.String(required=True)
    consent = ma.fields.Nested(ConsentStates, required=True)
    tags = ma.fields.List(ma.fields.String(), required=True)
    custom_fields = ma.fields.Dict(
        keys=ma.fields.String(),
        values=ma.fields.String(),
        required=True,
        data_key="fields",
        attribute="fields",
    )


class MemberPage(Page):
    data = ma.fields.List(ma.fields.Nested(MemberSchema), required=True)


class MemberSearch(PageArgs):
    q = ma.fields.String(
        load_default="",
        validate=ma.validate.Length(max=254),
        metadata={"description": "A phone number, an email, or the start of a name"},
    )


class _Editable(ma.Schema):
    first_name = ma.fields.String(validate=ma.validate.Length(max=100))
    last_name = ma.fields.String(validate=ma.validate.Length(max=100))
    zip = ma.fields.String(validate=ma.validate.Length(max=10))
    phone = ma.fields.String(validate=ma.validate.Length(max=40))
    email = ma.fields.String(validate=ma.validate.Length(max=254))
    tags = ma.fields.List(ma.fields.String(validate=ma.validate.Length(max=64)))
    custom_fields = ma.fields.Dict(
        keys=ma.fields.String(validate=ma.validate.Length(max=64)),
        values=ma.fields.String(allow_none=True, validate=ma.validate.Length(max=2000)),
        data_key="fields",
        attribute="fields",
    )


class MemberCreate(_Editable):
    consent = ma.fields.List(
        ma.fields.String(validate=_CHANNEL),
        load_default=list,
        metadata={"description": "Channels the member agreed to (you assert it; it is recorded)"},
    )


class OptOut(ma.Schema):
    channel = ma.fields.String(required=True, validate=_CHANNEL)


class ConsentEventSchema(ma.Schema):
    at = ma.fields.DateTime(required=True, attribute="created_at")
    channel = ma.fields.String(required=True)
    address = ma.fields.String(required=True)
    action = ma.fields.String(required=True)
    source = ma.fields.String(required=True)
    detail = ma.fields.String(required=True, allow_none=True)
    actor = ma.fields.String(required=True, allow_none=True)
    provider_message_id = ma.fields.String(required=True, allow_none=True)
    every_huddle = ma.fields.Method("_every", required=True, metadata={"type": "boolean"})

    def _every(self, event: Any) -> bool:
        return event.huddle_id is None


class ConsentHistory(ma.Schema):
    data = ma.fields.List(ma.fields.Nested(ConsentEventSchema), required=True)


class ImportArgs(ma.Schema):
    consent = ma.fields.List(ma.fields.String(validate=_CHANNEL), load_default=list)
    filename = ma.fields.String(load_default="api.csv", validate=ma.validate.Length(min=1, max=200))


class ImportSchema(ma.Schema):
    id = ma.fields.Integer(required=True)
    huddle = ma.fields.String(required=True, attribute="huddle_slug")
    filename = ma.fields.String(required=True, attribute="source_name")
    state = ma.fields.String(required=True)
    percent = ma.fields.Integer(required=True)
    rows = ma.fields.Integer(required=True)
    imported = ma.fields.Integer(required=True)
    created = ma.fields.Integer(required=True)
    merged = ma.fields.Integer(required=True)
    subscribed = ma.fields.Dict(keys=ma.fields.String(), values=ma.fields.Integer(), required=True)
    kept_opted_out = ma.fields.Integer(required=True)
    suppressed = ma.fields.Integer(required=True)
    error_count = ma.fields.Integer(required=True)
    reason = ma.fields.String(required=True, allow_none=True)
    created_at = ma.fields.DateTime(required=True)
    finished_at = ma.fields.DateTime(required=True, allow_none=True)


class RowErrorSchema(ma.Schema):
    line = ma.fields.Integer(required=True)
    reason = ma.fields.String(required=True)


class RowErrorPage(Page):
    data = ma.fields.List(ma.fields.Nested(RowErrorSchema), required=True)


def _invalid(exc: people.MemberError) -> None:
    status, code = (409, "conflict") if isinstance(exc, people.MemberConflict) else (422, "invalid")
    fail(status, code, exc.message, field=exc.field)


def _changes(body: dict[str, Any]) -> people.Changes:
    return people.Changes(**{k: v for k, v in body.items() if k != "consent"})


@bp.get("/huddles/<slug>/members")
@token(MEMBERS)
@bp.arguments(MemberSearch, location="query")
@bp.response(200, MemberPage)
def list_members(args: dict[str, Any], slug: str) -> dict[str, Any]:
    """The huddle's members by id, a page at a time; ``q`` finds by phone, email or name."""
    with reading() as session:
        huddle = huddle_for(session, slug, MEMBERS)
        found = people.list_members(
            session,
            huddle,
            query=args["q"],
            after=decode_cursor(args["cursor"]),
            limit=args["limit"] + 1,
            default_region=services().settings.default_region,
        )
    more = len(found) > args["limit"]
    found = found[: args["limit"]]
    return {"data": found, "next_cursor": encode_cursor(found[-1].id) if more else None}


@bp.post("/huddles/<slug>/members")
@token(MEMBERS)
@writes
@bp.arguments(MemberCreate)
@bp.response(201, MemberSchema)
@bp.alt_response(200, schema=MemberSchema, description="Already a member: blanks filled")
def create_member(body: dict[str, Any], slug: str) -> Any:
    """Add a person (or find them by phone or email and fill their blanks); ``consent``
    subscribes them where they agreed, unless they opted out or the address is suppressed."""
    session = writing()
    huddle = huddle_for(session, slug, MEMBERS)
    try:
        view, added = people.add_member(
            session,
            huddle,
            _changes(body),
            consent_channels=body["consent"],
            actor=actor(),
            default_region=services().settings.default_region,
        )
    except people.MemberError as exc:
        _invalid(exc)
    return view, 201 if added else 200


@bp.get("/huddles/<slug>/members/<int:member_id>")
@token(MEMBERS)
@bp.response(200, MemberSchema)
def get_member(slug: str, member_id: int) -> people.MemberView:
    with reading() as session:
        view = people.get_member(session, huddle_for(session, slug, MEMBERS), member_id)
    if view is None:
        not_found("member")
    return view


@bp.patch("/huddles/<slug>/members/<int:member_id>")
@token(MEMBERS)
@writes
@bp.arguments(_Editable)
@bp.response(200, MemberSchema)
def update_member(body: dict[str, Any], slug: str, member_id: int) -> people.MemberView:
    """Change names, zip, and this huddle's tags (replaced) and fields (null removes one)."""
    session = writing()
    huddle = huddle_for(session, slug, MEMBERS)
    try:
        view = people.update_member(
            session,
            huddle,
            member_id,
            _changes(body),
            default_region=services().settings.default_region,
        )
    except people.MemberError as exc:
        _invalid(exc)
    if view is None:
        not_found("member")
    return view


@bp.post("/huddles/<slug>/members/<int:member_id>/opt-out")
@token(MEMBERS)
@writes
@bp.arguments(OptOut)
@bp.response(200, MemberSchema)
def opt_out(body: dict[str, Any], slug: str, member_id: int) -> people.MemberView:
    """Opt the member out of this huddle on a channel, as they asked you to; the ledger and the
    audit log name you."""
    session = writing()
    huddle = huddle_for(session, slug, MEMBERS)
    view = people.opt_out_for_member(session, huddle, member_id, body["channel"], actor=actor())
    if view is None:
        not_found("member")
    audit.record(
        session,
        audit.OPTED_OUT_FOR_MEMBER,
        actor_id=access().organizer_id,
        actor_email=actor(),
        huddle_id=huddle.id,
        subject=f"member {member_id}",
        detail={"channel": body["channel"]},
        ip=request.remote_addr,
    )
    return view


@bp.get("/huddles/<slug>/members/<int:member_id>/consent")
@token(MEMBERS)
@bp.response(200, ConsentHistory)
def consent_history(slug: str, member_id: int) -> dict[str, Any]:
    """Every consent change about this member in this huddle (or in all), oldest first."""
    with reading() as session:
        events = people.consent_history(session, huddle_for(session, slug, MEMBERS), member_id)
        if events is None:
            not_found("member")
        return {"data": events}


@bp.get("/huddles/<slug>/members/export")
@token(MEMBERS)
@bp.doc(
    responses={
        "200": {"description": "CSV", "content": {"text/csv": {"schema": {"type": "string"}}}}
    }
)
def export(slug: str) -> Response:
    """Every member of the huddle as CSV, with their consent state per channel."""
    with services().sessions.begin() as session:
        huddle = huddle_for(session, slug, MEMBERS)
        audit.record(
            session,
            audit.MEMBERS_EXPORTED,
            actor_id=access().organizer_id,
            actor_email=actor(),
            huddle_id=huddle.id,
            subject=f"huddle {huddle.slug}",
            ip=request.remote_addr,
        )
        huddle_id = huddle.id

    def rows() -> Iterator[str]:
        with reading() as session:
            yield from export_lines(session, session.get_one(Huddle, huddle_id))

    response = Response(stream_with_context(rows()), mimetype="text/csv")
    response.headers["Content-Disposition"] = f'attachment; filename="{slug}-members.csv"'
    return response


@bp.post("/huddles/<slug>/imports")
@token(MEMBERS)
@writes
@bp.arguments(ImportArgs, location="query")
@bp.doc(
    requestBody={
        "required": True,
        "content": {"text/csv": {"schema": {"type": "string"}}},
        "description": "The CSV file (phone, email, first_name, last_name, zip, tags, …)",
    }
)
@bp.response(202, ImportSchema)
def start_import(args: dict[str, Any], slug: str) -> imports.ImportStatus:
    """Upload a CSV to import as a worker job; poll it, then read its row errors."""
    settings = services().settings
    with reading() as session:
        huddle = huddle_for(session, slug, MEMBERS)
    request.max_content_length = imports.MAX_UPLOAD_BYTES
    try:
        import_id = imports.store(
            services().sessions,
            huddle_slug=huddle.slug,
            upload=request.stream,
            source_name=args["filename"],
            consent_channels=frozenset(args["consent"]),
            default_region=settings.default_region,
            actor=actor(),
        )
    except ImportFileError as exc:
        fail(422, "invalid_file", str(exc))
    session = writing()
    audit.record(
        session,
        audit.MEMBERS_IMPORTED,
        actor_id=access().organizer_id,
        actor_email=actor(),
        huddle_id=huddle.id,
        subject=f"import {import_id}",
        detail={"filename": args["filename"], "consent": sorted(args["consent"])},
        ip=request.remote_addr,
    )
    try:
        jobs.enqueue_import(import_id)
    except redis.RedisError:
        log.warning("import %s stored; Redis is away, the sweep will give it a job", import_id)
    return imports.status(session, import_id)


@bp.get("/huddles/<slug>/imports/<int:import_id>")
@token(MEMBERS)
@bp.response(200, ImportSchema)
def import_status(slug: str, import_id: int) -> imports.ImportStatus:
    with reading() as session:
        huddle = huddle_for(session, slug, MEMBERS)
        try:
            return imports.status(session, import_id, huddle_ids={huddle.id})
        except LookupError:
            not_found("import")


@bp.get("/huddles/<slug>/imports/<int:import_id>/errors")
@token(MEMBERS)
@bp.arguments(PageArgs, location="query")
@bp.response(200, RowErrorPage)
def import_errors(args: dict[str, Any], slug: str, import_id: int) -> dict[str, Any]:
    """The rows that were not imported, by line, with why."""
    with reading() as session:
        huddle = huddle_for(session, slug, MEMBERS)
        try:
            imports.status(session, import_id, huddle_ids={huddle.id})
        except LookupError:
            not_found("import")
        page = imports.error_page(
            session, import_id, after=decode_cursor(args["cursor"]), limit=args["limit"] + 1
        )
    more = len(page) > args["limit"]
    page = page[: args["limit"]]
    return {"data": page, "next_cursor": encode_cursor(page[-1].line) if more else None}
