"""Settling claims nobody holds any more, and finding campaigns that lost their jobs.

A claimed row may or may not have reached the provider. It is never re-sent blindly: we ask the
provider (``find_sent``: Twilio's message list filtered by recipient and time, the sandbox's
outbox). Found: the row becomes ``sent`` with that id. Confirmed absent, and claimed long enough
ago that no send of it can still be in flight: back to ``queued``. The lookup failed (any error:
an SDK exception, a 5xx, a timeout, a page it cannot parse): the row waits for the next sweep,
and after ``MAX_LOOKUPS`` failures it is ``unknown``, shown in the report.

A claim is dead when no live lease holds its token (``outreach.campaigns.leases``); a claim with
no token (written by an in-process sender without a lease) when it is older than
``UNLEASED_CLAIM_TIMEOUT``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

from sqlalchemy import and_, exists, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from outreach.addresses.phones import mask_phone
from outreach.campaigns import get_campaign, leases, move
from outreach.models import Campaign, Delivery
from outreach.models import campaigns as k

log = logging.getLogger(__name__)

NOT_SENT = ""  # find_sent's answer when the provider confirms there is no such message
MAX_LOOKUPS = 5  # failed provider lookups before a dead claim is marked unknown
# A provider request can take this long (connect, read, retries); a claim younger than that may
# still be on its way to the provider even though its worker is gone: "not sent" waits.
IN_FLIGHT = timedelta(seconds=30)  # for a transport that does not say
IN_FLIGHT_MARGIN = timedelta(seconds=5)
UNLEASED_CLAIM_TIMEOUT = timedelta(minutes=5)
STALL_GRACE = timedelta(seconds=10)  # a campaign launched this recently is still being enqueued


_CAN_CLAIM = (k.SENDING, k.PAUSED, k.CANCELLED)  # a claim outlives a pause or a cancel


@dataclass
class ReconcileResult:
    sent: int = 0
    requeued: int = 0
    unknown: int = 0
    waiting: int = 0  # dead claims left for the next sweep (lookup failed, or maybe in flight)
    campaigns: set[int] = field(default_factory=set)  # campaigns whose queued rows need jobs


class CanFindSent(Protocol):
    def find_sent(self, *, to: str, reference: str, since: datetime) -> str | None:
        """The provider id of the message sent for ``reference``; NOT_SENT; None: can't tell."""


@dataclass(frozen=True)
class DeadClaim:
    delivery_id: int
    channel: str
    address: str
    claimed_at: datetime
    campaign_id: int
    lookups: int


def dead_claims(
    session: Session, *, now: datetime, limit: int, lease_timeout: float
) -> list[DeadClaim]:
    """The claims no live worker holds."""
    held = leases.live_tokens(session, now=now, timeout=lease_timeout)
    orphaned = and_(Delivery.claimed_by.is_not(None), Delivery.claimed_by.not_in(held or [""]))
    unleased = and_(
        Delivery.claimed_by.is_(None), Delivery.claimed_at < now - UNLEASED_CLAIM_TIMEOUT
    )
    rows = session.execute(
        select(
            Delivery.id,
            Delivery.channel,
            Delivery.address,
            Delivery.claimed_at,
            Delivery.campaign_id,
            Delivery.lookups,
        )
        .where(
            # Through the campaigns that can have claims: the (campaign, state) index, not a
            # scan of every delivery ever made, every few seconds.
            Delivery.campaign_id.in_(select(Campaign.id).where(Campaign.state.in_(_CAN_CLAIM))),
            Delivery.state == k.CLAIMED,
            or_(orphaned, unleased),
        )
        .order_by(Delivery.id)
        .limit(limit)
    ).all()
    return [DeadClaim(d, ch, a, c or now, cid, n) for d, ch, a, c, cid, n in rows]


def in_flight_for(transport: object) -> timedelta:
    """How long after its claim a send may still reach the provider: the transport's longest
    request (``max_request_seconds``: timeouts and retries) and a margin."""
    longest = float(getattr(transport, "max_request_seconds", IN_FLIGHT.total_seconds()))
    return timedelta(seconds=longest) + IN_FLIGHT_MARGIN


def reconcile_claims(
    factory: sessionmaker[Session],
    transports: Mapping[str, object],
    *,
    now: datetime,
    lease_timeout: float = leases.LEASE_TIMEOUT,
    limit: int = 5000,
    seconds: float = 10.0,
    monotonic: Callable[[], float] = time.monotonic,
) -> ReconcileResult:
    """Settle the claims no live worker holds (see the module docstring). ``transports``: the
    provider of each channel; one without ``find_sent`` cannot tell, so its claims are unknown.
    """
    with factory() as session:
        stale = dead_claims(session, now=now, limit=limit, lease_timeout=lease_timeout)
    result = ReconcileResult()
    deadline = monotonic() + seconds  # a provider slow to answer: the rest waits for the next run
    for claim in stale:
        if monotonic() > deadline:
            result.waiting += 1
            continue
        delivery_id, address, claimed_at = claim.delivery_id, claim.address, claim.claimed_at
        campaign_id, lookups = claim.campaign_id, claim.lookups
        transport = transports.get(claim.channel)
        finder = getattr(transport, "find_sent", None)
        found: str | None = None
        if finder is not None:
            try:
                found = finder(to=address, reference=f"delivery:{delivery_id}", since=claimed_at)
            except Exception as exc:  # noqa: BLE001 - no provider answer may stop the sweep
                log.warning(
                    "reconcile: lookup for delivery %s to %s failed: %s: %s",
                    delivery_id,
                    mask_phone(address),
                    type(exc).__name__,
                    exc,
                )
                found = None
        query = update(Delivery).where(Delivery.id == delivery_id, Delivery.state == k.CLAIMED)
        with factory() as session, session.begin():
            if found:
                session.execute(
                    query.values(
                        state=k.SENT, provider_message_id=found, sent_at=claimed_at, updated_at=now
                    )
                )
                result.sent += 1
            elif found == NOT_SENT and claimed_at <= now - in_flight_for(transport):
                session.execute(
                    query.values(state=k.QUEUED, claimed_at=None, claimed_by=None, updated_at=now)
                )
                result.requeued += 1
                result.campaigns.add(campaign_id)
            elif found == NOT_SENT:
                result.waiting += 1  # its send may still be in flight: ask again next sweep
            elif finder is not None and lookups + 1 < MAX_LOOKUPS:
                session.execute(query.values(lookups=Delivery.lookups + 1))
                result.waiting += 1
            else:
                session.execute(query.values(state=k.UNKNOWN, updated_at=now))
                result.unknown += 1
    if result.sent or result.requeued or result.unknown:
        log.warning("settled %s dead claims: %s", len(stale) - result.waiting, result)
    return result


def stalled_campaigns(session: Session, *, now: datetime, busy: Iterable[int]) -> set[int]:
    """Sending campaigns with due, queued rows and no job (``busy``: campaigns that have one).

    A worker killed mid-batch takes its job with it; Redis restarted empty takes the queue; a
    quiet-hours deferral or a provider's 429 leaves rows queued until a time: in each case the
    ledger says what is left, and enqueueing it again is harmless (claims are atomic).
    Campaigns whose snapshot is not finished (no audience yet) are for :func:`lost_launches`.
    """
    due = exists().where(
        Delivery.campaign_id == Campaign.id,
        Delivery.state == k.QUEUED,
        or_(Delivery.not_before.is_(None), Delivery.not_before <= now),
    )
    return set(
        session.scalars(
            select(Campaign.id).where(
                Campaign.state == k.SENDING,
                Campaign.audience_size > 0,
                Campaign.launched_at < now - STALL_GRACE,
                due,
            )
        )
    ) - set(busy)


def lost_launches(session: Session, *, now: datetime) -> set[int]:
    """Campaigns to launch now: scheduled ones that are due, and sending ones whose launch
    (the audience snapshot) never finished. Launching again is harmless (it is idempotent)."""
    due_scheduled = and_(Campaign.state == k.SCHEDULED, Campaign.send_at <= now)
    unfinished = and_(
        Campaign.state == k.SENDING,
        Campaign.audience_size == 0,
        Campaign.launched_at < now - STALL_GRACE,
    )
    return set(session.scalars(select(Campaign.id).where(or_(due_scheduled, unfinished))))


def complete_finished(session: Session, *, busy: Iterable[int]) -> set[int]:
    """Complete sending campaigns with nothing queued or claimed and no job: the sweep settled
    their last claims, so no send job is left to notice that they are done."""
    left = exists().where(
        Delivery.campaign_id == Campaign.id, Delivery.state.in_([k.QUEUED, k.CLAIMED])
    )
    done = set(
        session.scalars(
            select(Campaign.id).where(
                Campaign.state == k.SENDING, Campaign.audience_size > 0, ~left
            )
        )
    ) - set(busy)
    for campaign_id in sorted(done):
        campaign = get_campaign(session, campaign_id, for_update=True)
        if campaign.state == k.SENDING:
            move(campaign, k.COMPLETED)
            log.info("campaign %s completed", campaign_id)
    return done
