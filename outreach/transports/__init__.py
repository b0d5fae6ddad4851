"""SMS transports: the seam between the campaign sender and the provider.

``sms_transport(settings)`` picks the backend ``SMS_BACKEND`` names; the sender sees only the
:class:`SmsTransport` protocol and the error tree documented in :mod:`outreach.transports.base`.

========  =============================================  =================================
backend   module                                         thread-safety
========  =============================================  =================================
twilio    :mod:`outreach.transports.twilio`              one transport per thread
sandbox   :mod:`outreach.transports.sandbox`             thread-safe
========  =============================================  =================================
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from outreach.settings import ConfigError, Settings
from outreach.transports.base import (
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
    "sms_transport",
]


def sms_transport(
    settings: Settings, *, sessions: sessionmaker[Session] | None = None
) -> SmsTransport:
    """The SMS transport ``settings.sms_backend`` names (the sandbox needs ``sessions``)."""
    if settings.sms_backend == "twilio":
        from outreach.transports.twilio import TwilioSmsTransport  # noqa: PLC0415 - SDK on demand

        return TwilioSmsTransport.from_settings(settings)
    if settings.sms_backend == "sandbox":
        from outreach.transports.sandbox import SandboxSmsTransport  # noqa: PLC0415

        if sessions is None:
            raise ConfigError("the sandbox SMS backend stores texts: pass sessions=")
        return SandboxSmsTransport(settings, sessions)
    raise ConfigError(f"unknown SMS_BACKEND {settings.sms_backend!r}")
