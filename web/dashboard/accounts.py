"""STUB: replaced by the feature's pages."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("accounts", __name__)
