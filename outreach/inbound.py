"""Inbound texts: what a supporter's text means, and what we do about it, in one transaction.

The order is the compliance order: dedupe (a repeated MessageSid changes nothing and gets the same
answer), then opt-out (committed before the webhook answers), then HELP, join keywords,
confirmations, START, the profile conversation, and last the inbox. An opt-out is never swallowed
by a conversation or a keyword.

This is the webhook's hot path, so it reads what every text needs once, with plain SQL on the
session's own connection and in its transaction (:class:`_Statements`): the MessageSid claim, the
huddles on the number texted (with their keywords), and the member with their SMS subscriptions.
The two commonest texts, a member's reply for the inbox and HELP, are answered from that snapshot
(:func:`_answer_from_snapshot`). Everything that changes consent or a conversation goes through the
ORM helpers below and ``outreach.consent``, as before.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, ClassVar

from sqlalchemy import Boolean, Dialect, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

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

# Parsing and validating a number costs about as much as the whole database transaction; the
# numbers we are texted on are few, and a member's texts come in runs (JOIN, YES, name, zip…).
_normalize_phone = functools.lru_cache(maxsize=4096)(try_normalize_phone)


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
    # Pure work first: on SQLite the transaction below holds the database's write lock.
    from_e164 = _normalize_phone(sms.from_raw, default_region)
    to_e164 = _normalize_phone(sms.to, default_region) or sms.to
    try:
        with factory() as session, session.begin():
            sql = _Statements.on(session)
            inbound = sql.claim(sms, from_e164, to_e164[:64], utcnow())
            if inbound is None:
                # Already applied (a retry, or the same MessageSid raced us and won).
                intent, reply = sql.answered(sms.message_sid)
                return InboundResult(intent, reply, duplicate=True)
            outcome = _apply(session, sql, sms, inbound, from_e164, to_e164)
            sql.finish(inbound, outcome)
            return outcome
    except IntegrityError:
        # Another write raced us in another process and won: answer as the MessageSid was.
        with factory() as session:
            existing = session.scalars(
                select(InboundMessage).where(InboundMessage.message_sid == sms.message_sid)
            ).one()
            return InboundResult(existing.intent, existing.reply_text, duplicate=True)


def storable(text: str, limit: int) -> str:
    """Text any database stores: no NUL (PostgreSQL refuses it), no lone surrogates (not UTF-8)."""
    text = text[:limit].replace("\x00", "\ufffd")
    return text.encode("utf-8", "replace").decode("utf-8")


@dataclass
class _Inbound:
    """The inbound_messages row being written: claimed first, completed by ``finish``."""

    id: int
    received_at: datetime
    huddle_id: int | None = None
    member_id: int | None = None
    flagged: bool = False


@dataclass(frozen=True)
class _SenderHuddle:
    """A huddle on the number (or messaging service) texted, as the snapshot read it."""

    id: int
    keywords: tuple[str, ...]


@dataclass(frozen=True)
class _SubscriptionState:
    huddle_id: int
    state: str
    conversation_step: str | None


def _apply(
    session: Session,
    sql: _Statements,
    sms: InboundSms,
    inbound: _Inbound,
    from_e164: str | None,
    to_e164: str,
) -> InboundResult:
    if from_e164 is None:
        log.info("inbound %s from a non-number sender ignored", sms.message_sid)
        return InboundResult(IGNORED, None)

    huddles = sql.huddles_on_sender(to_e164, sms.messaging_service_sid)
    member_id, subscriptions = sql.member(from_e164)
    keywords = {k: huddle for huddle in huddles for k in huddle.keywords}
    result = classify(sms.body, keywords.keys())
    intent = _intent_with_opt_out_type(result, sms.opt_out_type)
    outcome = _answer_from_snapshot(
        session, sql, inbound, intent, huddles, member_id, subscriptions
    )
    if outcome is None:
        outcome = _apply_with_orm(
            session, sms, inbound, intent, result, huddles, member_id, from_e164, to_e164
        )
    log.info(
        "inbound %s from %s: %s%s",
        sms.message_sid,
        mask_phone(from_e164),
        outcome.intent,
        " (flagged)" if inbound.flagged else "",
    )
    return outcome


def _answer_from_snapshot(
    session: Session,
    sql: _Statements,
    inbound: _Inbound,
    intent: Intent,
    huddles: list[_SenderHuddle],
    member_id: int | None,
    subscriptions: list[_SubscriptionState],
) -> InboundResult | None:
    """A member's reply for the inbox, and HELP, answered as ``_dispatch`` would; else None.

    Neither changes consent or a conversation, so what the snapshot read is all they need. The
    snapshot's subscriptions are the member's SMS ones, latest change first (``sms_subscriptions``'s
    order); those on this sender are the ones ``_dispatch`` would look at.
    """
    on_sender_ids = {x.id for x in huddles}
    on_sender = [s for s in subscriptions if s.huddle_id in on_sender_ids]
    if intent in (Intent.OTHER, Intent.SKIP):
        # _profile_answer: nothing to do outside a conversation; _reply_to_inbox: a member's reply.
        if not on_sender or any(s.conversation_step and s.state == m.ACTIVE for s in on_sender):
            return None
        assert member_id is not None  # noqa: S101 - subscriptions exist only for a known member
        inbound.huddle_id = on_sender[0].huddle_id
        inbound.member_id = member_id
        sql.member_replied(member_id, inbound.received_at)
        return InboundResult(intent.value, None)
    if intent is Intent.HELP:
        # _primary_huddle: the member's latest huddle on this sender, else the sender's first.
        if on_sender:
            primary_id: int | None = on_sender[0].huddle_id
        else:
            primary_id = huddles[0].id if huddles else None
        inbound.huddle_id = primary_id
        inbound.member_id = member_id
        primary = session.get_one(Huddle, primary_id) if primary_id is not None else None
        return InboundResult(intent.value, copy.help_text(primary))
    return None


def _apply_with_orm(
    session: Session,
    sms: InboundSms,
    inbound: _Inbound,
    intent: Intent,
    result: Classification,
    sender_huddles: list[_SenderHuddle],
    member_id: int | None,
    from_e164: str,
    to_e164: str,
) -> InboundResult:
    """Everything else: consent changes, joins, confirmations, conversations, strangers."""
    huddles = _load_huddles(session, [x.id for x in sender_huddles])
    by_id = {x.id: x for x in huddles}
    keywords = {k: by_id[x.id] for x in sender_huddles for k in x.keywords if x.id in by_id}
    member = session.get(Member, member_id) if member_id is not None else None
    context = _Context(session, sms, inbound, huddles, member, from_e164, to_e164)
    outcome = _dispatch(context, intent, result, keywords)
    if context.member is not None:
        inbound.member_id = context.member.id
    return outcome


def _load_huddles(session: Session, ids: list[int]) -> list[Huddle]:
    if not ids:
        return []
    return list(session.scalars(select(Huddle).where(Huddle.id.in_(ids)).order_by(Huddle.id)))


class _Statements:
    """The hot path's SQL, run on the session's connection inside its transaction.

    Plain DB-API calls: for these few statements SQLAlchemy's statement building, compilation
    cache lookup and result machinery cost several times the database work itself. Values go
    through the columns' own bind processors (the same conversions the ORM applies), so the rows
    are exactly what the ORM would have written. Written with ``?`` placeholders, turned into
    ``%s`` for drivers with the format/pyformat paramstyle (psycopg).
    """

    _by_dialect: ClassVar[dict[tuple[str, str], _Prepared]] = {}

    def __init__(self, prepared: _Prepared, dbapi_connection: Any) -> None:
        self.p = prepared
        self.dbapi = dbapi_connection

    @classmethod
    def on(cls, session: Session) -> _Statements:
        connection = session.connection()  # begins the transaction (BEGIN IMMEDIATE on SQLite)
        dialect = connection.dialect
        key = (dialect.name, dialect.paramstyle)
        prepared = cls._by_dialect.get(key)
        if prepared is None:
            prepared = cls._by_dialect[key] = _Prepared.for_dialect(dialect)
        return cls(prepared, connection.connection.driver_connection)

    def _rows(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        cursor = self.dbapi.cursor()
        try:
            cursor.execute(sql, params)
            return list(cursor.fetchall()) if cursor.description is not None else []
        finally:
            cursor.close()

    def claim(
        self, sms: InboundSms, from_e164: str | None, to_number: str, now: datetime
    ) -> _Inbound | None:
        """Insert the row, claiming the MessageSid; None when it is already there.

        A concurrent transaction claiming the same MessageSid makes this wait for it (the unique
        index), then do nothing: dedupe holds across processes without an error to catch.
        """
        p = self.p
        rows = self._rows(
            p.claim,
            (
                sms.message_sid,
                sms.from_raw,
                from_e164,
                to_number,
                sms.body,
                IGNORED,
                p.bind_bool(False),
                p.bind_bool(False),
                p.bind_time(now),
            ),
        )
        return _Inbound(id=rows[0][0], received_at=now) if rows else None

    def answered(self, message_sid: str) -> tuple[str, str | None]:
        intent, reply = self._rows(self.p.answered, (message_sid,))[0]
        return intent, reply

    def huddles_on_sender(
        self, to_e164: str, messaging_service_sid: str | None
    ) -> list[_SenderHuddle]:
        if messaging_service_sid:
            rows = self._rows(self.p.huddles_or_service, (to_e164, messaging_service_sid))
        else:
            rows = self._rows(self.p.huddles, (to_e164,))
        keywords: dict[int, list[str]] = {}
        for huddle_id, keyword in rows:  # ordered by huddle id, then keyword
            found = keywords.setdefault(huddle_id, [])
            if keyword is not None:
                found.append(keyword)
        return [_SenderHuddle(huddle_id, tuple(words)) for huddle_id, words in keywords.items()]

    def member(self, phone: str) -> tuple[int | None, list[_SubscriptionState]]:
        """The member with this phone and their SMS subscriptions, latest change first."""
        rows = self._rows(self.p.member, (m.SMS, phone))
        if not rows:
            return None, []
        subscriptions = [
            _SubscriptionState(huddle_id, state, step)
            for _, huddle_id, state, step in rows
            if huddle_id is not None
        ]
        return rows[0][0], subscriptions

    def member_replied(self, member_id: int, when: datetime) -> None:
        self._rows(self.p.member_replied, (self.p.bind_time(when), member_id))

    def finish(self, inbound: _Inbound, outcome: InboundResult) -> None:
        self._rows(
            self.p.finish,
            (
                outcome.intent,
                outcome.reply,
                inbound.member_id,
                inbound.huddle_id,
                self.p.bind_bool(inbound.flagged),
                inbound.id,
            ),
        )


def _identity(value: Any) -> Any:
    return value


@dataclass(frozen=True)
class _Prepared:
    """``_Statements``' SQL and value conversions for one dialect and driver paramstyle."""

    claim: str
    answered: str
    huddles: str
    huddles_or_service: str
    member: str
    member_replied: str
    finish: str
    bind_time: Callable[[Any], Any]
    bind_bool: Callable[[Any], Any]

    @classmethod
    def for_dialect(cls, dialect: Dialect) -> _Prepared:
        def sql(text: str) -> str:
            text = " ".join(text.split())
            return text if dialect.paramstyle == "qmark" else text.replace("?", "%s")

        huddles = (
            "SELECT h.id, k.keyword FROM huddles h"
            " LEFT OUTER JOIN join_keywords k ON k.huddle_id = h.id"
            " WHERE {} ORDER BY h.id, k.keyword"
        )
        time_type = InboundMessage.__table__.c.received_at.type
        return cls(
            claim=sql(
                """INSERT INTO inbound_messages (message_sid, from_raw, from_e164, to_number, body,
                intent, flagged, handled, received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
                ON CONFLICT (message_sid) DO NOTHING RETURNING id"""
            ),
            answered=sql("SELECT intent, reply_text FROM inbound_messages WHERE message_sid = ?"),
            huddles=sql(huddles.format("h.sender_number = ?")),
            huddles_or_service=sql(
                huddles.format("(h.sender_number = ? OR h.messaging_service_sid = ?)")
            ),
            member=sql(
                """SELECT mb.id, s.huddle_id, s.state, s.conversation_step FROM members mb
                LEFT OUTER JOIN subscriptions s ON s.member_id = mb.id AND s.channel = ?
                WHERE mb.phone = ? ORDER BY s.updated_at DESC"""
            ),
            member_replied=sql("UPDATE members SET last_replied_at = ? WHERE id = ?"),
            finish=sql(
                """UPDATE inbound_messages SET intent = ?, reply_text = ?, member_id = ?,
                huddle_id = ?, flagged = ? WHERE id = ?"""
            ),
            bind_time=time_type.dialect_impl(dialect).bind_processor(dialect) or _identity,
            bind_bool=Boolean().dialect_impl(dialect).bind_processor(dialect) or _identity,
        )


@dataclass
class _Context:
    session: Session
    sms: InboundSms
    inbound: _Inbound
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
