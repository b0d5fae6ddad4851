"""A huddle's members one at a time: list and search, read, add, change, opt out for them.

Everything is asked of one huddle: a member is found only if that huddle holds them
(``huddle_members``), and only that huddle's tags, fields and subscriptions are shown. The
consent rules are the importer's: consent only where asserted, an opt-out is never undone, a
suppressed address is not subscribed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, delete, func, or_, select
from sqlalchemy.orm import Session

from outreach import consent
from outreach.addresses.emails import InvalidEmail, normalize_email
from outreach.addresses.phones import InvalidPhoneNumber, normalize_phone
from outreach.addresses.zips import normalize_zip
from outreach.app.clock import utcnow
from outreach.models import (
    ConsentEvent,
    Huddle,
    HuddleMember,
    Member,
    MemberField,
    MemberTag,
    Subscription,
)
from outreach.models import consent as c
from outreach.models import members as m
from outreach.people.importer import MAX_FIELD_BYTES, MAX_LENGTHS, TAG

MAX_TAGS = 50
MAX_FIELDS = 50


class MemberError(ValueError):
    """A change refused, with the field it is about."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(message)
        self.field = field_name
        self.message = message


class MemberConflict(MemberError):
    """The phone and the email belong to two different people."""


@dataclass
class MemberView:
    id: int
    phone: str | None
    email: str | None
    first_name: str | None
    last_name: str | None
    zip: str | None
    joined_at: datetime
    source: str
    consent: dict[str, str] = field(default_factory=dict)  # channel → state or "none"
    tags: list[str] = field(default_factory=list)
    fields: dict[str, str] = field(default_factory=dict)


def _held(huddle_id: int):  # type: ignore[no-untyped-def]
    return (
        select(Member, HuddleMember.created_at, HuddleMember.source)
        .join(HuddleMember, HuddleMember.member_id == Member.id)
        .where(HuddleMember.huddle_id == huddle_id)
    )


def search_condition(text: str, default_region: str):  # type: ignore[no-untyped-def]
    """An exact phone or email, else a name prefix (first or last, any case)."""
    text = text.strip()
    if "@" in text:
        return Member.email == text.lower()
    digits = sum(ch.isdigit() for ch in text)
    if digits >= 7:
        try:
            return Member.phone == normalize_phone(text, default_region)
        except InvalidPhoneNumber:
            return Member.phone.is_(None) & Member.phone.is_not(None)  # nothing
    prefix = text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    return or_(
        func.lower(Member.first_name).like(prefix, escape="\\"),
        func.lower(Member.last_name).like(prefix, escape="\\"),
    )


def list_members(
    session: Session,
    huddle: Huddle,
    *,
    query: str = "",
    after: int = 0,
    limit: int = 50,
    default_region: str = "US",
) -> list[MemberView]:
    """A page of the huddle's members, by id, after ``after``: ``limit`` of them at most."""
    return list_members_where(
        session, huddle, query=query, after=after, limit=limit, default_region=default_region
    )


def list_members_where(
    session: Session,
    huddle: Huddle,
    *,
    condition: ColumnElement[bool] | None = None,
    query: str = "",
    after: int = 0,
    limit: int = 50,
    default_region: str = "US",
) -> list[MemberView]:
    """:func:`list_members`, narrowed by ``condition`` over :class:`Member` too (a compiled
    segment filter: the dashboard's members list filters by the segment language)."""
    # The bound on both sides of the join: PostgreSQL does not carry it across, and would merge
    # the huddle's whole index up to ``after`` first.
    statement = (
        _held(huddle.id)
        .where(HuddleMember.member_id > after, Member.id > after)
        .order_by(Member.id)
        .limit(limit)
    )
    if query.strip():
        statement = statement.where(search_condition(query, default_region))
    if condition is not None:
        statement = statement.where(condition)
    rows = session.execute(statement).all()
    return _views(session, huddle, rows)


def get_member(session: Session, huddle: Huddle, member_id: int) -> MemberView | None:
    rows = session.execute(_held(huddle.id).where(Member.id == member_id)).all()
    views = _views(session, huddle, rows)
    return views[0] if views else None


def _views(session: Session, huddle: Huddle, rows: Iterable[Any]) -> list[MemberView]:
    views = {
        member.id: MemberView(
            id=member.id,
            phone=member.phone,
            email=member.email,
            first_name=member.first_name,
            last_name=member.last_name,
            zip=member.zip,
            joined_at=joined_at,
            source=source,
            consent=dict.fromkeys(m.CHANNELS, m.NO_CONSENT),
        )
        for member, joined_at, source in rows
    }
    if not views:
        return []
    ids = list(views)
    for member_id, channel, state in session.execute(
        select(Subscription.member_id, Subscription.channel, Subscription.state).where(
            Subscription.huddle_id == huddle.id, Subscription.member_id.in_(ids)
        )
    ):
        views[member_id].consent[channel] = state
    for member_id, tag in session.execute(
        select(MemberTag.member_id, MemberTag.tag)
        .where(MemberTag.huddle_id == huddle.id, MemberTag.member_id.in_(ids))
        .order_by(MemberTag.tag)
    ):
        views[member_id].tags.append(tag)
    for member_id, name, value in session.execute(
        select(MemberField.member_id, MemberField.name, MemberField.value)
        .where(MemberField.huddle_id == huddle.id, MemberField.member_id.in_(ids))
        .order_by(MemberField.name)
    ):
        views[member_id].fields[name] = value
    return list(views.values())


@dataclass(frozen=True)
class Changes:
    """What a create or an update sets; None leaves a value as it is."""

    phone: str | None = None
    email: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    zip: str | None = None
    tags: list[str] | None = None  # replaces this huddle's tags
    fields: Mapping[str, str | None] | None = None  # None as a value removes that field


def add_member(
    session: Session,
    huddle: Huddle,
    changes: Changes,
    *,
    consent_channels: Iterable[str] = (),
    actor: str,
    default_region: str = "US",
) -> tuple[MemberView, bool]:
    """Add a person to the huddle, or find them (by phone or email) and fill their blanks.

    Returns the member and whether the huddle newly holds them.
    """
    phone = _phone(changes.phone, default_region)
    email = _email(changes.email)
    if phone is None and email is None:
        raise MemberError("phone", "A member needs a phone number or an email address.")
    by_phone = (
        session.scalars(select(Member).where(Member.phone == phone)).first() if phone else None
    )
    by_email = (
        session.scalars(select(Member).where(Member.email == email)).first() if email else None
    )
    if by_phone is not None and by_email is not None and by_phone.id != by_email.id:
        raise MemberConflict("email", "That phone number and that email are two different people.")
    member = by_phone or by_email
    now = utcnow()
    if member is None:
        member = Member(phone=phone, email=email, created_at=now)
        session.add(member)
    else:
        member.phone = member.phone or phone
        member.email = member.email or email
    _set_names(member, changes, fill_only=True)
    session.flush()
    before = session.get(HuddleMember, (huddle.id, member.id))
    consent.hold(session, huddle_id=huddle.id, member_id=member.id, source=c.SOURCE_API, at=now)
    _set_tags_and_fields(session, huddle, member.id, changes)
    for channel in consent_channels:
        _assert_consent(session, huddle, member, channel, actor=actor)
    (view,) = _views(
        session, huddle, session.execute(_held(huddle.id).where(Member.id == member.id))
    )
    return view, before is None


def update_member(
    session: Session,
    huddle: Huddle,
    member_id: int,
    changes: Changes,
    *,
    default_region: str = "US",
) -> MemberView | None:
    """Change a member's names, zip, and this huddle's tags and fields; None if not held.

    A phone or email is added where the member has none; changing one is refused (it would
    carry another person's consent).
    """
    if session.get(HuddleMember, (huddle.id, member_id)) is None:
        return None
    member = session.get_one(Member, member_id, with_for_update=True)
    for name, value, normalized in (
        ("phone", changes.phone, _phone(changes.phone, default_region)),
        ("email", changes.email, _email(changes.email)),
    ):
        if value is None:
            continue
        current = getattr(member, name)
        if current is not None and current != normalized:
            raise MemberError(name, f"A member's {name} cannot be changed, only added.")
        taken = session.scalars(
            select(Member.id).where(getattr(Member, name) == normalized, Member.id != member.id)
        ).first()
        if taken is not None:
            raise MemberConflict(name, f"That {name} belongs to another person.")
        setattr(member, name, normalized)
    _set_names(member, changes, fill_only=False)
    _set_tags_and_fields(session, huddle, member_id, changes)
    session.flush()
    return get_member(session, huddle, member_id)


def opt_out_for_member(
    session: Session, huddle: Huddle, member_id: int, channel: str, *, actor: str
) -> MemberView | None:
    """Opt the member out of this huddle on ``channel`` (as they asked someone to); the ledger
    names the organizer. None if the huddle does not hold them."""
    if session.get(HuddleMember, (huddle.id, member_id)) is None:
        return None
    member = session.get_one(Member, member_id)
    address = consent.address_for(member, channel)
    if address is not None:
        current = consent.get_subscription(session, member, huddle, channel)
        if current is not None:  # none on record: nothing to stop, and nothing will start
            consent.move_subscription(
                session,
                current,
                member_id=member.id,
                huddle_id=huddle.id,
                channel=channel,
                address=address,
                state=m.OPTED_OUT,
                provenance=consent.Provenance(
                    source=c.SOURCE_ORGANIZER,
                    detail="opted out on the member's behalf",
                    actor=actor,
                ),
            )
    return get_member(session, huddle, member_id)


def consent_history(session: Session, huddle: Huddle, member_id: int) -> list[ConsentEvent] | None:
    """The member's ledger rows about this huddle or about every huddle, oldest first."""
    member = session.get(Member, member_id)
    if member is None or session.get(HuddleMember, (huddle.id, member_id)) is None:
        return None
    return [
        event
        for event in consent.history(session, member)
        if event.huddle_id is None or event.huddle_id == huddle.id
    ]


def _assert_consent(
    session: Session, huddle: Huddle, member: Member, channel: str, *, actor: str
) -> None:
    address = consent.address_for(member, channel)
    if address is None:
        raise MemberError("consent", f"Consent to {channel} needs the member's {channel} address.")
    current = consent.get_subscription(session, member, huddle, channel)
    if current is not None and current.state in (m.ACTIVE, m.OPTED_OUT):
        return  # an opt-out is the member's to undo, never ours
    if consent.is_suppressed(session, channel, address, huddle.sender_key):
        return
    consent.move_subscription(
        session,
        current,
        member_id=member.id,
        huddle_id=huddle.id,
        channel=channel,
        address=address,
        state=m.ACTIVE,
        provenance=consent.Provenance(
            source=c.SOURCE_API, detail="asserted through the API", actor=actor
        ),
    )


def _phone(raw: str | None, region: str) -> str | None:
    if raw is None or not raw.strip():
        return None
    try:
        return normalize_phone(raw, region)
    except InvalidPhoneNumber as exc:
        raise MemberError("phone", f"Not a phone number we can text: {exc.reason}.") from None


def _email(raw: str | None) -> str | None:
    if raw is None or not raw.strip():
        return None
    try:
        return normalize_email(raw)
    except InvalidEmail as exc:
        raise MemberError("email", f"Not an email address: {exc.reason}.") from None


def _set_names(member: Member, changes: Changes, *, fill_only: bool) -> None:
    for name in ("first_name", "last_name"):
        value = getattr(changes, name)
        if value is None:
            continue
        value = " ".join(value.split())
        if len(value) > MAX_LENGTHS[name] or "\x00" in value:
            raise MemberError(name, f"At most {MAX_LENGTHS[name]} characters.")
        if not fill_only or not getattr(member, name):
            setattr(member, name, value or None)
    if changes.zip is not None:
        zip_code = normalize_zip(changes.zip) if changes.zip.strip() else None
        if changes.zip.strip() and zip_code is None:
            raise MemberError("zip", "Not a US ZIP code.")
        if not fill_only or not member.zip:
            member.zip = zip_code


def _set_tags_and_fields(
    session: Session, huddle: Huddle, member_id: int, changes: Changes
) -> None:
    if changes.tags is not None:
        tags = sorted({tag.strip().lower() for tag in changes.tags})
        bad = [tag for tag in tags if not TAG.match(tag)]
        if bad or len(tags) > MAX_TAGS:
            raise MemberError("tags", f"Tags are letters, digits, - and _ (at most {MAX_TAGS}).")
        session.execute(
            delete(MemberTag).where(
                MemberTag.huddle_id == huddle.id, MemberTag.member_id == member_id
            )
        )
        session.add_all(MemberTag(huddle_id=huddle.id, member_id=member_id, tag=t) for t in tags)
    if changes.fields is not None:
        if len(changes.fields) > MAX_FIELDS:
            raise MemberError("fields", f"At most {MAX_FIELDS} fields.")
        for name, value in changes.fields.items():
            if not m.FIELD_NAME.fullmatch(name):
                raise MemberError("fields", f"{name[:64]!r} is not a field name (a-z, 0-9, _).")
            if value is not None and (len(value.encode()) > MAX_FIELD_BYTES or "\x00" in value):
                raise MemberError("fields", f"{name}: at most {MAX_FIELD_BYTES} bytes of text.")
            session.execute(
                delete(MemberField).where(
                    MemberField.huddle_id == huddle.id,
                    MemberField.member_id == member_id,
                    MemberField.name == name,
                )
            )
            if value is not None:
                session.add(
                    MemberField(huddle_id=huddle.id, member_id=member_id, name=name, value=value)
                )
