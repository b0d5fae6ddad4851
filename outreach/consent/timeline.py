"""The consent ledger in plain words, for an organizer reading a member's profile.

Every ledger row becomes one sentence: "Joined by texting 'LOGAN' on 3 Dec 2026 at 14:02",
"Stopped by texting 'please remove me' …", "Opted out of texts by Lee (organizer) …". The words
depend on where the change came from (``ConsentEvent.source``) and what it was
(``ConsentEvent.action``); every source and every action in :mod:`outreach.models.consent` has
words here (a test enumerates them), and the combinations the code writes have a sentence of
their own. Times are shown in the huddle's time zone.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import select
from sqlalchemy.orm import Session

from outreach.models import ConsentEvent, Organizer
from outreach.models import consent as c
from outreach.models import members as m

QUOTE_AT_MOST = 120  # characters of a member's own words quoted in a sentence

# What each action is, whatever its source: the words of last resort.
ACTION_WORDS: dict[str, str] = {
    c.OPT_IN_REQUESTED: "Asked to confirm {channel}",
    c.OPT_IN: "Agreed to {channel}",
    c.OPT_OUT: "Stopped {channel}",
    c.RESUBSCRIBE: "Came back to {channel}",
    c.SUPPRESS: "Blocked from {channel}",
}

# How each source came about, as the end of a sentence.
SOURCE_WORDS: dict[str, str] = {
    c.SOURCE_KEYWORD: "by text message",
    c.SOURCE_FORM: "on a web page",
    c.SOURCE_IMPORT: "by a CSV import",
    c.SOURCE_API: "through the API",
    c.SOURCE_PROVIDER: "as the text or email provider reported",
    c.SOURCE_ORGANIZER: "by an organizer",
}

CHANNEL_WORDS = {m.SMS: "texts", m.EMAIL: "email"}

# The (source, action) pairs the code writes (grep consent.record / move_subscription /
# set_subscription_state): each has a sentence of its own below, not only the generic words.
WRITTEN: frozenset[tuple[str, str]] = frozenset(
    {
        (c.SOURCE_KEYWORD, c.OPT_IN_REQUESTED),  # a join keyword, double opt-in
        (c.SOURCE_KEYWORD, c.OPT_IN),  # a join keyword (single opt-in), or YES
        (c.SOURCE_KEYWORD, c.RESUBSCRIBE),  # START after STOP
        (c.SOURCE_KEYWORD, c.OPT_OUT),  # STOP, or words that mean it
        (c.SOURCE_FORM, c.OPT_IN_REQUESTED),  # the join form
        (c.SOURCE_FORM, c.OPT_IN),  # the email confirmation link
        (c.SOURCE_FORM, c.OPT_OUT),  # the unsubscribe page, one-click unsubscribe
        (c.SOURCE_IMPORT, c.OPT_IN),  # an import with consent asserted
        (c.SOURCE_API, c.OPT_IN),  # consent asserted through the API
        (c.SOURCE_PROVIDER, c.OPT_OUT),  # Twilio 21610, SendGrid spam report / unsubscribe
        (c.SOURCE_PROVIDER, c.SUPPRESS),  # landline, invalid number, bounce, dropped
        (c.SOURCE_ORGANIZER, c.OPT_OUT),  # an organizer, on the member's behalf
    }
)

_IMPORT_DETAIL = re.compile(r"^(?P<file>.*) line (?P<line>\d+)$")
_TWILIO_ERROR = re.compile(r"twilio error (?P<code>\S+)", re.IGNORECASE)


@dataclass(frozen=True)
class Entry:
    """One line of the timeline."""

    at: datetime  # in the huddle's zone
    when: str  # "3 Dec 2026 at 14:02"
    channel: str
    action: str
    sentence: str  # the whole line, time included


def zone(name: str | None) -> tzinfo:
    """The huddle's zone (UTC when it names none we know)."""
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return UTC


def when(at: datetime, tz: tzinfo) -> str:
    """``3 Dec 2026 at 14:02``, in ``tz`` (a naive time is UTC)."""
    local = (at if at.tzinfo else at.replace(tzinfo=UTC)).astimezone(tz)
    return f"{local.day} {local:%b %Y} at {local:%H:%M}"


def organizer_names(session: Session, events: Iterable[ConsentEvent]) -> dict[str, str]:
    """The names of the organizers the events name as their actor, by email."""
    emails = {e.actor for e in events if e.actor and "@" in e.actor}
    if not emails:
        return {}
    rows = session.execute(
        select(Organizer.email, Organizer.name).where(Organizer.email.in_(emails))
    )
    return {row.email: row.name for row in rows}


def timeline(
    events: Iterable[ConsentEvent], *, tz: tzinfo, names: Mapping[str, str] | None = None
) -> list[Entry]:
    """The events (oldest first, as ``consent_history`` gives them) in words, oldest first."""
    names = names or {}
    pending: set[tuple[str, int | None]] = set()  # (channel, huddle) asked to confirm
    entries = []
    for event in events:
        key = (event.channel, event.huddle_id)
        confirming = key in pending
        if event.action == c.OPT_IN_REQUESTED:
            pending.add(key)
        else:
            pending.discard(key)
        stamp = when(event.created_at, tz)
        local = (
            event.created_at if event.created_at.tzinfo else event.created_at.replace(tzinfo=UTC)
        ).astimezone(tz)
        words = describe(event, confirming=confirming, names=names)
        entries.append(Entry(local, stamp, event.channel, event.action, f"{words} on {stamp}"))
    return entries


def describe(
    event: ConsentEvent, *, confirming: bool = False, names: Mapping[str, str] | None = None
) -> str:
    """The event in words, without its time. ``confirming``: the channel was waiting for a YES."""
    channel = CHANNEL_WORDS.get(event.channel, event.channel)
    detail = (event.detail or "").strip()
    who = _who(event.actor, names or {})
    everywhere = event.huddle_id is None
    source, action = event.source, event.action
    sentence = _specific(source, action, event.channel, channel, detail, who, confirming)
    if sentence is None:
        generic = ACTION_WORDS.get(action, "Changed consent to {channel}").format(channel=channel)
        sentence = f"{generic} {SOURCE_WORDS.get(source, 'by ' + source)}"
    if everywhere and action in (c.OPT_OUT, c.RESUBSCRIBE, c.OPT_IN):
        sentence += ", for every huddle"
    return sentence


def _specific(
    source: str,
    action: str,
    channel_code: str,
    channel: str,
    detail: str,
    who: str,
    confirming: bool,
) -> str | None:
    said = _quote(detail)
    if source == c.SOURCE_KEYWORD:
        if action == c.OPT_IN_REQUESTED:
            return f"Texted {said} and was asked to reply YES to confirm"
        if action == c.OPT_IN:
            return f"Confirmed by replying {said}" if confirming else f"Joined by texting {said}"
        if action == c.RESUBSCRIBE:
            return f"Came back by texting {said}"
        if action == c.OPT_OUT:
            return f"Stopped by texting {said}"
    elif source == c.SOURCE_FORM:
        if action == c.OPT_IN_REQUESTED:
            if channel_code == m.EMAIL:
                return "Signed up for email on the join form and was sent a link to confirm"
            return "Signed up for texts on the join form and was asked to reply YES to confirm"
        if action == c.OPT_IN:
            if channel_code == m.EMAIL:
                return "Confirmed email by clicking the link in the confirmation email"
            return "Signed up for texts on the join form"
        if action == c.OPT_OUT:
            if "one-click" in detail.lower():
                return f"Unsubscribed from {channel} by the one-click link in their mail app"
            if "all email" in detail.lower():
                return "Unsubscribed from all email from the network on the unsubscribe page"
            return f"Unsubscribed from {channel} on the unsubscribe page"
    elif source == c.SOURCE_IMPORT and action == c.OPT_IN:
        found = _IMPORT_DETAIL.match(detail)
        where = f"{found['file']} (line {found['line']})" if found else (detail or "a file")
        by = f" by {who}" if who else ""
        return f"Imported from {where}{by}, who said they agreed to {channel}"
    elif source == c.SOURCE_API and action == c.OPT_IN:
        by = f" by {who}" if who else ""
        return f"Added through the API{by}, who said they agreed to {channel}"
    elif source == c.SOURCE_PROVIDER:
        return _provider(action, channel_code, detail)
    elif source == c.SOURCE_ORGANIZER and action == c.OPT_OUT:
        return f"Opted out of {channel} by {who or 'an organizer'}, on their behalf"
    return None


def _provider(action: str, channel_code: str, detail: str) -> str | None:
    """Twilio's error codes and SendGrid's events, in words."""
    if channel_code == m.SMS:
        code = _TWILIO_ERROR.search(detail)
        because = f" (Twilio error {code['code']})" if code else ""
        if action == c.OPT_OUT:
            return f"Texts stopped at their phone carrier{because}"
        if action == c.SUPPRESS:
            return f"Texts blocked: the carrier said the number cannot get them{because}"
        return None
    text = detail.lower()
    if action == c.OPT_OUT:
        if "spamreport" in text:
            return "Marked an email as spam, so email stopped"
        return "Unsubscribed from email through the mail provider"
    if action == c.SUPPRESS:
        if "spamreport" in text:
            return "Email blocked after they marked an email as spam"
        if "unsubscribe" in text:
            return "Email blocked: they unsubscribed through the mail provider"
        if "bounce" in text:
            return f"Email blocked: a message bounced ({_reason(detail)})"
        if "dropped" in text:
            return f"Email blocked: the mail provider dropped a message ({_reason(detail)})"
        return f"Email blocked by the mail provider ({_reason(detail)})"
    return None


def _reason(detail: str) -> str:
    reason = detail.partition(":")[2].strip()
    return _shorten(reason) if reason else "no reason given"


def _who(actor: str | None, names: Mapping[str, str]) -> str:
    """An organizer by name ("Lee (organizer)"), else their email; nothing for the member."""
    if not actor or actor in ("member", "system", "demo"):
        return ""
    name = names.get(actor)
    return f"{name} (organizer)" if name else actor


def _quote(text: str) -> str:
    return f"'{_shorten(' '.join(text.split()))}'" if text.strip() else "a message"


def _shorten(text: str) -> str:
    return text if len(text) <= QUOTE_AT_MOST else text[: QUOTE_AT_MOST - 1] + "…"
