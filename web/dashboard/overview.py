"""A huddle's overview: members by channel and consent, a month's growth, opt-outs, the latest
campaigns and what waits in the inbox.

The member figures count the whole huddle (two index-only counts of up to a million rows), so
they are kept in Redis for a minute; the inbox count and the campaigns are read every time.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import redis
from flask import Blueprint, current_app, render_template
from flask.typing import ResponseReturnValue
from sqlalchemy import select

from outreach.accounts.access import CAMPAIGNS, INBOX, MEMBERS, SETTINGS
from outreach.app.clock import utcnow
from outreach.models import Huddle
from outreach.people.overview import Day, MemberFigures, member_figures, recent_campaigns, unread
from web.access import signed_in
from web.dashboard.core import current_huddle, huddle_page
from web.extensions import services

bp = Blueprint("overview", __name__, url_prefix="/h/<slug>")

log = logging.getLogger(__name__)

FIGURES_TTL_SECONDS = 60
CHART_WIDTH = 600
CHART_HEIGHT = 120
CHART_TOP = 8  # room above the tallest bar


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    day: Day


def chart_bars(growth: list[Day]) -> list[Bar]:
    """Where each day's bar goes in the growth chart's SVG (drawn by the server, no script)."""
    if not growth:
        return []
    tallest = max(day.joined for day in growth) or 1
    slot = CHART_WIDTH / len(growth)
    bars = []
    for index, day in enumerate(growth):
        height = (CHART_HEIGHT - CHART_TOP) * day.joined / tallest
        if day.joined and height < 2:  # a day with joins never looks empty
            height = 2
        bars.append(
            Bar(
                x=round(index * slot + slot * 0.15, 2),
                y=round(CHART_HEIGHT - height, 2),
                width=round(slot * 0.7, 2),
                height=round(height, 2),
                day=day,
            )
        )
    return bars


def _figures(huddle_id: int, timezone: str | None) -> MemberFigures:
    """The member figures, from the cache when a page asked in the last minute."""
    key = f"overview:members:{huddle_id}"
    client = services().redis
    try:
        cached = client.get(key)
    except redis.RedisError:
        log.warning("overview cache unavailable for huddle %s", huddle_id)
        cached = None
    if cached:
        return MemberFigures.from_json(json.loads(cached))
    with services().read_sessions() as session:
        figures = member_figures(session, huddle_id, timezone=timezone, now=utcnow())
    try:
        client.set(key, json.dumps(figures.to_json()), ex=FIGURES_TTL_SECONDS)
    except redis.RedisError:
        log.warning("overview cache unavailable for huddle %s", huddle_id)
    return figures


def _local(zone: ZoneInfo) -> Callable[[datetime | None], str]:
    """A template's way to show an instant in the huddle's time zone."""

    def show(at: datetime | None) -> str:
        return "" if at is None else at.astimezone(zone).strftime("%b %-d, %-I:%M %p")

    return show


def _zone(name: str | None) -> ZoneInfo:
    try:
        return ZoneInfo(name or "America/New_York")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("America/New_York")


@bp.get("/")
@huddle_page(INBOX)
def show(slug: str) -> ResponseReturnValue:  # noqa: ARG001 - the huddle is current_huddle()
    huddle = current_huddle()
    with services().read_sessions() as session:
        timezone = session.scalar(select(Huddle.timezone).where(Huddle.id == huddle.id))
        campaigns = recent_campaigns(session, huddle.id)
        inbox = unread(session, huddle.id)
    figures = _figures(huddle.id, timezone)
    access = signed_in().access
    can = {cap: access.can(cap, huddle.id) for cap in (CAMPAIGNS, MEMBERS, SETTINGS)}
    return render_template(
        "overview/show.html",
        figures=figures,
        bars=chart_bars(figures.growth),
        chart_width=CHART_WIDTH,
        chart_height=CHART_HEIGHT,
        campaigns=campaigns,
        inbox=inbox,
        can_campaigns=can[CAMPAIGNS],
        can_members=can[MEMBERS],
        link_campaigns="campaigns.show" in current_app.view_functions and can[CAMPAIGNS],
        link_inbox="inbox.conversations" in current_app.view_functions,
        local=_local(_zone(timezone)),
    )
