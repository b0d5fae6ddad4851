"""What a provider's error code does to a number, whether it came on a receipt or on a send.

21610 (the person replied STOP at the carrier) opts them out of the sender's huddles and
suppresses the number there; invalid, landline and unknown numbers are suppressed everywhere;
carrier filtering (30007) flags the campaign for its organizer and leaves the person alone. Which
code means which action is :mod:`outreach.providers.twilio.error_policy`.
"""

from __future__ import annotations

import logging
from typing import cast

from sqlalchemy import Connection, Table, bindparam, select, update
from sqlalchemy.orm import Session

from outreach import consent
from outreach.addresses.phones import mask_phone
from outreach.models import Campaign, Huddle, Subscription
from outreach.models import consent as c
from outreach.models import members as m
from outreach.providers.twilio.error_policy import ErrorAction

log = logging.getLogger(__name__)

_SUBSCRIPTIONS = cast(Table, Subscription.__table__)
_HUDDLES = cast(Table, Huddle.__table__)
_CAMPAIGNS = cast(Table, Campaign.__table__)
_FLAG = (
    update(_CAMPAIGNS)
    .where(_CAMPAIGNS.c.id == bindparam("campaign_id"))
    .values(flag=bindparam("flag"))
)


def apply_error_action(
    db: Session | Connection,
    *,
    action: ErrorAction,
    code: str,
    address: str,
    huddle: Huddle,
    member_id: int | None,
    campaign_id: int | None,
) -> None:
    """Apply ``action`` for a text to ``address`` from ``huddle`` (sent for ``campaign_id``)."""
    provenance = consent.Provenance(source=c.SOURCE_PROVIDER, detail=f"twilio error {code}")
    if action is ErrorAction.OPT_OUT:
        if member_id is not None:
            _opt_out(db, member_id, address, huddle, provenance)
        consent.suppress(
            db,
            channel=m.SMS,
            address=address,
            reason="stop",
            scope=huddle.sender_key,
            detail=f"twilio error {code}",
        )
        log.info("error %s: %s opted out of %s", code, mask_phone(address), huddle.slug)
    elif action is ErrorAction.SUPPRESS:
        consent.suppress(
            db,
            channel=m.SMS,
            address=address,
            reason=f"twilio-{code}",
            detail=f"twilio error {code}",
        )
        consent.record(
            db,
            member_id=member_id,
            huddle_id=None,
            channel=m.SMS,
            address=address,
            action=c.SUPPRESS,
            provenance=provenance,
        )
        log.info("error %s: %s suppressed", code, mask_phone(address))
    elif action is ErrorAction.FLAG_CAMPAIGN and campaign_id is not None:
        flag = f"Carrier filtering (Twilio {code}) on at least one message: review the content."
        db.execute(_FLAG, {"campaign_id": campaign_id, "flag": flag})
        log.warning("campaign %s flagged: twilio error %s", campaign_id, code)


def _opt_out(
    db: Session | Connection,
    member_id: int,
    address: str,
    huddle: Huddle,
    provenance: consent.Provenance,
) -> None:
    """Every SMS subscription of the member to a huddle on this sender moves to ``opted_out``."""
    s = _SUBSCRIPTIONS
    same_sender = (
        s.c.huddle_id.in_(
            select(_HUDDLES.c.id).where(_HUDDLES.c.sender_number == huddle.sender_number)
        )
        if huddle.sender_number
        else s.c.huddle_id == huddle.id
    )
    rows = db.execute(
        select(s.c.id, s.c.member_id, s.c.huddle_id, s.c.channel, s.c.state, s.c.conversation_step)
        .where(
            s.c.member_id == member_id,
            s.c.channel == m.SMS,
            s.c.state != m.OPTED_OUT,
            same_sender,
        )
        .order_by(s.c.huddle_id)
    ).all()
    for row in rows:
        current = consent.SubscriptionState(*row)
        consent.move_subscription(
            db,
            current,
            member_id=member_id,
            huddle_id=current.huddle_id,
            channel=m.SMS,
            address=address,
            state=m.OPTED_OUT,
            provenance=provenance,
        )
