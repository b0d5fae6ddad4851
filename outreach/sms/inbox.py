"""The inbox's working tools: canned replies, who answers which conversation, and a reply sent
at most once however many times its form is submitted.

Conversations themselves (what was texted, the reply's consent checks) are
:mod:`outreach.sms.conversations`; this module adds what the dashboard's people need to share the
work. Nothing here knows of the web.

A reply form carries a one-time key. :func:`send_reply_once` claims it in the
``idempotency_keys`` table (the API's ``Idempotency-Key`` store, under a prefix of its own) in a
transaction of its own before the provider is called: a second click, or a second tab, finds it
claimed and sends nothing. A refusal releases the key (nothing went out, the organizer may try
again); a provider answer that was lost keeps it, as the API does: never twice comes first.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from outreach.accounts.access import INBOX, ROLE_CAPABILITIES
from outreach.app.clock import utcnow
from outreach.app.settings import Settings
from outreach.models import (
    CannedReply,
    Huddle,
    IdempotencyKey,
    InboxAssignment,
    Organizer,
    OrganizerHuddle,
)
from outreach.models import accounts as a
from outreach.providers import SmsTransport, UncertainSendError
from outreach.sms import conversations as talk

__all__ = [
    "MAX_CANNED_REPLIES",
    "MAX_TITLE_CHARS",
    "Assignee",
    "CannedReplyError",
    "DuplicateReply",
    "NoConversation",
    "add_canned_reply",
    "assign",
    "assignees",
    "assignees_of",
    "canned_replies",
    "delete_canned_reply",
    "edit_canned_reply",
    "get_canned_reply",
    "new_form_key",
    "send_reply_once",
    "valid_form_key",
    "why_no_reply",
]

MAX_TITLE_CHARS = 80
MAX_CANNED_REPLIES = 200  # a picker longer than this helps nobody
FORM_KEY_PREFIX = "inbox-reply:"
SENT = 201  # the status a settled form key keeps (as the API stores its answer's)


# ---------------------------------------------------------------------------------------------
# Canned replies


class CannedReplyError(ValueError):
    """A canned reply that cannot be saved; ``field`` names what to fix (title, body, form)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def canned_replies(session: Session, huddle_id: int) -> list[CannedReply]:
    """The huddle's canned replies, by title."""
    return list(
        session.scalars(
            select(CannedReply)
            .where(CannedReply.huddle_id == huddle_id)
            .order_by(func.lower(CannedReply.title), CannedReply.id)
            .limit(MAX_CANNED_REPLIES)
        )
    )


def get_canned_reply(session: Session, huddle_id: int, reply_id: int) -> CannedReply | None:
    """One of the huddle's canned replies; None for another huddle's."""
    return session.scalars(
        select(CannedReply).where(CannedReply.id == reply_id, CannedReply.huddle_id == huddle_id)
    ).first()


def _checked(session: Session, huddle_id: int, title: str, body: str, *, own: int | None) -> None:
    if not title:
        raise CannedReplyError("title", "Give the reply a short title, e.g. “Meeting time”.")
    if len(title) > MAX_TITLE_CHARS:
        raise CannedReplyError("title", f"A title has at most {MAX_TITLE_CHARS} characters.")
    if not body:
        raise CannedReplyError("body", "Type the text the reply sends.")
    if len(body) > talk.MAX_REPLY_CHARS:
        raise CannedReplyError(
            "body",
            f"A reply has at most {talk.MAX_REPLY_CHARS:,} characters; this one has {len(body):,}.",
        )
    clash = select(CannedReply.id).where(
        CannedReply.huddle_id == huddle_id, func.lower(CannedReply.title) == title.lower()
    )
    if own is not None:
        clash = clash.where(CannedReply.id != own)
    if session.scalar(clash) is not None:
        raise CannedReplyError("title", "Another canned reply has this title: choose another.")


def add_canned_reply(session: Session, huddle_id: int, *, title: str, body: str) -> CannedReply:
    """Save a new canned reply (raises :class:`CannedReplyError` for what is wrong with it)."""
    title, body = title.strip(), body.strip()
    _checked(session, huddle_id, title, body, own=None)
    count = session.scalar(
        select(func.count()).select_from(CannedReply).where(CannedReply.huddle_id == huddle_id)
    )
    if (count or 0) >= MAX_CANNED_REPLIES:
        raise CannedReplyError(
            "form", f"A huddle keeps {MAX_CANNED_REPLIES} canned replies at most: delete one first."
        )
    reply = CannedReply(huddle_id=huddle_id, title=title, body=body)
    session.add(reply)
    session.flush()
    return reply


def edit_canned_reply(session: Session, reply: CannedReply, *, title: str, body: str) -> None:
    title, body = title.strip(), body.strip()
    _checked(session, reply.huddle_id, title, body, own=reply.id)
    reply.title, reply.body, reply.updated_at = title, body, utcnow()


def delete_canned_reply(session: Session, reply: CannedReply) -> None:
    session.delete(reply)


# ---------------------------------------------------------------------------------------------
# Assignments


@dataclass(frozen=True)
class Assignee:
    organizer_id: int
    name: str
    email: str


_INBOX_ROLES = tuple(
    role for role, caps in ROLE_CAPABILITIES.items() if INBOX in caps and role != a.ADMIN
)


def assignees(session: Session, huddle_id: int) -> list[Assignee]:
    """Everyone who may answer the huddle's inbox now (its organizers and responders, and the
    admins), by name: the people a conversation can be given to."""
    granted = select(OrganizerHuddle.organizer_id).where(
        OrganizerHuddle.huddle_id == huddle_id, OrganizerHuddle.role.in_(_INBOX_ROLES)
    )
    rows = session.execute(
        select(Organizer.id, Organizer.name, Organizer.email)
        .where(
            Organizer.disabled_at.is_(None),
            or_(Organizer.is_admin.is_(True), Organizer.id.in_(granted)),
        )
        .order_by(func.lower(Organizer.name), Organizer.id)
    ).all()
    return [Assignee(row.id, row.name or row.email, row.email) for row in rows]


def assignees_of(session: Session, huddle_id: int, member_ids: list[int]) -> dict[int, Assignee]:
    """Who answers each of these members' conversations (those given to somebody)."""
    if not member_ids:
        return {}
    rows = session.execute(
        select(InboxAssignment.member_id, Organizer.id, Organizer.name, Organizer.email)
        .join(Organizer, Organizer.id == InboxAssignment.organizer_id)
        .where(InboxAssignment.huddle_id == huddle_id, InboxAssignment.member_id.in_(member_ids))
    ).all()
    return {row[0]: Assignee(row[1], row[2] or row[3], row[3]) for row in rows}


def assign(
    session: Session,
    huddle_id: int,
    member_id: int,
    organizer_id: int | None,
    *,
    by: int | None,
) -> Assignee | None:
    """Give the member's conversation to ``organizer_id`` (None: to nobody).

    Raises ``ValueError`` when that person may not answer this huddle's inbox: a conversation is
    never given to someone who cannot open it.
    """
    session.execute(
        delete(InboxAssignment).where(
            InboxAssignment.huddle_id == huddle_id, InboxAssignment.member_id == member_id
        )
    )
    if organizer_id is None:
        return None
    chosen = next(
        (p for p in assignees(session, huddle_id) if p.organizer_id == organizer_id), None
    )
    if chosen is None:
        raise ValueError("That person does not answer this huddle's inbox.")
    session.add(
        InboxAssignment(
            huddle_id=huddle_id,
            member_id=member_id,
            organizer_id=organizer_id,
            assigned_by_id=by,
            assigned_at=utcnow(),
        )
    )
    return chosen


# ---------------------------------------------------------------------------------------------
# Replies, once


class DuplicateReply(Exception):
    """This form's reply was sent already (or is being sent): nothing more was."""


class NoConversation(LookupError):
    """No such member in this huddle's inbox."""


def why_no_reply(session: Session, huddle: Huddle, member_id: int) -> str | None:
    """Why a reply to this member would be refused now (opted out, no number, …); None: it
    would go. The same checks the send makes, asked before the form is shown."""
    try:
        talk.prepare_reply(session, huddle, member_id, "?")
    except talk.ReplyRefused as refused:
        return refused.message
    return None


def new_form_key() -> str:
    return str(uuid.uuid4())


def valid_form_key(raw: str) -> bool:
    try:
        return str(uuid.UUID(raw)) == raw.lower()
    except ValueError:
        return False


def send_reply_once(
    sessions: sessionmaker[Session],
    settings: Settings,
    transport: SmsTransport,
    *,
    huddle_id: int,
    member_id: int,
    body: str,
    organizer_id: int,
    form_key: str,
    now: datetime | None = None,
) -> talk.Message:
    """Text the member ``body`` from the huddle's number, once per ``form_key``.

    Raises :class:`DuplicateReply` (a key already claimed), :class:`NoConversation`,
    :class:`~outreach.sms.conversations.ReplyRefused` (opted out, empty, …: nothing sent) and
    :class:`~outreach.sms.conversations.ReplyFailed` (the provider refused, or its answer was
    lost). The checks and the provider call hold no transaction, as the API's reply does.
    """
    key = FORM_KEY_PREFIX + form_key.lower()
    fingerprint = hashlib.sha256(f"{huddle_id}:{member_id}".encode()).hexdigest()
    try:
        with sessions.begin() as session:
            session.add(
                IdempotencyKey(
                    organizer_id=organizer_id,
                    key=key,
                    fingerprint=fingerprint,
                    created_at=now or utcnow(),
                )
            )
    except IntegrityError:
        raise DuplicateReply from None
    try:
        with sessions() as session:
            huddle = session.get_one(Huddle, huddle_id)
            message = talk.prepare_reply(session, huddle, member_id, body)
        if message is None:
            raise NoConversation(member_id)
        result = talk.send(transport, message)
    except talk.ReplyFailed as failed:
        with sessions.begin() as session:
            huddle = session.get_one(Huddle, huddle_id)
            talk.record_refusal(session, settings, huddle, member_id, failed)
        if not isinstance(failed.error, UncertainSendError):
            _release(sessions, organizer_id, key)
        raise
    except Exception:
        _release(sessions, organizer_id, key)
        raise
    with sessions.begin() as session:
        huddle = session.get_one(Huddle, huddle_id)
        sent = talk.record_reply(session, transport.name, huddle, member_id, message, result)
        session.execute(
            update(IdempotencyKey)
            .where(IdempotencyKey.organizer_id == organizer_id, IdempotencyKey.key == key)
            .values(status_code=SENT, response_body=str(sent.id))
        )
    return sent


def _release(sessions: sessionmaker[Session], organizer_id: int, key: str) -> None:
    with sessions.begin() as session:
        session.execute(
            delete(IdempotencyKey).where(
                IdempotencyKey.organizer_id == organizer_id, IdempotencyKey.key == key
            )
        )
