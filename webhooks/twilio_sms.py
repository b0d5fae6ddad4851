"""Twilio inbound SMS and status callbacks (filled in by the inbound issue)."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("twilio_sms", __name__, url_prefix="/webhooks/twilio")
