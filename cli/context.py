"""The CLI's lazily built settings and services, shared by every command group."""

from __future__ import annotations

import click

from outreach.app.services import Services
from outreach.app.settings import ConfigError, Settings
from workers import context as worker_context


class Context:
    """Lazily built settings and services, so ``--help`` works without a database."""

    def __init__(self) -> None:
        self._settings: Settings | None = None
        self._services: Services | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            try:
                self._settings = Settings.from_env()
            except ConfigError as exc:
                raise click.ClickException(f"configuration: {exc}") from None
        return self._settings

    @property
    def services(self) -> Services:
        if self._services is None:
            self._services = Services.build(self.settings)
            worker_context.install(self._services)  # jobs run in-process use the same services
        return self._services


pass_ctx = click.make_pass_decorator(Context, ensure=True)
