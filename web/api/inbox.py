"""``/api/v1``: inbox."""

from __future__ import annotations

from flask_smorest import Blueprint

bp = Blueprint("api_inbox", __name__, url_prefix="/api/v1", description="Inbox")
