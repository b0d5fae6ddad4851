"""What a text means for its sender, decided from one read of them: the compliance order.

Opt-out first (nothing outranks it), then HELP, join keywords, confirmations and START, the
profile conversation, and last the inbox. An opt-out is never swallowed by a conversation or a
keyword. Pure: the decision reads only the :class:`Snapshot` (and, for the once-a-day hints,
asks ``hinted_since``); :mod:`~outreach.sms.inbound.store` writes what it says.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from outreach.addresses.zips import normalize_zip
from outreach.consent import SubscriptionState
from outreach.messages import copy
from outreach.models import Huddle
from outreach.models import consent as c
from outreach.models import huddles as h
from outreach.models import members as m
from outreach.models.messaging import MAYBE_OPT_OUT, UNKNOWN_SENDER
from outreach.sms.inbound.classify import Classification, Intent
from outreach.sms.inbound.directory import NumberHuddles
from outreach.sms.inbound.message import InboundResult, InboundSms

HINT_INTERVAL = timedelta(days=1)  # each hint (how to join, how to stop): once a day a number
# hinted_since(intent, since): whether the number got the hint answering texts of that intent
HintedSince = Callable[[str, datetime], bool]

# Intent values stored on inbound_messages beyond the classifier's
# (and UNKNOWN_SENDER, from outreach.models.messaging: its hint index names it)
IGNORED = "ignored"  # not from a phone number we can text (short code, alphanumeric, garbage)
PROFILE = "profile"  # an answer in the profile conversation
ROUTINE_INTENTS = frozenset([Intent.OTHER.value, Intent.SKIP.value, Intent.HELP.value, PROFILE])


@dataclass(frozen=True)
class Snapshot:
    """What the transaction read first: the huddles on the number texted, the member (None: a
    number we have not met), their SMS subscriptions, latest change first."""

    huddles: NumberHuddles
    member_id: int | None
    first_name: str | None
    subscriptions: list[SubscriptionState]

    def on_sender(self) -> list[SubscriptionState]:
        return [s for s in self.subscriptions if s.huddle_id in self.huddles.huddles]

    def primary_huddle_id(self) -> int | None:
        """The huddle a reply speaks for: the member's latest on this sender, else the first."""
        for s in self.on_sender():
            return s.huddle_id
        return next(iter(self.huddles.huddles), None)

    def scopes(self, to_e164: str) -> list[str]:
        """What a STOP on this number is scoped to: each huddle's sender, or the number itself."""
        keys = {huddle.sender_key for huddle in self.huddles.huddles.values()}
        keys.add(to_e164)
        return sorted(keys)

    def huddle(self, huddle_id: int) -> Huddle:
        return self.huddles.huddles[huddle_id]


@dataclass(frozen=True)
class Move:
    """A subscription's change. The same state: only the conversation step moves (no consent)."""

    huddle_id: int
    current: SubscriptionState | None  # None: a new subscription
    state: str
    conversation_step: str | None
    action: str | None = None  # the ledger's action, when not the state's own


@dataclass
class Writes:
    """What a decided text writes once its MessageSid is claimed."""

    new_member: bool = False  # a join by a number we have not met
    member_replied: bool = False  # members.last_replied_at = received_at
    first_name: str | None = None  # the profile conversation's answers (None: unchanged)
    zip: str | None = None
    moves: list[Move] = field(default_factory=list)
    revocation_only: bool = False  # STOP with nothing to move: the revocation itself is recorded
    revoked_huddle_id: int | None = None  # the huddle that revocation names (a scoped STOP)
    suppress: list[str] = field(default_factory=list)  # STOP's scopes, added or re-armed
    lift: list[str] = field(default_factory=list)  # YES, START, single opt-in: the member's STOP


@dataclass
class Decision:
    result: InboundResult
    writes: Writes = field(default_factory=Writes)
    huddle_id: int | None = None  # the huddle the text is filed under
    flagged: bool = False  # needs an organizer's eyes (a maybe-STOP)


def _advanced_opt_out(opt_out_type: str | None) -> str:
    """Twilio's Advanced Opt-Out verdict (``OptOutType``): STOP, START, HELP or ""."""
    return (opt_out_type or "").strip().upper()


def intent_with_opt_out_type(result: Classification, opt_out_type: str | None) -> Intent:
    """Twilio's Advanced Opt-Out verdict can only add an opt-out, never remove one."""
    if result.intent in (Intent.OPT_OUT, Intent.OPT_OUT_ALL):
        return result.intent
    kind = _advanced_opt_out(opt_out_type)
    if kind == "STOP":
        return Intent.OPT_OUT
    if kind == "START":
        return Intent.OPT_IN
    if kind == "HELP":
        return Intent.HELP
    return result.intent


def decide(
    snapshot: Snapshot,
    result: Classification,
    sms: InboundSms,
    to_e164: str,
    *,
    received_at: datetime,
    hinted_since: HintedSince,
) -> Decision:
    """What the text means and what it writes, in the compliance order (the module's)."""
    intent = intent_with_opt_out_type(result, sms.opt_out_type)
    if intent in (Intent.OPT_OUT, Intent.OPT_OUT_ALL):
        return _opt_out(snapshot, sms, to_e164, intent, _stop_scope(snapshot, result, sms, intent))
    if intent is Intent.HELP:
        primary = snapshot.primary_huddle_id()
        huddle = snapshot.huddle(primary) if primary is not None else None
        return Decision(InboundResult(intent.value, copy.help_text(huddle)), huddle_id=primary)
    if intent is Intent.JOIN and result.keyword is not None:
        return _join(snapshot, snapshot.huddles.huddle_by_keyword[result.keyword])
    if intent in (Intent.CONFIRM, Intent.OPT_IN):
        opted_in = _opt_in(snapshot, intent, to_e164)
        if opted_in is not None:
            return opted_in
    writes = Writes()
    # A picture with no words answers no profile question: a reply, the question still open.
    answered = None if sms.media_only else _profile_answer(snapshot, intent, sms, writes)
    if answered is not None:
        return answered
    decision = _reply(snapshot, intent, received_at, hinted_since, writes)
    # Not certain enough to act on, too close to ignore: an organizer decides.
    decision.flagged = intent is Intent.MAYBE_OPT_OUT
    return decision


def _stop_scope(
    snapshot: Snapshot, result: Classification, sms: InboundSms, intent: Intent
) -> int | None:
    """The huddle a STOP names ("STOP LOGAN"), or None: every huddle on the sender.

    Only the classifier's own opt-out with a keyword of a huddle on this number is scoped. When
    Twilio's Advanced Opt-Out says STOP, Twilio blocks the whole number itself: unscoped.
    """
    if intent is not Intent.OPT_OUT or result.intent is not Intent.OPT_OUT:
        return None
    if result.keyword is None or _advanced_opt_out(sms.opt_out_type) == "STOP":
        return None
    return snapshot.huddles.huddle_by_keyword.get(result.keyword)


def _opt_out(
    snapshot: Snapshot, sms: InboundSms, to_e164: str, intent: Intent, scoped: int | None
) -> Decision:
    """STOP: every SMS subscription on the sender (STOPALL: on any) opted out, suppressed.

    A scoped STOP ("STOP LOGAN", ``scoped``: that huddle's id) opts out of that huddle only,
    and suppresses only the scopes no other huddle on the number sends under: where the number
    is shared, the subscription's ``opted_out`` is what keeps that huddle's campaigns away (the
    audience and the send-time check both require ``active``), and the other huddles keep
    texting the member.

    One confirmation with no marketing, naming the huddle it stopped (the latest changed, when
    several; a scoped STOP: that huddle; nothing to stop: the member's latest here); none when
    Twilio's Advanced Opt-Out has sent its own.
    """
    all_senders = intent is Intent.OPT_OUT_ALL
    if all_senders:
        targets = snapshot.subscriptions
    elif scoped is not None:
        targets = [s for s in snapshot.subscriptions if s.huddle_id == scoped]
    else:
        targets = snapshot.on_sender()
    writes = Writes()
    for s in targets:
        if s.state != m.OPTED_OUT:
            writes.moves.append(Move(s.huddle_id, s, m.OPTED_OUT, None, c.OPT_OUT))
        elif s.conversation_step is not None:
            writes.moves.append(Move(s.huddle_id, s, m.OPTED_OUT, None))
    writes.revocation_only = not any(move.action for move in writes.moves)
    writes.revoked_huddle_id = scoped if writes.revocation_only else None
    if all_senders:
        writes.suppress = [c.ALL_SENDERS]
    elif scoped is not None:
        others = {o.sender_key for i, o in snapshot.huddles.huddles.items() if i != scoped}
        writes.suppress = [scope for scope in snapshot.scopes(to_e164) if scope not in others]
    else:
        writes.suppress = snapshot.scopes(to_e164)
    here = snapshot.huddles.huddles
    moved = [move.huddle_id for move in writes.moves if move.action and move.huddle_id in here]
    primary = scoped if scoped is not None else next(iter(moved), snapshot.primary_huddle_id())
    if sms.opt_out_type:
        # Twilio's Advanced Opt-Out already sent the confirmation; a second would be one too many.
        return Decision(InboundResult(intent.value, None), writes, primary)
    huddle = snapshot.huddle(primary) if primary is not None else None
    reply = copy.stop_reply(huddle, all_senders=all_senders)
    return Decision(InboundResult(intent.value, reply), writes, primary)


def _opt_in(snapshot: Snapshot, intent: Intent, to_e164: str) -> Decision | None:
    """YES confirms every pending join on the sender, with one welcome (the huddle joined last)
    and its first profile question when it asks them; YES with nothing pending, and START,
    bring back only what the member opted out of on this sender, lifting their STOP here.
    START when already in: say so. None: nothing of the kind to do (a reply, or the profile).

    Joining is the member's own act: it lifts their own STOP for the huddle's sender.
    """
    on_sender = snapshot.on_sender()  # latest change first
    pending = [s for s in on_sender if s.state == m.PENDING]
    opted_out = [s for s in on_sender if s.state == m.OPTED_OUT]
    writes = Writes()
    if intent is Intent.CONFIRM and pending:
        welcome = snapshot.huddle(pending[0].huddle_id)
        reply = copy.welcome(welcome)
        for s in pending:
            step = s.conversation_step
            if s.huddle_id == welcome.id and welcome.profile_questions:
                step = "first_name"
                reply += "\n" + copy.message("profile_first_name", welcome)
            writes.moves.append(Move(s.huddle_id, s, m.ACTIVE, step, c.OPT_IN))
            scope = snapshot.huddle(s.huddle_id).sender_key
            if scope not in writes.lift:
                writes.lift.append(scope)
        return Decision(InboundResult(Intent.CONFIRM.value, reply), writes, welcome.id)
    if opted_out:
        for s in opted_out:
            writes.moves.append(Move(s.huddle_id, s, m.ACTIVE, s.conversation_step, c.RESUBSCRIBE))
        writes.lift = snapshot.scopes(to_e164)
        huddle_id = opted_out[0].huddle_id
        reply = copy.message("start", snapshot.huddle(huddle_id))
        return Decision(InboundResult(Intent.OPT_IN.value, reply), writes, huddle_id)
    if intent is Intent.OPT_IN and any(s.state == m.ACTIVE for s in on_sender):
        huddle_id = on_sender[0].huddle_id
        reply = copy.message("already_member", snapshot.huddle(huddle_id))
        return Decision(InboundResult(Intent.OPT_IN.value, reply), writes, huddle_id)
    return None


def _join(snapshot: Snapshot, huddle_id: int) -> Decision:
    """A join keyword: ``pending`` and the CTIA confirmation ask (single opt-in: ``active`` and
    the welcome, with the first profile question when the huddle asks them)."""
    huddle = snapshot.huddle(huddle_id)
    current = next((s for s in snapshot.subscriptions if s.huddle_id == huddle_id), None)
    writes = Writes(new_member=snapshot.member_id is None)
    if current is not None and current.state == m.ACTIVE:
        reply = copy.message("already_member", huddle)
        return Decision(InboundResult(Intent.JOIN.value, reply), writes, huddle_id)
    step = current.conversation_step if current is not None else None
    if huddle.opt_in_mode == h.OPT_IN_SINGLE:
        reply = copy.welcome(huddle)
        if huddle.profile_questions:
            step = "first_name"
            reply += "\n" + copy.message("profile_first_name", huddle)
        writes.moves.append(Move(huddle_id, current, m.ACTIVE, step, c.OPT_IN))
        # Joining again is the member's own act: it lifts their own STOP for this sender.
        writes.lift.append(huddle.sender_key)
        return Decision(InboundResult(Intent.JOIN.value, reply), writes, huddle_id)
    if current is None or current.state != m.PENDING:
        writes.moves.append(Move(huddle_id, current, m.PENDING, step, c.OPT_IN_REQUESTED))
    reply = copy.confirmation_ask(huddle)
    return Decision(InboundResult(Intent.JOIN.value, reply), writes, huddle_id)


def _profile_answer(
    snapshot: Snapshot, intent: Intent, sms: InboundSms, writes: Writes
) -> Decision | None:
    """The profile conversation after a welcome: first name, then ZIP; SKIP skips a question.

    Only a member's text that is not a keyword (STOP and HELP were answered before: they are
    never swallowed). None: not in a conversation, or a step we do not know (then ended in
    ``writes``, and the text is a reply).
    """
    if intent not in (Intent.OTHER, Intent.SKIP, Intent.CONFIRM, Intent.OPT_IN):
        return None
    in_conversation = [
        s for s in snapshot.on_sender() if s.conversation_step and s.state == m.ACTIVE
    ]
    if not in_conversation or snapshot.member_id is None:
        return None
    subscription = in_conversation[0]
    huddle = snapshot.huddle(subscription.huddle_id)
    answer = " ".join(sms.body.split())
    skip = intent is Intent.SKIP
    step = subscription.conversation_step
    if step == "first_name":
        if not skip and answer:
            writes.first_name = answer[:100]
        first_name = writes.first_name or snapshot.first_name or ""
        writes.moves.append(_step(subscription, "zip"))
        reply = copy.message("profile_zip", huddle, first_name=first_name)
        return Decision(InboundResult(PROFILE, reply), writes, huddle.id)
    if step == "zip":
        if not skip:
            zip_code = normalize_zip(answer)
            if zip_code is None:
                reply = copy.message("profile_zip_again", huddle)
                return Decision(InboundResult(PROFILE, reply), writes, huddle.id)
            writes.zip = zip_code
        writes.moves.append(_step(subscription, None))
        return Decision(
            InboundResult(PROFILE, copy.message("profile_done", huddle)), writes, huddle.id
        )
    writes.moves.append(_step(subscription, None))
    return None


def _step(subscription: SubscriptionState, step: str | None) -> Move:
    """The conversation moved on: the step changes, consent does not."""
    return Move(subscription.huddle_id, subscription, subscription.state, step)


def _reply(
    snapshot: Snapshot,
    intent: Intent,
    received_at: datetime,
    hinted_since: HintedSince,
    writes: Writes,
) -> Decision:
    """A member's reply goes to the huddle's inbox, unanswered; a maybe-STOP from someone still
    texted here gets one reply a day telling them how to stop. A number that is not a member
    here gets one reply a day telling them how to join (not to a text flagged as a maybe-STOP).
    """
    since = received_at - HINT_INTERVAL
    on_sender = snapshot.on_sender()
    if on_sender:
        writes.member_replied = True
        reply = None
        if intent is Intent.MAYBE_OPT_OUT:
            reply = _how_to_stop(snapshot, on_sender, since, hinted_since)
        return Decision(InboundResult(intent.value, reply), writes, on_sender[0].huddle_id)
    primary = snapshot.primary_huddle_id()
    if intent is Intent.MAYBE_OPT_OUT:
        return Decision(InboundResult(intent.value, None), writes, primary)
    if hinted_since(UNKNOWN_SENDER, since):
        return Decision(InboundResult(UNKNOWN_SENDER, None), writes, primary)
    if primary is None:
        reply = copy.message("how_to_join", None, keyword=None)
        return Decision(InboundResult(UNKNOWN_SENDER, reply), writes, primary)
    huddle = snapshot.huddle(primary)
    keywords = snapshot.huddles.keywords_by_huddle[primary]
    program = huddle if len(snapshot.huddles.huddles) == 1 else None
    keyword = keywords[0] if keywords else None
    reply = copy.message("how_to_join", program, keyword=keyword)
    return Decision(InboundResult(UNKNOWN_SENDER, reply), writes, primary)


def _how_to_stop(
    snapshot: Snapshot,
    on_sender: list[SubscriptionState],
    since: datetime,
    hinted_since: HintedSince,
) -> str | None:
    """How to stop the texts from this number, for a member it still texts (active or pending),
    once a day; None: nobody texts them here any more, or they were told today. It names the
    huddle's keyword when others text them here too ("STOP LOGAN"): one can be left alone."""
    texted = [s for s in on_sender if s.state in (m.ACTIVE, m.PENDING)]
    if not texted or hinted_since(MAYBE_OPT_OUT, since):
        return None
    huddle_id = texted[0].huddle_id  # latest change first
    shared = len(texted) > 1
    keywords = snapshot.huddles.keywords_by_huddle.get(huddle_id, [])
    keyword = keywords[0] if shared and keywords else None
    return copy.message("how_to_stop", snapshot.huddle(huddle_id), keyword=keyword, shared=shared)
