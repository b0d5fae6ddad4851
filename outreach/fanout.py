"""Launch: snapshot the audience into the delivery ledger, then cut it into batches.

The snapshot is INSERT … SELECT in member-id ranges (never a Python loop over members), with
consent and suppression applied in SQL: people who opted out, are suppressed or have no address
get a ``skipped`` row with the reason, so the report can say why they got nothing. The unique
(campaign, member, channel) key makes a repeated snapshot (a crashed launch, run again) harmless.
Batches are id ranges of queued deliveries: a few bytes in Redis each, whatever the batch size.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, case, exists, func, literal, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from outreach import segments
from outreach.campaigns import CampaignError, get_campaign, move
from outreach.models import Delivery, Huddle, Member, Subscription, Suppression
from outreach.models import campaigns as k
from outreach.models import consent as c
from outreach.models import members as m

log = logging.getLogger(__name__)

SNAPSHOT_CHUNK = 100_000  # member ids per INSERT … SELECT
BATCH_SIZE = 500  # deliveries per send job


@dataclass(frozen=True)
class Batch:
    campaign_id: int
    first_id: int
    last_id: int


def start(session: Session, campaign_id: int, *, now: datetime) -> str:
    """Move a draft to ``scheduled`` (send_at in the future) or ``sending``; return the state."""
    campaign = get_campaign(session, campaign_id, for_update=True)
    if campaign.state == k.SCHEDULED and (campaign.send_at is None or campaign.send_at <= now):
        move(campaign, k.SENDING)
    elif campaign.state == k.DRAFT:
        future = campaign.send_at is not None and campaign.send_at > now
        move(campaign, k.SCHEDULED if future else k.SENDING)
    elif campaign.state != k.SENDING:
        raise CampaignError(f"campaign {campaign.id} is {campaign.state}; it cannot be launched")
    if campaign.state == k.SENDING and campaign.launched_at is None:
        campaign.launched_at = now
    return campaign.state


def snapshot(factory: sessionmaker[Session], campaign_id: int, *, now: datetime) -> int:
    """Write the audience into ``deliveries``; returns the audience size (queued + skipped)."""
    with factory() as session:
        campaign = get_campaign(session, campaign_id)
        huddle = session.get_one(Huddle, campaign.huddle_id)
        bounds = session.execute(
            select(func.min(Subscription.member_id), func.max(Subscription.member_id)).where(
                Subscription.huddle_id == huddle.id, Subscription.channel == campaign.channel
            )
        ).one()
        channel, sender_key, huddle_id = campaign.channel, huddle.sender_key, huddle.id
        filter_node = segments.parse(campaign.segment_filter or "")
        dialect = session.get_bind().dialect.name
    low, high = bounds
    if low is None:
        return _finish_snapshot(factory, campaign_id)
    address = Member.phone if channel == m.SMS else Member.email
    suppressed = exists().where(
        Suppression.channel == channel,
        Suppression.address == address,
        Suppression.scope.in_([c.ALL_SENDERS, sender_key]),
        Suppression.lifted_at.is_(None),
    )
    state = case(
        (Subscription.state != m.ACTIVE, literal(k.SKIPPED)),
        (address.is_(None), literal(k.SKIPPED)),
        (suppressed, literal(k.SKIPPED)),
        else_=literal(k.QUEUED),
    )
    reason = case(
        (Subscription.state != m.ACTIVE, literal("opted-out")),
        (address.is_(None), literal("no-address")),
        (suppressed, literal("suppressed")),
        else_=literal(None),
    )
    audience_filter = segments.compile_filter(
        filter_node, huddle_id=huddle_id, channel=channel, now=now
    )
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    start_id = low - 1
    while start_id < high:
        end_id = start_id + SNAPSHOT_CHUNK
        chosen = (
            select(
                literal(campaign_id),
                Member.id,
                literal(channel),
                func.coalesce(address, ""),
                state,
                reason,
                literal(0),
            )
            .select_from(Subscription)
            .join(Member, Member.id == Subscription.member_id)
            .where(
                and_(
                    Subscription.huddle_id == huddle_id,
                    Subscription.channel == channel,
                    Subscription.state.in_([m.ACTIVE, m.OPTED_OUT]),
                    Subscription.member_id > start_id,
                    Subscription.member_id <= end_id,
                    audience_filter,
                )
            )
        )
        statement = (
            insert(Delivery)
            .from_select(
                ["campaign_id", "member_id", "channel", "address", "state", "skip_reason",
                 "attempts"],
                chosen,
            )
            .on_conflict_do_nothing()
        )
        with factory() as session, session.begin():
            session.execute(statement)
        start_id = end_id
    return _finish_snapshot(factory, campaign_id)


def _finish_snapshot(factory: sessionmaker[Session], campaign_id: int) -> int:
    with factory() as session, session.begin():
        size = session.scalar(
            select(func.count(Delivery.id)).where(Delivery.campaign_id == campaign_id)
        ) or 0
        get_campaign(session, campaign_id).audience_size = size
    log.info("campaign %s: audience of %s snapshotted", campaign_id, size)
    return size


def plan_batches(
    factory: sessionmaker[Session], campaign_id: int, *, size: int = BATCH_SIZE
) -> Iterator[Batch]:
    """Id ranges covering every queued delivery, ``size`` deliveries each, streamed."""
    with factory() as session:
        ids = session.scalars(
            select(Delivery.id)
            .where(Delivery.campaign_id == campaign_id, Delivery.state == k.QUEUED)
            .order_by(Delivery.id)
            .execution_options(yield_per=10_000, stream_results=True)
        )
        first: int | None = None
        last = 0
        count = 0
        for delivery_id in ids:
            if first is None:
                first = delivery_id
            last = delivery_id
            count += 1
            if count == size:
                yield Batch(campaign_id, first, last)
                first, count = None, 0
        if first is not None:
            yield Batch(campaign_id, first, last)
