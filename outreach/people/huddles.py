"""Creating and finding huddles."""

from __future__ import annotations

import re
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from outreach.addresses.phones import InvalidPhoneNumber, normalize_phone
from outreach.models import Huddle, JoinKeyword
from outreach.models import huddles as h
from outreach.sms.inbound.classify import is_reserved_keyword

_SLUG = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$")
_KEYWORD = re.compile(r"^[A-Z0-9]{2,40}$")


class HuddleError(ValueError):
    """Bad input for a huddle; the message says which field and why."""


def normalize_keyword(raw: str) -> str:
    keyword = re.sub(r"\s+", "", raw or "").upper()
    if not _KEYWORD.match(keyword):
        raise HuddleError(f"keyword {raw!r} must be 2-40 letters or digits")
    if is_reserved_keyword(keyword):  # it would shadow STOP, HELP, YES… on every number
        raise HuddleError(f"keyword {keyword} is reserved (STOP, HELP, START, YES…)")
    return keyword


def create_huddle(
    session: Session,
    *,
    slug: str,
    name: str,
    keywords: list[str],
    sender: str | None = None,
    messaging_service_sid: str | None = None,
    timezone: str = "America/New_York",
    default_region: str = "US",
    opt_in_mode: str = h.OPT_IN_DOUBLE,
    postal_address: str | None = None,
    email_from_address: str | None = None,
) -> Huddle:
    slug = (slug or "").strip().lower()
    if not _SLUG.match(slug):
        raise HuddleError(f"slug {slug!r} must be lower-case letters, digits and dashes")
    if not (name or "").strip():
        raise HuddleError("name must not be empty")
    if not keywords:
        raise HuddleError("a huddle needs at least one join keyword")
    normalized = [normalize_keyword(k) for k in keywords]
    if session.scalar(select(Huddle.id).where(Huddle.slug == slug)) is not None:
        raise HuddleError(f"a huddle with slug {slug!r} already exists")
    taken = session.scalars(
        select(JoinKeyword.keyword).where(JoinKeyword.keyword.in_(normalized))
    ).all()
    if taken:
        raise HuddleError(f"keyword(s) already used by another huddle: {', '.join(sorted(taken))}")
    sender_number = None
    if sender:
        try:
            sender_number = normalize_phone(sender, default_region)
        except InvalidPhoneNumber as exc:
            raise HuddleError(f"sender {sender!r} is not a valid number: {exc.reason}") from None
    if messaging_service_sid and not re.fullmatch(r"MG[0-9a-fA-F]{32}", messaging_service_sid):
        raise HuddleError("messaging service SID must look like MG followed by 32 hex digits")
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise HuddleError(f"time zone {timezone!r} is not an IANA time zone") from None
    if opt_in_mode not in (h.OPT_IN_DOUBLE, h.OPT_IN_SINGLE):
        raise HuddleError("opt-in mode must be double or single")
    huddle = Huddle(
        slug=slug,
        name=name.strip(),
        sender_number=sender_number,
        messaging_service_sid=messaging_service_sid,
        timezone=timezone,
        opt_in_mode=opt_in_mode,
        postal_address=postal_address,
        email_from_address=email_from_address,
        keywords=[JoinKeyword(keyword=k) for k in dict.fromkeys(normalized)],
    )
    session.add(huddle)
    session.flush()
    return huddle


def get_huddle(session: Session, slug: str) -> Huddle:
    huddle = session.scalars(
        select(Huddle).options(selectinload(Huddle.keywords)).where(Huddle.slug == slug.lower())
    ).one_or_none()
    if huddle is None:
        raise HuddleError(f"no huddle with slug {slug!r}")
    return huddle


def list_huddles(session: Session) -> list[Huddle]:
    return list(
        session.scalars(select(Huddle).options(selectinload(Huddle.keywords)).order_by(Huddle.slug))
    )
