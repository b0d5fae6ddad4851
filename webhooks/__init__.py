"""What providers and mail clients call: signature-checked, CSRF-exempt, no session.

Twilio's inbound texts and status callbacks (:mod:`webhooks.twilio`), SendGrid's event webhook
(:mod:`webhooks.sendgrid_events`) and the email unsubscribe pages (:mod:`webhooks.unsubscribe`).
"""

from __future__ import annotations

from flask import Blueprint, current_app

from outreach.app.services import Services

EXTENSION = "outreach"  # app.extensions key of the process's Services (web.create_app sets it)


def services() -> Services:
    """The process's services, from a request."""
    found: Services = current_app.extensions[EXTENSION]
    return found


def blueprints() -> list[Blueprint]:
    """Every blueprint of this package, for the app factory to register (and exempt from CSRF)."""
    from webhooks import sendgrid_events, twilio, unsubscribe  # noqa: PLC0415

    return [twilio.bp, sendgrid_events.bp, unsubscribe.bp]
