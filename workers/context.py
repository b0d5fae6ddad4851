"""Process-wide services for jobs, built once per worker process from the environment."""

from __future__ import annotations

import functools
import threading

from outreach.app.services import Services
from outreach.app.settings import Settings
from outreach.campaigns.leases import Lease

_override: Services | None = None
_lease: Lease | None = None
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


def lease() -> Lease | None:
    """This worker process's lease (``outreach worker`` installs one); None in-process."""
    return _lease


def install_lease(value: Lease | None) -> None:
    global _lease  # noqa: PLW0603 - one per process, by design
    _lease = value


def lease_token() -> str | None:
    current = _lease
    return current.holding if current is not None else None


def may_send() -> bool:
    current = _lease
    return current is None or current.may_send()
