"""Creating and finding huddles."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import time
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from outreach.addresses.emails import InvalidEmail, normalize_email
from outreach.addresses.phones import MAX_INPUT_LENGTH, InvalidPhoneNumber, normalize_phone
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


# --------------------------------------------------------------------------------------------
# Settings: what an admin changes on the dashboard's settings page, validated in one place.
# --------------------------------------------------------------------------------------------

#: The federal window (``outreach.campaigns.quiet_hours.DEFAULT_WINDOW``, which this layer may
#: not import; a test keeps the two equal). A huddle may narrow it, never widen it.
EARLIEST_SEND = time(8)
LATEST_SEND = time(21)
MAX_COPY_CHARS = 640  # an automatic answer: a few segments at most, not a newsletter
MAX_FROM_NAME_CHARS = 100
MAX_POSTAL_CHARS = 500
MAX_KEYWORDS = 20
_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
_WORD_STOP = re.compile(r"\bSTOP\b", re.IGNORECASE)
_WORD_YES = re.compile(r"\bYES\b", re.IGNORECASE)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

#: The settings page's fields, in the order it shows them.
SETTINGS_FIELDS = (
    "keywords",
    "sender",
    "opt_in_mode",
    "help_text",
    "confirmation_text",
    "welcome_text",
    "quiet_start",
    "quiet_end",
    "email_from_address",
    "email_from_name",
    "postal_address",
)


class SettingsError(HuddleError):
    """Settings refused; ``errors`` maps each bad field to what is wrong with it."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(f"{name}: {message}" for name, message in errors.items()))
        self.errors = errors


@dataclass(frozen=True)
class HuddleSettings:
    """The settings as text, as a form shows and sends them ("" means unset / the default).

    Given to :func:`update_settings`, a field left None is not changed.
    """

    keywords: tuple[str, ...] | None = None
    sender: str | None = None
    opt_in_mode: str | None = None
    help_text: str | None = None
    confirmation_text: str | None = None
    welcome_text: str | None = None
    quiet_start: str | None = None
    quiet_end: str | None = None
    email_from_address: str | None = None
    email_from_name: str | None = None
    postal_address: str | None = None


@dataclass(frozen=True)
class SettingsChange:
    """What :func:`update_settings` changed: the audit log's detail."""

    changed: tuple[str, ...]
    keywords_added: tuple[str, ...] = ()
    keywords_removed: tuple[str, ...] = ()

    def as_detail(self) -> dict[str, list[str]]:
        detail = {"changed": list(self.changed)}
        if self.keywords_added:
            detail["keywords_added"] = list(self.keywords_added)
        if self.keywords_removed:
            detail["keywords_removed"] = list(self.keywords_removed)
        return detail


def current_settings(huddle: Huddle) -> HuddleSettings:
    """The huddle's settings as the form shows them."""
    return HuddleSettings(
        keywords=tuple(k.keyword for k in huddle.keywords),
        sender=huddle.sender_number or "",
        opt_in_mode=huddle.opt_in_mode,
        help_text=huddle.help_text or "",
        confirmation_text=huddle.confirmation_text or "",
        welcome_text=huddle.welcome_text or "",
        quiet_start=huddle.quiet_start or "",
        quiet_end=huddle.quiet_end or "",
        email_from_address=huddle.email_from_address or "",
        email_from_name=huddle.email_from_name or "",
        postal_address=huddle.postal_address or "",
    )


def update_settings(session: Session, huddle: Huddle, wanted: HuddleSettings) -> SettingsChange:
    """Check every given field, then change the huddle; nothing changes if any field is wrong.

    Raises :class:`SettingsError` naming each bad field. Another huddle's keyword is refused as
    "already used", and says nothing else of that huddle.
    """
    errors: dict[str, str] = {}
    values: dict[str, object] = {}
    checks = (
        ("sender", lambda raw: _sender(raw, huddle.country)),
        ("opt_in_mode", _opt_in_mode),
        ("help_text", lambda raw: _copy(raw, "HELP answer", needs_yes=False)),
        ("confirmation_text", lambda raw: _copy(raw, "confirmation text", needs_yes=True)),
        ("welcome_text", lambda raw: _copy(raw, "welcome text", needs_yes=False)),
        ("email_from_address", _from_address),
        ("email_from_name", _from_name),
        ("postal_address", _postal_address),
    )
    for name, check in checks:
        raw = getattr(wanted, name)
        if raw is None:
            continue
        try:
            values[name] = check(raw)
        except HuddleError as exc:
            errors[name] = str(exc)
    if wanted.quiet_start is not None or wanted.quiet_end is not None:
        window = _window(wanted.quiet_start, wanted.quiet_end, errors)
        if window is not None:
            values["quiet_start"], values["quiet_end"] = window
    address = values.get("email_from_address", huddle.email_from_address)
    postal = values.get("postal_address", huddle.postal_address)
    if address and not postal and "postal_address" not in errors:
        errors["postal_address"] = (
            "Emails must show a postal address (CAN-SPAM): add one, or remove the from address."
        )
    keywords: list[str] | None = None
    if wanted.keywords is not None:
        keywords = _keywords(session, huddle, wanted.keywords, errors)
    if errors:
        raise SettingsError({name: errors[name] for name in SETTINGS_FIELDS if name in errors})

    changed = [name for name, value in values.items() if _column(huddle, name) != value]
    for name in changed:
        setattr(huddle, _COLUMNS.get(name, name), values[name])
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    if keywords is not None:
        before = [k.keyword for k in huddle.keywords]
        added = tuple(k for k in keywords if k not in before)
        removed = tuple(k for k in before if k not in keywords)
        if added or removed:
            huddle.keywords = [k for k in huddle.keywords if k.keyword in keywords] + [
                JoinKeyword(keyword=k) for k in added
            ]
            changed.insert(0, "keywords")
    session.flush()
    return SettingsChange(tuple(changed), added, removed)


_COLUMNS = {"sender": "sender_number"}


def _column(huddle: Huddle, name: str) -> object:
    return getattr(huddle, _COLUMNS.get(name, name))


def _sender(raw: str, region: str) -> str | None:
    text = raw.strip()
    if not text:
        return None
    if len(text) > MAX_INPUT_LENGTH:
        raise HuddleError("That is too long for a phone number.")
    try:
        return normalize_phone(text, region)
    except InvalidPhoneNumber as exc:
        raise HuddleError(
            f"Not a valid phone number ({exc.reason}). Example: +16175550100"
        ) from None


def _opt_in_mode(raw: str) -> str:
    if raw not in (h.OPT_IN_DOUBLE, h.OPT_IN_SINGLE):
        raise HuddleError("Choose double or single opt-in.")
    return raw


def _copy(raw: str, what: str, *, needs_yes: bool) -> str | None:
    """An automatic answer the huddle writes itself ("" : the standard one)."""
    text = raw.strip().replace("\r\n", "\n")
    if not text:
        return None
    if len(text) > MAX_COPY_CHARS:
        raise HuddleError(
            f"The {what} has {len(text)} characters; {MAX_COPY_CHARS} at most. Shorter texts "
            "cost fewer segments."
        )
    if not _WORD_STOP.search(text):  # CTIA: every automatic answer says how to stop
        raise HuddleError(
            f"The {what} must say how to stop, e.g. \u201cReply STOP to opt out\u201d."
        )
    if needs_yes and not _WORD_YES.search(text):
        raise HuddleError(f"The {what} must ask people to reply YES to confirm.")
    return text


def _from_address(raw: str) -> str | None:
    if not raw.strip():
        return None
    try:
        return normalize_email(raw)
    except InvalidEmail as exc:
        raise HuddleError(
            f"Not an email address ({exc.reason}). Example: logan@example.org"
        ) from None


def _from_name(raw: str) -> str | None:
    text = raw.strip()
    if not text:
        return None
    if len(text) > MAX_FROM_NAME_CHARS:
        raise HuddleError(f"The sender name has {MAX_FROM_NAME_CHARS} characters at most.")
    if _CONTROL.search(text):
        raise HuddleError("The sender name must be on one line.")
    return text


def _postal_address(raw: str) -> str | None:
    text = raw.strip().replace("\r\n", "\n")
    if not text:
        return None
    if len(text) > MAX_POSTAL_CHARS:
        raise HuddleError(f"The postal address has {MAX_POSTAL_CHARS} characters at most.")
    return text


def _hhmm(raw: str) -> time | None:
    found = _HHMM.match(raw.strip())
    return None if found is None else time(int(found.group(1)), int(found.group(2)))


def _window(
    raw_start: str | None, raw_end: str | None, errors: dict[str, str]
) -> tuple[str | None, str | None] | None:
    """("HH:MM", "HH:MM"), (None, None) for the federal default, or None after an error.

    An empty start or end is the federal one (08:00, 21:00).
    """
    start_text, end_text = (raw_start or "").strip(), (raw_end or "").strip()
    if not start_text and not end_text:
        return None, None
    start = _hhmm(start_text) if start_text else EARLIEST_SEND
    end = _hhmm(end_text) if end_text else LATEST_SEND
    if start is None:
        errors["quiet_start"] = "Give a time as HH:MM, e.g. 09:00."
    elif start < EARLIEST_SEND:
        errors["quiet_start"] = "Texts may not go out before 08:00: start at 08:00 or later."
    if end is None:
        errors["quiet_end"] = "Give a time as HH:MM, e.g. 20:00."
    elif end > LATEST_SEND:
        errors["quiet_end"] = "Texts may not go out after 21:00: end at 21:00 or earlier."
    if start is None or end is None or errors.keys() & {"quiet_start", "quiet_end"}:
        return None
    if start >= end:
        errors["quiet_end"] = "The window must end after it starts."
        return None
    return start.strftime("%H:%M"), end.strftime("%H:%M")


def _keywords(
    session: Session, huddle: Huddle, raw: tuple[str, ...], errors: dict[str, str]
) -> list[str] | None:
    problems: list[str] = []
    normalized: list[str] = []
    for word in raw:
        try:
            normalized.append(normalize_keyword(word[:100]))
        except HuddleError as exc:
            problems.append(str(exc))
    keywords = list(dict.fromkeys(normalized))
    if not problems and not keywords:
        problems.append("A huddle needs at least one join keyword.")
    if len(keywords) > MAX_KEYWORDS:
        problems.append(f"A huddle has {MAX_KEYWORDS} join keywords at most.")
    taken = session.scalars(
        select(JoinKeyword.keyword).where(
            JoinKeyword.keyword.in_(keywords), JoinKeyword.huddle_id != huddle.id
        )
    ).all()
    problems.extend(f"{word} is already used." for word in sorted(taken))
    if problems:
        errors["keywords"] = " ".join(problems)
        return None
    return keywords
