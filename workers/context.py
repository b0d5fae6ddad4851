"""Process-wide services for jobs, built once per worker process from the environment."""

from __future__ import annotations

import functools
import threading

from outreach.app.services import Services
from outreach.app.settings import Settings

_override: Services | None = None
_stopping = threading.Event()


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


def stop_requested() -> bool:
    """True once this worker process was asked to stop (SIGTERM, Ctrl-C): jobs wind down."""
    return _stopping.is_set()


def request_stop() -> None:
    _stopping.set()


def clear_stop() -> None:
    """For tests and for a worker started again in the same process."""
    _stopping.clear()
