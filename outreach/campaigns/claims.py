"""Claimed deliveries, the steps the SMS and email senders share.

A worker claims queued rows with one conditional UPDATE, so two workers never hold the same
delivery; a claimed row is sent at most once (a crash leaves it ``claimed`` for the reconciler,
never re-queued blindly). Right before a group goes out its consent and suppressions are checked
again (:func:`blocked_deliveries`); what is not sent is settled, deferred or handed back here.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import cast

from sqlalchemy import Table, and_, bindparam, exists, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from outreach.campaigns import get_campaign, move
from outreach.campaigns.ratelimit import DEFAULT_LONG_CODE_RATE, RateLimiter
from outreach.models import (
    Campaign,
    Delivery,
    Huddle,
    Subscription,
    Suppression,
)
from outreach.models import campaigns as k
from outreach.models import consent as c
from outreach.models import members as m
from outreach.providers.sms import (
    SendError,
    SmsTransport,
    TransientSendError,
)
from outreach.providers.twilio.error_policy import DEFAULT_ERROR_POLICY, ErrorAction

log = logging.getLogger(__name__)

SHUTDOWN = "shutdown"  # BatchOutcome.stopped: the worker is stopping; the job hands its range back
RETRY_AFTER = 10.0  # seconds before rows the provider did not take are claimed again


class LeaseLost(TransientSendError):
    """Not sent: this worker could not renew its lease lately, so it starts no sends."""


def fenced(ctx: SendContext) -> SendError | None:
    """The error a send returns instead of going out when the worker's lease is stale."""
    if ctx.may_send():
        return None
    return LeaseLost("this worker could not renew its lease; not sent")


def rate_limited(results: Iterable[object]) -> bool:
    """Did the provider answer 429 (HTTP or Twilio's 20429) to any of these?"""
    return any(
        isinstance(r, TransientSendError) and (r.http_status == 429 or r.code == "20429")
        for r in results
    )


def _never() -> bool:
    return False


def _nothing() -> None:
    return None


def _always() -> bool:
    return True


def _no_token() -> str | None:
    return None


@dataclass
class SendContext:
    """What a batch needs from the process: database, pacing, transports, clock."""

    sessions: sessionmaker[Session]
    limiter: RateLimiter
    transport_for_thread: Callable[[], SmsTransport]
    status_callback_url: str | None
    now: Callable[[], datetime]
    concurrency: int = 16
    default_rate: float = DEFAULT_LONG_CODE_RATE
    # True once the worker process was asked to stop: a batch ends after its current group
    # instead of running on (at a slow rate a batch lasts minutes, longer than a deploy waits).
    stopping: Callable[[], bool] = _never
    # what a provider error code means (TWILIO_ERROR_POLICY), for callbacks that came early
    error_policy: Mapping[str, ErrorAction] = field(default_factory=lambda: DEFAULT_ERROR_POLICY)
    # Applies the Twilio webhooks spooled while the database was away (outreach.sms.spool)
    # before a group's last consent check: a STOP among them counts before anything goes out,
    # not when the replay job's turn comes (sends are queued ahead of it).
    apply_spooled: Callable[[], None] = _nothing
    # The running job's lease token, written on every row it claims (outreach.campaigns.leases),
    # and whether the lease is fresh enough to start a send: a worker that cannot renew it
    # stops sending before the sweep can take it for dead.
    lease_token: Callable[[], str | None] = _no_token
    may_send: Callable[[], bool] = _always
    _pool: ThreadPoolExecutor | None = field(default=None, repr=False)

    def pool(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="send")
        return self._pool


@dataclass
class BatchOutcome:
    claimed: int = 0
    sent: int = 0
    skipped: int = 0
    failed: int = 0
    unknown: int = 0
    deferred_until: list[datetime] = field(default_factory=list)
    retry_after: float | None = None  # transient provider trouble: rows wait this long
    stopped: str | None = None  # "paused" / "cancelled" / "not-sending" / SHUTDOWN
    completed: bool = False
    sent_ids: list[str] = field(default_factory=list)  # provider ids (sandbox receipts)


@dataclass
class ClaimedDelivery:
    """A delivery this worker claimed, with what sending it needs (SMS here, email in
    ``outreach.campaigns.email_sender``, which shares these steps: checks, recording, deferring,
    releasing).
    """

    delivery_id: int
    member_id: int
    address: str
    body: str = ""
    segments: int = 1
    validity: int | None = None


def claimed_groups(
    ctx: SendContext,
    campaign_id: int,
    first_id: int,
    last_id: int,
    group_size: int,
    outcome: BatchOutcome,
) -> Iterator[tuple[list[ClaimedDelivery], datetime]]:
    """Claim the batch's queued deliveries a group at a time, for the SMS and email senders.

    Before each claim the campaign must still be sending and the worker not stopping: a pause,
    a cancel or a shutdown ends the loop, with ``outcome.stopped`` set. When nothing is left to
    claim, the campaign completes if no other batch has rows queued or claimed. Each group comes
    with the time it was claimed at.
    """
    while True:
        state = campaign_state(ctx, campaign_id)
        if state == k.SENDING and ctx.stopping():
            state = SHUTDOWN
        if state != k.SENDING:
            outcome.stopped = state
            return
        now = ctx.now()
        items = _claim(ctx, campaign_id, first_id, last_id, group_size, now)
        if not items:
            _maybe_complete(ctx, campaign_id, outcome)
            return
        outcome.claimed += len(items)
        yield items, now


def _claim(
    ctx: SendContext, campaign_id: int, first_id: int, last_id: int, size: int, now: datetime
) -> list[ClaimedDelivery]:
    """Atomically take up to ``size`` queued, due rows of the range; no two workers get one.

    Two statements, not UPDATE … WHERE id IN (SELECT … LIMIT): PostgreSQL may rescan such a
    subquery and claim far more than the limit. The SELECT locks what it picks (SKIP LOCKED lets
    other workers take the next rows); SQLite's write lock serializes claimers anyway.
    """
    with ctx.sessions() as session, session.begin():
        due = session.scalars(
            select(Delivery.id)
            .where(
                Delivery.campaign_id == campaign_id,
                Delivery.id >= first_id,
                Delivery.id <= last_id,
                Delivery.state == k.QUEUED,
                or_(Delivery.not_before.is_(None), Delivery.not_before <= now),
            )
            .order_by(Delivery.id)
            .limit(size)
            .with_for_update(skip_locked=True)
        ).all()
        if not due:
            return []
        claimed = session.execute(
            update(Delivery)
            .where(Delivery.id.in_(due), Delivery.state == k.QUEUED)
            .values(
                state=k.CLAIMED,
                claimed_at=now,
                claimed_by=ctx.lease_token(),
                lookups=0,
                attempts=Delivery.attempts + 1,
            )
            .returning(Delivery.id, Delivery.member_id, Delivery.address)
        ).all()
    return [ClaimedDelivery(d, mid, addr) for d, mid, addr in sorted(claimed)]


_subscriptions = cast(Table, Subscription.__table__)

_ACTIVE_MEMBERS = select(_subscriptions.c.member_id).where(
    _subscriptions.c.huddle_id == bindparam("huddle_id"),
    _subscriptions.c.channel == bindparam("channel"),
    _subscriptions.c.state == m.ACTIVE,
    _subscriptions.c.member_id.in_(bindparam("member_ids", expanding=True)),
)

_suppressions = cast(Table, Suppression.__table__)

_SUPPRESSED = select(_suppressions.c.address).where(
    _suppressions.c.channel == bindparam("channel"),
    _suppressions.c.address.in_(bindparam("addresses", expanding=True)),
    _suppressions.c.scope.in_(bindparam("scopes", expanding=True)),
    _suppressions.c.lifted_at.is_(None),
)


def blocked_deliveries(
    session: Session, huddle: Huddle, channel: str, items: Sequence[ClaimedDelivery]
) -> dict[int, str]:
    """Deliveries that must not go out now: subscription not active, or address suppressed."""
    by_member = {i.member_id: i.delivery_id for i in items}
    reasons: dict[int, str] = {}
    connection = session.connection()  # Core, statements built once: this runs twice a group
    active = set(
        connection.execute(
            _ACTIVE_MEMBERS,
            {"huddle_id": huddle.id, "channel": channel, "member_ids": list(by_member)},
        ).scalars()
    )
    for member_id, delivery_id in by_member.items():
        if member_id not in active:
            reasons[delivery_id] = "opted-out"
    by_address = {i.address: i.delivery_id for i in items}
    for address in connection.execute(
        _SUPPRESSED,
        {
            "channel": channel,
            "addresses": list(by_address),
            "scopes": [c.ALL_SENDERS, huddle.sender_key],
        },
    ).scalars():
        reasons.setdefault(by_address[address], "suppressed")
    for item in items:
        if not item.address:
            reasons.setdefault(item.delivery_id, "no-address")
    return reasons


def record_outcomes(
    ctx: SendContext, rows: Iterable[tuple[int, str, str]], outcome: BatchOutcome
) -> None:
    """Settle claimed deliveries that were not sent: (id, skipped / failed / unknown, why)."""
    rows = list(rows)
    if not rows:
        return
    now = ctx.now()
    with ctx.sessions() as session, session.begin():
        for delivery_id, state, detail in rows:
            values: dict[str, object] = {"state": state, "updated_at": now}
            if state == k.SKIPPED:
                values["skip_reason"] = detail
                outcome.skipped += 1
            else:
                values["error_code"] = detail
                if state == k.FAILED:
                    outcome.failed += 1
                elif state == k.UNKNOWN:
                    outcome.unknown += 1
            session.execute(
                update(Delivery)
                .where(Delivery.id == delivery_id, Delivery.state == k.CLAIMED)
                .values(**values)
            )


def defer_deliveries(
    ctx: SendContext, deferred: list[tuple[int, datetime]], outcome: BatchOutcome
) -> None:
    """Hand claimed deliveries back until their recipient's window opens (quiet hours)."""
    if not deferred:
        return
    with ctx.sessions() as session, session.begin():
        for delivery_id, opens in deferred:
            session.execute(
                update(Delivery)
                .where(Delivery.id == delivery_id, Delivery.state == k.CLAIMED)
                .values(state=k.QUEUED, not_before=opens, claimed_at=None)
            )
    outcome.deferred_until = sorted({opens for _, opens in deferred})


def release_deliveries(
    ctx: SendContext,
    items: list[ClaimedDelivery],
    *,
    cancelled: bool,
    outcome: BatchOutcome,
    not_before: datetime | None = None,
) -> None:
    """Hand claimed-but-unsent rows back (pause, transient errors) or skip them (cancel).

    ``not_before``: not to be claimed again before then (a provider that asked us to wait).
    """
    if not items:
        return
    ids = [i.delivery_id for i in items]
    values: dict[str, object]
    if cancelled:
        values = {"state": k.SKIPPED, "skip_reason": "cancelled", "updated_at": ctx.now()}
        outcome.skipped += len(ids)
    else:
        values = {"state": k.QUEUED, "claimed_at": None, "not_before": not_before}
    with ctx.sessions() as session, session.begin():
        session.execute(
            update(Delivery)
            .where(Delivery.id.in_(ids), Delivery.state == k.CLAIMED)
            .values(**values)
        )


def campaign_state(ctx: SendContext, campaign_id: int) -> str:
    """The campaign's state now; a deleted campaign counts as cancelled."""
    with ctx.sessions() as session:
        state = session.scalar(select(Campaign.state).where(Campaign.id == campaign_id))
    return state or k.CANCELLED


def _maybe_complete(ctx: SendContext, campaign_id: int, outcome: BatchOutcome) -> None:
    """A sending campaign with nothing queued or claimed left is complete."""
    with ctx.sessions() as session, session.begin():
        left = session.scalar(
            select(
                exists().where(
                    and_(
                        Delivery.campaign_id == campaign_id,
                        Delivery.state.in_([k.QUEUED, k.CLAIMED]),
                    )
                )
            )
        )
        if left:
            return
        campaign = get_campaign(session, campaign_id, for_update=True)
        if campaign.state == k.SENDING:
            move(campaign, k.COMPLETED)
            outcome.completed = True
            log.info("campaign %s completed", campaign_id)
