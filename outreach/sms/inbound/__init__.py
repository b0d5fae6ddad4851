"""Inbound texts: what a supporter's text means, and what we do about it, in one transaction.

The order is the compliance order: dedupe (a repeated MessageSid changes nothing and gets the same
answer), then opt-out (committed before the webhook answers), then HELP, join keywords,
confirmations, START, the profile conversation, and last the inbox. An opt-out is never swallowed
by a conversation or a keyword.

This is the webhook's hot path (bench/inbound_webhook.py measures it). The work that needs no
consent state comes first, outside the transaction (on SQLite, outside the database's one write
lock): normalizing the number texted, and classifying the text with the keywords of the huddles
on it as this process last read them (:class:`_NumberHuddles`: configuration an organizer changes,
not consent). The sender's number is validated only when no member has it on file
(:class:`_Sender`). The transaction reads first, with plain SQL (:class:`_Statements`): the
huddles' stamp, which triggers change with every write to the huddles or their keywords (the
huddles are read and the text classified again only if it moved), then the member with their SMS
subscriptions (:class:`_Snapshot`, with the huddles). Every text is decided from that snapshot
(:func:`_decide`; a stranger's once-a-day hint reads once more), claims its MessageSid with its
row complete (a new number's join completes it once the member exists), and sends its few writes
as plain SQL. A text that changes consent (STOP, a join keyword, YES, START) writes the rows
``outreach.consent`` writes everywhere else: there is no ORM on this path, whose flushes cost a
STOP 5.5 ms in-process (now 1.2).

On PostgreSQL texts run side by side: each locks its member's row before reading
(``_Statements._member_rows``), and one that collides with another's new member or subscription
is decided again (:func:`handle_inbound`).
"""

from __future__ import annotations

import functools
import logging
import re
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, ClassVar

from sqlalchemy import Boolean, Column, Connection, Dialect, Engine, inspect
from sqlalchemy.exc import DBAPIError, IntegrityError

from outreach.addresses.phones import mask_phone, try_normalize_phone
from outreach.app.clock import utcnow
from outreach.app.db import HeldConnections, bind_processor, driver_sql, identity
from outreach.messages import copy
from outreach.models import Huddle, InboundMessage, Member, Subscription
from outreach.models import consent as c
from outreach.models import huddles as h
from outreach.models import members as m
from outreach.models.messaging import HINTED, UNKNOWN_SENDER
from outreach.sms.inbound import classify as classifier
from outreach.sms.inbound.classify import Classification, Intent

log = logging.getLogger(__name__)

MAX_STORED_BODY = 5000  # Twilio caps at 1,600; anything longer is stored truncated, not refused
HINT_INTERVAL = timedelta(days=1)
_ZIP = re.compile(r"^\d{5}(?:-?\d{4})?$")

# Intent values stored on inbound_messages beyond the classifier's
# (and UNKNOWN_SENDER, from outreach.models.messaging: its hint index names it)
IGNORED = "ignored"  # not from a phone number we can text (short code, alphanumeric, garbage)
PROFILE = "profile"  # an answer in the profile conversation
_ROUTINE_INTENTS = frozenset([Intent.OTHER.value, Intent.SKIP.value, Intent.HELP.value, PROFILE])

# Parsing and validating a number costs as much as the database work of a reply; the numbers we
# are texted on are few, and a member's texts come in runs (JOIN, YES, name, zip, replies).
_normalize_phone = functools.lru_cache(maxsize=4096)(try_normalize_phone)


_E164_SHAPE = re.compile(r"\+[1-9][0-9]{6,14}")


@dataclass(frozen=True)
class _Sender:
    """A text's From, as Twilio sent it: E.164 for a phone, else a short code, a name, garbage.

    Validating a number with ``phonenumbers`` costs as much as a tenth of a reply, and at a
    million members the cache above seldom has it. A member's number is stored normalized, so a
    From that has E.164's shape is looked up as it is first: a member on file with it is a valid
    number already checked (normalizing is idempotent). Only other senders are validated.
    """

    raw: str
    region: str

    def on_file_candidate(self) -> str | None:
        return self.raw if _E164_SHAPE.fullmatch(self.raw) else None

    def normalized(self) -> str | None:
        return _normalize_phone(self.raw, self.region)


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
    connections: HeldConnections,
    sms: InboundSms,
    *,
    default_region: str = "US",
) -> InboundResult:
    """Apply an inbound text and return the reply to send (None: say nothing).

    The transaction runs on this thread's held connection. On PostgreSQL two texts about the same
    number run side by side: when both insert the same new member or subscription, the one that
    commits second fails on the unique index and is decided again from what the first committed
    (a 500 would lose the text: Twilio does not retry it). A repeated MessageSid never fails this
    way: its claim waits for the first delivery, then answers as it did.
    """
    sms = replace(
        sms,
        message_sid=storable(sms.message_sid, 64),
        from_raw=storable(sms.from_raw, 64),
        to=storable(sms.to, 64),
        body=storable(sms.body, MAX_STORED_BODY),
    )
    # Pure work first: on SQLite the transaction below holds the database's write lock.
    sender = _Sender(sms.from_raw, default_region)
    to_e164 = _normalize_phone(sms.to, default_region) or sms.to
    directory = _directory(connections.engine)
    number = (to_e164, sms.messaging_service_sid)
    attempt = 1
    while True:
        try:
            # Configuration, not consent: the huddles on the number as this process last read
            # them, checked by their stamp inside the transaction (read again if it moved).
            known = directory.get(number)
            result = classifier.classify(sms.body, known.keywords) if known is not None else None
            with connections.begin_on_driver() as connection:
                sql = _Statements.on(connection)
                stamp = sql.directory_stamp()
                if known is None or known.stamp != stamp:
                    known = _NumberHuddles(stamp, sql.huddles(*number))
                    _remember(directory, number, known)
                    result = None
                if result is None:  # classified here only when the huddles were just read
                    result = classifier.classify(sms.body, known.keywords)
                return _apply(sql, sms, sender, to_e164, known, result)
        except IntegrityError:
            if attempt == _ATTEMPTS:
                raise
            attempt += 1
            log.info("inbound %s met a concurrent text's new row: deciding again", sms.message_sid)


_ATTEMPTS = 3  # a text that met a concurrent one's new member or subscription: tries in all


class _NumberHuddles:
    """The huddles on one number texted (or its Messaging Service), as read at one stamp.

    Kept between texts by each process (:func:`_directory`) and shared by its threads: nothing
    here changes after it is built but the huddles' copy objects, built once when first asked.
    """

    def __init__(self, stamp: int | None, huddles: _Huddles) -> None:
        self.stamp = stamp  # None: the stamp row is missing, so this is never reused
        # by id, keywords by keyword: in the order the read returned them (id, keyword)
        self.rows = {huddle_id: row for huddle_id, (row, _) in huddles.items()}
        self.keywords_by_huddle = {huddle_id: words for huddle_id, (_, words) in huddles.items()}
        self.huddle_by_keyword = {k: hid for hid, (_, words) in huddles.items() for k in words}
        self.keywords = tuple(self.huddle_by_keyword)
        self._copy_huddles: dict[int, Huddle] = {}

    def copy_huddle(self, huddle_id: int) -> Huddle:
        """A huddle's columns as a Huddle in no session: what its copy (``outreach.messages.copy``) reads."""
        found = self._copy_huddles.get(huddle_id)
        if found is None:
            found = Huddle(**self.rows[huddle_id].attributes())
            self._copy_huddles[huddle_id] = found
        return found


_Directory = dict[tuple[str, str | None], _NumberHuddles]
_DIRECTORIES: weakref.WeakKeyDictionary[Engine, _Directory] = weakref.WeakKeyDictionary()
_DIRECTORY_LIMIT = 1024  # numbers kept per process; Twilio only posts ours (signed), so a few


def _directory(engine: Engine) -> _Directory:
    """This process's huddles by number texted, for one database."""
    directory = _DIRECTORIES.get(engine)
    if directory is None:
        directory = _DIRECTORIES.setdefault(engine, {})
    return directory


def _remember(directory: _Directory, number: tuple[str, str | None], known: _NumberHuddles) -> None:
    if known.stamp is None:
        return
    if len(directory) >= _DIRECTORY_LIMIT:
        directory.clear()
    directory[number] = known


def storable(text: str, limit: int) -> str:
    """Text any database stores: no NUL (PostgreSQL refuses it), no lone surrogates (not UTF-8)."""
    text = text[:limit].replace("\x00", "\ufffd")
    return text.encode("utf-8", "replace").decode("utf-8")


@dataclass
class _Inbound:
    """This text's inbound_messages row: its values, then its id once the MessageSid is claimed."""

    received_at: datetime
    id: int | None = None
    completed_by_finish: bool = False  # claimed before the member it names was inserted
    huddle_id: int | None = None
    member_id: int | None = None
    flagged: bool = False


def _apply(
    sql: _Statements,
    sms: InboundSms,
    sender: _Sender,
    to_e164: str,
    huddles: _NumberHuddles,
    result: Classification,
) -> InboundResult:
    """The text's work in the transaction: read, decide, then claim the MessageSid and write.

    Every text is decided from what was read first (:func:`_decide`), claimed with its row
    complete, and its few writes sent as plain SQL (``_Statements.write``): a join by a number
    never seen claims first and completes its row once the member exists (``finish``). A claim
    that finds the MessageSid taken is a duplicate, answered as the first delivery was; nothing
    else is written.
    """
    inbound = _Inbound(received_at=utcnow())
    from_e164, first = sql.read(sender, huddles)
    if from_e164 is None or first is None:
        outcome = InboundResult(IGNORED, None)
        if not sql.claim(sms, from_e164, to_e164, inbound, outcome):
            return sql.answered(sms.message_sid)
        log.info("inbound %s from a non-number sender ignored", sms.message_sid)
        return outcome
    snapshot = _Snapshot(first)
    intent = _intent_with_opt_out_type(result, sms.opt_out_type)
    outcome, writes = _decide(snapshot, sql, inbound, intent, result, sms, to_e164, from_e164)
    # A join by a number we have not met names the member it creates: claim first, finish after.
    complete = None if writes.new_member else outcome
    if not sql.claim(sms, from_e164, to_e164, inbound, complete):
        return sql.answered(sms.message_sid)
    sql.write(writes, inbound, sms, from_e164)
    if inbound.completed_by_finish:
        sql.finish(inbound, outcome)  # names the member the join created
    # Consent changes, joins and flags at INFO; the routine texts (replies for the inbox, HELP,
    # profile answers: most of the traffic, each kept as its inbound row) at DEBUG.
    routine = outcome.intent in _ROUTINE_INTENTS and not inbound.flagged
    log.log(
        logging.DEBUG if routine else logging.INFO,
        "inbound %s from %s: %s%s",
        sms.message_sid,
        mask_phone(from_e164),
        outcome.intent,
        " (flagged)" if inbound.flagged else "",
    )
    return outcome


@dataclass(frozen=True)
class _Move:
    """A subscription's change, as ``consent.move_subscription`` makes it, for ``_Statements``.

    ``subscription_id`` None: a new subscription. ``action`` None: consent is unchanged and only
    the conversation step moves (a profile answer; STOP on a subscription already opted out).
    """

    huddle_id: int
    subscription_id: int | None
    state: str
    conversation_step: str | None
    action: str | None


@dataclass
class _Writes:
    """What a text decided from the snapshot writes once its MessageSid is claimed."""

    new_member: bool = False  # a join by a number we have not met
    member_replied: bool = False  # members.last_replied_at = received_at
    first_name: str | None = None  # the profile conversation's answers (None: unchanged)
    zip: str | None = None
    moves: list[_Move] = field(default_factory=list)
    revocation_only: bool = False  # STOP with nothing to move: the revocation itself is recorded
    suppress: list[str] = field(default_factory=list)  # STOP's scopes, added or re-armed
    lift: list[str] = field(default_factory=list)  # YES, START, single opt-in: the member's STOP


def _decide(
    snapshot: _Snapshot,
    sql: _Statements,
    inbound: _Inbound,
    intent: Intent,
    result: Classification,
    sms: InboundSms,
    to_e164: str,
    phone: str,
) -> tuple[InboundResult, _Writes]:
    """What the text means and what it writes, in the compliance order (the module's).

    Decided from the snapshot alone, but for a stranger's once-a-day hint (one read). STOP, a
    join, YES and START change consent with the rows ``outreach.consent`` would write; the
    profile conversation, HELP, a reply and a flagged text change no consent.
    """
    if snapshot.member_row is not None:
        inbound.member_id = snapshot.member_row["id"]
    if intent in (Intent.OPT_OUT, Intent.OPT_OUT_ALL):
        return _decide_opt_out(snapshot, inbound, sms, to_e164, intent)
    if intent is Intent.HELP:
        primary = snapshot.primary_huddle_id()
        inbound.huddle_id = primary
        huddle = snapshot.transient_huddle(primary) if primary is not None else None
        return InboundResult(intent.value, copy.help_text(huddle)), _Writes()
    if intent is Intent.JOIN and result.keyword is not None:
        return _decide_join(snapshot, inbound, snapshot.huddles.huddle_by_keyword[result.keyword])
    if intent in (Intent.CONFIRM, Intent.OPT_IN):
        opted_in = _decide_opt_in(snapshot, inbound, intent, to_e164)
        if opted_in is not None:
            return opted_in
    if intent is Intent.MAYBE_OPT_OUT:
        # Not certain enough to act on, too close to ignore: an organizer decides.
        inbound.flagged = True
    writes = _Writes()
    answered = _decide_profile_answer(snapshot, inbound, intent, sms, writes)
    if answered is not None:
        return answered, writes
    return _decide_reply(snapshot, sql, inbound, intent, phone, writes), writes


def _decide_opt_out(
    snapshot: _Snapshot, inbound: _Inbound, sms: InboundSms, to_e164: str, intent: Intent
) -> tuple[InboundResult, _Writes]:
    """STOP: every SMS subscription on the sender (STOPALL: on any) opted out, suppressed.

    One confirmation, naming the huddle the member was last active in here, with no marketing;
    none when Twilio's Advanced Opt-Out has sent its own.
    """
    all_senders = intent is Intent.OPT_OUT_ALL
    targets = snapshot.subscription_rows if all_senders else snapshot.subscriptions_on_sender()
    writes = _Writes()
    for s in targets:
        if s["state"] != m.OPTED_OUT:
            writes.moves.append(_Move(s["huddle_id"], s["id"], m.OPTED_OUT, None, c.OPT_OUT))
        elif s["conversation_step"] is not None:
            writes.moves.append(_Move(s["huddle_id"], s["id"], m.OPTED_OUT, None, None))
    writes.revocation_only = not any(move.action for move in writes.moves)
    writes.suppress = [c.ALL_SENDERS] if all_senders else snapshot.scopes(to_e164)
    primary = snapshot.primary_huddle_id()
    inbound.huddle_id = primary
    if sms.opt_out_type:
        # Twilio's Advanced Opt-Out already sent the confirmation; a second would be one too many.
        return InboundResult(intent.value, None), writes
    huddle = snapshot.transient_huddle(primary) if primary is not None else None
    return InboundResult(intent.value, copy.stop_reply(huddle, all_senders=all_senders)), writes


def _decide_opt_in(
    snapshot: _Snapshot, inbound: _Inbound, intent: Intent, to_e164: str
) -> tuple[InboundResult, _Writes] | None:
    """YES confirms every pending join on the sender, with one welcome (the huddle joined last)
    and its first profile question when it asks them; YES with nothing pending, and START,
    bring back only what the member opted out of on this sender, lifting their STOP here.
    START when already in: say so. None: nothing of the kind to do (a reply, or the profile).

    Joining is the member's own act: it lifts their own STOP for the huddle's sender.
    """
    on_sender = snapshot.subscriptions_on_sender()  # latest change first
    pending = [s for s in on_sender if s["state"] == m.PENDING]
    opted_out = [s for s in on_sender if s["state"] == m.OPTED_OUT]
    writes = _Writes()
    if intent is Intent.CONFIRM and pending:
        welcome = snapshot.transient_huddle(pending[0]["huddle_id"])
        reply = copy.welcome(welcome)
        for s in pending:
            step = s["conversation_step"]
            if s["huddle_id"] == welcome.id and welcome.profile_questions:
                step = "first_name"
                reply += "\n" + copy.message("profile_first_name", welcome)
            writes.moves.append(_Move(s["huddle_id"], s["id"], m.ACTIVE, step, c.OPT_IN))
            scope = snapshot.transient_huddle(s["huddle_id"]).sender_key
            if scope not in writes.lift:
                writes.lift.append(scope)
        result = InboundResult(Intent.CONFIRM.value, reply)
        huddle_id = welcome.id
    elif opted_out:
        for s in opted_out:
            move = _Move(s["huddle_id"], s["id"], m.ACTIVE, s["conversation_step"], c.RESUBSCRIBE)
            writes.moves.append(move)
        writes.lift = snapshot.scopes(to_e164)
        huddle_id = opted_out[0]["huddle_id"]
        reply = copy.message("start", snapshot.transient_huddle(huddle_id))
        result = InboundResult(Intent.OPT_IN.value, reply)
    elif intent is Intent.OPT_IN and any(s["state"] == m.ACTIVE for s in on_sender):
        huddle_id = on_sender[0]["huddle_id"]
        reply = copy.message("already_member", snapshot.transient_huddle(huddle_id))
        result = InboundResult(Intent.OPT_IN.value, reply)
    else:
        return None
    inbound.huddle_id = huddle_id
    return result, writes


def _decide_join(
    snapshot: _Snapshot, inbound: _Inbound, huddle_id: int
) -> tuple[InboundResult, _Writes]:
    """A join keyword: ``pending`` and the CTIA confirmation ask (single opt-in: ``active`` and
    the welcome, with the first profile question when the huddle asks them)."""
    huddle = snapshot.transient_huddle(huddle_id)
    current = next((s for s in snapshot.subscription_rows if s["huddle_id"] == huddle_id), None)
    inbound.huddle_id = huddle_id
    writes = _Writes(new_member=snapshot.member_row is None)
    if current is not None and current["state"] == m.ACTIVE:
        return InboundResult(Intent.JOIN.value, copy.message("already_member", huddle)), writes
    subscription_id = current["id"] if current is not None else None
    step = current["conversation_step"] if current is not None else None
    if huddle.opt_in_mode == h.OPT_IN_SINGLE:
        reply = copy.welcome(huddle)
        if huddle.profile_questions:
            step = "first_name"
            reply += "\n" + copy.message("profile_first_name", huddle)
        writes.moves.append(_Move(huddle_id, subscription_id, m.ACTIVE, step, c.OPT_IN))
        # Joining again is the member's own act: it lifts their own STOP for this sender.
        writes.lift.append(huddle.sender_key)
        return InboundResult(Intent.JOIN.value, reply), writes
    if current is None or current["state"] != m.PENDING:
        writes.moves.append(_Move(huddle_id, subscription_id, m.PENDING, step, c.OPT_IN_REQUESTED))
    return InboundResult(Intent.JOIN.value, copy.confirmation_ask(huddle)), writes


def _decide_profile_answer(
    snapshot: _Snapshot, inbound: _Inbound, intent: Intent, sms: InboundSms, writes: _Writes
) -> InboundResult | None:
    """The profile conversation after a welcome: first name, then ZIP; SKIP skips a question.

    Only a member's text that is not a keyword (STOP and HELP were answered before: they are
    never swallowed). None: not in a conversation, or a step we do not know (then ended).
    """
    if intent not in (Intent.OTHER, Intent.SKIP, Intent.CONFIRM, Intent.OPT_IN):
        return None
    member = snapshot.member_row
    in_conversation = [
        s
        for s in snapshot.subscriptions_on_sender()
        if s["conversation_step"] and s["state"] == m.ACTIVE
    ]
    if not in_conversation or member is None:
        return None
    subscription = in_conversation[0]
    huddle = snapshot.transient_huddle(subscription["huddle_id"])
    inbound.huddle_id = huddle.id
    answer = " ".join(sms.body.split())
    skip = intent is Intent.SKIP
    step = subscription["conversation_step"]
    if step == "first_name":
        if not skip and answer:
            writes.first_name = answer[:100]
        first_name = writes.first_name or member["first_name"] or ""
        writes.moves.append(_step(subscription, "zip"))
        return InboundResult(PROFILE, copy.message("profile_zip", huddle, first_name=first_name))
    if step == "zip":
        if not skip:
            if not _ZIP.match(answer):
                return InboundResult(PROFILE, copy.message("profile_zip_again", huddle))
            writes.zip = answer[:5]
        writes.moves.append(_step(subscription, None))
        return InboundResult(PROFILE, copy.message("profile_done", huddle))
    writes.moves.append(_step(subscription, None))
    return None


def _step(subscription: _Row, step: str | None) -> _Move:
    """The conversation moved on: the step changes, consent does not."""
    return _Move(subscription["huddle_id"], subscription["id"], subscription["state"], step, None)


def _decide_reply(
    snapshot: _Snapshot,
    sql: _Statements,
    inbound: _Inbound,
    intent: Intent,
    phone: str,
    writes: _Writes,
) -> InboundResult:
    """A member's reply goes to the huddle's inbox, unanswered. A number that is not a member
    here gets one reply a day telling them how to join (not to a text flagged as a maybe-STOP).
    """
    on_sender = snapshot.subscriptions_on_sender()
    if on_sender:
        inbound.huddle_id = on_sender[0]["huddle_id"]
        writes.member_replied = True
        return InboundResult(intent.value, None)
    primary = snapshot.primary_huddle_id()
    inbound.huddle_id = primary
    if intent is Intent.MAYBE_OPT_OUT:
        return InboundResult(intent.value, None)
    if sql.hinted_since(phone, inbound.received_at - HINT_INTERVAL):
        return InboundResult(UNKNOWN_SENDER, None)
    if primary is None:
        return InboundResult(UNKNOWN_SENDER, copy.message("how_to_join", None, keyword=None))
    huddle = snapshot.transient_huddle(primary)
    keywords = snapshot.huddles.keywords_by_huddle[primary]
    program = huddle if len(snapshot.huddle_rows) == 1 else None
    keyword = keywords[0] if keywords else None
    return InboundResult(UNKNOWN_SENDER, copy.message("how_to_join", program, keyword=keyword))


class _Snapshot:
    """What the transaction read first: the sender's huddles, the member, their subscriptions."""

    def __init__(self, first: _FirstRead) -> None:
        self.huddles = first.huddles
        self.huddle_rows = first.huddles.rows
        self.member_row = first.member
        self.subscription_rows = first.subscriptions  # the member's SMS ones, latest change first

    def subscriptions_on_sender(self) -> list[_Row]:
        return [s for s in self.subscription_rows if s["huddle_id"] in self.huddle_rows]

    def primary_huddle_id(self) -> int | None:
        """The huddle a reply speaks for: the member's latest on this sender, else the first."""
        for s in self.subscriptions_on_sender():
            huddle_id: int = s["huddle_id"]
            return huddle_id
        return next(iter(self.huddle_rows), None)

    def scopes(self, to_e164: str) -> list[str]:
        """What a STOP on this number is scoped to: each huddle's sender, or the number itself."""
        keys = {self.transient_huddle(huddle_id).sender_key for huddle_id in self.huddle_rows}
        keys.add(to_e164)
        return sorted(keys)

    def transient_huddle(self, huddle_id: int) -> Huddle:
        return self.huddles.copy_huddle(huddle_id)


_Huddles = dict[int, tuple["_Row", list[str]]]  # huddle id -> (columns, keywords), by id


@dataclass(frozen=True)
class _FirstRead:
    """The huddles on the number texted, the member, their SMS subscriptions."""

    huddles: _NumberHuddles
    member: _Row | None
    subscriptions: list[_Row]


class _Statements:
    """The hot path's SQL, run on the transaction's connection.

    Plain DB-API calls: for these few statements SQLAlchemy's statement building, compilation
    cache lookup and result machinery cost several times the database work. Values go through
    the columns' own bind and result processors (the conversions the ORM applies), so rows are
    written and read exactly as the ORM would. Written with ``?`` placeholders, turned into ``%s``
    for drivers with the format/pyformat paramstyle (psycopg).

    (psycopg's pipeline mode would send each batch in one round trip; on loopback its bookkeeping
    cost more than the round trips it saved: 12% fewer texts/s in bench/inbound_webhook.py.)
    """

    _by_dialect: ClassVar[dict[tuple[str, str], _Prepared]] = {}

    def __init__(self, prepared: _Prepared, dbapi_connection: Any) -> None:
        self.p = prepared
        self.dbapi = dbapi_connection

    @classmethod
    def on(cls, connection: Connection) -> _Statements:
        dialect = connection.dialect
        key = (dialect.name, dialect.paramstyle)
        prepared = cls._by_dialect.get(key)
        if prepared is None:
            prepared = cls._by_dialect[key] = _Prepared.for_dialect(dialect)
        return cls(prepared, connection.connection.driver_connection)

    def _run(self, *statements: tuple[str, Sequence[Any]]) -> list[list[tuple[Any, ...]]]:
        """Each statement's rows (none for UPDATEs).

        Driver errors come out as SQLAlchemy's (a unique violation is an ``IntegrityError``).
        """
        dbapi_error = self.p.dialect.loaded_dbapi.Error
        try:
            return self._send(statements)
        except dbapi_error as error:
            raise DBAPIError.instance(
                statements[0][0], statements[0][1], error, dbapi_error, dialect=self.p.dialect
            ) from error

    def _send(self, statements: Sequence[tuple[str, Sequence[Any]]]) -> list[list[tuple[Any, ...]]]:
        cursors = []
        try:
            for statement, params in statements:
                cursor = self.dbapi.cursor()
                cursors.append(cursor)
                cursor.execute(statement, params)
            results = []
            for (statement, _), cursor in zip(statements, cursors, strict=True):
                if statement in self.p.returns_rows:
                    if statement not in self.p.result_types:  # once: psycopg builds it each time
                        self.p.result_types[statement] = tuple(d[1] for d in cursor.description)
                    results.append(list(cursor.fetchall()))
                else:
                    results.append([])
            return results
        finally:
            for cursor in cursors:
                cursor.close()

    def directory_stamp(self) -> int | None:
        """The huddles' stamp (``HuddleDirectoryStamp``); None if its row is missing."""
        (rows,) = self._run((self.p.directory_stamp, ()))
        return int(rows[0][0]) if rows else None

    def huddles(self, to_e164: str, service: str | None) -> _Huddles:
        """The huddles on the number texted (or its Messaging Service): id -> columns, keywords."""
        p = self.p
        query, params = (
            (p.huddles_or_service, (to_e164, service)) if service else (p.huddles, (to_e164,))
        )
        (rows,) = self._run((query, params))
        types = p.result_types[query]
        columns = p.huddle_columns
        width = len(columns)
        huddles: _Huddles = {}
        for row in rows:  # ordered by huddle id, then keyword
            huddle = huddles.get(row[0])
            if huddle is None:
                huddle = huddles[row[0]] = (_Row(columns, row[:width], types[:width]), [])
            if row[width] is not None:
                huddle[1].append(row[width])
        return huddles

    def read(
        self, sender: _Sender, huddles: _NumberHuddles
    ) -> tuple[str | None, _FirstRead | None]:
        """The sender's E.164 and what the text is decided from; (None, None): not a phone.

        The member is read by the number as Twilio sent it when it has E.164's shape (see
        :class:`_Sender`).
        """
        from_e164, member_rows = self._member(sender)
        if from_e164 is None:
            return None, None
        return from_e164, self._first_read(huddles, member_rows)

    def claim(
        self,
        sms: InboundSms,
        from_e164: str | None,
        to_e164: str,
        inbound: _Inbound,
        outcome: InboundResult | None,
    ) -> bool:
        """Insert the text's row unless its MessageSid is there already (then False).

        With ``outcome`` the row is inserted complete; without, as IGNORED, and ``finish``
        completes it. A concurrent transaction holding the same MessageSid makes the INSERT
        wait for it (the unique index), then do nothing: dedupe holds across processes, and
        nobody gets an error.
        """
        p = self.p
        if outcome is None:
            inbound.completed_by_finish = True
            intent, reply = IGNORED, None
        else:
            intent, reply = outcome.intent, outcome.reply
        (claimed,) = self._run(
            (
                p.claim,
                (
                    sms.message_sid,
                    sms.from_raw,
                    from_e164,
                    to_e164[:64],
                    sms.body,
                    intent,
                    reply,
                    inbound.member_id,
                    inbound.huddle_id,
                    p.bind_bool(inbound.flagged),
                    p.bind_bool(False),
                    p.bind_time(inbound.received_at),
                ),
            )
        )
        if not claimed:
            return False
        inbound.id = claimed[0][0]
        return True

    def _member(self, sender: _Sender) -> tuple[str | None, list[tuple[Any, ...]]]:
        """The sender's E.164 and their member rows (with SMS subscriptions; none: not a member)."""
        on_file = sender.on_file_candidate()
        if on_file is not None:
            rows = self._member_rows(on_file)
            if rows:
                return on_file, rows
        from_e164 = sender.normalized()
        if from_e164 is None:
            return None, []
        if from_e164 == on_file:
            return from_e164, []  # already looked up: not a member
        return from_e164, self._member_rows(from_e164)

    def _member_rows(self, phone: str) -> list[tuple[Any, ...]]:
        """The member with this number, a row per SMS subscription; none: not a member.

        On PostgreSQL the member's row is locked first, so that texts about one member are
        applied one at a time, each reading what the one before committed. Without it, a text
        that read the subscriptions just before a STOP committed would write back the state it
        read (a profile answer moving its conversation step: ``active`` again, and no ledger
        row). A member inserted by a text still in flight is not there yet: the insert that
        collides with it is decided again (:func:`handle_inbound`).
        """
        p = self.p
        if p.lock_member is not None:
            (locked,) = self._run((p.lock_member, (phone,)))
            if not locked:
                return []
        (rows,) = self._run((p.member, (m.SMS, phone)))
        return rows

    def _first_read(
        self, huddles: _NumberHuddles, member_rows: list[tuple[Any, ...]]
    ) -> _FirstRead:
        p = self.p
        if not member_rows:
            return _FirstRead(huddles, None, [])
        types = p.result_types[p.member]
        members, subscriptions = p.member_columns, p.subscription_columns
        width = len(members)
        return _FirstRead(
            huddles,
            _Row(members, member_rows[0][:width], types[:width]),
            [
                _Row(subscriptions, row[width:], types[width:])
                for row in member_rows
                if row[width] is not None  # a member without subscriptions: one row of NULLs
            ],
        )

    def answered(self, message_sid: str) -> InboundResult:
        """A duplicate MessageSid: the answer the first delivery got."""
        ((intent, reply),) = self._run((self.p.answered, (message_sid,)))[0]
        return InboundResult(intent, reply, duplicate=True)

    def insert_member(self, phone: str, created_at: datetime) -> int:
        (inserted,) = self._run((self.p.insert_member, (phone, self.p.bind_time(created_at))))
        member_id: int = inserted[0][0]
        return member_id

    def write(self, writes: _Writes, inbound: _Inbound, sms: InboundSms, phone: str) -> None:
        """A decided text's writes, after its claim: the rows ``outreach.consent`` would write.

        A new member first (their id goes in every row after it, and ``finish`` puts it in the
        text's row); then the subscriptions with a ledger row for each consent change, the
        revocation alone when STOP moved nothing, and the suppressions added or lifted.
        """
        p = self.p
        if writes.new_member:
            inbound.member_id = self.insert_member(phone, utcnow())
        member_id = inbound.member_id
        now = p.bind_time(utcnow())
        statements: list[tuple[str, Sequence[Any]]] = []
        if writes.member_replied:
            statements.append((p.member_replied, (p.bind_time(inbound.received_at), member_id)))
        if writes.first_name is not None:
            statements.append((p.member_first_name, (writes.first_name, member_id)))
        if writes.zip is not None:
            statements.append((p.member_zip, (writes.zip, member_id)))
        # consent.Provenance of a text: the member's own words, by MessageSid
        provenance = (c.SOURCE_KEYWORD, sms.body[:500], sms.message_sid, None, None, "member", now)
        for move in writes.moves:
            if move.subscription_id is None:
                new = (member_id, move.huddle_id, m.SMS, move.state, move.conversation_step)
                statements.append((p.insert_subscription, (*new, now, now)))
            else:
                moved = (move.state, move.conversation_step, now, move.subscription_id)
                statements.append((p.update_subscription, moved))
            if move.action is not None:
                about = (member_id, move.huddle_id, m.SMS, phone, move.action)
                statements.append((p.record, (*about, *provenance)))
        if writes.revocation_only:
            statements.append((p.record, (member_id, None, m.SMS, phone, c.OPT_OUT, *provenance)))
        detail = f"{sms.message_sid}: {sms.body[:200]}"
        for scope in writes.suppress:
            statements.append((p.suppress, (m.SMS, phone, scope, "stop", detail, now)))
        for scope in writes.lift:
            statements.append((p.lift_suppression, (now, m.SMS, phone, scope)))
        if statements:
            self._run(*statements)

    def hinted_since(self, phone: str, since: datetime) -> bool:
        """Whether this number got the how-to-join hint since then (once a day at most)."""
        p = self.p
        (rows,) = self._run((p.hinted, (phone, p.bind_time(since))))
        return bool(rows)

    def finish(self, inbound: _Inbound, outcome: InboundResult) -> None:
        """Complete a row claimed before its member existed (``claim`` without an outcome)."""
        p = self.p
        self._run(
            (
                p.finish,
                (
                    outcome.intent,
                    outcome.reply,
                    inbound.member_id,
                    inbound.huddle_id,
                    p.bind_bool(inbound.flagged),
                    inbound.id,
                ),
            )
        )


class _Columns:
    """A model's columns in a SELECT list, and the processors that turn them into attributes.

    Processors depend on the driver's type of each result column (PostgreSQL numerics), so they
    are made from the cursor's description the first time, as SQLAlchemy does, and kept.
    """

    def __init__(self, model: type[Any], alias: str, dialect: Dialect) -> None:
        table = model.__table__
        attributes = [
            a
            for a in inspect(model).column_attrs
            if len(a.columns) == 1
            and isinstance(a.columns[0], Column)
            and a.columns[0].table is table
        ]  # anything else (an expression, another table's column) is left to load on access
        self.columns: list[Column[Any]] = [a.columns[0] for a in attributes]
        assert self.columns[0].primary_key  # noqa: S101 - callers read the id first
        self.keys = tuple(a.key for a in attributes)
        self.index = {key: i for i, key in enumerate(self.keys)}
        quote = dialect.identifier_preparer.quote
        self.sql = ", ".join(f"{alias}.{quote(col.name)}" for col in self.columns)
        self.dialect = dialect
        self._processors: dict[tuple[Any, ...], tuple[Callable[[Any], Any], ...]] = {}

    def __len__(self) -> int:
        return len(self.keys)

    def processors(self, types: tuple[Any, ...]) -> tuple[Callable[[Any], Any], ...]:
        found = self._processors.get(types)
        if found is None:
            dialect = self.dialect
            found = self._processors[types] = tuple(
                col.type.dialect_impl(dialect).result_processor(dialect, type_code) or identity
                for col, type_code in zip(self.columns, types, strict=True)
            )
        return found


class _Row:
    """One model's columns of a result row, converted (as the ORM would) only when read."""

    __slots__ = ("_columns", "_processors", "_values")

    def __init__(self, columns: _Columns, values: Sequence[Any], types: tuple[Any, ...]) -> None:
        self._columns = columns
        self._values = values
        self._processors = columns.processors(types)

    def __getitem__(self, key: str) -> Any:
        i = self._columns.index[key]
        return self._processors[i](self._values[i])

    def attributes(self) -> dict[str, Any]:
        return {
            key: process(value)
            for key, process, value in zip(
                self._columns.keys, self._processors, self._values, strict=True
            )
        }


@dataclass(frozen=True)
class _Prepared:
    """``_Statements``' SQL and value conversions for one dialect and driver paramstyle."""

    claim: str
    answered: str
    directory_stamp: str
    huddles: str
    huddles_or_service: str
    member: str
    lock_member: str | None  # PostgreSQL; SQLite's BEGIN IMMEDIATE serializes every text
    insert_member: str
    member_replied: str
    member_first_name: str
    member_zip: str
    hinted: str
    finish: str
    insert_subscription: str
    update_subscription: str
    record: str
    suppress: str
    lift_suppression: str
    huddle_columns: _Columns
    member_columns: _Columns
    subscription_columns: _Columns
    bind_time: Callable[[Any], Any]
    bind_bool: Callable[[Any], Any]
    dialect: Dialect
    returns_rows: frozenset[str]
    result_types: dict[str, tuple[Any, ...]] = field(default_factory=dict)

    @classmethod
    def for_dialect(cls, dialect: Dialect) -> _Prepared:
        def sql(text: str) -> str:
            return driver_sql(dialect, text)

        huddle_columns = _Columns(Huddle, "h", dialect)
        member_columns = _Columns(Member, "mb", dialect)
        subscription_columns = _Columns(Subscription, "s", dialect)
        # Only the models' own column names are interpolated, never a value.
        huddles = (
            f"SELECT {huddle_columns.sql}, k.keyword FROM huddles h"  # noqa: S608
            " LEFT OUTER JOIN join_keywords k ON k.huddle_id = h.id"
            " WHERE {} ORDER BY h.id, k.keyword"
        )
        time_type = InboundMessage.__table__.c.received_at.type
        claim = sql(
            """INSERT INTO inbound_messages (message_sid, from_raw, from_e164, to_number, body,
            intent, reply_text, member_id, huddle_id, flagged, handled, received_at)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
            ON CONFLICT (message_sid) DO NOTHING RETURNING id"""
        )
        answered = sql("SELECT intent, reply_text FROM inbound_messages WHERE message_sid = ?")
        directory_stamp = "SELECT stamp FROM huddle_directory_stamp"
        by_number = sql(huddles.format("h.sender_number = ?"))
        by_number_or_service = sql(
            huddles.format("(h.sender_number = ? OR h.messaging_service_sid = ?)")
        )
        member = sql(
            f"SELECT {member_columns.sql}, {subscription_columns.sql} FROM members mb"  # noqa: S608
            " LEFT OUTER JOIN subscriptions s ON s.member_id = mb.id AND s.channel = ?"
            " WHERE mb.phone = ? ORDER BY s.updated_at DESC"
        )
        lock_member = (
            sql("SELECT id FROM members WHERE phone = ? FOR UPDATE")
            if dialect.name == "postgresql"
            else None
        )
        insert_member = sql("INSERT INTO members (phone, created_at) VALUES (?, ?) RETURNING id")
        hinted = sql(  # HINTED word for word: the partial index's predicate, a constant
            f"""SELECT id FROM inbound_messages WHERE from_e164 = ? AND {HINTED}
            AND received_at >= ? LIMIT 1"""  # noqa: S608
        )
        return cls(
            claim=claim,
            answered=answered,
            directory_stamp=directory_stamp,
            huddles=by_number,
            huddles_or_service=by_number_or_service,
            member=member,
            lock_member=lock_member,
            insert_member=insert_member,
            member_replied=sql("UPDATE members SET last_replied_at = ? WHERE id = ?"),
            member_first_name=sql("UPDATE members SET first_name = ? WHERE id = ?"),
            member_zip=sql("UPDATE members SET zip = ? WHERE id = ?"),
            hinted=hinted,
            finish=sql(
                """UPDATE inbound_messages SET intent = ?, reply_text = ?, member_id = ?,
                huddle_id = ?, flagged = ? WHERE id = ?"""
            ),
            # consent.move_subscription, consent.record, consent.suppress, lift_suppression
            insert_subscription=sql(
                """INSERT INTO subscriptions (member_id, huddle_id, channel, state,
                conversation_step, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)"""
            ),
            update_subscription=sql(
                """UPDATE subscriptions SET state = ?, conversation_step = ?, updated_at = ?
                WHERE id = ?"""
            ),
            record=sql(
                """INSERT INTO consent_events (member_id, huddle_id, channel, address, action,
                source, detail, provider_message_id, ip, user_agent, actor, created_at)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"""
            ),
            suppress=sql(
                """INSERT INTO suppressions (channel, address, scope, reason, detail, created_at)
                VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (channel, address, scope) DO UPDATE
                SET lifted_at = NULL, reason = excluded.reason, detail = excluded.detail,
                created_at = excluded.created_at WHERE suppressions.lifted_at IS NOT NULL
                OR suppressions.reason <> excluded.reason"""
            ),
            lift_suppression=sql(
                """UPDATE suppressions SET lifted_at = ? WHERE channel = ? AND address = ?
                AND scope = ? AND lifted_at IS NULL"""
            ),
            huddle_columns=huddle_columns,
            member_columns=member_columns,
            subscription_columns=subscription_columns,
            bind_time=bind_processor(time_type, dialect),
            bind_bool=bind_processor(Boolean(), dialect),
            dialect=dialect,
            returns_rows=frozenset(
                [claim, answered, directory_stamp, by_number, by_number_or_service, member]
                + [insert_member, hinted]
                + ([lock_member] if lock_member else [])
            ),
        )


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
