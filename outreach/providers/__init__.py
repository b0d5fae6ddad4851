"""SMS transports: the seam between the campaign sender and the provider.

``sms_transport(settings)`` picks the backend ``SMS_BACKEND`` names; the sender sees only the
:class:`SmsTransport` protocol and the error tree documented in :mod:`outreach.providers.sms`.

========  =============================================  =================================
backend   module                                         thread-safety
========  =============================================  =================================
twilio    :mod:`outreach.providers.twilio.client`              one transport per thread
sandbox   :mod:`outreach.providers.sandbox.sms`             thread-safe
========  =============================================  =================================
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from outreach.app.settings import ConfigError, Settings
from outreach.providers.email import EmailTransport
from outreach.providers.sms import (
    AccountError,
    InvalidRecipient,
    OutboundSms,
    PermanentSendError,
    RecipientOptedOut,
    SendError,
    SendResult,
    SmsTransport,
    TransientSendError,
    UncertainSendError,
)

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

__all__ = [
    "AccountError",
    "InvalidRecipient",
    "OutboundSms",
    "PermanentSendError",
    "RecipientOptedOut",
    "SendError",
    "SendResult",
    "SmsTransport",
    "TransientSendError",
    "UncertainSendError",
    "email_transport",
    "sms_transport",
]


def sms_transport(
    settings: Settings, *, sessions: sessionmaker[Session] | None = None
) -> SmsTransport:
    """The SMS transport ``settings.sms_backend`` names (the sandbox needs ``sessions``)."""
    if settings.sms_backend == "twilio":
        from outreach.providers.twilio.client import TwilioSmsTransport  # noqa: PLC0415 - SDK on demand

        return TwilioSmsTransport.from_settings(settings)
    if settings.sms_backend == "sandbox":
        from outreach.providers.sandbox.sms import SandboxSmsTransport  # noqa: PLC0415

        if sessions is None:
            raise ConfigError("the sandbox SMS backend stores texts: pass sessions=")
        return SandboxSmsTransport(settings, sessions)
    raise ConfigError(f"unknown SMS_BACKEND {settings.sms_backend!r}")


def email_transport(
    settings: Settings, *, sessions: sessionmaker[Session] | None = None
) -> EmailTransport:
    """The email transport ``settings.email_backend`` names (the sandbox needs ``sessions``)."""
    if settings.email_backend == "sendgrid":
        from outreach.providers.sendgrid.client import SendGridEmailTransport  # noqa: PLC0415

        return SendGridEmailTransport.from_settings(settings)
    if settings.email_backend == "sandbox":
        from outreach.providers.sandbox.email import SandboxEmailTransport  # noqa: PLC0415

        if sessions is None:
            raise ConfigError("the sandbox email backend stores emails: pass sessions=")
        return SandboxEmailTransport(settings, sessions)
    raise ConfigError(f"unknown EMAIL_BACKEND {settings.email_backend!r}")
