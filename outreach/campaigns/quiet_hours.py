"""When may a text reach a recipient: quiet hours by local time, in every zone they might be in.

Pure functions, no I/O besides reading the bundled ``data/zip3.csv`` once.

* :func:`zones_for` resolves where the recipient may be: stored zone, then ZIP, then the phone
  number's zones (all of them), then the huddle's zone.
* :func:`window_for` picks the local sending window: the federal default, narrowed by the state's
  stricter window (if any), narrowed by the campaign's window (if any). The effective window is the
  *intersection*: a campaign can narrow the allowed hours, never widen them.
* :func:`is_allowed` / :func:`next_allowed` / :func:`window_closes_at` evaluate that window in local
  wall-clock time in *all* zones at once.

Local times are wall-clock times: on a spring-forward day a window opening at 02:30 opens when the
clock jumps to 03:00; on a fall-back day a wall time inside the repeated hour happens twice, and the
rule is checked against the wall clock each time.
"""

from __future__ import annotations

import csv
import functools
import io
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from outreach.addresses.phones import MAX_PHONE_ZONES, zones_for_number
from outreach.app.resources import data_text

__all__ = [
    "DEFAULT_WINDOW",
    "MAX_PHONE_ZONES",
    "STATE_WINDOWS",
    "SUNDAY",
    "EmptyWindowError",
    "NoCommonWindow",
    "NoCommonWindowError",
    "Window",
    "intersect",
    "is_allowed",
    "next_allowed",
    "state_for_zip",
    "window_closes_at",
    "window_for",
    "zone_for_zip",
    "zones_for",
]

SUNDAY = 6  # date.weekday()

# How far ahead next_allowed looks for an instant allowed in every zone.
SEARCH_HORIZON = timedelta(days=8)


class NoCommonWindowError(Exception):
    """The window is never open in all the zones at once within the search horizon."""


NoCommonWindow = NoCommonWindowError  # the name the rest of the code base asks for


class EmptyWindowError(ValueError):
    """Two windows (e.g. a campaign's and a state's) do not overlap at all."""


@dataclass(frozen=True)
class Window:
    """A daily local sending window: ``start`` inclusive, ``end`` exclusive, same day.

    ``sunday_start`` (optional) replaces ``start`` on Sundays (Texas: 12:00 on Sunday). A
    ``sunday_start`` at or after ``end`` means no sending on Sundays at all. Windows crossing
    midnight are not supported: quiet hours are a daytime rule.
    """

    start: time
    end: time
    sunday_start: time | None = None

    def __post_init__(self) -> None:
        for value in (self.start, self.end, self.sunday_start):
            if value is not None and value.tzinfo is not None:
                raise ValueError("window times are local wall-clock times: pass naive times")
        if not self.start < self.end:
            raise ValueError(f"window start {self.start} must be before end {self.end}")

    def start_on(self, weekday: int) -> time:
        """Opening time on a given ``date.weekday()`` (Monday 0 .. Sunday 6)."""
        if weekday == SUNDAY and self.sunday_start is not None:
            return self.sunday_start
        return self.start

    def contains(self, local: datetime) -> bool:
        """Is the wall-clock time of ``local`` inside the window on its own weekday?"""
        wall = local.time()
        return self.start_on(local.weekday()) <= wall < self.end


DEFAULT_WINDOW = Window(time(8), time(21))

# Stricter state windows. A setting, not a law library: the summaries are unconfirmed, so callers
# can pass their own mapping to window_for(state_windows=...).
STATE_WINDOWS: dict[str, Window] = {
    "FL": Window(time(8), time(20)),
    "OK": Window(time(8), time(20)),
    "MD": Window(time(8), time(20)),
    "MS": Window(time(8), time(20)),
    "NJ": Window(time(8), time(20)),
    "CT": Window(time(9), time(20)),
    "TX": Window(time(9), time(21), sunday_start=time(12)),
}


def intersect(a: Window, b: Window) -> Window:
    """The hours allowed by both windows (latest start, earliest end, latest Sunday start).

    Raises :class:`EmptyWindowError` if they do not overlap on weekdays. If they overlap on weekdays
    but not on Sundays, the result has ``sunday_start >= end``: closed on Sundays.
    """
    start = max(a.start, b.start)
    end = min(a.end, b.end)
    if not start < end:
        raise EmptyWindowError(f"windows {a} and {b} do not overlap")
    sunday = max(a.start_on(SUNDAY), b.start_on(SUNDAY))
    return Window(start, end, sunday_start=None if sunday == start else sunday)


def window_for(
    *,
    state: str | None,
    campaign_window: Window | None,
    state_windows: Mapping[str, Window] | None = None,
    default: Window = DEFAULT_WINDOW,
) -> Window:
    """Effective local window: ``default`` ∩ the state's window (if any) ∩ ``campaign_window``.

    Intersection, so the campaign can only narrow the hours; a state window is also intersected with
    the federal default, so a misconfigured wide state entry cannot widen it either. An unknown or
    missing state gets the default. Raises :class:`EmptyWindowError` if the campaign's window does
    not overlap the legal one (e.g. a 06:00-08:00 campaign).
    """
    windows = STATE_WINDOWS if state_windows is None else state_windows
    effective = default
    if state:
        state_window = windows.get(state.strip().upper())
        if state_window is not None:
            effective = intersect(effective, state_window)
    if campaign_window is not None:
        effective = intersect(effective, campaign_window)
    return effective


# --- ZIP codes ---------------------------------------------------------------------------------


@functools.cache
def _zip3_table() -> dict[str, tuple[str, str]]:
    text = data_text("zip3.csv")
    return {row["zip3"]: (row["state"], row["zone"]) for row in csv.DictReader(io.StringIO(text))}


_ZIP_RE = re.compile(r"(\d{3})\d{2}(?:[- ]?\d{4})?", re.ASCII)


def _zip3(zip_code: str | None) -> str | None:
    """The 3-digit prefix of a US ZIP ("12345", "12345-6789", "123456789"), else None.

    Four-digit values (a leading zero lost in a spreadsheet) are not guessed at.
    """
    if not zip_code:
        return None
    match = _ZIP_RE.fullmatch(zip_code.strip())
    return match.group(1) if match else None


def state_for_zip(zip_code: str | None) -> str | None:
    """Two-letter state (or territory: PR, VI, GU, DC) of a US ZIP code, None if unknown."""
    prefix = _zip3(zip_code)
    if prefix is None:
        return None
    entry = _zip3_table().get(prefix)
    return entry[0] if entry else None


def zone_for_zip(zip_code: str | None) -> ZoneInfo | None:
    """Majority IANA zone of a US ZIP code's 3-digit prefix, None if unknown."""
    prefix = _zip3(zip_code)
    if prefix is None:
        return None
    entry = _zip3_table().get(prefix)
    return _zone(entry[1]) if entry else None


# --- time zones --------------------------------------------------------------------------------


def _zone(name: str | None) -> ZoneInfo | None:
    if not name or not name.strip():
        return None
    try:
        return ZoneInfo(name.strip())
    except (ZoneInfoNotFoundError, ValueError):
        return None


def _phone_zones(phone_e164: str | None) -> tuple[ZoneInfo, ...]:
    if not phone_e164:
        return ()
    zones = [z for z in map(_zone, zones_for_number(phone_e164)) if z is not None]
    return tuple(dict.fromkeys(zones))


def zones_for(
    *,
    zip_code: str | None,
    stored_zone: str | None,
    phone_e164: str | None,
    fallback_zone: str,
) -> tuple[ZoneInfo, ...]:
    """Zones the recipient may be in; a text must respect the window in all of them.

    Order: a valid stored IANA zone; else the ZIP's zone; else the phone number's zones (all of
    them; ignored when toll-free/non-geographic, i.e. more than :data:`MAX_PHONE_ZONES`); else the
    huddle's ``fallback_zone``. Unusable inputs (unknown zone name, malformed ZIP, invalid number)
    fall through silently. An invalid ``fallback_zone`` is a configuration error and raises.
    """
    stored = _zone(stored_zone)
    if stored is not None:
        return (stored,)
    by_zip = zone_for_zip(zip_code)
    if by_zip is not None:
        return (by_zip,)
    by_phone = _phone_zones(phone_e164)
    if by_phone:
        return by_phone
    return (ZoneInfo(fallback_zone),)


# --- evaluating a window -----------------------------------------------------------------------


def _as_utc(now_utc: datetime) -> datetime:
    if now_utc.tzinfo is None or now_utc.utcoffset() is None:
        raise ValueError("now_utc must be timezone-aware")
    return now_utc.astimezone(UTC)


def _check_zones(zones: Sequence[ZoneInfo]) -> None:
    if not zones:
        raise ValueError("at least one zone is required")


def is_allowed(now_utc: datetime, zones: Sequence[ZoneInfo], window: Window) -> bool:
    """True if the local wall-clock time is inside ``window`` in every one of ``zones``."""
    _check_zones(zones)
    now = _as_utc(now_utc)
    return all(window.contains(now.astimezone(zone)) for zone in zones)


def _wall_instants(zone: ZoneInfo, day: date, wall: time) -> list[datetime]:
    """UTC instants at which ``zone``'s clock shows ``day`` ``wall``: 0 (gap), 1, or 2 (fold)."""
    instants = []
    for fold in (0, 1):
        local = datetime.combine(day, wall, tzinfo=zone).replace(fold=fold)
        instant = local.astimezone(UTC)
        if instant.astimezone(zone).replace(tzinfo=None) == local.replace(tzinfo=None):
            instants.append(instant)
    return instants


def _offset(zone: ZoneInfo, instant: datetime) -> timedelta | None:
    return instant.astimezone(zone).utcoffset()


def _transitions(zone: ZoneInfo, start: datetime, end: datetime) -> list[datetime]:
    """Instants in [start, end] where ``zone``'s UTC offset changes (first instant of new offset).

    Sampled hourly, then bisected to the second (tz data transitions are whole seconds).
    """
    found = []
    step = timedelta(hours=1)
    lo = start.replace(microsecond=0)
    lo_offset = _offset(zone, lo)
    while lo < end:
        hi = lo + step
        hi_offset = _offset(zone, hi)
        if hi_offset != lo_offset:
            a, b = lo, hi  # offset(a) == lo_offset, offset(b) != lo_offset
            while b - a > timedelta(seconds=1):
                mid = a + timedelta(seconds=(b - a).total_seconds() // 2)
                if _offset(zone, mid) == lo_offset:
                    a = mid
                else:
                    b = mid
            found.append(b)
        lo, lo_offset = hi, hi_offset
    return found


def _local_days(zone: ZoneInfo, start: datetime, end: datetime) -> list[date]:
    first = start.astimezone(zone).date() - timedelta(days=1)
    last = end.astimezone(zone).date() + timedelta(days=1)
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def _opening_candidates(
    zones: Sequence[ZoneInfo], window: Window, start: datetime, end: datetime
) -> list[datetime]:
    """Every instant in [start, end] at which some zone may go from blocked to allowed.

    A zone's wall clock runs continuously except at offset transitions, so it can only enter the
    window when the clock reads the opening time or when it jumps.
    """
    candidates = {start}
    for zone in zones:
        for day in _local_days(zone, start, end):
            candidates.update(_wall_instants(zone, day, window.start_on(day.weekday())))
        candidates.update(_transitions(zone, start, end))
    return sorted(c for c in candidates if start <= c <= end)


def _closing_candidates(
    zones: Sequence[ZoneInfo], window: Window, start: datetime, end: datetime
) -> list[datetime]:
    """Every instant in (start, end] at which some zone may go from allowed to blocked."""
    candidates: set[datetime] = set()
    for zone in zones:
        for day in _local_days(zone, start, end):
            candidates.update(_wall_instants(zone, day, window.end))
        candidates.update(_transitions(zone, start, end))
    return sorted(c for c in candidates if start < c <= end)


def next_allowed(now_utc: datetime, zones: Sequence[ZoneInfo], window: Window) -> datetime:
    """Earliest UTC instant >= ``now_utc`` allowed in all ``zones`` (``now_utc`` itself if allowed).

    Raises :class:`NoCommonWindow` if there is none within 8 days (e.g. zones 12 hours apart with
    a 12-hour window).
    """
    _check_zones(zones)
    now = _as_utc(now_utc)
    if is_allowed(now, zones, window):
        return now
    horizon = now + SEARCH_HORIZON
    chunk_start = now
    while chunk_start < horizon:  # a day at a time: the answer is usually within the first
        chunk_end = min(chunk_start + timedelta(days=1), horizon)
        for candidate in _opening_candidates(zones, window, chunk_start, chunk_end):
            if is_allowed(candidate, zones, window):
                return candidate
        chunk_start = chunk_end
    raise NoCommonWindowError(
        f"window {window} is never open in all of {[z.key for z in zones]} "
        f"within {SEARCH_HORIZON.days} days of {now.isoformat()}"
    )


def window_closes_at(now_utc: datetime, zones: Sequence[ZoneInfo], window: Window) -> datetime:
    """First UTC instant after ``now_utc`` when the window closes in any of ``zones``.

    For Twilio's ``ValidityPeriod`` (clamp ``(closes - now)`` to 1..36000 s). ``now_utc`` must be
    inside the window (:func:`is_allowed`), otherwise ``ValueError``.
    """
    _check_zones(zones)
    now = _as_utc(now_utc)
    if not is_allowed(now, zones, window):
        raise ValueError("not inside an allowed period; use next_allowed() first")
    for candidate in _closing_candidates(zones, window, now, now + timedelta(days=1, hours=1)):
        if not is_allowed(candidate, zones, window):
            return candidate
    raise AssertionError("a daily window always closes within a day")  # pragma: no cover
