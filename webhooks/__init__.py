"""What providers and mail clients call: signature-checked, CSRF-exempt, no session.

Twilio's two webhooks are a plain WSGI app in front of Flask (``webhooks.twilio``); SendGrid's
event webhook and the unsubscribe pages are blueprints.
"""

from __future__ import annotations

from flask import Flask


def register(app: Flask) -> None:
    """Register every provider blueprint on ``app``."""
    from webhooks import sendgrid_events  # noqa: PLC0415

    app.register_blueprint(sendgrid_events.bp)
