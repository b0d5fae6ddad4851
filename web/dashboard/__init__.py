"""The organizer dashboard: one blueprint per feature, each huddle's pages under ``/h/<slug>/``."""

from __future__ import annotations

from flask import Flask

from web.dashboard.core import tabs


def init_app(app: Flask) -> None:
    from web.dashboard import (  # noqa: PLC0415 - blueprints import the app's helpers
        accounts,
        assets,
        campaigns,
        inbox,
        members,
        overview,
        phone,
        segments,
        settings,
    )

    features = (accounts, assets, campaigns, inbox, members, overview, phone, segments, settings)
    for module in features:
        app.register_blueprint(module.bp)
    app.jinja_env.globals["huddle_tabs"] = tabs
