"""Joining a huddle from its public web page (``/join/<slug>``): consent, then confirmations.

Email is double opt-in: the form makes the email subscription ``pending`` and sends a signed link
(:mod:`~outreach.join.links`); only following the link makes it ``active``. Texts start the same
double opt-in as a keyword join (``outreach.sms.inbound``): the SMS subscription goes ``pending``
and the number gets the confirmation ask; the member must still reply YES by text. A web form
proves nothing about who holds a phone, so even huddles in single opt-in mode get the ask here.

Every consent change is written through :mod:`outreach.consent` with the exact disclosure text
the page showed, the IP and the user agent.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from outreach import consent
from outreach.addresses.emails import mask_email
from outreach.app.clock import utcnow
from outreach.app.settings import Settings
from outreach.consent.unsubscribe import SUPPRESSION_REASON as UNSUBSCRIBE_REASON
from outreach.join.confirmations import send_confirmation_ask, send_confirmation_email
from outreach.join.form import ValidJoin, email_disclosure, sms_disclosure
from outreach.join.links import ConfirmTarget, confirm_url, make_confirm_token
from outreach.models import ConsentEvent, Huddle, Member, Suppression
from outreach.models import consent as c
from outreach.models import members as m

log = logging.getLogger(__name__)

ASK_AGAIN_AFTER = timedelta(hours=24)  # a re-submitted form texts the same number at most daily
MAX_USER_AGENT = 500
CONFIRMED_BY_LINK = "clicked the email confirmation link (web join form)"

# Member-requested email suppressions, which the member's own confirmed re-join lifts. Anything
# else (bounces, spam reports) is the provider's word and stays.
_LIFTABLE_REASONS = frozenset({UNSUBSCRIBE_REASON})

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
        refused = send_confirmation_ask(settings, sessions, plan.sms_member, huddle)
        if refused is not None:
            outcome.sms = SMS_OPTED_OUT if refused.code == "21610" else SMS_FAILED
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
            member_id=member.id,
            huddle_id=huddle.id,
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
            member_id=member.id,
            huddle_id=huddle.id,
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
            if row.reason in _LIFTABLE_REASONS and consent.lift_suppression(
                session,
                channel=m.EMAIL,
                address=target.email,
                scope=row.scope,
                reasons=_LIFTABLE_REASONS,
            ):
                result.lifted.append(row.scope)
        return result
