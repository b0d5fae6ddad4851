"""Email transports: ``email_transport(settings)`` picks the backend ``EMAIL_BACKEND`` names.

The sender sees only :class:`~outreach.transports.email_base.EmailTransport` and the error tree
of :mod:`outreach.transports.base`.

========  =============================================  =================================
backend   module                                         thread-safety
========  =============================================  =================================
sendgrid  :mod:`outreach.transports.sendgrid`            thread-safe
sandbox   :mod:`outreach.transports.email_sandbox`       thread-safe
========  =============================================  =================================
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from outreach.settings import ConfigError, Settings
from outreach.transports.email_base import EmailTransport

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

__all__ = ["email_transport"]


def email_transport(
    settings: Settings, *, sessions: sessionmaker[Session] | None = None
) -> EmailTransport:
    """The email transport ``settings.email_backend`` names (the sandbox needs ``sessions``)."""
    if settings.email_backend == "sendgrid":
        from outreach.transports.sendgrid import SendGridEmailTransport  # noqa: PLC0415 - SDK on demand

        return SendGridEmailTransport.from_settings(settings)
    if settings.email_backend == "sandbox":
        from outreach.transports.email_sandbox import SandboxEmailTransport  # noqa: PLC0415

        if sessions is None:
            raise ConfigError("the sandbox email backend stores emails: pass sessions=")
        return SandboxEmailTransport(settings, sessions)
    raise ConfigError(f"unknown EMAIL_BACKEND {settings.email_backend!r}")
