"""STUB: replaced by the feature's pages."""

from __future__ import annotations

from flask import Blueprint, render_template
from flask.typing import ResponseReturnValue

from outreach.accounts.access import INBOX
from web.dashboard.core import huddle_page

bp = Blueprint("overview", __name__, url_prefix="/h/<slug>")


@bp.get("/")
@huddle_page(INBOX)
def show(slug: str) -> ResponseReturnValue:
    return render_template("overview/show.html")
