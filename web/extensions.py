"""The Flask extensions and the process's services, as views reach them."""

from __future__ import annotations

from flask import current_app
from flask_wtf.csrf import CSRFProtect

from outreach.app.services import Services
from web.throttle import Throttle

EXTENSION = "outreach"  # app.extensions key of the process's Services, set by create_app
THROTTLE = "outreach.throttle"

csrf = CSRFProtect()  # every POST but the webhooks' carries the session's token


def services() -> Services:
    found: Services = current_app.extensions[EXTENSION]
    return found


def throttle() -> Throttle:
    found: Throttle = current_app.extensions[THROTTLE]
    return found
