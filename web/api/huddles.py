"""``/api/v1/huddles``: the huddles a token may see, and finding one for an endpoint."""

from __future__ import annotations

from typing import Any

import marshmallow as ma
from flask_smorest import Blueprint
from sqlalchemy import select
from sqlalchemy.orm import Session

from outreach.accounts.access import INBOX
from outreach.models import Huddle
from web.api.core import access, not_found, reading, token

bp = Blueprint("api_huddles", __name__, url_prefix="/api/v1", description="Huddles")


class HuddleSchema(ma.Schema):
    id = ma.fields.Integer(required=True)
    slug = ma.fields.String(required=True)
    name = ma.fields.String(required=True)
    keywords = ma.fields.List(ma.fields.String(), required=True)
    timezone = ma.fields.String(required=True)
    country = ma.fields.String(required=True)
    opt_in_mode = ma.fields.String(required=True)
    role = ma.fields.String(required=True, metadata={"description": "admin, organizer, responder"})


def _shown(huddle: Huddle) -> dict[str, Any]:
    return {
        "id": huddle.id,
        "slug": huddle.slug,
        "name": huddle.name,
        "keywords": [k.keyword for k in huddle.keywords],
        "timezone": huddle.timezone,
        "country": huddle.country,
        "opt_in_mode": huddle.opt_in_mode,
        "role": "admin" if access().is_admin else access().roles.get(huddle.id, ""),
    }


class HuddleList(ma.Schema):
    data = ma.fields.List(ma.fields.Nested(HuddleSchema), required=True)


def huddle_for(session: Session, slug: str, capability: str) -> Huddle:
    """The huddle ``slug`` if the token may use ``capability`` in it; 404 otherwise."""
    huddle = session.scalars(select(Huddle).where(Huddle.slug == slug)).first()
    if huddle is None or not access().can(capability, huddle.id):
        not_found("huddle")
    return huddle


@bp.get("/huddles")
@token(INBOX)
@bp.response(200, HuddleList)
def list_huddles() -> dict[str, Any]:
    """The huddles this token may see, with its role in each."""
    with reading() as session:
        huddles = access().visible_huddles(session, INBOX)
        return {"data": [_shown(huddle) for huddle in huddles]}


@bp.get("/huddles/<slug>")
@token(INBOX)
@bp.response(200, HuddleSchema)
def get_huddle(slug: str) -> dict[str, Any]:
    with reading() as session:
        return _shown(huddle_for(session, slug, INBOX))
