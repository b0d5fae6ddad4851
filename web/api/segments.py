"""``/api/v1/huddles/<slug>/segments``: saved segments, and counting or sampling any filter.

A filter is the segment language of ``docs/segments.md``; ``@name`` stands for the huddle's saved
segment of that name, as in a campaign. A filter that cannot be used is a 422 whose details hold
the 0-based ``position`` of the culprit, so a form can point at it.
"""

from __future__ import annotations

from typing import Any, NoReturn

import marshmallow as ma
from flask_smorest import Blueprint
from sqlalchemy import select
from sqlalchemy.orm import Session

from outreach.accounts.access import SEGMENTS
from outreach.app.clock import utcnow
from outreach.campaigns import CampaignError, resolve_segment, segments
from outreach.models import Huddle, Segment
from outreach.models import members as m
from web.api.core import fail, not_found, reading, token, writing
from web.api.huddles import huddle_for
from web.api.idempotency import writes

bp = Blueprint("api_segments", __name__, url_prefix="/api/v1", description="Segments")

MAX_FILTER = 2000
MAX_SAMPLE = 20

_FILTER = ma.fields.String(
    load_default="",
    validate=ma.validate.Length(max=MAX_FILTER),
    metadata={"description": "A filter (docs/segments.md), or @name for a saved segment"},
)
_CHANNEL = ma.fields.String(
    load_default=m.SMS,
    validate=ma.validate.OneOf(m.CHANNELS),
    metadata={"description": "Whose subscription counts: active on this channel"},
)


class SegmentSchema(ma.Schema):
    id = ma.fields.Integer(required=True)
    name = ma.fields.String(required=True)
    filter = ma.fields.String(required=True)
    created_at = ma.fields.DateTime(required=True)


class SegmentList(ma.Schema):
    data = ma.fields.List(ma.fields.Nested(SegmentSchema), required=True)


class SegmentCreate(ma.Schema):
    name = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=100))
    filter = ma.fields.String(required=True, validate=ma.validate.Length(max=MAX_FILTER))


class SegmentCountArgs(ma.Schema):
    filter = _FILTER
    channel = _CHANNEL


class SegmentSampleArgs(SegmentCountArgs):
    limit = ma.fields.Integer(load_default=5, validate=ma.validate.Range(min=1, max=MAX_SAMPLE))


class SegmentCount(ma.Schema):
    count = ma.fields.Integer(required=True)


class SampledMember(ma.Schema):
    id = ma.fields.Integer(required=True)
    display_name = ma.fields.String(required=True)
    zip = ma.fields.String(required=True, allow_none=True)


class SegmentSample(ma.Schema):
    data = ma.fields.List(ma.fields.Nested(SampledMember), required=True)


def _bad_filter(exc: segments.SegmentError) -> NoReturn:
    fail(422, "invalid", exc.message, field="filter", position=exc.position)


def _filter_text(session: Session, huddle: Huddle, text: str) -> str:
    """The filter itself, or the saved one ``@name`` names (positions count in what was sent)."""
    if not text.strip().startswith("@"):
        return text
    try:
        return resolve_segment(session, huddle, text.strip())
    except CampaignError as exc:
        fail(422, "invalid", str(exc), field="filter")


@bp.get("/huddles/<slug>/segments")
@token(SEGMENTS)
@bp.response(200, SegmentList)
def list_segments(slug: str) -> dict[str, Any]:
    """The huddle's saved segments, by name."""
    with reading() as session:
        huddle = huddle_for(session, slug, SEGMENTS)
        saved = session.scalars(
            select(Segment).where(Segment.huddle_id == huddle.id).order_by(Segment.name)
        ).all()
        return {"data": saved}


@bp.post("/huddles/<slug>/segments")
@token(SEGMENTS)
@writes
@bp.arguments(SegmentCreate)
@bp.response(201, SegmentSchema)
def save_segment(body: dict[str, Any], slug: str) -> Segment:
    """Save a filter under a name, checked first; campaigns and counts can then say ``@name``."""
    session = writing()
    huddle = huddle_for(session, slug, SEGMENTS)
    try:
        return segments.save_segment(
            session, huddle_id=huddle.id, name=body["name"], filter_text=body["filter"]
        )
    except segments.SegmentError as exc:
        _bad_filter(exc)
    except segments.SegmentNameError as exc:
        fail(422, "invalid", str(exc), field="name")


@bp.get("/huddles/<slug>/segments/<name>")
@token(SEGMENTS)
@bp.response(200, SegmentSchema)
def get_segment(slug: str, name: str) -> Segment:
    with reading() as session:
        huddle = huddle_for(session, slug, SEGMENTS)
        saved = session.scalars(
            select(Segment).where(Segment.huddle_id == huddle.id, Segment.name == name)
        ).first()
    if saved is None:
        not_found("segment")
    return saved


@bp.post("/huddles/<slug>/segments/count")
@token(SEGMENTS)
@bp.arguments(SegmentCountArgs)
@bp.response(200, SegmentCount)
def count_segment(body: dict[str, Any], slug: str) -> dict[str, int]:
    """How many members subscribed on the channel (active, unless the filter says a status)
    match; suppressions are applied at send time, not here. Changes nothing."""
    with reading() as session:
        huddle = huddle_for(session, slug, SEGMENTS)
        text = _filter_text(session, huddle, body["filter"])
        try:
            total = segments.count(
                session,
                huddle_id=huddle.id,
                channel=body["channel"],
                filter_text=text,
                now=utcnow(),
            )
        except segments.SegmentError as exc:
            _bad_filter(exc)
    return {"count": total}


@bp.post("/huddles/<slug>/segments/sample")
@token(SEGMENTS)
@bp.arguments(SegmentSampleArgs)
@bp.response(200, SegmentSample)
def sample_segment(body: dict[str, Any], slug: str) -> dict[str, Any]:
    """A few matching members, the first found by id (not a random draw), to check a filter."""
    with reading() as session:
        huddle = huddle_for(session, slug, SEGMENTS)
        text = _filter_text(session, huddle, body["filter"])
        try:
            people = segments.sample(
                session,
                huddle_id=huddle.id,
                channel=body["channel"],
                filter_text=text,
                now=utcnow(),
                limit=body["limit"],
            )
        except segments.SegmentError as exc:
            _bad_filter(exc)
    return {"data": people}
