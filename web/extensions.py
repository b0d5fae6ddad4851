"""Access to the process's services from a request."""

from __future__ import annotations

from flask import current_app

from outreach.app.services import Services


def services() -> Services:
    found: Services = current_app.extensions["outreach"]
    return found
