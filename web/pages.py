"""Dashboard pages. For now the home page: the huddles the signed-in organizer may see."""

from __future__ import annotations

from flask import Blueprint, render_template
from flask.typing import ResponseReturnValue
from flask_login import login_required
from sqlalchemy import func, select

from outreach.accounts.access import INBOX
from outreach.models import Huddle, Subscription
from web.auth import signed_in
from web.extensions import services

bp = Blueprint("pages", __name__)


@bp.get("/")
@login_required
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
