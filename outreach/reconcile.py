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

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from outreach.models import Delivery
from outreach.models import campaigns as k
from outreach.transports.base import SendError, SmsTransport

log = logging.getLogger(__name__)

NOT_SENT = ""  # find_sent's answer when the provider confirms there is no such message


@dataclass
class ReconcileResult:
    sent: int = 0
    requeued: int = 0
    unknown: int = 0
    campaigns: set[int] = field(default_factory=set)  # campaigns with rows to enqueue again


class CanFindSent(Protocol):
    def find_sent(self, *, to: str, reference: str, since: datetime) -> str | None:
        """The provider id of a message sent for ``reference``; NOT_SENT if none; None: can't tell."""


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
            query = update(Delivery).where(
                Delivery.id == delivery_id, Delivery.state == k.CLAIMED
            )
            if found:
                session.execute(
                    query.values(state=k.SENT, provider_message_id=found, sent_at=claimed_at,
                                 updated_at=now)
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
    return result
