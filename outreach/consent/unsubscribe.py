"""Email unsubscribe: signed links that name a member, a huddle and a channel, and what they do.

Every campaign email carries a link (``/unsubscribe/<token>``) in its body and in its
``List-Unsubscribe`` header (RFC 8058 one-click). The token is the only credential: it is signed
with the secret key (itsdangerous, salt ``unsubscribe``), so nobody can unsubscribe someone else
by guessing ids, and it needs no cookie, session or login.

How long a link works: :data:`TOKEN_MAX_AGE`, 400 days. CAN-SPAM wants the opt-out to work for at
least 30 days after the message is sent, the brief asks for 60; people dig up old emails, and an
unsubscribe link that says "expired" invites a spam report, so we keep them working for over a
year. Rotating ``SECRET_KEY`` invalidates every outstanding link (the page then explains how to
reach the organizers).

What an unsubscribe does (:func:`unsubscribe`):

* ``huddle``: the member's subscription to that huddle on that channel moves to ``opted_out``
  (created in that state if there was none, so an import can't quietly re-add them).
* ``all`` ("all email from this network"): every subscription of the member on the channel moves
  to ``opted_out``, and the address gets a suppression with scope ``*``, checked at send time.

Each change writes its ledger row through :func:`outreach.consent.set_subscription_state`; a
repeated request changes nothing and writes nothing.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass, field
from typing import Any

from itsdangerous import BadData, SignatureExpired, URLSafeTimedSerializer
from sqlalchemy import select
from sqlalchemy.orm import Session

from outreach import consent
from outreach.app.settings import Settings
from outreach.models import Huddle, Member, Subscription
from outreach.models import consent as c
from outreach.models import members as m

log = logging.getLogger(__name__)

SALT = "unsubscribe"
TOKEN_MAX_AGE = 400 * 24 * 3600  # seconds; see the module docstring
SUPPRESSION_REASON = "unsubscribe"  # a member-requested suppression: their own act may lift it

SCOPE_HUDDLE = "huddle"
SCOPE_ALL = "all"
SCOPES = (SCOPE_HUDDLE, SCOPE_ALL)


class TokenError(ValueError):
    """An unsubscribe link that can't be used."""


class InvalidToken(TokenError):
    """Not a token we signed (tampered, truncated, signed with another key)."""


class ExpiredToken(TokenError):
    """A token we signed, older than :data:`TOKEN_MAX_AGE`. ``target`` says what it named."""

    def __init__(self, message: str, target: UnsubscribeTarget | None = None) -> None:
        super().__init__(message)
        self.target = target


@dataclass(frozen=True)
class UnsubscribeTarget:
    member_id: int
    huddle_id: int
    channel: str


def _serializer(settings: Settings) -> URLSafeTimedSerializer:
    return _serializer_for(settings.secret_key)


@functools.lru_cache(maxsize=8)
def _serializer_for(secret_key: str) -> URLSafeTimedSerializer:
    """One serializer per key: a campaign signs a link for every recipient."""
    return URLSafeTimedSerializer(secret_key, salt=SALT)


def make_token(settings: Settings, member_id: int, huddle_id: int, channel: str) -> str:
    """A URL-safe signed token naming (member, huddle, channel)."""
    if channel not in m.CHANNELS:
        raise ValueError(f"unknown channel {channel!r}")
    return str(_serializer(settings).dumps([int(member_id), int(huddle_id), channel]))


def read_token(settings: Settings, token: str) -> UnsubscribeTarget:
    """What ``token`` names; :class:`InvalidToken` or :class:`ExpiredToken` if it can't be used."""
    serializer = _serializer(settings)
    try:
        payload = serializer.loads(token, max_age=TOKEN_MAX_AGE)
    except SignatureExpired as exc:
        # The signature is good, only old: what it names is trustworthy (for a helpful page).
        target = None
        if exc.payload is not None:
            try:
                target = _target(serializer.load_payload(exc.payload))
            except (BadData, InvalidToken):
                target = None
        raise ExpiredToken("unsubscribe link expired", target) from None
    except BadData:
        raise InvalidToken("unsubscribe link is not valid") from None
    return _target(payload)


def _target(payload: Any) -> UnsubscribeTarget:
    if (
        isinstance(payload, list)
        and len(payload) == 3
        and all(isinstance(x, int) and not isinstance(x, bool) for x in payload[:2])
        and payload[2] in m.CHANNELS
    ):
        return UnsubscribeTarget(payload[0], payload[1], payload[2])
    raise InvalidToken("unsubscribe link names nothing we know")


def unsubscribe_url(settings: Settings, token: str) -> str:
    """PUBLIC_BASE_URL + ``/unsubscribe/<token>``; a relative path without a base URL."""
    path = f"/unsubscribe/{token}"
    return (settings.public_base_url or "") + path


@dataclass(frozen=True)
class Subject:
    """What a valid link is about, loaded for a page."""

    member: Member
    huddle: Huddle
    channel: str


def load(session: Session, target: UnsubscribeTarget) -> Subject | None:
    """The member and huddle a token names, or None if either is gone."""
    member = session.get(Member, target.member_id)
    huddle = session.get(Huddle, target.huddle_id)
    if member is None or huddle is None:
        return None
    return Subject(member, huddle, target.channel)


@dataclass
class UnsubscribeResult:
    scope: str
    huddle_names: list[str] = field(default_factory=list)  # subscriptions moved to opted_out
    suppressed: bool = False  # a network-wide suppression was added now

    @property
    def changed(self) -> bool:
        return bool(self.huddle_names) or self.suppressed


def unsubscribe(
    session: Session, subject: Subject, scope: str, provenance: consent.Provenance
) -> UnsubscribeResult:
    """Apply an unsubscribe in the caller's transaction. Repeating it changes nothing."""
    if scope not in SCOPES:
        raise ValueError(f"unknown unsubscribe scope {scope!r}")
    member, channel = subject.member, subject.channel
    result = UnsubscribeResult(scope)
    address = consent.address_for(member, channel)
    if address is None:
        # The member's address was removed since the email went out: nothing left to reach.
        log.info("unsubscribe for member %s: no %s address left", member.id, channel)
        return result
    huddles = [subject.huddle]
    if scope == SCOPE_ALL:
        ids = session.scalars(
            select(Subscription.huddle_id).where(
                Subscription.member_id == member.id, Subscription.channel == channel
            )
        ).all()
        others = [i for i in ids if i != subject.huddle.id]
        if others:
            huddles += list(
                session.scalars(select(Huddle).where(Huddle.id.in_(others)).order_by(Huddle.id))
            )
    for huddle in huddles:
        current = consent.get_subscription(session, member, huddle, channel)
        if current is not None and current.state == m.OPTED_OUT:
            continue
        consent.set_subscription_state(
            session,
            member=member,
            huddle=huddle,
            channel=channel,
            state=m.OPTED_OUT,
            provenance=provenance,
        )
        result.huddle_names.append(huddle.name)
    if scope == SCOPE_ALL and not consent.is_suppressed(session, channel, address):
        consent.suppress(
            session,
            channel=channel,
            address=address,
            reason=SUPPRESSION_REASON,
            scope=c.ALL_SENDERS,
            detail=provenance.detail,
        )
        # The network-wide opt-out is consent evidence of its own, beyond the huddles above.
        consent.record(
            session,
            member_id=member.id,
            huddle_id=None,
            channel=channel,
            address=address,
            action=c.OPT_OUT,
            provenance=provenance,
        )
        result.suppressed = True
    return result
