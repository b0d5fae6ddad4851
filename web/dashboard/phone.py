"""STUB: replaced by the feature's pages."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("phone", __name__, url_prefix="/h/<slug>/phone")
