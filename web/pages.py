"""Dashboard pages. For now a placeholder home that lists huddles and their member counts.

There is no organizer sign-in yet, so in production the home page lists nothing: huddle names
and sizes are for organizers, and each organizer only for their own huddles.
"""

from __future__ import annotations

from flask import Blueprint, render_template
from flask.typing import ResponseReturnValue
from sqlalchemy import func, select

from outreach.models import Huddle, Subscription
from web.extensions import services

bp = Blueprint("pages", __name__)


@bp.get("/")
def home() -> ResponseReturnValue:
    svc = services()
    if svc.settings.is_production:
        return render_template("dashboard/home.html", huddles=None, signed_out=True)
    with svc.read_sessions() as session:
        rows = session.execute(
            select(Huddle.slug, Huddle.name, func.count(Subscription.id))
            .join(Subscription, Subscription.huddle_id == Huddle.id, isouter=True)
            .group_by(Huddle.id)
            .order_by(Huddle.slug)
        ).all()
    return render_template("dashboard/home.html", huddles=rows)
