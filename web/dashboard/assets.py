"""The dashboard's stylesheet and script, shipped in the ``templates`` package (no build step)."""

from __future__ import annotations

from flask import Blueprint, send_from_directory
from flask.typing import ResponseReturnValue

from outreach.app.resources import templates_folder
from web.access import public

bp = Blueprint("assets", __name__)

MAX_AGE = 3600


@bp.get("/static/<path:filename>")
@public("the dashboard's stylesheet and script")
def static(filename: str) -> ResponseReturnValue:
    return send_from_directory(templates_folder() / "static", filename, max_age=MAX_AGE)
