"""Blueprints that providers call: signature-checked, CSRF-exempt, no session."""

from __future__ import annotations

from flask import Flask


def register(app: Flask) -> None:
    """Register every provider blueprint on ``app``."""
    from webhooks import sendgrid_events, twilio_sms  # noqa: PLC0415

    app.register_blueprint(twilio_sms.bp)
    app.register_blueprint(sendgrid_events.bp)
