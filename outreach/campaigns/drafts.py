"""Editing a draft, and reading the composer's times in the huddle's zone.

A draft is edited with exactly the checks it was drafted with: :func:`update_draft` drafts the
new version inside a savepoint with :func:`outreach.campaigns.create_campaign` (so every error an
organizer can fix is raised the same way, with the same words), copies what it made onto the
draft, and rolls the savepoint back.
"""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session

from outreach import campaigns
from outreach.campaigns import CampaignError
from outreach.models import Campaign
from outreach.models import campaigns as k

EDITABLE = (
    "name",
    "channel",
    "segment_filter",
    "subject",
    "body",
    "send_at",
    "rate",
    "quiet_start",
    "quiet_end",
    "respect_quiet_hours",
)


def update_draft(
    session: Session,
    campaign: Campaign,
    *,
    huddle_slug: str,
    channel: str,
    segment_filter: str,
    body: str,
    name: str | None,
    subject: str | None,
    send_at: datetime | None,
    quiet_start: str | None,
    quiet_end: str | None,
    respect_quiet_hours: bool | None,
) -> Campaign:
    """Change a draft (``campaign``, locked in ``session``); raises CampaignError as drafting
    does, and for a campaign that is no longer a draft."""
    if campaign.state != k.DRAFT:
        raise CampaignError(f"campaign {campaign.id} is {campaign.state}: only a draft is edited")
    nested = session.begin_nested()
    try:
        probe = campaigns.create_campaign(
            session,
            huddle_slug=huddle_slug,
            channel=channel,
            segment_filter=segment_filter,
            body=body,
            name=name,
            subject=subject,
            send_at=send_at,
            rate=campaign.rate,
            quiet_start=quiet_start,
            quiet_end=quiet_end,
            respect_quiet_hours=respect_quiet_hours,
            created_by=campaign.created_by,
        )
        values = {column: getattr(probe, column) for column in EDITABLE}
    finally:
        nested.rollback()
    for column, value in values.items():
        setattr(campaign, column, value)
    session.flush()
    return campaign


def local_send_at(text: str, zone_name: str) -> datetime | None:
    """A ``datetime-local`` value ("2026-12-08T18:30") read in the huddle's zone, as UTC.
    Empty: None (send on launch). Raises CampaignError for anything else."""
    text = text.strip()
    if not text:
        return None
    try:
        wall = datetime.fromisoformat(text)
    except ValueError:
        raise CampaignError(f"send time: {text[:40]!r} is not a date and time") from None
    if wall.tzinfo is not None:
        return wall.astimezone(UTC)
    if not 2000 <= wall.year <= 2100:
        raise CampaignError("send time: give a date between 2000 and 2100")
    return wall.replace(tzinfo=ZoneInfo(zone_name)).astimezone(UTC)


def local_input(moment: datetime | None, zone_name: str) -> str:
    """The value a ``datetime-local`` field shows for ``moment`` in the huddle's zone."""
    if moment is None:
        return ""
    return moment.astimezone(ZoneInfo(zone_name)).strftime("%Y-%m-%dT%H:%M")
