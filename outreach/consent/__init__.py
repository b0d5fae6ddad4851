"""Consent: subscriptions, the append-only ledger, suppressions.

Every change of a subscription's state goes through :func:`set_subscription_state` (or
:func:`move_subscription`, the same for a caller that has read the row already), which writes the
ledger row in the same transaction. Nothing else writes subscriptions' ``state``, except the
inbound webhook's hot path (``outreach.sms.inbound``: STOP, join keywords, YES, START), which writes
the same rows in plain SQL; tests/webhooks/test_inbound_consent_rows.py holds it to them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from outreach.app.clock import utcnow
from outreach.models import ConsentEvent, Huddle, Member, Subscription, Suppression
from outreach.models import consent as c
from outreach.models import members as m

log = logging.getLogger(__name__)

_ACTION_FOR_STATE = {m.PENDING: c.OPT_IN_REQUESTED, m.ACTIVE: c.OPT_IN, m.OPTED_OUT: c.OPT_OUT}


@dataclass(frozen=True)
class Provenance:
    """Where a consent change came from, as the ledger records it."""

    source: str
    detail: str | None = None
    provider_message_id: str | None = None
    ip: str | None = None
    user_agent: str | None = None
    actor: str | None = None


def address_for(member: Member, channel: str) -> str | None:
    return member.phone if channel == m.SMS else member.email


def get_subscription(
    session: Session, member: Member, huddle: Huddle, channel: str
) -> Subscription | None:
    return session.scalars(
        select(Subscription).where(
            Subscription.member_id == member.id,
            Subscription.huddle_id == huddle.id,
            Subscription.channel == channel,
        )
    ).one_or_none()


def record(
    session: Session,
    *,
    member: Member | None,
    huddle: Huddle | None,
    channel: str,
    address: str,
    action: str,
    provenance: Provenance,
) -> ConsentEvent:
    event = ConsentEvent(
        member_id=member.id if member else None,
        huddle_id=huddle.id if huddle else None,
        channel=channel,
        address=address,
        action=action,
        source=provenance.source,
        detail=provenance.detail,
        provider_message_id=provenance.provider_message_id,
        ip=provenance.ip,
        user_agent=provenance.user_agent,
        actor=provenance.actor,
        created_at=utcnow(),
    )
    session.add(event)
    return event


def set_subscription_state(
    session: Session,
    *,
    member: Member,
    huddle: Huddle,
    channel: str,
    state: str,
    provenance: Provenance,
    action: str | None = None,
) -> Subscription:
    """Create or move a subscription, writing the ledger row. A no-op move writes nothing."""
    return move_subscription(
        session,
        get_subscription(session, member, huddle, channel),
        member=member,
        huddle=huddle,
        channel=channel,
        state=state,
        provenance=provenance,
        action=action,
    )


def move_subscription(
    session: Session,
    subscription: Subscription | None,
    *,
    member: Member,
    huddle: Huddle,
    channel: str,
    state: str,
    provenance: Provenance,
    action: str | None = None,
) -> Subscription:
    """:func:`set_subscription_state` for a caller that has read the subscription already.

    ``subscription`` is the member's subscription to ``huddle`` on ``channel`` as loaded in this
    session and transaction (None: they have none), so it is not read again: the inbound webhook
    has it from its first query.
    """
    if state not in m.SUBSCRIPTION_STATES:
        raise ValueError(f"unknown subscription state {state!r}")
    address = address_for(member, channel)
    if address is None:
        raise ValueError(f"member {member.id} has no {channel} address")
    if subscription is None:
        subscription = Subscription(
            member_id=member.id, huddle_id=huddle.id, channel=channel, state=state
        )
        session.add(subscription)
    elif subscription.state == state:
        return subscription
    else:
        subscription.state = state
        subscription.updated_at = utcnow()
    record(
        session,
        member=member,
        huddle=huddle,
        channel=channel,
        address=address,
        action=action or _ACTION_FOR_STATE[state],
        provenance=provenance,
    )
    session.flush()
    return subscription


def is_suppressed(session: Session, channel: str, address: str, scope: str | None = None) -> bool:
    """True when ``address`` must not be contacted on ``channel`` (from ``scope``, or at all)."""
    scopes = [c.ALL_SENDERS] if scope is None else [c.ALL_SENDERS, scope]
    return (
        session.scalar(
            select(Suppression.id).where(
                Suppression.channel == channel,
                Suppression.address == address,
                Suppression.scope.in_(scopes),
                Suppression.lifted_at.is_(None),
            )
        )
        is not None
    )


def suppress(
    session: Session,
    *,
    channel: str,
    address: str,
    reason: str,
    scope: str = c.ALL_SENDERS,
    detail: str | None = None,
) -> Suppression:
    """Add (or re-arm) a suppression. Callers write the matching ledger row.

    The row is inserted ``ON CONFLICT DO NOTHING``: on PostgreSQL another transaction may be
    adding the same one (two texts to a number failing at once, a bounce posted twice). The
    insert then waits for it and keeps its row, which is re-armed here like any other.
    """
    now = utcnow()
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    inserted = session.execute(
        insert(Suppression)
        .values(
            channel=channel,
            address=address,
            scope=scope,
            reason=reason,
            detail=detail,
            created_at=now,
        )
        .on_conflict_do_nothing(index_elements=["channel", "address", "scope"])
        .returning(Suppression.id)
    ).scalar_one_or_none()
    row = session.scalars(
        select(Suppression)
        .where(
            Suppression.channel == channel,
            Suppression.address == address,
            Suppression.scope == scope,
        )
        .execution_options(populate_existing=True)
    ).one()
    if inserted is None and (row.lifted_at is not None or row.reason != reason):
        row.lifted_at = None
        row.reason = reason
        row.detail = detail
        row.created_at = now
    session.flush()
    return row


def lift_suppression(session: Session, *, channel: str, address: str, scope: str) -> bool:
    """Lift a member-requested suppression (START). Provider-imposed ones (bounce…) stay."""
    row = session.scalars(
        select(Suppression).where(
            Suppression.channel == channel,
            Suppression.address == address,
            Suppression.scope == scope,
            Suppression.lifted_at.is_(None),
        )
    ).one_or_none()
    if row is None:
        return False
    row.lifted_at = utcnow()
    return True


def history(session: Session, member: Member) -> list[ConsentEvent]:
    """The member's whole ledger, oldest first, including rows about their addresses alone."""
    addresses = [a for a in (member.phone, member.email) if a]
    return list(
        session.scalars(
            select(ConsentEvent)
            .where(
                (ConsentEvent.member_id == member.id)
                | (ConsentEvent.member_id.is_(None) & ConsentEvent.address.in_(addresses))
            )
            .order_by(ConsentEvent.created_at, ConsentEvent.id)
        )
    )
