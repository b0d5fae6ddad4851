"""Conversations: the inbox organizers and responders answer, one member in one huddle at a time.

A conversation is the texts one member (or one number we do not know) sent that were filed under
one huddle, with what we answered: the webhook's automatic answers (``reply_text``) and the
replies organizers sent from the inbox (outbox rows of kind ``reply``). The API and, later, the
dashboard both read it here; nothing here knows of the web.

The list puts conversations holding a possible opt-out nobody has handled yet first (they need
an organizer's eyes before the next campaign), then the most recent first, by their latest
inbound text's id. That order is one integer per conversation (:attr:`Conversation.sort_key`),
so a page's cursor is the last key shown and the next page is every conversation below it: a
conversation that gets a new text while someone pages moves up to the first page. The
dashboard's inbox (:func:`list_inbox`) adds one tier: after the flagged ones, the unread ones
before those marked done; its cursor is :func:`inbox_key`, built the same way.

A reply is checked (consent, suppression), sent, then recorded: three steps, no lock held
during the provider call, as a campaign send does.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import and_, case, exists, func, or_, select, update
from sqlalchemy.orm import Session

from outreach import consent
from outreach.addresses.phones import mask_phone
from outreach.app.settings import Settings
from outreach.models import (
    Huddle,
    HuddleMember,
    InboundMessage,
    InboxAssignment,
    Member,
    OutboxMessage,
)
from outreach.models import members as m
from outreach.providers import OutboundSms, SendError, SmsTransport
from outreach.providers.sms import SendResult
from outreach.providers.twilio.error_policy import parse_error_policy
from outreach.sms.error_actions import apply_error_action

__all__ = [
    "MAX_REPLY_CHARS",
    "Conversation",
    "Message",
    "ReplyFailed",
    "ReplyRefused",
    "get_conversation",
    "has_conversation",
    "inbox_key",
    "list_conversations",
    "list_inbox",
    "mark_handled",
    "mark_stranger_handled",
    "messages",
    "open_count",
    "prepare_reply",
    "record_refusal",
    "record_reply",
    "send",
]

log = logging.getLogger(__name__)

MAX_REPLY_CHARS = 1600  # Twilio's limit for one message's body (it splits it into segments)

Direction = Literal["in", "out"]
IN: Direction = "in"
OUT: Direction = "out"
TEXT = "text"  # what the member sent
AUTO = "auto"  # what the webhook answered on its own (a HELP text, a confirmation ask, ...)
REPLY = "reply"  # what an organizer sent from the inbox


@dataclass(frozen=True)
class Conversation:
    huddle_id: int
    member_id: int | None  # None: a number we do not know
    phone: str | None
    name: str | None
    last_id: int  # the latest inbound text (0: none yet)
    last_body: str | None
    last_media: list[dict[str, str]]
    last_received_at: datetime | None
    unhandled: int  # inbound texts nobody marked done
    flagged: bool  # holds a possible opt-out nobody marked done

    @property
    def sort_key(self) -> int:
        """The list's order as one integer, larger first: flagged ones, then the newest."""
        return self.last_id * 2 + int(self.flagged)


@dataclass(frozen=True)
class Message:
    id: int  # of its inbound row (texts, automatic answers) or outbox row (replies)
    direction: Direction
    kind: str  # text | auto | reply
    body: str
    at: datetime
    media: list[dict[str, str]] = field(default_factory=list)
    intent: str | None = None  # inbound texts: what the webhook made of it
    flagged: bool = False
    handled: bool | None = None  # inbound texts only


class ReplyRefused(Exception):
    """A reply that must not be sent; ``code`` is stable (``opted_out``, ``no_phone``, …)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class ReplyFailed(Exception):
    """The provider refused the reply (or its answer was lost); ``error`` says how."""

    def __init__(self, error: SendError, *, address: str) -> None:
        super().__init__(str(error))
        self.error = error
        self.address = address


def _media(raw: list[dict[str, Any]] | None) -> list[dict[str, str]]:
    return [
        {"url": str(a.get("url") or ""), "content_type": str(a.get("content_type") or "")}
        for a in raw or ()
    ]


def _name(first: str | None, last: str | None) -> str | None:
    return " ".join(p for p in (first, last) if p) or None


_I = InboundMessage
# A member's texts are one conversation whatever number they came from; a stranger's, by number.
_STRANGER = case((_I.member_id.is_(None), _I.from_e164), else_=None)


def _summaries(huddle_id: int, *, member_id: int | None = None) -> Any:
    """One row per conversation of the huddle: its key, latest text id, counts, flag."""
    query = select(
        _I.member_id.label("member_id"),
        _STRANGER.label("stranger"),
        func.max(_I.id).label("last_id"),
        func.sum(case((_I.handled.is_(False), 1), else_=0)).label("unhandled"),
        func.max(case((and_(_I.flagged.is_(True), _I.handled.is_(False)), 1), else_=0)).label(
            "flagged"
        ),
    ).where(_I.huddle_id == huddle_id)
    if member_id is not None:
        query = query.where(_I.member_id == member_id)
    else:
        query = query.where(or_(_I.member_id.is_not(None), _I.from_e164.is_not(None)))
    return query.group_by(_I.member_id, _STRANGER).subquery("conversations")


def _conversations(
    session: Session,
    huddle_id: int,
    query: Any,
    order: Callable[[Conversation], Any] | None = None,
) -> list[Conversation]:
    """The conversations of ``query`` (a page of summaries, already ordered and limited), with
    their latest text and member: joined after the limit, so a page costs its own rows."""
    page = query.subquery("page")
    rows = session.execute(
        select(
            page.c.member_id,
            page.c.last_id,
            page.c.unhandled,
            page.c.flagged,
            _I.body,
            _I.media,
            _I.received_at,
            _I.from_e164,
            Member.phone,
            Member.first_name,
            Member.last_name,
        )
        .join(_I, _I.id == page.c.last_id)
        .outerjoin(Member, Member.id == page.c.member_id)
    ).all()
    found = [
        Conversation(
            huddle_id=huddle_id,
            member_id=row.member_id,
            phone=row.phone if row.member_id is not None else row.from_e164,
            name=_name(row.first_name, row.last_name),
            last_id=row.last_id,
            last_body=row.body,
            last_media=_media(row.media),
            last_received_at=row.received_at,
            unhandled=int(row.unhandled or 0),
            flagged=bool(row.flagged),
        )
        for row in rows
    ]
    if order is not None:
        found.sort(key=order, reverse=True)
    return found


def list_conversations(
    session: Session, huddle_id: int, *, after: int = 0, limit: int = 50, open_only: bool = False
) -> list[Conversation]:
    """A page of the huddle's conversations, flagged ones first, then the newest.

    ``after`` is the :attr:`~Conversation.sort_key` of the last one already shown (0: the
    start); ``open_only`` keeps those with texts nobody marked done.
    """
    s = _summaries(huddle_id)
    query = select(s.c.member_id, s.c.last_id, s.c.unhandled, s.c.flagged)
    if after > 0:
        flagged, last_id = after % 2, after // 2
        query = query.where(
            or_(s.c.flagged < flagged, and_(s.c.flagged == flagged, s.c.last_id < last_id))
        )
    if open_only:
        query = query.where(s.c.unhandled > 0)
    query = query.order_by(s.c.flagged.desc(), s.c.last_id.desc()).limit(limit)
    return _conversations(session, huddle_id, query, lambda c: (c.flagged, c.last_id))


def inbox_key(conversation: Conversation) -> int:
    """The dashboard inbox's order as one integer (its page cursor): the tier (2: flagged,
    1: unread, 0: done) under the latest text id, larger first."""
    unread = int(conversation.unhandled > 0)
    return conversation.last_id * 3 + int(conversation.flagged) + unread


def list_inbox(
    session: Session,
    huddle_id: int,
    *,
    after: int = 0,
    limit: int = 50,
    unread_only: bool = False,
    assigned_to: int | None = None,
    unassigned_only: bool = False,
) -> list[Conversation]:
    """A page of the huddle's inbox as the dashboard shows it: possible opt-outs nobody handled
    first, then the other unread ones, then the rest; the newest first within each.

    ``after`` is the :func:`inbox_key` of the last one shown (0: the start). ``assigned_to``
    keeps the conversations given to that person; ``unassigned_only`` those given to nobody
    (texts from numbers we do not know are never assigned).
    """
    s = _summaries(huddle_id)
    tier = s.c.flagged + case((s.c.unhandled > 0, 1), else_=0)
    query = select(s.c.member_id, s.c.last_id, s.c.unhandled, s.c.flagged)
    if after > 0:
        after_tier, last_id = after % 3, after // 3
        query = query.where(or_(tier < after_tier, and_(tier == after_tier, s.c.last_id < last_id)))
    if unread_only:
        query = query.where(s.c.unhandled > 0)
    assigned = select(InboxAssignment.member_id).where(InboxAssignment.huddle_id == huddle_id)
    if assigned_to is not None:
        query = query.where(
            s.c.member_id.in_(assigned.where(InboxAssignment.organizer_id == assigned_to))
        )
    if unassigned_only:
        query = query.where(or_(s.c.member_id.is_(None), s.c.member_id.not_in(assigned)))
    query = query.order_by(tier.desc(), s.c.last_id.desc()).limit(limit)
    return _conversations(
        session, huddle_id, query, lambda c: (int(c.flagged) + (c.unhandled > 0), c.last_id)
    )


def open_count(session: Session, huddle_id: int) -> tuple[int, int]:
    """How many of the huddle's conversations hold texts nobody marked done, and how many of
    those hold a possible opt-out."""
    s = _summaries(huddle_id)
    row = session.execute(
        select(func.count(), func.coalesce(func.sum(s.c.flagged), 0)).where(s.c.unhandled > 0)
    ).one()
    return int(row[0]), int(row[1])


def get_conversation(session: Session, huddle_id: int, member_id: int) -> Conversation | None:
    """The member's conversation in the huddle (empty if the huddle holds them but they never
    texted it: one can start there); None if the huddle may not see them."""
    s = _summaries(huddle_id, member_id=member_id)
    query = select(s.c.member_id, s.c.last_id, s.c.unhandled, s.c.flagged)
    found = _conversations(session, huddle_id, query)
    if found:
        return found[0]
    member = session.get(Member, member_id)
    if member is None or not has_conversation(session, huddle_id, member_id):
        return None
    return Conversation(
        huddle_id=huddle_id,
        member_id=member_id,
        phone=member.phone,
        name=_name(member.first_name, member.last_name),
        last_id=0,
        last_body=None,
        last_media=[],
        last_received_at=None,
        unhandled=0,
        flagged=False,
    )


def has_conversation(session: Session, huddle_id: int, member_id: int) -> bool:
    """Whether the huddle may see this member's texts: it holds them, or they texted it."""
    held = exists().where(HuddleMember.huddle_id == huddle_id, HuddleMember.member_id == member_id)
    return bool(session.scalar(select(or_(held, _texted(huddle_id, member_id)))))


def _texted(huddle_id: int, member_id: int) -> Any:
    return exists().where(_I.huddle_id == huddle_id, _I.member_id == member_id)


def messages(
    session: Session, huddle_id: int, member_id: int, *, limit: int = 200
) -> tuple[list[Message], bool]:
    """The member's texts in the huddle and what we answered, oldest first: the latest
    ``limit`` of them, and whether older ones were left out."""
    inbound = session.scalars(
        select(_I)
        .where(_I.huddle_id == huddle_id, _I.member_id == member_id)
        .order_by(_I.id.desc())
        .limit(limit + 1)
    ).all()
    outbound = session.scalars(
        select(OutboxMessage)
        .where(
            OutboxMessage.huddle_id == huddle_id,
            OutboxMessage.member_id == member_id,
            OutboxMessage.channel == m.SMS,
        )
        .order_by(OutboxMessage.id.desc())
        .limit(limit + 1)
    ).all()
    found: list[tuple[datetime, int, int, Message]] = []
    for row in inbound:
        found.append((row.received_at, 0, row.id, _inbound_message(row)))
        if row.reply_text:
            answer = Message(row.id, OUT, AUTO, row.reply_text, row.received_at)
            found.append((row.received_at, 1, row.id, answer))
    for out in outbound:
        found.append((out.created_at, 2, out.id, _outbox_message(out)))
    found.sort(key=lambda item: item[:3])
    return [item[3] for item in found[-limit:]], len(found) > limit


def _inbound_message(row: InboundMessage) -> Message:
    return Message(
        id=row.id,
        direction=IN,
        kind=TEXT,
        body=row.body,
        media=_media(row.media),
        at=row.received_at,
        intent=row.intent,
        flagged=row.flagged,
        handled=row.handled,
    )


def _outbox_message(row: OutboxMessage) -> Message:
    return Message(id=row.id, direction=OUT, kind=row.kind, body=row.body, at=row.created_at)


def mark_handled(session: Session, huddle_id: int, member_id: int) -> int:
    """Mark the member's texts in the huddle done; how many were not yet."""
    result = session.execute(
        update(InboundMessage)
        .where(
            InboundMessage.huddle_id == huddle_id,
            InboundMessage.member_id == member_id,
            InboundMessage.handled.is_(False),
        )
        .values(handled=True)
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)


def mark_stranger_handled(session: Session, huddle_id: int, inbound_id: int) -> int | None:
    """Mark done the texts a number we do not know sent the huddle, named by one of them (so
    the page needs no phone number); None: no such text from a stranger in this huddle."""
    number = session.scalar(
        select(_I.from_e164).where(
            _I.id == inbound_id,
            _I.huddle_id == huddle_id,
            _I.member_id.is_(None),
            _I.from_e164.is_not(None),
        )
    )
    if number is None:
        return None
    result = session.execute(
        update(InboundMessage)
        .where(
            InboundMessage.huddle_id == huddle_id,
            InboundMessage.member_id.is_(None),
            InboundMessage.from_e164 == number,
            InboundMessage.handled.is_(False),
        )
        .values(handled=True)
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)


def prepare_reply(
    session: Session, huddle: Huddle, member_id: int, body: str
) -> OutboundSms | None:
    """The text to send, if this member may get it now; None: no such member in this huddle.

    Refused (:class:`ReplyRefused`) when they opted out of the huddle's texts or the number is
    suppressed for its sender; and when they neither subscribed (active) nor ever texted the
    huddle: a reply answers someone, it is not a way round consent. Checked just before the
    provider call, with no lock held during it (a campaign send does the same): on SQLite a
    transaction held across the call would hold up every inbound STOP.
    """
    member = session.get(Member, member_id)
    if member is None or not has_conversation(session, huddle.id, member_id):
        return None
    text = body.strip()
    if not text:
        raise ReplyRefused("invalid", "A reply needs some text.")
    if len(text) > MAX_REPLY_CHARS:
        raise ReplyRefused("invalid", f"A reply has {MAX_REPLY_CHARS} characters at most.")
    if not huddle.sender_number and not huddle.messaging_service_sid:
        raise ReplyRefused("no_sender", f"Huddle {huddle.slug} has no number to text from.")
    phone = member.phone
    if phone is None:
        raise ReplyRefused("no_phone", "This member has no phone number.")
    subscription = consent.get_subscription(session, member, huddle, m.SMS)
    if subscription is not None and subscription.state == m.OPTED_OUT:
        raise ReplyRefused("opted_out", "This member opted out of this huddle's texts.")
    if consent.is_suppressed(session, m.SMS, phone, huddle.sender_key):
        raise ReplyRefused("opted_out", "This number must not be texted from this huddle.")
    if (subscription is None or subscription.state != m.ACTIVE) and not session.scalar(
        select(_texted(huddle.id, member_id))
    ):
        raise ReplyRefused(
            "no_consent", "This member never texted this huddle and is not subscribed to its texts."
        )
    return OutboundSms(
        to=phone,
        body=text,
        from_number=None if huddle.messaging_service_sid else huddle.sender_number,
        messaging_service_sid=huddle.messaging_service_sid,
        reference=f"{REPLY}:{member_id}",
    )


def send(transport: SmsTransport, message: OutboundSms) -> SendResult:
    """Hand the reply to the provider; a refusal raises :class:`ReplyFailed`."""
    try:
        return transport.send(message)
    except SendError as exc:
        log.warning("inbox reply to %s not sent: %s", mask_phone(message.to), exc)
        raise ReplyFailed(exc, address=message.to) from exc


def record_reply(
    session: Session,
    provider: str,
    huddle: Huddle,
    member_id: int,
    message: OutboundSms,
    result: SendResult,
) -> Message:
    """File the sent reply in the member's conversation (the sandbox stored the text already:
    that row is filed, not a second one)."""
    row = session.scalars(
        select(OutboxMessage).where(
            OutboxMessage.provider_message_id == result.provider_message_id,
            OutboxMessage.provider == provider,
            OutboxMessage.channel == m.SMS,
        )
    ).first()
    if row is None:
        row = OutboxMessage(
            channel=m.SMS,
            provider=provider,
            provider_message_id=result.provider_message_id,
            to_address=message.to,
            from_address=message.sender,
            body=message.body,
        )
        session.add(row)
    row.huddle_id = huddle.id
    row.member_id = member_id
    row.kind = REPLY
    session.flush()
    return _outbox_message(row)


def record_refusal(
    session: Session, settings: Settings, huddle: Huddle, member_id: int, failed: ReplyFailed
) -> None:
    """What the provider's refusal means for the number (21610: they STOPped at the carrier),
    as for a campaign text; in a transaction of its own, the reply's having rolled back."""
    code = failed.error.code or ""
    action = parse_error_policy(settings.twilio_error_policy).get(code)
    if action is None:
        return
    apply_error_action(
        session,
        action=action,
        code=code,
        address=failed.address,
        huddle=huddle,
        member_id=member_id,
        campaign_id=None,
    )
