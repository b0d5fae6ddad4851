"""``/api/v1``: segments."""

from __future__ import annotations

from flask_smorest import Blueprint

bp = Blueprint("api_segments", __name__, url_prefix="/api/v1", description="Segments")
