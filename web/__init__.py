"""The organizer dashboard, the JSON API and the app factory."""

from web.app import create_app

__all__ = ["create_app"]
