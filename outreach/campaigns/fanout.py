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
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, bindparam, case, exists, func, literal, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from outreach.campaigns import CampaignError, get_campaign, move, segments
from outreach.models import Delivery, Huddle, Member, Subscription, Suppression
from outreach.models import campaigns as k
from outreach.models import consent as c
from outreach.models import members as m

log = logging.getLogger(__name__)

SNAPSHOT_CHUNK = 100_000  # member ids per INSERT … SELECT
SNAPSHOT_WORKERS = 2  # PostgreSQL: chunks written at the same time (server processes busy)
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
        zone, slug = segments.huddle_zone(huddle.timezone), huddle.slug
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
        filter_node, huddle_id=huddle_id, channel=channel, now=now, huddle_slug=slug, tz=zone
    )
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert

    def insert_chunk(start_id: int) -> None:
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
                    # The same range on members.id (implied by the join, but PostgreSQL does
                    # not carry a range across an equality): without it each chunk hash-joins
                    # against a scan of every member, and a launch grows with N².
                    Member.id > start_id,
                    Member.id <= end_id,
                    audience_filter,
                )
            )
        )
        statement = (
            insert(Delivery)
            .from_select(
                [
                    "campaign_id",
                    "member_id",
                    "channel",
                    "address",
                    "state",
                    "skip_reason",
                    "attempts",
                ],
                chosen,
            )
            .on_conflict_do_nothing()
        )
        with factory() as session, session.begin():
            if dialect == "postgresql":
                # The planner's cost estimate for this statement passes jit_above_cost, and
                # compiling it took ~0.5 s of each chunk's ~4 s: more than JIT ever saves here.
                session.execute(text("SET LOCAL jit = off"))
            session.execute(statement)

    starts = range(low - 1, high, SNAPSHOT_CHUNK)
    if dialect == "postgresql" and len(starts) > 1:
        # Chunks cover disjoint members, so they can be written side by side: each is one
        # server process's CPU (foreign-key checks and four index insertions per row).
        with ThreadPoolExecutor(SNAPSHOT_WORKERS, thread_name_prefix="snapshot") as pool:
            for _ in pool.map(insert_chunk, starts):
                pass
    else:  # SQLite has one writer at a time: nothing to gain
        for start_id in starts:
            insert_chunk(start_id)
    if dialect == "postgresql":
        # Fresh statistics for the rows just written (ANALYZE reads a fixed-size sample). With
        # the old ones PostgreSQL takes a new campaign for a handful of rows, and answers each
        # plan_batches query (and each claim) by fetching and sorting all of the campaign's
        # rows: a million-delivery launch then spent minutes enqueueing.
        with factory() as session, session.begin():
            session.execute(text(f"ANALYZE {Delivery.__tablename__}"))
    return _finish_snapshot(factory, campaign_id)


def _finish_snapshot(factory: sessionmaker[Session], campaign_id: int) -> int:
    with factory() as session, session.begin():
        size = (
            session.scalar(
                select(func.count(Delivery.id)).where(Delivery.campaign_id == campaign_id)
            )
            or 0
        )
        get_campaign(session, campaign_id).audience_size = size
    log.info("campaign %s: audience of %s snapshotted", campaign_id, size)
    return size


def plan_batches(
    factory: sessionmaker[Session], campaign_id: int, *, size: int = BATCH_SIZE
) -> Iterator[Batch]:
    """Id ranges covering every queued delivery, ``size`` deliveries each, streamed.

    One short query per batch asks the database for the first and last of the next ``size``
    queued ids after the previous batch: the database steps over the index entries and only two
    ids per batch reach Python (streaming every id through the ORM took ~10 s per million).
    The query is built once and run on the session's connection (Core, cached compilation).
    """
    table = Delivery.__table__
    queued = and_(table.c.campaign_id == campaign_id, table.c.state == k.QUEUED)
    window = (
        select(table.c.id)
        .where(queued, table.c.id > bindparam("after"))
        .order_by(table.c.id)
        .limit(size)
        .subquery()
    )
    bounds = select(func.min(window.c.id), func.max(window.c.id))
    with factory() as session:
        connection = session.connection()
        # Where the campaign's queued ids start. On PostgreSQL min(id) would walk the primary
        # key from the table's very first delivery (every older campaign's rows) until it meets
        # one of ours; min(id + 0) is answered from the (campaign_id, state) index instead.
        # SQLite's index ends with the rowid, so there min(id) is one index seek.
        on_sqlite = connection.dialect.name == "sqlite"
        lowest = table.c.id if on_sqlite else table.c.id + 0
        start = connection.execute(select(func.min(lowest)).where(queued)).scalar()
        if start is None:
            return
        after = start - 1
        while True:
            first, last = connection.execute(bounds, {"after": after}).one()
            if first is None:
                return
            yield Batch(campaign_id, first, last)
            after = last
