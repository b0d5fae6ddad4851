"""Dashboard pages outside a huddle: the huddles the visitor may see, a new huddle and the audit
log (admins)."""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from sqlalchemy import func, select

from outreach.accounts import audit
from outreach.accounts.access import INBOX, USERS
from outreach.models import Huddle, Subscription
from outreach.people.huddles import HuddleError, create_huddle
from web.access import SIGNED_IN, requires, signed_in
from web.extensions import services

bp = Blueprint("pages", __name__)


@bp.get("/")
@requires(SIGNED_IN)
def home() -> ResponseReturnValue:
    access = signed_in().access
    with services().read_sessions() as session:
        query = (
            select(Huddle.slug, Huddle.name, func.count(Subscription.id))
            .join(Subscription, Subscription.huddle_id == Huddle.id, isouter=True)
            .group_by(Huddle.id)
            .order_by(Huddle.slug)
        )
        if not access.is_admin:
            query = query.where(Huddle.id.in_(access.huddle_ids(INBOX)))
        rows = session.execute(query).all()
    return render_template("dashboard/home.html", huddles=rows, is_admin=access.is_admin)


@bp.get("/audit")
@requires(USERS)
def audit_log() -> ResponseReturnValue:
    """What organizers did, newest first: for admins."""
    with services().read_sessions() as session:
        events = audit.recent(session, limit=200)
        slugs = dict(session.execute(select(Huddle.id, Huddle.slug)).all())
    return render_template("dashboard/audit.html", events=events, slugs=slugs)


# The zones offered first on the new-huddle form; any IANA zone can be typed.
COMMON_ZONES = (
    "America/New_York",
    "America/Chicago",
    "America/Denver",
    "America/Phoenix",
    "America/Los_Angeles",
    "America/Anchorage",
    "Pacific/Honolulu",
    "America/Puerto_Rico",
)
FIELD_LIMIT = 200


@bp.get("/huddles/new")
@requires(USERS)
def new_huddle() -> ResponseReturnValue:
    """A new huddle: network admins only (a huddle's own admins manage its settings)."""
    if not signed_in().access.is_admin:
        abort(404)
    return render_template("dashboard/new_huddle.html", form={}, error=None, zones=COMMON_ZONES)


@bp.post("/huddles/new")
@requires(USERS)
def create_huddle_submit() -> ResponseReturnValue:
    who = signed_in()
    if not who.access.is_admin:
        abort(404)
    form = {k: request.form.get(k, "").strip()[:FIELD_LIMIT] for k in _HUDDLE_FIELDS}
    keywords = [k for k in form["keywords"].replace(",", " ").split() if k]
    try:
        with services().sessions.begin() as session:
            huddle = create_huddle(
                session,
                slug=form["slug"],
                name=form["name"],
                keywords=keywords,
                sender=form["sender"] or None,
                timezone=form["timezone"] or "America/New_York",
            )
            audit.record(
                session,
                audit.HUDDLE_CREATED,
                actor_id=who.organizer_id,
                actor_email=who.access.email,
                huddle_id=huddle.id,
                ip=request.remote_addr,
            )
            slug = huddle.slug
    except HuddleError as exc:
        page = render_template(
            "dashboard/new_huddle.html", form=form, error=str(exc), zones=COMMON_ZONES
        )
        return page, 422
    flash(f"Huddle {form['name']} created. Members join by texting {keywords[0].upper()}.")
    return redirect(url_for("overview.show", slug=slug))


_HUDDLE_FIELDS = ("slug", "name", "keywords", "sender", "timezone")
