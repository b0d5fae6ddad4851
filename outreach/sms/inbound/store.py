"""The inbound text's reads and writes, as prebuilt SQLAlchemy Core statements.

Reads first: the member with their SMS subscriptions (on PostgreSQL after locking the member's
row, so texts about one member apply one at a time, each from what the one before committed).
Then the text claims its MessageSid (``ON CONFLICT DO NOTHING``: a repeated delivery waits for
the first and changes nothing), and its consent changes go through :mod:`outreach.consent`.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Connection, Table, and_, bindparam, select, text, update
from sqlalchemy.dialects import postgresql, sqlite

from outreach import consent
from outreach.addresses.phones import try_normalize_phone
from outreach.models import InboundMessage, Member, Subscription
from outreach.models import consent as c
from outreach.models import members as m
from outreach.models.messaging import HINTED
from outreach.sms.inbound.decide import IGNORED, Decision, Snapshot, Writes
from outreach.sms.inbound.directory import NumberHuddles
from outreach.sms.inbound.message import InboundResult, InboundSms

_MEMBERS = cast(Table, Member.__table__)
_SUBSCRIPTIONS = cast(Table, Subscription.__table__)
_INBOUND = cast(Table, InboundMessage.__table__)

# Parsing and validating a number costs as much as the database work of a reply; the numbers we
# are texted on are few, and a member's texts come in runs (JOIN, YES, name, zip, replies).
normalize_phone = functools.lru_cache(maxsize=4096)(try_normalize_phone)
_E164_SHAPE = re.compile(r"\+[1-9][0-9]{6,14}")

_LOCK_MEMBER = select(_MEMBERS.c.id).where(_MEMBERS.c.phone == bindparam("phone")).with_for_update()
_MEMBER = (
    select(
        _MEMBERS.c.id,
        _MEMBERS.c.first_name,
        _SUBSCRIPTIONS.c.id.label("subscription_id"),
        _SUBSCRIPTIONS.c.huddle_id,
        _SUBSCRIPTIONS.c.state,
        _SUBSCRIPTIONS.c.conversation_step,
    )
    .outerjoin(
        _SUBSCRIPTIONS,
        and_(_SUBSCRIPTIONS.c.member_id == _MEMBERS.c.id, _SUBSCRIPTIONS.c.channel == m.SMS),
    )
    .where(_MEMBERS.c.phone == bindparam("phone"))
    .order_by(_SUBSCRIPTIONS.c.updated_at.desc(), _SUBSCRIPTIONS.c.id.desc())
)
_INSERT_MEMBER = (
    _MEMBERS.insert()
    .values(phone=bindparam("phone"), created_at=bindparam("at"))
    .returning(_MEMBERS.c.id)
)
_MEMBER_REPLIED = (
    update(_MEMBERS)
    .where(_MEMBERS.c.id == bindparam("member_id"))
    .values(last_replied_at=bindparam("at"))
)
_MEMBER_FIRST_NAME = (
    update(_MEMBERS)
    .where(_MEMBERS.c.id == bindparam("member_id"))
    .values(first_name=bindparam("first_name"))
)
_MEMBER_ZIP = (
    update(_MEMBERS).where(_MEMBERS.c.id == bindparam("member_id")).values(zip=bindparam("zip"))
)
_ROW_VALUES = (
    "message_sid",
    "from_raw",
    "from_e164",
    "to_number",
    "body",
    "media",
    "intent",
    "reply_text",
    "member_id",
    "huddle_id",
    "flagged",
    "handled",
    "received_at",
)


def _claim(insert: postgresql.Insert | sqlite.Insert) -> Any:
    return (
        insert.values({name: bindparam(name) for name in _ROW_VALUES})
        .on_conflict_do_nothing(index_elements=["message_sid"])
        .returning(_INBOUND.c.id)
    )


_CLAIM = {
    "postgresql": _claim(postgresql.insert(_INBOUND)),
    "sqlite": _claim(sqlite.insert(_INBOUND)),
}
_ANSWERED = select(_INBOUND.c.intent, _INBOUND.c.reply_text).where(
    _INBOUND.c.message_sid == bindparam("sid")
)
# HINTED word for word: the partial index's predicate (ix_inbound_messages_hints); the intent
# then says which hint (each kind has its own once-a-day budget).
HINTED_SINCE = (
    select(_INBOUND.c.id)
    .where(
        _INBOUND.c.from_e164 == bindparam("phone"),
        text(HINTED),
        _INBOUND.c.intent == bindparam("intent"),
        _INBOUND.c.received_at >= bindparam("since", type_=_INBOUND.c.received_at.type),
    )
    .limit(1)
)
_FINISH = (
    update(_INBOUND)
    .where(_INBOUND.c.id == bindparam("row_id"))
    .values(
        intent=bindparam("intent"),
        reply_text=bindparam("reply_text"),
        member_id=bindparam("member_id"),
        huddle_id=bindparam("huddle_id"),
        flagged=bindparam("flagged"),
    )
)


@dataclass(frozen=True)
class Sender:
    """A text's From as Twilio sent it: E.164 for a phone, else a short code, a name, garbage.

    A member's number is stored normalized, so a From with E.164's shape is looked up as it is
    first: a member on file with it is a valid number already checked. Only other senders are
    validated with ``phonenumbers``, which costs as much as a tenth of a reply.
    """

    raw: str
    region: str

    def on_file_candidate(self) -> str | None:
        return self.raw if _E164_SHAPE.fullmatch(self.raw) else None

    def normalized(self) -> str | None:
        return normalize_phone(self.raw, self.region)


def read_snapshot(
    db: Connection, sender: Sender, huddles: NumberHuddles
) -> tuple[str | None, Snapshot | None]:
    """The sender's E.164 and what the text is decided from; (None, None): not a phone."""
    on_file = sender.on_file_candidate()
    rows: list[Any] = []
    if on_file is not None:
        rows = _member_rows(db, on_file)
        if rows:
            return on_file, _snapshot(huddles, rows)
    from_e164 = sender.normalized()
    if from_e164 is None:
        return None, None
    if from_e164 != on_file:
        rows = _member_rows(db, from_e164)
    return from_e164, _snapshot(huddles, rows)


def _member_rows(db: Connection, phone: str) -> list[Any]:
    """The member with this number, a row per SMS subscription; none: not a member.

    On PostgreSQL the member's row is locked first, in its own statement: under READ COMMITTED
    the read after it sees what a concurrent text about the member committed while this one
    waited (a profile answer read just before a STOP would otherwise write the subscription back
    to ``active``). A member inserted by a text still in flight is not there yet: the insert that
    collides with it is decided again (``outreach.sms.inbound.handle_inbound``).
    """
    if (
        db.dialect.name == "postgresql"
        and db.execute(_LOCK_MEMBER, {"phone": phone}).first() is None
    ):
        return []
    return list(db.execute(_MEMBER, {"phone": phone}))


def _snapshot(huddles: NumberHuddles, rows: list[Any]) -> Snapshot:
    if not rows:
        return Snapshot(huddles, None, None, [])
    member_id, first_name = rows[0].id, rows[0].first_name
    subscriptions = [
        consent.SubscriptionState(
            row.subscription_id, member_id, row.huddle_id, m.SMS, row.state, row.conversation_step
        )
        for row in rows
        if row.subscription_id is not None  # a member without subscriptions: one row of NULLs
    ]
    return Snapshot(huddles, member_id, first_name, subscriptions)


def hinted_since(db: Connection, phone: str, intent: str, since: datetime) -> bool:
    """Whether this number got the hint that answers ``intent`` since then (once a day at most):
    how to join (``unknown``), how to stop (``maybe_opt_out``)."""
    values = {"phone": phone, "intent": intent, "since": since}
    return db.execute(HINTED_SINCE, values).first() is not None


def claim(
    db: Connection,
    sms: InboundSms,
    *,
    from_e164: str | None,
    to_e164: str,
    received_at: datetime,
    member_id: int | None,
    decision: Decision | None,
) -> int | None:
    """Insert the text's row unless its MessageSid is there already; the row's id, or None.

    Without a ``decision`` the row goes in as IGNORED and :func:`finish` completes it (a join by
    a number never seen: the member it names does not exist yet). A concurrent transaction
    holding the same MessageSid makes the insert wait for it, then do nothing: dedupe holds
    across processes, and nobody gets an error.
    """
    result = decision.result if decision is not None else InboundResult(IGNORED, None)
    row = db.execute(
        _CLAIM[db.dialect.name],
        {
            "message_sid": sms.message_sid,
            "from_raw": sms.from_raw,
            "from_e164": from_e164,
            "to_number": to_e164[:64],
            "body": sms.body,
            "media": _media(sms),
            "intent": result.intent,
            "reply_text": result.reply,
            "member_id": member_id,
            "huddle_id": decision.huddle_id if decision is not None else None,
            "flagged": decision.flagged if decision is not None else False,
            "handled": False,
            "received_at": received_at,
        },
    ).first()
    return None if row is None else int(row[0])


def _media(sms: InboundSms) -> list[dict[str, str]] | None:
    """The attachments as the column keeps them; None (NULL) for a text without any."""
    if not sms.media:
        return None
    return [{"url": m.url, "content_type": m.content_type} for m in sms.media]


def answered(db: Connection, message_sid: str) -> InboundResult:
    """A duplicate MessageSid: the answer the first delivery got."""
    intent, reply = db.execute(_ANSWERED, {"sid": message_sid}).one()
    return InboundResult(intent, reply, duplicate=True)


def insert_member(db: Connection, phone: str, at: datetime) -> int:
    return int(db.execute(_INSERT_MEMBER, {"phone": phone, "at": at}).scalar_one())


def write(
    db: Connection,
    writes: Writes,
    sms: InboundSms,
    *,
    member_id: int | None,
    phone: str,
    received_at: datetime,
    now: datetime,
) -> None:
    """A decided text's writes, after its claim: the member's columns, then consent.

    A STOP from a number we have not met has no member: its revocation and suppression are
    still recorded, about the number (a scoped STOP's revocation names its huddle).
    """
    provenance = consent.Provenance(  # the member's own words, by MessageSid
        source=c.SOURCE_KEYWORD,
        detail=sms.body[:500],
        provider_message_id=sms.message_sid,
        actor="member",
    )
    if member_id is not None:
        _write_member(db, writes, member_id, phone, provenance, received_at, now)
    if writes.revocation_only:
        consent.record(
            db,
            member_id=member_id,
            huddle_id=writes.revoked_huddle_id,
            channel=m.SMS,
            address=phone,
            action=c.OPT_OUT,
            provenance=provenance,
            at=now,
        )
    detail = f"{sms.message_sid}: {sms.body[:200]}"
    for scope in writes.suppress:
        consent.suppress(
            db, channel=m.SMS, address=phone, scope=scope, reason="stop", detail=detail, at=now
        )
    for scope in writes.lift:
        consent.lift_suppression(db, channel=m.SMS, address=phone, scope=scope, at=now)


def _write_member(
    db: Connection,
    writes: Writes,
    member_id: int,
    phone: str,
    provenance: consent.Provenance,
    received_at: datetime,
    now: datetime,
) -> None:
    if writes.member_replied:
        db.execute(_MEMBER_REPLIED, {"member_id": member_id, "at": received_at})
    if writes.first_name is not None:
        db.execute(_MEMBER_FIRST_NAME, {"member_id": member_id, "first_name": writes.first_name})
    if writes.zip is not None:
        db.execute(_MEMBER_ZIP, {"member_id": member_id, "zip": writes.zip})
    for move in writes.moves:
        consent.move_subscription(
            db,
            move.current,
            member_id=member_id,
            huddle_id=move.huddle_id,
            channel=m.SMS,
            address=phone,
            state=move.state,
            provenance=provenance,
            action=move.action,
            conversation_step=move.conversation_step,
            at=now,
        )


def finish(db: Connection, row_id: int, decision: Decision, member_id: int) -> None:
    """Complete a row claimed before its member existed (:func:`claim` without a decision)."""
    db.execute(
        _FINISH,
        {
            "row_id": row_id,
            "intent": decision.result.intent,
            "reply_text": decision.result.reply,
            "member_id": member_id,
            "huddle_id": decision.huddle_id,
            "flagged": decision.flagged,
        },
    )
