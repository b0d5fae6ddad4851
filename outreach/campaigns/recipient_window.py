"""A claimed recipient's sending window: :mod:`~outreach.campaigns.quiet_hours` applied to a
member, their number and the campaign's own hours."""

from __future__ import annotations

from datetime import datetime, time
from functools import lru_cache
from zoneinfo import ZoneInfo

from outreach.campaigns import quiet_hours
from outreach.models import (
    Campaign,
    Member,
)


def campaign_window(campaign: Campaign) -> quiet_hours.Window | None:
    """The campaign's own hours, if it narrows the legal window."""
    if not (campaign.quiet_start and campaign.quiet_end):
        return None
    return quiet_hours.Window(_hhmm(campaign.quiet_start), _hhmm(campaign.quiet_end))


def _hhmm(text: str) -> time:
    hours, minutes = text.split(":")
    return time(int(hours), int(minutes))


Verdict = str | tuple[datetime | None, datetime]  # see check_quiet_hours


@lru_cache(maxsize=4096)
def _zones_and_window(
    zip_code: str | None,
    stored_zone: str | None,
    phone_prefix: str,
    fallback_zone: str,
    campaign_window: quiet_hours.Window | None,
) -> tuple[tuple[ZoneInfo, ...], quiet_hours.Window]:
    """Zones and window for a recipient. Cached: recipients share zips and area codes."""
    zones = quiet_hours.zones_for(
        zip_code=zip_code,
        stored_zone=stored_zone,
        phone_e164=phone_prefix + "5550100" if phone_prefix else None,
        fallback_zone=fallback_zone,
    )
    window = quiet_hours.window_for(
        state=quiet_hours.state_for_zip(zip_code), campaign_window=campaign_window
    )
    return zones, window


def check_quiet_hours(
    member: Member,
    address: str,
    fallback_zone: str,
    campaign_window: quiet_hours.Window | None,
    now: datetime,
    memo: dict[tuple[tuple[ZoneInfo, ...], quiet_hours.Window], Verdict] | None = None,
) -> Verdict:
    """(None, closes) when sendable now; (opens, opens) when not yet; a skip reason if never.

    ``memo`` (one per group, so one ``now``) keeps the answer per (zones, window): recipients
    share a handful of those, and working out when the window closes is the costly part.
    """
    # A NANP number's zone follows its area code: +1 NPA is what phonenumbers looks at.
    prefix = address[:5] if address.startswith("+1") and len(address) == 12 else ""
    if not prefix and address.startswith("+"):
        zones = quiet_hours.zones_for(
            zip_code=member.zip,
            stored_zone=member.timezone,
            phone_e164=address,
            fallback_zone=fallback_zone,
        )
        window = quiet_hours.window_for(
            state=quiet_hours.state_for_zip(member.zip), campaign_window=campaign_window
        )
    else:
        try:
            zones, window = _zones_and_window(
                member.zip, member.timezone, prefix, fallback_zone, campaign_window
            )
        except quiet_hours.EmptyWindowError:
            return "no-sending-window"
    if memo is None:
        return _window_verdict(now, zones, window)
    verdict = memo.get((zones, window))
    if verdict is None:
        verdict = memo[zones, window] = _window_verdict(now, zones, window)
    return verdict


def _window_verdict(
    now: datetime, zones: tuple[ZoneInfo, ...], window: quiet_hours.Window
) -> Verdict:
    try:
        if quiet_hours.is_allowed(now, zones, window):
            return None, quiet_hours.window_closes_at(now, zones, window)
        opens = quiet_hours.next_allowed(now, zones, window)
    except quiet_hours.NoCommonWindowError:
        return "no-common-window"
    return opens, opens
