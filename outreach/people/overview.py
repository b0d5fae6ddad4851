"""A huddle at a glance: who it holds on which channel, a month's growth and opt-outs, its latest
campaigns and the inbox texts nobody has handled.

Every figure is one aggregate query over one huddle's rows, read from an index (no per-member
Python). The counts of the whole huddle still grow with it (each about 0.1-0.25 s at a million
members on a 2-core machine), so :func:`member_figures` is what a page keeps for a minute, and
the cheap, urgent figures (:func:`unread`, :func:`recent_campaigns`) are read every time:

* members held: ``huddle_members``' primary key (huddle_id, member_id);
* by channel and state: ``ix_subscriptions_huddle_channel_state_member`` (index-only);
* joins per day: ``ix_huddle_members_huddle_created`` (a month of the huddle's rows only);
* opt-outs: ``ix_consent_events_huddle_action_created`` (a month of the huddle's opt-outs only);
* campaigns: ``ix_campaigns_huddle_id``; inbox: ``ix_inbound_messages_huddle_received``.

Days are the huddle's local days (its time zone), the last 30 of them, today included.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import case, distinct, func, select
from sqlalchemy.orm import Session

from outreach.models import Campaign, ConsentEvent, HuddleMember, InboundMessage, Subscription
from outreach.models import consent as c
from outreach.models import members as m

DAYS = 30
RECENT_CAMPAIGNS = 5


@dataclass(frozen=True)
class ChannelFigures:
    """One channel's consent states; ``no_consent`` is held here but never subscribed on it."""

    channel: str
    active: int
    pending: int
    opted_out: int
    no_consent: int
    opt_outs_recent: int  # opt-outs in the last DAYS days

    @property
    def opt_out_rate(self) -> float | None:
        """Share of the month's subscribers who stopped: opt-outs / (still active + opt-outs).

        None when nobody was subscribed (no rate to speak of).
        """
        base = self.active + self.opt_outs_recent
        return None if base == 0 else self.opt_outs_recent / base


@dataclass(frozen=True)
class Day:
    day: date
    joined: int  # members the huddle first held that day
    total: int  # members held at the end of that day


@dataclass(frozen=True)
class RecentCampaign:
    id: int
    name: str
    channel: str
    state: str
    audience: int
    created_at: datetime
    launched_at: datetime | None


@dataclass(frozen=True)
class Unread:
    conversations: int  # conversations holding texts nobody marked done
    texts: int
    flagged: int  # of those texts, possible opt-outs


@dataclass(frozen=True)
class MemberFigures:
    """The figures that grow with the member list: what a page may keep for a minute."""

    members: int
    channels: list[ChannelFigures]
    growth: list[Day]
    as_of: datetime

    @property
    def joined_recently(self) -> int:
        return sum(day.joined for day in self.growth)

    def to_json(self) -> dict[str, Any]:
        """Plain values, to keep in a cache (:meth:`from_json` reads them back)."""
        return {
            "members": self.members,
            "channels": [asdict(channel) for channel in self.channels],
            "growth": [[d.day.isoformat(), d.joined, d.total] for d in self.growth],
            "as_of": self.as_of.isoformat(),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> MemberFigures:
        return cls(
            members=int(data["members"]),
            channels=[ChannelFigures(**channel) for channel in data["channels"]],
            growth=[Day(date.fromisoformat(d), int(j), int(t)) for d, j, t in data["growth"]],
            as_of=datetime.fromisoformat(data["as_of"]),
        )


def _zone(name: str | None) -> ZoneInfo:
    try:
        return ZoneInfo(name or "America/New_York")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("America/New_York")


def day_starts(now: datetime, timezone: str | None, days: int = DAYS) -> list[datetime]:
    """The local midnights starting each of the last ``days`` days, as aware instants."""
    zone = _zone(timezone)
    today = now.astimezone(zone).date()
    first = today - timedelta(days=days - 1)
    return [datetime.combine(first + timedelta(days=i), time(0), tzinfo=zone) for i in range(days)]


def member_figures(
    session: Session, huddle_id: int, *, timezone: str | None, now: datetime
) -> MemberFigures:
    """Members held, by channel and consent state, and the last 30 days' joins and opt-outs.

    At a million members this is two index-only counts of the whole huddle (a few hundred ms on
    a small machine): the overview page keeps the result for a minute.
    """
    starts = day_starts(now, timezone)
    members = session.scalar(
        select(func.count()).select_from(HuddleMember).where(HuddleMember.huddle_id == huddle_id)
    )
    held = int(members or 0)
    return MemberFigures(
        members=held,
        channels=_channels(session, huddle_id, held, since=starts[0]),
        growth=_growth(session, huddle_id, held, starts),
        as_of=now,
    )


def _channels(
    session: Session, huddle_id: int, held: int, *, since: datetime
) -> list[ChannelFigures]:
    states: dict[tuple[str, str], int] = {
        (channel, state): int(count)
        for channel, state, count in session.execute(
            select(Subscription.channel, Subscription.state, func.count())
            .where(Subscription.huddle_id == huddle_id)
            .group_by(Subscription.channel, Subscription.state)
        )
    }
    opt_outs: dict[str, int] = {
        channel: int(count)
        for channel, count in session.execute(
            select(ConsentEvent.channel, func.count())
            .where(
                ConsentEvent.huddle_id == huddle_id,
                ConsentEvent.action == c.OPT_OUT,
                ConsentEvent.created_at >= since,
            )
            .group_by(ConsentEvent.channel)
        )
    }
    figures = []
    for channel in m.CHANNELS:
        active = states.get((channel, m.ACTIVE), 0)
        pending = states.get((channel, m.PENDING), 0)
        opted_out = states.get((channel, m.OPTED_OUT), 0)
        figures.append(
            ChannelFigures(
                channel=channel,
                active=active,
                pending=pending,
                opted_out=opted_out,
                no_consent=max(held - active - pending - opted_out, 0),
                opt_outs_recent=opt_outs.get(channel, 0),
            )
        )
    return figures


def _growth(session: Session, huddle_id: int, held: int, starts: list[datetime]) -> list[Day]:
    """Joins per local day (one grouped scan of the month's rows), and the running total."""
    created = HuddleMember.created_at
    bucket = case(
        *[(created < start, index) for index, start in enumerate(starts[1:])],
        else_=len(starts) - 1,
    ).label("bucket")
    month = (
        select(bucket)
        .where(HuddleMember.huddle_id == huddle_id, created >= starts[0])
        .subquery("month")
    )
    joined = [0] * len(starts)
    for index, count in session.execute(
        select(month.c.bucket, func.count()).group_by(month.c.bucket)
    ):
        joined[int(index)] = int(count)
    days = []
    after = sum(joined)  # joined after the end of the day before the first one
    for start, count in zip(starts, joined, strict=True):
        after -= count
        days.append(Day(day=start.date(), joined=count, total=held - after))
    return days


def recent_campaigns(session: Session, huddle_id: int) -> list[RecentCampaign]:
    """The huddle's latest campaigns, newest first."""
    rows = session.execute(
        select(
            Campaign.id,
            Campaign.name,
            Campaign.channel,
            Campaign.state,
            Campaign.audience_size,
            Campaign.created_at,
            Campaign.launched_at,
        )
        .where(Campaign.huddle_id == huddle_id)
        .order_by(Campaign.id.desc())
        .limit(RECENT_CAMPAIGNS)
    ).all()
    return [RecentCampaign(*row) for row in rows]


def unread(session: Session, huddle_id: int) -> Unread:
    """What the inbox (``outreach.sms.conversations``) counts as unhandled, in one query.

    A member's texts are one conversation; a stranger's, one per number; a text with neither
    is in no conversation, so it is not counted.
    """
    inbound = InboundMessage
    row = session.execute(
        select(
            func.count(distinct(inbound.member_id)),
            func.count(distinct(case((inbound.member_id.is_(None), inbound.from_e164)))),
            func.count(),
            func.coalesce(func.sum(case((inbound.flagged.is_(True), 1), else_=0)), 0),
        ).where(
            inbound.huddle_id == huddle_id,
            inbound.handled.is_(False),
            inbound.member_id.is_not(None) | inbound.from_e164.is_not(None),
        )
    ).one()
    members, strangers, texts, flagged = (int(value or 0) for value in row)
    return Unread(conversations=members + strangers, texts=texts, flagged=flagged)
