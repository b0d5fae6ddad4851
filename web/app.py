"""The application factory: ``gunicorn 'web:create_app()'``."""

from __future__ import annotations

import logging

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

import webhooks
from outreach.app.resources import templates_folder
from outreach.app.services import Services
from outreach.app.settings import Settings
from web.extensions import EXTENSION, THROTTLE, csrf
from web.throttle import Throttle

MAX_REQUEST_BYTES = 2 * 1024 * 1024  # any request body; CSV uploads are streamed in chunks


def create_app(settings: Settings | None = None, services: Services | None = None) -> Flask:
    settings = settings or (services.settings if services else Settings.from_env())
    services = services or Services.build(settings)
    app = Flask(__name__, template_folder=str(templates_folder()), static_folder=None)
    app.config.update(
        SECRET_KEY=settings.secret_key,
        MAX_CONTENT_LENGTH=MAX_REQUEST_BYTES,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.is_production,
        REMEMBER_COOKIE_SECURE=settings.is_production,
        REMEMBER_COOKIE_HTTPONLY=True,
        REMEMBER_COOKIE_SAMESITE="Lax",
        JOIN_RATE_LIMIT="5 per 10 minutes",  # join form submissions per IP
    )
    app.extensions[EXTENSION] = services
    app.extensions[THROTTLE] = Throttle(services.redis)
    csrf.init_app(app)
    # One trusted proxy hop (the platform's router): the URL Twilio signed is rebuilt from it.
    app.wsgi_app = ProxyFix(app.wsgi_app, x_for=1, x_proto=1, x_host=1)  # type: ignore[method-assign]

    from web import api, auth, dashboard, health, join, metrics, pages  # noqa: PLC0415

    metrics.init_app(app)
    auth.init_app(app)
    api.init_app(app)
    app.register_blueprint(health.bp)
    app.register_blueprint(pages.bp)
    dashboard.init_app(app)
    app.register_blueprint(join.bp)
    for blueprint in webhooks.blueprints():  # signature-checked or token-carrying: no session
        app.register_blueprint(blueprint)
        csrf.exempt(blueprint)
    if not app.logger.handlers or settings.environment != "test":
        logging.basicConfig(
            level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s"
        )
    return app
