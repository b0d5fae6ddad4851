"""Process-wide services for jobs, built once per worker process from the environment."""

from __future__ import annotations

import functools

from outreach.services import Services
from outreach.settings import Settings

_override: Services | None = None


@functools.cache
def _from_env() -> Services:
    return Services.build(Settings.from_env())


def services() -> Services:
    """The services jobs use: the ones a test or the runner installed, else from the environment."""
    return _override if _override is not None else _from_env()


def install(svc: Services | None) -> None:
    """Use ``svc`` for jobs in this process (tests, in-process workers); None: the default."""
    global _override  # noqa: PLW0603 - one slot per process, by design
    _override = svc
