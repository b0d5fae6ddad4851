"""STUB: replaced by the feature's pages."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("huddle_settings", __name__, url_prefix="/h/<slug>/settings")
