"""Joining a huddle from its public web page (``/join/<slug>``): validation, consent, confirmations.

Email is double opt-in: the form makes the email subscription ``pending`` and sends a signed link
(salt ``join-confirm``, valid :data:`CONFIRM_MAX_AGE`); only following the link makes it
``active``. Texts start the same double opt-in as a keyword join (``outreach.sms.inbound``): the SMS
subscription goes ``pending`` and the number gets the confirmation ask; the member must still
reply YES by text, which the inbound flow already handles. A web form proves nothing about who
holds a phone, so even huddles in single opt-in mode get the ask here.

Every consent change is written through :mod:`outreach.consent` with the exact disclosure text
the page showed (:func:`sms_disclosure`, :func:`email_disclosure`), the IP and the user agent.

Sending happens after the database transaction commits (the sandbox transports write their own
rows, and a provider call must never hold the database's write lock).
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import redis
from itsdangerous import BadData, SignatureExpired, URLSafeTimedSerializer
from jinja2 import Environment, StrictUndefined, select_autoescape
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from outreach import consent
from outreach.addresses.emails import InvalidEmail, mask_email, normalize_email
from outreach.addresses.phones import InvalidPhoneNumber, mask_phone, normalize_phone
from outreach.app.clock import utcnow
from outreach.app.resources import template_loader
from outreach.app.settings import Settings
from outreach.consent.unsubscribe import SUPPRESSION_REASON as UNSUBSCRIBE_REASON
from outreach.messages import copy
from outreach.models import ConsentEvent, Huddle, Member, Suppression
from outreach.models import consent as c
from outreach.models import members as m

log = logging.getLogger(__name__)

CONFIRM_SALT = "join-confirm"
CONFIRM_MAX_AGE = 7 * 24 * 3600  # seconds
RATE_LIMIT = 5  # submissions per IP ...
RATE_WINDOW = 10 * 60  # ... per this many seconds (a fixed window in Redis)
ASK_AGAIN_AFTER = timedelta(hours=24)  # a re-submitted form texts the same number at most daily
MAX_FIRST_NAME = 100
MAX_USER_AGENT = 500
CONFIRMED_BY_LINK = "clicked the email confirmation link (web join form)"

# Member-requested email suppressions, which the member's own confirmed re-join lifts. Anything
# else (bounces, spam reports) is the provider's word and stays.
_LIFTABLE_REASONS = frozenset({UNSUBSCRIBE_REASON})
_ZIP = re.compile(r"^(\d{5})(?:-?\d{4})?$")


# --- the words the page shows, and the ledger records ---------------------------------------


def _frequency(huddle: Huddle) -> str:
    text = (huddle.message_frequency or "Msg frequency varies").strip().rstrip(".")
    return text[:1].upper() + text[1:]


def sms_disclosure(huddle: Huddle) -> str:
    """The SMS consent text beside the checkbox; recorded verbatim in the ledger."""
    return (
        f"Text me at the number above. By checking this box I agree to receive recurring "
        f"automated text messages from {huddle.name} about local organizing. "
        f"{_frequency(huddle)}. Msg & data rates may apply. Reply HELP for help, STOP to cancel. "
        f"Consent is not a condition of joining, donating or any purchase."
    )


def email_disclosure(huddle: Huddle) -> str:
    """The email consent text by the button; recorded verbatim in the ledger."""
    return (
        f"We'll email you a link to confirm. Once you confirm, {huddle.name} will email you "
        f"about local organizing. Every email has a link to unsubscribe."
    )


# --- the form ---------------------------------------------------------------------------------

FIELDS = ("first_name", "email", "phone", "zip")


@dataclass(frozen=True)
class JoinForm:
    """What the person typed, as typed (re-shown on errors)."""

    first_name: str = ""
    email: str = ""
    phone: str = ""
    zip: str = ""
    sms_consent: bool = False

    @classmethod
    def from_mapping(cls, form: Mapping[str, str]) -> JoinForm:
        def text(name: str) -> str:
            return str(form.get(name, ""))[:300]  # nothing legitimate is longer

        return cls(
            first_name=text("first_name"),
            email=text("email"),
            phone=text("phone"),
            zip=text("zip"),
            sms_consent=form.get("sms_consent") in ("yes", "on", "1", "true"),
        )


@dataclass(frozen=True)
class ValidJoin:
    first_name: str
    email: str
    phone: str | None
    zip: str
    sms_consent: bool


def validate(form: JoinForm, default_region: str = "US") -> tuple[ValidJoin | None, dict[str, str]]:
    """The cleaned values, or per-field error messages a person can act on."""
    errors: dict[str, str] = {}
    first_name = " ".join(form.first_name.split())
    if not first_name:
        errors["first_name"] = "Please tell us your first name."
    elif len(first_name) > MAX_FIRST_NAME:
        errors["first_name"] = f"Please keep your first name under {MAX_FIRST_NAME} characters."
    elif any(ord(ch) < 32 for ch in first_name):
        errors["first_name"] = "Please use only letters, spaces and punctuation."
    email = ""
    if not form.email.strip():
        errors["email"] = "Please enter your email address."
    else:
        try:
            email = normalize_email(form.email)
        except InvalidEmail:
            errors["email"] = "That doesn't look like an email address (like name@example.org)."
    phone: str | None = None
    if form.phone.strip():
        try:
            phone = normalize_phone(form.phone, default_region)
        except InvalidPhoneNumber as exc:
            errors["phone"] = f"That phone number doesn't work: {exc.reason}."
    elif form.sms_consent:
        errors["phone"] = "Add your mobile number to get texts, or untick the box."
    zip_match = _ZIP.match(form.zip.strip())
    if not zip_match:
        errors["zip"] = "Please enter your 5-digit ZIP code."
    if errors:
        return None, errors
    assert zip_match is not None  # noqa: S101 - errors would have returned
    return (
        ValidJoin(first_name, email, phone, zip_match.group(1), form.sms_consent and bool(phone)),
        {},
    )


def allow_submission(
    client: redis.Redis, ip: str | None, *, limit: int = RATE_LIMIT, window: int = RATE_WINDOW
) -> bool:
    """Count a submission from ``ip``: False once it's over ``limit`` in the current window.

    INCR, then EXPIRE when the key has no expiry yet (our Redis may predate EXPIRE NX). Checking
    the TTL on every call means a crash between the two commands can't leave a key forever.
    If Redis is down we let the person through: the form is worth more than the limit.
    """
    key = f"join:rate:{ip or 'unknown'}"
    try:
        pipe = client.pipeline(transaction=True)
        pipe.incr(key)
        pipe.ttl(key)
        count, ttl = pipe.execute()
        if int(ttl) < 0:
            client.expire(key, window)
    except redis.RedisError:
        log.exception("join rate limit unavailable; allowing the submission")
        return True
    return int(count) <= limit


# --- signed confirmation links --------------------------------------------------------------


class ConfirmLinkError(ValueError):
    """A confirmation link that can't be used."""


class InvalidConfirmLink(ConfirmLinkError):
    """Not a link we signed (tampered or cut short)."""


class ExpiredConfirmLink(ConfirmLinkError):
    """Signed by us, older than :data:`CONFIRM_MAX_AGE`."""


@dataclass(frozen=True)
class ConfirmTarget:
    member_id: int
    huddle_id: int
    email: str  # the address confirmed: a link never confirms an address it wasn't sent to


def _confirm_serializer(settings: Settings) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(settings.secret_key, salt=CONFIRM_SALT)


def make_confirm_token(settings: Settings, member_id: int, huddle_id: int, email: str) -> str:
    return str(_confirm_serializer(settings).dumps([member_id, huddle_id, email]))


def read_confirm_token(settings: Settings, token: str) -> ConfirmTarget:
    try:
        payload = _confirm_serializer(settings).loads(token, max_age=CONFIRM_MAX_AGE)
    except SignatureExpired:
        raise ExpiredConfirmLink("confirmation link expired") from None
    except BadData:
        raise InvalidConfirmLink("confirmation link is not valid") from None
    if (
        isinstance(payload, list)
        and len(payload) == 3
        and isinstance(payload[0], int)
        and isinstance(payload[1], int)
        and isinstance(payload[2], str)
    ):
        return ConfirmTarget(payload[0], payload[1], payload[2])
    raise InvalidConfirmLink("confirmation link names nothing we know")


def confirm_url(base_url: str, slug: str, token: str) -> str:
    """``<base>/join/<slug>/confirm/<token>``: the link in the confirmation email."""
    return f"{base_url.rstrip('/')}/join/{slug}/confirm/{token}"


# --- submitting the form --------------------------------------------------------------------

# JoinOutcome.email
EMAIL_SENT = "sent"  # confirmation email sent: check your inbox
EMAIL_ALREADY = "already"  # already confirmed: nothing to do
EMAIL_BLOCKED = "blocked"  # the address bounced or reported spam: we can't email it
EMAIL_FAILED = "failed"  # the provider refused or was unreachable: try again later

# JoinOutcome.sms
SMS_SENT = "sent"  # the confirmation ask went out: reply YES
SMS_ASKED_RECENTLY = "asked"  # asked within ASK_AGAIN_AFTER: reply YES to that text
SMS_ALREADY = "already"  # already getting texts
SMS_OPTED_OUT = "opted_out"  # this number said STOP to this sender: we may not text it
SMS_NO_SENDER = "no_sender"  # this huddle has no number to text from
SMS_FAILED = "failed"  # the provider refused or was unreachable


@dataclass
class JoinOutcome:
    member_id: int
    email: str
    sms: str | None = None  # None: no texts asked for
    sender_number: str | None = None  # the number texts come from (to text YES / START to)


@dataclass
class _Plan:
    """What the transaction decided; the sending happens after it commits."""

    outcome: JoinOutcome
    member: Member
    sms_member: Member | None = None
    send_email: bool = False
    send_sms: bool = False


@dataclass(frozen=True)
class Visitor:
    """Who submitted: recorded on every ledger row."""

    ip: str | None
    user_agent: str | None

    def provenance(self, detail: str) -> consent.Provenance:
        return consent.Provenance(
            source=c.SOURCE_FORM,
            detail=detail,
            ip=(self.ip or None) and self.ip[:45],
            user_agent=(self.user_agent or None) and self.user_agent[:MAX_USER_AGENT],
            actor="member",
        )


def submit(
    settings: Settings,
    sessions: sessionmaker[Session],
    huddle: Huddle,
    join: ValidJoin,
    visitor: Visitor,
    *,
    base_url: str,
) -> JoinOutcome:
    """Record the join (pending subscriptions + ledger), then send the confirmation(s)."""
    for attempt in (1, 2):
        try:
            with sessions() as session, session.begin():
                plan = _record_join(session, huddle, join, visitor)
            break
        except IntegrityError:
            # The same person submitted twice at once (double tap) and the other request created
            # the member first; the second pass finds it.
            if attempt == 2:
                raise
    outcome = plan.outcome
    if plan.send_email:
        token = make_confirm_token(settings, plan.member.id, huddle.id, join.email)
        url = confirm_url(base_url, huddle.slug, token)
        try:
            send_confirmation_email(settings, sessions, plan.member, huddle, url)
        except Exception:  # any provider failure: the subscription stays pending, say so
            log.exception("join confirmation email to %s failed", mask_email(join.email))
            outcome.email = EMAIL_FAILED
    if plan.send_sms and plan.sms_member is not None:
        outcome.sms = _send_confirmation_ask(settings, sessions, plan.sms_member, huddle)
    return outcome


def _record_join(session: Session, huddle: Huddle, join: ValidJoin, visitor: Visitor) -> _Plan:
    huddle = session.get_one(Huddle, huddle.id)
    by_email = session.scalars(select(Member).where(Member.email == join.email)).one_or_none()
    by_phone = (
        session.scalars(select(Member).where(Member.phone == join.phone)).one_or_none()
        if join.phone
        else None
    )
    if by_email is None and by_phone is not None and by_phone.email is None:
        # Joined by text first, now by web: the same person, one record.
        member = by_phone
        member.email = join.email
    elif by_email is None:
        member = Member(email=join.email, created_at=utcnow())
        if join.phone and by_phone is None:
            member.phone = join.phone
        session.add(member)
    else:
        member = by_email
        if join.phone and member.phone is None and by_phone is None:
            member.phone = join.phone
    # An unauthenticated form may fill in what we don't know, never overwrite what we do:
    # anyone can type anyone's email address.
    member.first_name = member.first_name or join.first_name
    member.zip = member.zip or join.zip
    session.flush()

    plan = _Plan(JoinOutcome(member_id=member.id, email=EMAIL_SENT), member)
    _request_email(session, plan, huddle, join, visitor)
    if join.sms_consent and join.phone:
        # The texts go to whichever member holds the number. When it isn't the member above
        # (the number is on someone else's record, or this person's record already has another
        # number), we keep the two apart and don't move the number onto this record: an
        # unauthenticated form must not be able to take a number (and its subscriptions) from
        # one record to another, or silently replace a working number. The SMS double opt-in
        # still needs a YES from that phone, so asking it is safe either way.
        sms_member = member if member.phone == join.phone else by_phone
        if sms_member is None:
            sms_member = Member(
                phone=join.phone, first_name=join.first_name, zip=join.zip, created_at=utcnow()
            )
            session.add(sms_member)
            session.flush()
        plan.sms_member = sms_member
        _request_sms(session, plan, huddle, sms_member, join.phone, visitor)
    return plan


def _request_email(
    session: Session, plan: _Plan, huddle: Huddle, join: ValidJoin, visitor: Visitor
) -> None:
    member = plan.member
    subscription = consent.get_subscription(session, member, huddle, m.EMAIL)
    if subscription is not None and subscription.state == m.ACTIVE:
        plan.outcome.email = EMAIL_ALREADY
        return
    blocking = [
        s
        for s in _email_suppressions(session, join.email, huddle)
        if s.reason not in _LIFTABLE_REASONS
    ]
    if blocking:
        log.info("join: %s is suppressed (%s)", mask_email(join.email), blocking[0].reason)
        plan.outcome.email = EMAIL_BLOCKED
        return
    provenance = visitor.provenance(email_disclosure(huddle))
    if subscription is not None and subscription.state == m.PENDING:
        # Asked again before confirming: same state, but this request is consent evidence too.
        consent.record(
            session,
            member=member,
            huddle=huddle,
            channel=m.EMAIL,
            address=join.email,
            action=c.OPT_IN_REQUESTED,
            provenance=provenance,
        )
    else:
        # New, or opted out before: only the confirmation link (the member's own act) activates.
        consent.set_subscription_state(
            session,
            member=member,
            huddle=huddle,
            channel=m.EMAIL,
            state=m.PENDING,
            provenance=provenance,
        )
    plan.send_email = True


def _email_suppressions(session: Session, address: str, huddle: Huddle) -> list[Suppression]:
    return list(
        session.scalars(
            select(Suppression).where(
                Suppression.channel == m.EMAIL,
                Suppression.address == address,
                Suppression.scope.in_([c.ALL_SENDERS, huddle.sender_key]),
                Suppression.lifted_at.is_(None),
            )
        )
    )


def _request_sms(
    session: Session,
    plan: _Plan,
    huddle: Huddle,
    member: Member,
    phone: str,
    visitor: Visitor,
) -> None:
    outcome = plan.outcome
    outcome.sender_number = huddle.sender_number
    if not (huddle.sender_number or huddle.messaging_service_sid):
        outcome.sms = SMS_NO_SENDER
        return
    subscription = consent.get_subscription(session, member, huddle, m.SMS)
    if subscription is not None and subscription.state == m.ACTIVE:
        outcome.sms = SMS_ALREADY
        return
    if (subscription is not None and subscription.state == m.OPTED_OUT) or consent.is_suppressed(
        session, m.SMS, phone, huddle.sender_key
    ):
        # They said STOP (or the carrier did): only their own START by text brings texts back.
        outcome.sms = SMS_OPTED_OUT
        return
    provenance = visitor.provenance(sms_disclosure(huddle))
    if subscription is not None and subscription.state == m.PENDING:
        last_ask = session.scalar(
            select(ConsentEvent.created_at)
            .where(
                ConsentEvent.channel == m.SMS,
                ConsentEvent.address == phone,
                ConsentEvent.huddle_id == huddle.id,
                ConsentEvent.action == c.OPT_IN_REQUESTED,
            )
            .order_by(ConsentEvent.created_at.desc())
            .limit(1)
        )
        if last_ask is not None and utcnow() - last_ask < ASK_AGAIN_AFTER:
            # A re-submitted form (or someone typing another person's number again and again)
            # doesn't get to text a number more than once a day.
            outcome.sms = SMS_ASKED_RECENTLY
            return
        consent.record(
            session,
            member=member,
            huddle=huddle,
            channel=m.SMS,
            address=phone,
            action=c.OPT_IN_REQUESTED,
            provenance=provenance,
        )
    else:
        consent.set_subscription_state(
            session,
            member=member,
            huddle=huddle,
            channel=m.SMS,
            state=m.PENDING,
            provenance=provenance,
        )
    outcome.sms = SMS_SENT
    plan.send_sms = True


def _send_confirmation_ask(
    settings: Settings, sessions: sessionmaker[Session], member: Member, huddle: Huddle
) -> str:
    """Text the confirmation ask (the inbound flow's); the SMS outcome to show."""
    from outreach.providers import OutboundSms, SendError, sms_transport  # noqa: PLC0415
    from outreach.sms.receipts import apply_error_action, parse_error_policy  # noqa: PLC0415

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
            # 21610 (they STOPped this sender at the carrier), invalid or landline numbers:
            # the same consequences as for a campaign text.
            with sessions() as session, session.begin():
                apply_error_action(
                    session,
                    action=action,
                    code=exc.code or "",
                    address=member.phone,
                    huddle=session.get_one(Huddle, huddle.id),
                    member=session.get(Member, member.id),
                    campaign=None,
                )
        return SMS_OPTED_OUT if exc.code == "21610" else SMS_FAILED
    finally:
        transport.close()
    return SMS_SENT


# --- the confirmation email -----------------------------------------------------------------


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
    from outreach.providers import email_transport  # noqa: PLC0415 - SDK on demand
    from outreach.providers.email import EmailRecipient, OutboundEmail  # noqa: PLC0415

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


# --- following the link ---------------------------------------------------------------------

# ConfirmResult.status
CONFIRMED = "confirmed"
ALREADY_CONFIRMED = "already"
NOT_PENDING = "not_pending"  # unsubscribed since, or never asked: the link does nothing


@dataclass
class ConfirmResult:
    status: str
    huddle_name: str
    lifted: list[str] = field(default_factory=list)  # suppressions the re-join lifted


def confirm(
    sessions: sessionmaker[Session],
    huddle: Huddle,
    target: ConfirmTarget,
    visitor: Visitor,
) -> ConfirmResult:
    """Activate the pending email subscription a valid link names. Twice is harmless."""
    with sessions() as session, session.begin():
        member = session.get(Member, target.member_id)
        if member is None or member.email != target.email or target.huddle_id != huddle.id:
            return ConfirmResult(NOT_PENDING, huddle.name)
        huddle = session.get_one(Huddle, huddle.id)
        subscription = consent.get_subscription(session, member, huddle, m.EMAIL)
        if subscription is not None and subscription.state == m.ACTIVE:
            return ConfirmResult(ALREADY_CONFIRMED, huddle.name)
        if subscription is None or subscription.state != m.PENDING:
            # Unsubscribed after asking: an old link must not undo that.
            return ConfirmResult(NOT_PENDING, huddle.name)
        consent.set_subscription_state(
            session,
            member=member,
            huddle=huddle,
            channel=m.EMAIL,
            state=m.ACTIVE,
            provenance=visitor.provenance(CONFIRMED_BY_LINK),
        )
        result = ConfirmResult(CONFIRMED, huddle.name)
        # Their own confirmed re-join lifts their own earlier "no email at all" (the other
        # huddles' subscriptions stay opted out); provider suppressions stay.
        for row in _email_suppressions(session, target.email, huddle):
            if row.reason in _LIFTABLE_REASONS:
                row.lifted_at = utcnow()
                result.lifted.append(row.scope)
        return result
