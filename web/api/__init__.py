"""The JSON API at ``/api/v1``: bearer tokens, one error shape, and an OpenAPI 3.1 document
generated from the code (flask-smorest) at ``/api/v1/openapi.json``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Flask
from flask.typing import ResponseReturnValue

from web.access import public
from web.api import campaigns, core, huddles, inbox, members, segments
from web.extensions import csrf

BLUEPRINTS = (huddles.bp, members.bp, segments.bp, campaigns.bp, inbox.bp)
SPEC_ENDPOINT = "api-docs.openapi_json"


def init_app(app: Flask) -> None:
    app.config.update(
        API_TITLE="Huddle Outreach",
        API_VERSION="v1",
        OPENAPI_VERSION="3.1.0",
        OPENAPI_URL_PREFIX=core.PREFIX,
        OPENAPI_JSON_PATH="openapi.json",
    )
    api = core.OutreachApi(
        app,
        spec_kwargs={
            "security": [{core.BEARER: []}],
            "info": {
                "description": "Members, segments, campaigns and the inbox of the huddles your "
                'token may use. Errors are {"error": {"code", "message", "details"}}.'
            },
        },
    )
    api.spec.components.security_scheme(core.BEARER, {"type": "http", "scheme": "bearer"})
    for blueprint in BLUEPRINTS:
        api.register_blueprint(blueprint)
        csrf.exempt(blueprint)  # bearer tokens, never cookies: nothing to forge across sites
    spec_view: Callable[[], Any] = app.view_functions[SPEC_ENDPOINT]

    @public("the API's description")
    def openapi_json() -> ResponseReturnValue:
        return spec_view()

    app.view_functions[SPEC_ENDPOINT] = openapi_json
    app.teardown_request(core.close_session)
