"""Inbound texts: what a supporter's text means, and what we do about it, in one transaction.

The order is the compliance order: dedupe (a repeated MessageSid changes nothing and gets the same
answer), then opt-out (committed before the webhook answers), then HELP, join keywords,
confirmations, START, the profile conversation, and last the inbox. An opt-out is never swallowed
by a conversation or a keyword.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, replace
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload, sessionmaker

from outreach import consent, copy
from outreach.classify import Classification, Intent, classify
from outreach.clock import utcnow
from outreach.models import Huddle, InboundMessage, Member, Subscription
from outreach.models import consent as c
from outreach.models import huddles as h
from outreach.models import members as m
from outreach.phones import mask_phone, try_normalize_phone

log = logging.getLogger(__name__)

MAX_STORED_BODY = 5000  # Twilio caps at 1,600; anything longer is stored truncated, not refused
HINT_INTERVAL = timedelta(days=1)
_ZIP = re.compile(r"^\d{5}(?:-?\d{4})?$")

# Intent values stored on inbound_messages beyond the classifier's
IGNORED = "ignored"  # not from a phone number we can text (short code, alphanumeric, garbage)
PROFILE = "profile"  # an answer in the profile conversation
UNKNOWN_SENDER = "unknown"  # a number we have never seen, texting something that is not a keyword


@dataclass(frozen=True)
class InboundSms:
    message_sid: str
    from_raw: str
    to: str
    body: str
    messaging_service_sid: str | None = None
    opt_out_type: str | None = None  # Twilio Advanced Opt-Out: STOP / START / HELP


@dataclass(frozen=True)
class InboundResult:
    intent: str
    reply: str | None
    duplicate: bool = False


def handle_inbound(
    factory: sessionmaker[Session], sms: InboundSms, *, default_region: str = "US"
) -> InboundResult:
    """Apply an inbound text and return the reply to send (None: say nothing)."""
    sms = replace(
        sms,
        message_sid=storable(sms.message_sid, 64),
        from_raw=storable(sms.from_raw, 64),
        to=storable(sms.to, 64),
        body=storable(sms.body, MAX_STORED_BODY),
    )
    try:
        with factory() as session, session.begin():
            existing = session.scalars(
                select(InboundMessage).where(InboundMessage.message_sid == sms.message_sid)
            ).one_or_none()
            if existing is not None:
                return InboundResult(existing.intent, existing.reply_text, duplicate=True)
            return _apply(session, sms, default_region)
    except IntegrityError:
        # The same MessageSid raced us in another process and won: answer as it did.
        with factory() as session:
            existing = session.scalars(
                select(InboundMessage).where(InboundMessage.message_sid == sms.message_sid)
            ).one()
            return InboundResult(existing.intent, existing.reply_text, duplicate=True)


def storable(text: str, limit: int) -> str:
    """Text any database stores: no NUL (PostgreSQL refuses it), no lone surrogates (not UTF-8)."""
    text = text[:limit].replace("\x00", "\ufffd")
    return text.encode("utf-8", "replace").decode("utf-8")


def _apply(session: Session, sms: InboundSms, default_region: str) -> InboundResult:
    now = utcnow()
    body = sms.body
    from_e164 = try_normalize_phone(sms.from_raw, default_region)
    to_e164 = try_normalize_phone(sms.to, default_region) or sms.to
    inbound = InboundMessage(
        message_sid=sms.message_sid,
        from_raw=sms.from_raw,
        from_e164=from_e164,
        to_number=to_e164[:64],
        body=body,
        intent=IGNORED,
        received_at=now,
    )
    session.add(inbound)
    session.flush()  # claims the MessageSid now: a concurrent duplicate waits for us, then fails
    if from_e164 is None:
        log.info("inbound %s from a non-number sender ignored", sms.message_sid)
        return InboundResult(IGNORED, None)

    huddles = _huddles_on_sender(session, to_e164, sms.messaging_service_sid)
    member = session.scalars(select(Member).where(Member.phone == from_e164)).one_or_none()
    keywords = _keywords(huddles)
    result = classify(body, keywords.keys())
    intent = _intent_with_opt_out_type(result, sms.opt_out_type)
    context = _Context(session, sms, inbound, huddles, member, from_e164, to_e164)
    outcome = _dispatch(context, intent, result, keywords)
    inbound.intent = outcome.intent
    inbound.reply_text = outcome.reply
    if context.member is not None:
        inbound.member_id = context.member.id
    log.info(
        "inbound %s from %s: %s%s",
        sms.message_sid,
        mask_phone(from_e164),
        outcome.intent,
        " (flagged)" if inbound.flagged else "",
    )
    return outcome


@dataclass
class _Context:
    session: Session
    sms: InboundSms
    inbound: InboundMessage
    huddles: list[Huddle]
    member: Member | None
    phone: str
    to: str

    def provenance(self) -> consent.Provenance:
        return consent.Provenance(
            source=c.SOURCE_KEYWORD,
            detail=self.sms.body[:500],
            provider_message_id=self.sms.message_sid,
            actor="member",
        )

    def sms_subscriptions(self, huddles: list[Huddle] | None = None) -> list[Subscription]:
        if self.member is None:
            return []
        query = select(Subscription).where(
            Subscription.member_id == self.member.id, Subscription.channel == m.SMS
        )
        if huddles is not None:
            query = query.where(Subscription.huddle_id.in_([x.id for x in huddles]))
        return list(self.session.scalars(query.order_by(Subscription.updated_at.desc())))

    def huddle(self, huddle_id: int) -> Huddle:
        for candidate in self.huddles:
            if candidate.id == huddle_id:
                return candidate
        return self.session.get_one(Huddle, huddle_id)

    def scopes(self) -> list[str]:
        """What a STOP on this number is scoped to: each huddle's sender, or the number itself."""
        keys = {x.sender_key for x in self.huddles}
        keys.add(self.to)
        return sorted(keys)

    def ensure_member(self) -> Member:
        if self.member is None:
            self.member = Member(phone=self.phone, created_at=utcnow())
            self.session.add(self.member)
            self.session.flush()
        return self.member


def _dispatch(
    ctx: _Context, intent: Intent, result: Classification, keywords: dict[str, Huddle]
) -> InboundResult:
    if intent in (Intent.OPT_OUT, Intent.OPT_OUT_ALL):
        return _opt_out(ctx, all_senders=intent is Intent.OPT_OUT_ALL)
    if intent is Intent.HELP:
        ctx.inbound.huddle_id = _primary_huddle_id(ctx)
        return InboundResult(intent.value, copy.help_text(_primary_huddle(ctx)))
    if intent is Intent.JOIN and result.keyword is not None:
        return _join(ctx, keywords[result.keyword])
    if intent is Intent.CONFIRM:
        confirmed = _confirm(ctx)
        if confirmed is not None:
            return confirmed
        resubscribed = _resubscribe(ctx)
        if resubscribed is not None:
            return resubscribed
    if intent is Intent.OPT_IN:
        resubscribed = _resubscribe(ctx)
        if resubscribed is not None:
            return resubscribed
        if _active_subscriptions(ctx):
            huddle = _primary_huddle(ctx)
            return InboundResult(intent.value, copy.message("already_member", huddle))
    if intent is Intent.MAYBE_OPT_OUT:
        # Not certain enough to act on, too close to ignore: an organizer decides.
        ctx.inbound.flagged = True
    conversation = _profile_answer(ctx, intent)
    if conversation is not None:
        return conversation
    return _reply_to_inbox(ctx, intent)


def _intent_with_opt_out_type(result: Classification, opt_out_type: str | None) -> Intent:
    """Twilio's Advanced Opt-Out verdict can only add an opt-out, never remove one."""
    if result.intent in (Intent.OPT_OUT, Intent.OPT_OUT_ALL):
        return result.intent
    kind = (opt_out_type or "").strip().upper()
    if kind == "STOP":
        return Intent.OPT_OUT
    if kind == "START":
        return Intent.OPT_IN
    if kind == "HELP":
        return Intent.HELP
    return result.intent


def _opt_out(ctx: _Context, *, all_senders: bool) -> InboundResult:
    session = ctx.session
    targets = ctx.sms_subscriptions(None if all_senders else ctx.huddles)
    provenance = ctx.provenance()
    changed = 0
    for subscription in targets:
        subscription.conversation_step = None
        if subscription.state == m.OPTED_OUT:
            continue
        assert ctx.member is not None  # noqa: S101 - targets exist only for a known member
        consent.set_subscription_state(
            session,
            member=ctx.member,
            huddle=ctx.huddle(subscription.huddle_id),
            channel=m.SMS,
            state=m.OPTED_OUT,
            provenance=provenance,
        )
        changed += 1
    scopes = [c.ALL_SENDERS] if all_senders else ctx.scopes()
    for scope in scopes:
        consent.suppress(
            session,
            channel=m.SMS,
            address=ctx.phone,
            reason="stop",
            scope=scope,
            detail=f"{ctx.sms.message_sid}: {ctx.sms.body[:200]}",
        )
    if changed == 0:
        # No subscription to move, but the revocation itself is consent evidence.
        consent.record(
            session,
            member=ctx.member,
            huddle=None,
            channel=m.SMS,
            address=ctx.phone,
            action=c.OPT_OUT,
            provenance=provenance,
        )
    ctx.inbound.huddle_id = _primary_huddle_id(ctx)
    intent = Intent.OPT_OUT_ALL if all_senders else Intent.OPT_OUT
    if ctx.sms.opt_out_type:
        # Twilio's Advanced Opt-Out already sent the confirmation; a second would be one too many.
        return InboundResult(intent.value, None)
    return InboundResult(
        intent.value, copy.stop_reply(_primary_huddle(ctx), all_senders=all_senders)
    )


def _join(ctx: _Context, huddle: Huddle) -> InboundResult:
    member = ctx.ensure_member()
    ctx.inbound.huddle_id = huddle.id
    subscription = consent.get_subscription(ctx.session, member, huddle, m.SMS)
    provenance = ctx.provenance()
    if subscription is not None and subscription.state == m.ACTIVE:
        return InboundResult(Intent.JOIN.value, copy.message("already_member", huddle))
    if huddle.opt_in_mode == h.OPT_IN_SINGLE:
        _activate(ctx, huddle, provenance)
        return InboundResult(Intent.JOIN.value, _welcome_and_maybe_ask(ctx, huddle))
    consent.set_subscription_state(
        ctx.session,
        member=member,
        huddle=huddle,
        channel=m.SMS,
        state=m.PENDING,
        provenance=provenance,
    )
    return InboundResult(Intent.JOIN.value, copy.confirmation_ask(huddle))


def _confirm(ctx: _Context) -> InboundResult | None:
    pending = [s for s in ctx.sms_subscriptions(ctx.huddles) if s.state == m.PENDING]
    if not pending:
        return None
    for subscription in pending:
        _activate(ctx, ctx.huddle(subscription.huddle_id), ctx.provenance())
    # One welcome, from the huddle joined most recently; every pending join is now active.
    huddle = ctx.huddle(pending[0].huddle_id)
    ctx.inbound.huddle_id = huddle.id
    return InboundResult(Intent.CONFIRM.value, _welcome_and_maybe_ask(ctx, huddle))


def _activate(ctx: _Context, huddle: Huddle, provenance: consent.Provenance) -> None:
    member = ctx.ensure_member()
    consent.set_subscription_state(
        ctx.session,
        member=member,
        huddle=huddle,
        channel=m.SMS,
        state=m.ACTIVE,
        provenance=provenance,
    )
    # Joining again is the member's own act: it lifts their own STOP for this sender.
    consent.lift_suppression(ctx.session, channel=m.SMS, address=ctx.phone, scope=huddle.sender_key)


def _welcome_and_maybe_ask(ctx: _Context, huddle: Huddle) -> str:
    text = copy.welcome(huddle)
    if huddle.profile_questions and ctx.member is not None:
        subscription = consent.get_subscription(ctx.session, ctx.member, huddle, m.SMS)
        if subscription is not None:
            subscription.conversation_step = "first_name"
            text += "\n" + copy.message("profile_first_name", huddle)
    return text


def _resubscribe(ctx: _Context) -> InboundResult | None:
    """START: bring back only what this member opted out of on this sender."""
    opted_out = [s for s in ctx.sms_subscriptions(ctx.huddles) if s.state == m.OPTED_OUT]
    if not opted_out:
        return None
    assert ctx.member is not None  # noqa: S101 - subscriptions exist only for a known member
    for subscription in opted_out:
        consent.set_subscription_state(
            ctx.session,
            member=ctx.member,
            huddle=ctx.huddle(subscription.huddle_id),
            channel=m.SMS,
            state=m.ACTIVE,
            provenance=ctx.provenance(),
            action=c.RESUBSCRIBE,
        )
    for scope in ctx.scopes():
        consent.lift_suppression(ctx.session, channel=m.SMS, address=ctx.phone, scope=scope)
    huddle = ctx.huddle(opted_out[0].huddle_id)
    ctx.inbound.huddle_id = huddle.id
    return InboundResult(Intent.OPT_IN.value, copy.message("start", huddle))


def _active_subscriptions(ctx: _Context) -> list[Subscription]:
    return [s for s in ctx.sms_subscriptions(ctx.huddles) if s.state == m.ACTIVE]


def _profile_answer(ctx: _Context, intent: Intent) -> InboundResult | None:
    if intent not in (Intent.OTHER, Intent.SKIP, Intent.CONFIRM, Intent.OPT_IN):
        return None
    in_conversation = [
        s for s in ctx.sms_subscriptions(ctx.huddles) if s.conversation_step and s.state == m.ACTIVE
    ]
    if not in_conversation or ctx.member is None:
        return None
    subscription = in_conversation[0]
    huddle = ctx.huddle(subscription.huddle_id)
    member = ctx.member
    ctx.inbound.huddle_id = huddle.id
    answer = " ".join(ctx.sms.body.split())
    skip = intent is Intent.SKIP
    if subscription.conversation_step == "first_name":
        if not skip and answer:
            member.first_name = answer[:100]
        subscription.conversation_step = "zip"
        reply = copy.message("profile_zip", huddle, first_name=member.first_name or "")
        return InboundResult(PROFILE, reply)
    if subscription.conversation_step == "zip":
        if not skip:
            if not _ZIP.match(answer):
                return InboundResult(PROFILE, copy.message("profile_zip_again", huddle))
            member.zip = answer[:5]
        subscription.conversation_step = None
        return InboundResult(PROFILE, copy.message("profile_done", huddle))
    subscription.conversation_step = None
    return None


def _reply_to_inbox(ctx: _Context, intent: Intent) -> InboundResult:
    subscriptions = ctx.sms_subscriptions(ctx.huddles)
    if subscriptions:
        ctx.inbound.huddle_id = subscriptions[0].huddle_id
        assert ctx.member is not None  # noqa: S101
        ctx.member.last_replied_at = ctx.inbound.received_at
        return InboundResult(intent.value, None)
    if intent is Intent.MAYBE_OPT_OUT:
        ctx.inbound.huddle_id = _primary_huddle_id(ctx)
        return InboundResult(intent.value, None)
    # A number that is not a member here: tell them how to join, at most once a day.
    ctx.inbound.huddle_id = _primary_huddle_id(ctx)
    since = ctx.inbound.received_at - HINT_INTERVAL
    hinted = ctx.session.scalar(
        select(InboundMessage.id)
        .where(
            InboundMessage.from_e164 == ctx.phone,
            InboundMessage.intent == UNKNOWN_SENDER,
            InboundMessage.reply_text.is_not(None),
            InboundMessage.received_at >= since,
            InboundMessage.id != ctx.inbound.id,
        )
        .limit(1)
    )
    if hinted is not None:
        return InboundResult(UNKNOWN_SENDER, None)
    huddle = _primary_huddle(ctx)
    keyword = huddle.keywords[0].keyword if huddle is not None and huddle.keywords else None
    program = huddle if huddle is not None and len(ctx.huddles) == 1 else None
    return InboundResult(UNKNOWN_SENDER, copy.message("how_to_join", program, keyword=keyword))


def _primary_huddle(ctx: _Context) -> Huddle | None:
    """The huddle a reply speaks for: the member's latest on this sender, else the first."""
    for subscription in ctx.sms_subscriptions(ctx.huddles):
        return ctx.huddle(subscription.huddle_id)
    return ctx.huddles[0] if len(ctx.huddles) >= 1 else None


def _primary_huddle_id(ctx: _Context) -> int | None:
    huddle = _primary_huddle(ctx)
    return huddle.id if huddle is not None else None


def _huddles_on_sender(
    session: Session, to_e164: str, messaging_service_sid: str | None
) -> list[Huddle]:
    condition = Huddle.sender_number == to_e164
    if messaging_service_sid:
        condition = condition | (Huddle.messaging_service_sid == messaging_service_sid)
    return list(
        session.scalars(
            select(Huddle)
            .options(selectinload(Huddle.keywords))
            .where(condition)
            .order_by(Huddle.id)
        )
    )


def _keywords(huddles: list[Huddle]) -> dict[str, Huddle]:
    return {k.keyword: huddle for huddle in huddles for k in huddle.keywords}
