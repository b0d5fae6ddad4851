"""Campaigns: drafting (errors surface here, not at send time) and the lifecycle.

``draft → scheduled → sending ⇄ paused → completed | cancelled``. The transitions live here; the
CLI, the API and the workers call them. Fan-out and sending are in ``fanout`` and ``sender``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from outreach.app.clock import utcnow
from outreach.campaigns import segments
from outreach.email import render as email_render
from outreach.messages import templating
from outreach.models import Campaign, Delivery, Huddle, Segment
from outreach.models import campaigns as k
from outreach.models import members as m
from outreach.people.huddles import get_huddle

_HHMM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")
MAX_RATE = 2000.0  # Twilio's account-wide ceiling, segments/s


class CampaignError(ValueError):
    """A campaign cannot be drafted or moved as asked; the message says why."""


_TRANSITIONS: dict[str, set[str]] = {
    k.DRAFT: {k.SCHEDULED, k.SENDING, k.CANCELLED},
    k.SCHEDULED: {k.SENDING, k.CANCELLED, k.DRAFT},
    k.SENDING: {k.PAUSED, k.COMPLETED, k.CANCELLED},
    k.PAUSED: {k.SENDING, k.CANCELLED},
    k.COMPLETED: set(),
    k.CANCELLED: set(),
}


def create_campaign(
    session: Session,
    *,
    huddle_slug: str,
    channel: str,
    segment_filter: str,
    body: str,
    name: str | None = None,
    subject: str | None = None,
    send_at: datetime | None = None,
    rate: float | None = None,
    quiet_start: str | None = None,
    quiet_end: str | None = None,
    respect_quiet_hours: bool | None = None,
    created_by: str | None = None,
) -> Campaign:
    """Draft a campaign; every error an organizer can fix is raised now, with its reason."""
    huddle = get_huddle(session, huddle_slug)
    if channel not in m.CHANNELS:
        raise CampaignError(f"channel must be sms or email, not {channel!r}")
    segment_filter = resolve_segment(session, huddle, segment_filter or "")
    try:
        segments.check_huddle(segments.parse(segment_filter), huddle.slug)
    except segments.SegmentError as exc:
        raise CampaignError(f"segment: {exc}") from None
    try:
        templating.compile_template(body, channel=channel)  # type: ignore[arg-type]
    except templating.TemplateError as exc:
        raise CampaignError(f"body: {exc}") from None
    if channel == m.SMS and not huddle.sender_number and not huddle.messaging_service_sid:
        raise CampaignError(f"huddle {huddle.slug} has no sender number to text from")
    if channel == m.EMAIL:
        if not (subject or "").strip():
            raise CampaignError("an email campaign needs a subject")
        try:
            templating.compile_template(subject or "", channel="email")
        except templating.TemplateError as exc:
            raise CampaignError(f"subject: {exc}") from None
        if not huddle.email_from_address:
            raise CampaignError(f"huddle {huddle.slug} has no email from-address to send from")
        if not huddle.postal_address:
            raise CampaignError(
                f"huddle {huddle.slug} has no postal address (CAN-SPAM requires one in emails)"
            )
    if quiet_start is None and quiet_end is None:  # the huddle's own window, if it narrowed one
        quiet_start, quiet_end = huddle.quiet_start, huddle.quiet_end
    if send_at is not None and send_at.tzinfo is None:
        raise CampaignError("--send-at needs a time zone offset, e.g. 2026-12-01T18:00:00-05:00")
    if rate is not None and not 0 < rate <= MAX_RATE:
        raise CampaignError(f"rate must be between 0 and {MAX_RATE:g} segments per second")
    for label, value in (("quiet start", quiet_start), ("quiet end", quiet_end)):
        if value is not None and not _HHMM.match(value):
            raise CampaignError(f"{label} must be HH:MM (24-hour), not {value!r}")
    if (quiet_start is None) != (quiet_end is None):
        raise CampaignError("give both a window start and end, or neither")
    if quiet_start and quiet_end and quiet_start >= quiet_end:
        raise CampaignError("the sending window must start before it ends")
    campaign = Campaign(
        huddle_id=huddle.id,
        name=(name or body[:40]).strip() or "Untitled",
        channel=channel,
        segment_filter=segment_filter or "",
        subject=subject,
        body=body,
        state=k.DRAFT,
        send_at=send_at,
        rate=rate,
        quiet_start=quiet_start,
        quiet_end=quiet_end,
        # Texts always keep quiet hours; email only when the organizer asks.
        respect_quiet_hours=True if channel == m.SMS else bool(respect_quiet_hours),
        created_by=created_by,
        created_at=utcnow(),
    )
    if channel == m.EMAIL:
        try:  # the whole email as it will be built: Markdown/HTML, layout, text part
            email_render.prepare(campaign, huddle)
        except templating.TemplateError as exc:
            raise CampaignError(f"body: {exc}") from None
    session.add(campaign)
    session.flush()
    return campaign


def resolve_segment(session: Session, huddle: Huddle, text: str) -> str:
    """``@name`` means the huddle's saved segment of that name; anything else is a filter."""
    if not text.startswith("@"):
        return text
    saved = session.scalars(
        select(Segment).where(Segment.huddle_id == huddle.id, Segment.name == text[1:])
    ).one_or_none()
    if saved is None:
        raise CampaignError(f"huddle {huddle.slug} has no saved segment {text[1:]!r}")
    return saved.filter


def get_campaign(session: Session, campaign_id: int, *, for_update: bool = False) -> Campaign:
    query = select(Campaign).where(Campaign.id == campaign_id)
    if for_update:
        query = query.with_for_update()
    campaign = session.scalars(query).one_or_none()
    if campaign is None:
        raise CampaignError(f"no campaign {campaign_id}")
    return campaign


def move(campaign: Campaign, to: str) -> None:
    if to not in _TRANSITIONS[campaign.state]:
        raise CampaignError(f"campaign {campaign.id} is {campaign.state}; it cannot become {to}")
    campaign.state = to
    if to in (k.COMPLETED, k.CANCELLED):
        campaign.finished_at = utcnow()


def pause(session: Session, campaign_id: int) -> Campaign:
    campaign = get_campaign(session, campaign_id, for_update=True)
    move(campaign, k.PAUSED)
    return campaign


def cancel(session: Session, campaign_id: int) -> Campaign:
    """Stop for good: whatever is still queued is skipped as ``cancelled``."""
    campaign = get_campaign(session, campaign_id, for_update=True)
    move(campaign, k.CANCELLED)
    session.execute(
        update(Delivery)
        .where(Delivery.campaign_id == campaign.id, Delivery.state == k.QUEUED)
        .values(state=k.SKIPPED, skip_reason="cancelled", updated_at=utcnow())
    )
    return campaign


@dataclass
class CampaignStatus:
    id: int
    name: str
    huddle: str
    channel: str
    state: str
    audience: int
    by_state: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    flag: str | None = None
    sender_key: str = ""  # the rate-limit bucket its texts are paced by
    last_progress_at: datetime | None = None  # the latest claim, send or settlement

    @property
    def done(self) -> int:
        return sum(n for s, n in self.by_state.items() if s not in (k.QUEUED, k.CLAIMED))

    def as_dict(self) -> dict[str, object]:
        return {
            "id": self.id,
            "name": self.name,
            "huddle": self.huddle,
            "channel": self.channel,
            "state": self.state,
            "audience": self.audience,
            "done": self.done,
            "by_state": self.by_state,
            "skipped": self.skipped,
            "errors": self.errors,
            "flag": self.flag,
            "last_progress_at": (
                self.last_progress_at.isoformat() if self.last_progress_at else None
            ),
        }


def status(session: Session, campaign_id: int) -> CampaignStatus:
    campaign = get_campaign(session, campaign_id)
    huddle = session.get_one(Huddle, campaign.huddle_id)
    result = CampaignStatus(
        id=campaign.id,
        name=campaign.name,
        huddle=huddle.slug,
        channel=campaign.channel,
        state=campaign.state,
        audience=campaign.audience_size,
        flag=campaign.flag,
        sender_key=huddle.sender_key,
    )
    # One pass over the campaign's deliveries: counts and the latest claim, send or settlement.
    latest: list[datetime] = []
    for state, reason, code, count, claimed, sent, updated in session.execute(
        select(
            Delivery.state,
            Delivery.skip_reason,
            Delivery.error_code,
            func.count(),
            func.max(Delivery.claimed_at),
            func.max(Delivery.sent_at),
            func.max(Delivery.updated_at),
        )
        .where(Delivery.campaign_id == campaign.id)
        .group_by(Delivery.state, Delivery.skip_reason, Delivery.error_code)
    ):
        latest.extend(t for t in (claimed, sent, updated) if t is not None)
        result.by_state[state] = result.by_state.get(state, 0) + count
        if state == k.SKIPPED and reason:
            result.skipped[reason] = result.skipped.get(reason, 0) + count
        if code:
            result.errors[code] = result.errors.get(code, 0) + count
    result.last_progress_at = max(latest, default=None)
    return result
