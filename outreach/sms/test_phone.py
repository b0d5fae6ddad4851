"""The test phone: text a huddle's sender as any number, through the real inbound path.

Sandbox only. A text sent here is an :class:`~outreach.sms.inbound.InboundSms` with a made-up
MessageSid (``SMtest…``), handed to :func:`~outreach.sms.inbound.handle_inbound`, the function
``POST /webhooks/twilio/sms`` calls: the same classification, consent ledger and answers, so a
keyword, HELP or STOP tried here behaves exactly as it will for a supporter. With Twilio
configured the texts would be real consent changes for real people's numbers, answered by nobody:
:func:`send_as` refuses them (:class:`TestPhoneUnavailable`).

The thread is what that number and the huddle's sender said to each other: the texts, the
automatic answers the webhook gave (``reply_text``) and every outbox row "sent" to the number
from the huddle's sender (inbox replies, campaign texts).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime

import phonenumbers
from sqlalchemy import Engine, or_, select
from sqlalchemy.orm import Session

from outreach.addresses.phones import try_normalize_phone
from outreach.app.settings import Settings
from outreach.models import (
    Huddle,
    HuddleMember,
    InboundMessage,
    JoinKeyword,
    Member,
    OutboxMessage,
    Subscription,
)
from outreach.models import members as m
from outreach.sms.conversations import AUTO, IN, OUT, TEXT, Message
from outreach.sms.inbound import InboundResult, InboundSms, handle_inbound

__all__ = [
    "MAX_BODY_CHARS",
    "SID_PREFIX",
    "HuddleLine",
    "Membership",
    "TestPhoneUnavailable",
    "available",
    "default_number",
    "membership",
    "pretty",
    "read_line",
    "send_as",
    "thread",
]

MAX_BODY_CHARS = 1600  # Twilio's limit for one message's body
SID_PREFIX = "SMtest"  # + 28 hex digits: as long as a real MessageSid, and never one of them
FICTION_AREA_CODE = "201"  # for a sender that is not a North American number


class TestPhoneUnavailable(Exception):
    """The SMS backend is not the sandbox: a test text would touch a real person's consent."""

    __test__ = False  # a domain class, not a pytest test


@dataclass(frozen=True)
class HuddleLine:
    """What the test phone texts: the huddle's number (and Messaging Service), its keywords."""

    huddle_id: int
    sender_number: str | None
    messaging_service_sid: str | None
    keywords: tuple[str, ...]
    timezone: str  # the huddle's clock, for showing when texts were sent

    @property
    def to(self) -> str | None:
        """What Twilio would post as ``To``; None: the huddle has nothing to be texted on."""
        return self.sender_number or self.messaging_service_sid

    @property
    def senders(self) -> tuple[str, ...]:
        return tuple(s for s in (self.sender_number, self.messaging_service_sid) if s)


@dataclass(frozen=True)
class Membership:
    """The number as a member of the huddle: who, and their SMS subscription's state."""

    member_id: int
    state: str | None  # pending | active | opted_out; None: held by the huddle, no SMS consent


def pretty(number: str) -> str:
    """``+16175550142`` as people write it (``+1 617-555-0142``); anything else as it is."""
    try:
        parsed = phonenumbers.parse(number, None)
    except phonenumbers.NumberParseException:
        return number
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.INTERNATIONAL)


def available(settings: Settings) -> bool:
    return settings.sms_backend == "sandbox"


def read_line(session: Session, huddle_id: int) -> HuddleLine | None:
    huddle = session.get(Huddle, huddle_id)
    if huddle is None:
        return None
    keywords = session.scalars(
        select(JoinKeyword.keyword)
        .where(JoinKeyword.huddle_id == huddle_id)
        .order_by(JoinKeyword.keyword)
    ).all()
    return HuddleLine(
        huddle_id,
        huddle.sender_number,
        huddle.messaging_service_sid,
        tuple(keywords),
        huddle.timezone,
    )


def default_number(sender: str | None, seed: int) -> str:
    """A made-up number to text from: ``+1 <area> 555 01xx`` (reserved for fiction), with the
    sender's area code when it has one. ``xx`` runs from 10: 555-0100…0106 are the sandbox's
    magic numbers, which refuse or fail what is sent to them."""
    area = sender[2:5] if sender and sender.startswith("+1") and len(sender) == 12 else ""
    if not area.isdigit() or try_normalize_phone(f"+1{area}5550110") is None:
        area = FICTION_AREA_CODE
    return f"+1{area}55501{10 + seed % 90:02d}"


def send_as(
    engine: Engine, settings: Settings, line: HuddleLine, *, from_e164: str, body: str
) -> InboundResult:
    """Handle ``body`` as a text from ``from_e164`` to the huddle's sender, as the webhook does.

    The caller has checked the number and the body (the webhook takes whatever Twilio posts).
    """
    if not available(settings):
        raise TestPhoneUnavailable("the test phone only works with SMS_BACKEND=sandbox")
    if line.to is None:
        raise ValueError("the huddle has no number or messaging service to text")
    sms = InboundSms(
        message_sid=SID_PREFIX + secrets.token_hex(14),
        from_raw=from_e164,
        to=line.to,
        body=body,
        messaging_service_sid=line.messaging_service_sid,
    )
    return handle_inbound(engine, sms, default_region=settings.default_region)


def thread(session: Session, line: HuddleLine, phone: str, *, limit: int = 100) -> list[Message]:
    """The latest ``limit`` messages between ``phone`` and the huddle's sender, oldest first."""
    if not line.senders:
        return []
    inbound = session.scalars(
        select(InboundMessage)
        .where(InboundMessage.from_e164 == phone, InboundMessage.to_number.in_(line.senders))
        .order_by(InboundMessage.id.desc())
        .limit(limit)
    ).all()
    outbound = session.scalars(
        select(OutboxMessage)
        .where(
            OutboxMessage.to_address == phone,
            OutboxMessage.channel == m.SMS,
            or_(
                OutboxMessage.from_address.in_(line.senders),
                OutboxMessage.huddle_id == line.huddle_id,
            ),
        )
        .order_by(OutboxMessage.id.desc())
        .limit(limit)
    ).all()
    found: list[tuple[datetime, int, int, Message]] = []
    for text in inbound:
        sent = Message(text.id, IN, TEXT, text.body, text.received_at, intent=text.intent)
        found.append((text.received_at, 0, text.id, sent))
        if text.reply_text:
            answer = Message(text.id, OUT, AUTO, text.reply_text, text.received_at)
            found.append((text.received_at, 1, text.id, answer))
    for out in outbound:
        later = Message(out.id, OUT, out.kind, out.body, out.created_at)
        found.append((out.created_at, 2, out.id, later))
    found.sort(key=lambda item: item[:3])
    return [item[3] for item in found[-limit:]]


def membership(session: Session, huddle_id: int, phone: str) -> Membership | None:
    """The member with this number, if the huddle holds them or they subscribed to it."""
    member_id = session.scalar(select(Member.id).where(Member.phone == phone))
    if member_id is None:
        return None
    state = session.scalar(
        select(Subscription.state).where(
            Subscription.member_id == member_id,
            Subscription.huddle_id == huddle_id,
            Subscription.channel == m.SMS,
        )
    )
    held = session.scalar(
        select(HuddleMember.member_id).where(
            HuddleMember.huddle_id == huddle_id, HuddleMember.member_id == member_id
        )
    )
    if state is None and held is None:
        return None
    return Membership(member_id, state)
