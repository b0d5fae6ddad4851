"""Settling deliveries left ``claimed`` by a worker that died mid-batch.

A claimed row may or may not have reached the provider. It is never re-sent blindly: we ask the
provider (``find_sent``: Twilio's message list filtered by recipient and time, the sandbox's
outbox). Found: the row becomes ``sent`` with that id. Confirmed absent: back to ``queued``, and
the caller re-enqueues it. No way to tell: ``unknown``, shown in the report.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

from sqlalchemy import exists, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from outreach.models import Campaign, Delivery
from outreach.models import campaigns as k
from outreach.providers.sms import SendError, SmsTransport

log = logging.getLogger(__name__)

NOT_SENT = ""  # find_sent's answer when the provider confirms there is no such message


@dataclass
class ReconcileResult:
    sent: int = 0
    requeued: int = 0
    unknown: int = 0
    campaigns: set[int] = field(default_factory=set)  # campaigns whose queued rows need jobs


class CanFindSent(Protocol):
    def find_sent(self, *, to: str, reference: str, since: datetime) -> str | None:
        """The provider id of the message sent for ``reference``; NOT_SENT; None: can't tell."""


def reconcile_claims(
    factory: sessionmaker[Session],
    transport: SmsTransport,
    *,
    older_than: timedelta,
    now: datetime,
    limit: int = 5000,
) -> ReconcileResult:
    with factory() as session:
        stale = session.execute(
            select(Delivery.id, Delivery.address, Delivery.claimed_at, Delivery.campaign_id)
            .where(Delivery.state == k.CLAIMED, Delivery.claimed_at < now - older_than)
            .order_by(Delivery.id)
            .limit(limit)
        ).all()
    result = ReconcileResult()
    finder = getattr(transport, "find_sent", None)
    for delivery_id, address, claimed_at, campaign_id in stale:
        found: str | None = None
        if finder is not None:
            try:
                found = finder(to=address, reference=f"delivery:{delivery_id}", since=claimed_at)
            except SendError as exc:
                log.warning("reconcile: lookup for delivery %s failed: %s", delivery_id, exc)
                found = None
        with factory() as session, session.begin():
            query = update(Delivery).where(Delivery.id == delivery_id, Delivery.state == k.CLAIMED)
            if found:
                session.execute(
                    query.values(
                        state=k.SENT, provider_message_id=found, sent_at=claimed_at, updated_at=now
                    )
                )
                result.sent += 1
            elif found == NOT_SENT:
                session.execute(query.values(state=k.QUEUED, claimed_at=None, updated_at=now))
                result.requeued += 1
                result.campaigns.add(campaign_id)
            else:
                session.execute(query.values(state=k.UNKNOWN, updated_at=now))
                result.unknown += 1
    if stale:
        log.warning("reconciled %s stale claims: %s", len(stale), result)
    result.campaigns |= stalled_campaigns(factory, older_than=older_than, now=now)
    return result


def stalled_campaigns(
    factory: sessionmaker[Session], *, older_than: timedelta, now: datetime
) -> set[int]:
    """Sending campaigns with due, queued rows and no claim for a while: their jobs were lost.

    A worker killed mid-batch takes its job with it; the rest of that batch stays queued with
    nobody to send it. Enqueueing such rows again is harmless (claims are atomic).
    """
    cutoff = now - older_than
    recent_claim = exists().where(
        Delivery.campaign_id == Campaign.id, Delivery.claimed_at >= cutoff
    )
    due = exists().where(
        Delivery.campaign_id == Campaign.id,
        Delivery.state == k.QUEUED,
        or_(Delivery.not_before.is_(None), Delivery.not_before <= now),
    )
    with factory() as session:
        return set(
            session.scalars(
                select(Campaign.id).where(
                    Campaign.state == k.SENDING,
                    Campaign.launched_at < cutoff,
                    due,
                    ~recent_claim,
                )
            )
        )
