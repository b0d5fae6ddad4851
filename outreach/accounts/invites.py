"""Invitation and password-reset links: signed, expiring, and good for one password.

A link is an itsdangerous ``URLSafeTimedSerializer`` token (keyed by the secret key, one salt per
purpose) naming the account and a fingerprint of its password state: the password hash and the
session version. Setting a password changes both, and disabling an account or signing out
everywhere changes the version, so a link works until it is used and never after.
The fingerprint is a digest: the token is signed, not encrypted, and must not carry the hash.

The emails are rendered from ``templates/accounts/`` and sent through the configured email
transport (the sandbox writes them to the outbox). Send after the transaction that made the
account commits: a provider call must never hold the database's write lock.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from itsdangerous import BadData, SignatureExpired, TimestampSigner, URLSafeTimedSerializer
from jinja2 import Environment, StrictUndefined, select_autoescape
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from outreach.addresses.emails import mask_email
from outreach.app.clock import utcnow
from outreach.app.resources import template_loader
from outreach.app.settings import Settings
from outreach.models import Organizer
from outreach.providers import email_transport
from outreach.providers.email import EmailRecipient, EmailSendResult, OutboundEmail

log = logging.getLogger(__name__)

MAX_TOKEN_LENGTH = 400  # ours are about 100 characters; anything far longer is not ours


@dataclass(frozen=True)
class Purpose:
    """What a link is for: its salt (an invitation never resets a password), life and path."""

    name: str
    salt: str
    max_age: int  # seconds
    path: str  # under PUBLIC_BASE_URL


INVITE = Purpose("invite", "account-invite", 7 * 24 * 3600, "/invite/")
RESET = Purpose("reset", "password-reset", 3600, "/reset/")


class LinkError(ValueError):
    """A link that cannot be used: ``InvalidLink``, ``ExpiredLink`` or ``UsedLink``."""


class InvalidLink(LinkError):
    """Not a link we signed (tampered, cut short), or for an account that is gone."""


class ExpiredLink(LinkError):
    """Signed by us, but older than its purpose allows."""


class UsedLink(LinkError):
    """The password was set since (or the account was disabled): the link has done its work."""


def _fingerprint(organizer: Organizer) -> str:
    state = f"{organizer.email}|{organizer.password_hash or ''}|{organizer.session_version}"
    return hashlib.sha256(state.encode()).hexdigest()[:32]


def _serializer(
    settings: Settings, purpose: Purpose, now: datetime | None
) -> URLSafeTimedSerializer:
    """A serializer whose clock is ``now`` (default: the project's clock, which tests freeze)."""
    moment = int((now or utcnow()).timestamp())

    class _SignerAtNow(TimestampSigner):
        def get_timestamp(self) -> int:
            return moment

    return URLSafeTimedSerializer(settings.secret_key, salt=purpose.salt, signer=_SignerAtNow)


def make_token(
    settings: Settings, purpose: Purpose, organizer: Organizer, *, now: datetime | None = None
) -> str:
    payload = [organizer.id, _fingerprint(organizer)]
    return str(_serializer(settings, purpose, now).dumps(payload))


def open_link(
    session: Session,
    settings: Settings,
    purpose: Purpose,
    token: str,
    *,
    now: datetime | None = None,
    lock: bool = False,
) -> Organizer:
    """The account this link may set a password for; raises a :class:`LinkError` if none.

    ``lock`` (in the transaction that sets the password) holds the account's row, so two
    submissions of one link cannot both set a password.
    """
    if len(token) > MAX_TOKEN_LENGTH:
        raise InvalidLink("not a link we sent")
    try:
        payload = _serializer(settings, purpose, now).loads(token, max_age=purpose.max_age)
    except SignatureExpired:
        raise ExpiredLink("the link expired") from None
    except BadData:
        raise InvalidLink("not a link we sent") from None
    if not (
        isinstance(payload, list)
        and len(payload) == 2
        and isinstance(payload[0], int)
        and isinstance(payload[1], str)
    ):
        raise InvalidLink("not a link we sent")
    organizer = session.get(Organizer, payload[0], with_for_update=lock)
    if organizer is None:
        raise InvalidLink("the account is gone")
    if organizer.disabled_at is not None or not hmac.compare_digest(
        payload[1], _fingerprint(organizer)
    ):
        raise UsedLink("the link was used already")
    return organizer


def awaiting(session: Session) -> set[str]:
    """The addresses invited who have not set a password yet (a new link may be sent them)."""
    query = select(Organizer.email).where(
        Organizer.password_hash.is_(None), Organizer.disabled_at.is_(None)
    )
    return set(session.scalars(query))


def link_url(base_url: str, purpose: Purpose, token: str) -> str:
    """The absolute link for the email: ``<base>/invite/<token>`` or ``<base>/reset/<token>``."""
    return f"{base_url.rstrip('/')}{purpose.path}{token}"


@functools.cache
def _emails() -> Environment:
    return Environment(
        loader=template_loader("accounts"),
        undefined=StrictUndefined,
        autoescape=select_autoescape(["html"]),
    )


def send_invitation(
    settings: Settings,
    sessions: sessionmaker[Session],
    *,
    to: str,
    name: str,
    invited_by: str,
    where: str,
    url: str,
) -> EmailSendResult:
    """Email the invitation link; ``where`` says in words what the account may use."""
    context = {
        "name": name,
        "invited_by": invited_by,
        "where": where,
        "url": url,
        "days": INVITE.max_age // 86400,
    }
    return _send(
        settings,
        sessions,
        to=to,
        subject="You're invited to Huddle Outreach",
        template="invite_email",
        context=context,
        category="account-invite",
    )


def send_reset(
    settings: Settings, sessions: sessionmaker[Session], *, to: str, name: str, url: str
) -> EmailSendResult:
    """Email the link that sets a new password."""
    context = {"name": name, "url": url, "minutes": RESET.max_age // 60}
    return _send(
        settings,
        sessions,
        to=to,
        subject="Set a new Huddle Outreach password",
        template="reset_email",
        context=context,
        category="password-reset",
    )


def _send(
    settings: Settings,
    sessions: sessionmaker[Session],
    *,
    to: str,
    subject: str,
    template: str,
    context: dict[str, Any],
    category: str,
) -> EmailSendResult:
    email = OutboundEmail(
        from_email=sender_address(context["url"]),
        from_name="Huddle Outreach",
        subject=subject,
        html=_emails().get_template(f"{template}.html").render(**context),
        text=_emails().get_template(f"{template}.txt").render(**context),
        # "confirmation": the sandbox's kind for a transactional email with a link
        recipients=[EmailRecipient(to=to, reference=f"confirmation:{category}")],
        categories=[category],
    )
    transport = email_transport(settings, sessions=sessions)
    try:
        result = transport.send(email)
    finally:
        transport.close()
    log.info("sent %s to %s", category, mask_email(to))
    return result


def sender_address(url: str) -> str:
    """``no-reply@`` the link's host: account emails come from the service, not a huddle."""
    host = url.partition("://")[2].split("/")[0].split(":")[0] or "localhost"
    return f"no-reply@{host if '.' in host else host + '.localdomain'}"
