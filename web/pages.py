"""Dashboard pages: the huddles the signed-in organizer may see; the audit log for admins."""

from __future__ import annotations

from flask import Blueprint, render_template
from flask.typing import ResponseReturnValue
from sqlalchemy import func, select

from outreach.accounts import audit
from outreach.accounts.access import INBOX, USERS
from outreach.models import Huddle, Subscription
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
