"""Sending the confirmations a join asks for: the email with its link, the text asking for YES.

Both go out after the join's transaction commits: a provider call must never hold the database's
write lock, and the sandbox transports write rows of their own.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

from jinja2 import Environment, StrictUndefined, select_autoescape
from sqlalchemy.orm import Session, sessionmaker

from outreach.addresses.phones import mask_phone
from outreach.app.resources import template_loader
from outreach.app.settings import Settings
from outreach.join.links import CONFIRM_MAX_AGE
from outreach.messages import copy
from outreach.models import Huddle, Member
from outreach.providers import OutboundSms, SendError, email_transport, sms_transport
from outreach.providers.email import EmailRecipient, OutboundEmail
from outreach.providers.twilio.error_policy import parse_error_policy
from outreach.sms.error_actions import apply_error_action

log = logging.getLogger(__name__)


def send_confirmation_ask(
    settings: Settings, sessions: sessionmaker[Session], member: Member, huddle: Huddle
) -> SendError | None:
    """Text the confirmation ask (the inbound flow's); the provider's refusal, if it refused.

    A refusal whose code the error policy names (21610: they STOPped this sender at the carrier;
    invalid or landline numbers) has the consequences it has for a campaign text.
    """
    assert member.phone is not None  # noqa: S101 - only members with the number get here
    message = OutboundSms(
        to=member.phone,
        body=copy.confirmation_ask(huddle),
        from_number=huddle.sender_number,
        messaging_service_sid=huddle.messaging_service_sid,
        reference=f"confirmation:{member.id}",
    )
    transport = sms_transport(settings, sessions=sessions)
    try:
        transport.send(message)
    except SendError as exc:
        log.warning("join confirmation ask to %s failed: %s", mask_phone(member.phone), exc)
        action = parse_error_policy(settings.twilio_error_policy).get(exc.code or "")
        if action is not None:
            with sessions.begin() as session:
                apply_error_action(
                    session,
                    action=action,
                    code=exc.code or "",
                    address=member.phone,
                    huddle=huddle,
                    member_id=member.id,
                    campaign_id=None,
                )
        return exc
    finally:
        transport.close()
    return None


@functools.cache
def _emails() -> Environment:
    return Environment(
        loader=template_loader("join"),
        undefined=StrictUndefined,
        autoescape=select_autoescape(["html"]),
    )


def send_confirmation_email(
    settings: Settings,
    sessions: sessionmaker[Session],
    member: Member,
    huddle: Huddle,
    url: str,
) -> Any:
    """Email ``member`` the link that confirms their email subscription to ``huddle``."""
    if not member.email:
        raise ValueError(f"member {member.id} has no email address")
    from_email = huddle.email_from_address or _fallback_sender(settings)
    context: dict[str, Any] = {
        "huddle_name": huddle.name,
        "first_name": member.first_name or "",
        "url": url,
        "days": CONFIRM_MAX_AGE // 86400,
        "postal_address": huddle.postal_address or "",
        "contact": huddle.support_contact or huddle.email_from_address or "",
    }
    email = OutboundEmail(
        from_email=from_email,
        from_name=huddle.email_from_name or huddle.name,
        subject=f"Please confirm: emails from {huddle.name}",
        html=_emails().get_template("confirm_email.html").render(**context),
        text=_emails().get_template("confirm_email.txt").render(**context),
        recipients=[EmailRecipient(to=member.email, reference=f"confirmation:{member.id}")],
        categories=["join-confirmation", f"huddle-{huddle.slug}"],
    )
    transport = email_transport(settings, sessions=sessions)
    try:
        return transport.send(email)
    finally:
        transport.close()


def _fallback_sender(settings: Settings) -> str:
    host = (settings.public_base_url or "").partition("://")[2].split("/")[0].split(":")[0]
    return f"no-reply@{host or 'localhost'}"
