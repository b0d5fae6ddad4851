"""Organizer accounts: made and changed by an admin (`outreach user …`), signed in by password."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from outreach.accounts import audit, passwords
from outreach.addresses.emails import InvalidEmail, normalize_email
from outreach.app.clock import utcnow
from outreach.models import ApiToken, Huddle, Organizer, OrganizerHuddle
from outreach.models import accounts as a


class AccountError(ValueError):
    """A request about accounts that cannot be done, in words for the person who asked."""


@dataclass(frozen=True)
class UserSummary:
    email: str
    name: str
    is_admin: bool
    disabled: bool
    roles: dict[str, str]  # huddle slug → role


def _email(text: str) -> str:
    try:
        return normalize_email(text)
    except InvalidEmail as exc:
        raise AccountError(f"{text!r} is not an email address: {exc.reason}") from None


def get_user(session: Session, email: str) -> Organizer:
    user = session.scalars(select(Organizer).where(Organizer.email == _email(email))).one_or_none()
    if user is None:
        raise AccountError(f"no user {email}")
    return user


def _huddles(session: Session, slugs: Iterable[str]) -> list[Huddle]:
    wanted = list(dict.fromkeys(slugs))
    found = {h.slug: h for h in session.scalars(select(Huddle).where(Huddle.slug.in_(wanted)))}
    missing = [s for s in wanted if s not in found]
    if missing:
        raise AccountError(f"no huddle with slug {', '.join(map(repr, missing))}")
    return [found[s] for s in wanted]


def create_user(
    session: Session,
    *,
    email: str,
    password: str,
    name: str = "",
    admin: bool = False,
    huddles: Iterable[str] = (),
    role: str = a.ORGANIZER,
    by: str = "cli",
) -> Organizer:
    address = _email(email)
    if session.scalars(select(Organizer.id).where(Organizer.email == address)).first():
        raise AccountError(f"there is already a user {address}")
    try:
        hashed = passwords.hash_password(password)
    except passwords.WeakPassword as exc:
        raise AccountError(str(exc)) from None
    user = Organizer(
        email=address, name=name or address.split("@")[0], password_hash=hashed, is_admin=admin
    )
    session.add(user)
    session.flush()
    audit.record(
        session,
        audit.USER_CREATED,
        actor_id=None,
        actor_email=by,
        subject=address,
        detail={"admin": admin},
    )
    if huddles:
        grant(session, email=address, huddles=huddles, role=role, by=by)
    return user


def grant(
    session: Session,
    *,
    email: str,
    huddles: Iterable[str],
    role: str = a.ORGANIZER,
    by: str = "cli",
) -> None:
    """Give (or change) the user's role in these huddles."""
    if role not in a.HUDDLE_ROLES:
        raise AccountError(f"a role is {' or '.join(a.HUDDLE_ROLES)}, not {role!r}")
    user = get_user(session, email)
    for huddle in _huddles(session, huddles):
        current = session.get(OrganizerHuddle, (user.id, huddle.id))
        if current is None:
            session.add(OrganizerHuddle(organizer_id=user.id, huddle_id=huddle.id, role=role))
        else:
            current.role = role
        audit.record(
            session,
            audit.ACCESS_GRANTED,
            actor_id=None,
            actor_email=by,
            huddle_id=huddle.id,
            subject=user.email,
            detail={"role": role},
        )


def revoke(session: Session, *, email: str, huddles: Iterable[str], by: str = "cli") -> None:
    user = get_user(session, email)
    for huddle in _huddles(session, huddles):
        session.execute(
            delete(OrganizerHuddle).where(
                OrganizerHuddle.organizer_id == user.id, OrganizerHuddle.huddle_id == huddle.id
            )
        )
        audit.record(
            session,
            audit.ACCESS_REVOKED,
            actor_id=None,
            actor_email=by,
            huddle_id=huddle.id,
            subject=user.email,
        )


def disable(session: Session, *, email: str, by: str = "cli") -> None:
    """No more sign-ins; every session ends and every token stops working, now."""
    user = get_user(session, email)
    now = utcnow()
    user.disabled_at = user.disabled_at or now
    user.session_version += 1
    session.execute(
        update(ApiToken)
        .where(ApiToken.organizer_id == user.id, ApiToken.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    audit.record(session, audit.USER_DISABLED, actor_id=None, actor_email=by, subject=user.email)


def list_users(session: Session) -> list[UserSummary]:
    roles: dict[int, dict[str, str]] = {}
    for organizer_id, slug, role in session.execute(
        select(OrganizerHuddle.organizer_id, Huddle.slug, OrganizerHuddle.role).join(
            Huddle, Huddle.id == OrganizerHuddle.huddle_id
        )
    ):
        roles.setdefault(organizer_id, {})[slug] = role
    return [
        UserSummary(u.email, u.name, u.is_admin, u.disabled_at is not None, roles.get(u.id, {}))
        for u in session.scalars(select(Organizer).order_by(Organizer.email))
    ]


def authenticate(session: Session, email: str, password: str) -> Organizer | None:
    """The user these credentials sign in, or None; the same work whichever part is wrong."""
    try:
        address = normalize_email(email)
    except InvalidEmail:
        address = None
    user = (
        session.scalars(select(Organizer).where(Organizer.email == address)).one_or_none()
        if address
        else None
    )
    stored = user.password_hash if user is not None else None
    if not passwords.verify(stored, password) or user is None or user.disabled_at is not None:
        return None
    if stored and passwords.needs_rehash(stored):
        user.password_hash = passwords.hash_password(password)
    user.last_sign_in_at = utcnow()
    return user


def end_sessions(session: Session, organizer_id: int) -> None:
    """Sign out everywhere: every session cookie of this user stops naming a valid session."""
    session.execute(
        update(Organizer)
        .where(Organizer.id == organizer_id)
        .values(session_version=Organizer.session_version + 1)
    )


def invite_user(
    session: Session,
    *,
    email: str,
    name: str = "",
    admin: bool = False,
    huddles: Iterable[str] = (),
    role: str = a.ORGANIZER,
    by: str = "cli",
) -> Organizer:
    """An account with no password yet: it cannot sign in until its owner sets one by the link.

    Checked before anything is written, so a bad role or huddle leaves no half-made account.
    """
    address = _email(email)
    if session.scalars(select(Organizer.id).where(Organizer.email == address)).first():
        raise AccountError(f"there is already a user {address}")
    wanted = [h.slug for h in _huddles(session, huddles)]
    if wanted and role not in a.HUDDLE_ROLES:
        raise AccountError(f"a role is {' or '.join(a.HUDDLE_ROLES)}, not {role!r}")
    user = Organizer(
        email=address, name=name or address.split("@")[0], password_hash=None, is_admin=admin
    )
    session.add(user)
    session.flush()
    audit.record(
        session,
        audit.USER_CREATED,
        actor_id=None,
        actor_email=by,
        subject=address,
        detail={"admin": admin, "invited": True},
    )
    if wanted:
        grant(session, email=address, huddles=wanted, role=role, by=by)
    return user


def set_password(
    session: Session, organizer_id: int, password: str, *, by: str, action: str = audit.PASSWORD_SET
) -> Organizer:
    """A new password; every session of this person ends (the caller signs the new one in)."""
    user = session.get(Organizer, organizer_id)
    if user is None:
        raise AccountError("no such user")
    try:
        user.password_hash = passwords.hash_password(password)
    except passwords.WeakPassword as exc:
        raise AccountError(str(exc)) from None
    user.session_version += 1
    audit.record(session, action, actor_id=user.id, actor_email=by, subject=user.email)
    return user
