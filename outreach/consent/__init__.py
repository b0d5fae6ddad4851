"""Consent: the append-only ledger, subscriptions, suppressions, unsubscribe links.

Every change of a subscription's state, and every suppression added or lifted, is written here and
nowhere else, with its ledger row in the same transaction: by the inbound webhook (STOP, joins,
YES, START), the join form, unsubscribe links, provider errors and events, imports. The functions
take a SQLAlchemy ``Session`` or a ``Connection`` and run Core statements on it, so the webhook's
hot path and the ORM callers write exactly the same rows.

- :mod:`~outreach.consent.ledger`: :class:`Provenance`, :func:`record`, :func:`history`
- :mod:`~outreach.consent.memberships`: that a huddle holds a person (state ``none``)
- :mod:`~outreach.consent.subscriptions`: read, move and create subscriptions
- :mod:`~outreach.consent.suppressions`: add, re-arm, lift and check suppressions
- :mod:`~outreach.consent.unsubscribe`: signed email unsubscribe links and what they do
"""

from outreach.consent.ledger import Provenance, address_for, history, record
from outreach.consent.memberships import hold
from outreach.consent.subscriptions import (
    SubscriptionState,
    get_subscription,
    move_subscription,
    set_conversation_step,
    set_subscription_state,
)
from outreach.consent.suppressions import is_suppressed, lift_suppression, suppress

__all__ = [
    "Provenance",
    "SubscriptionState",
    "address_for",
    "get_subscription",
    "history",
    "hold",
    "is_suppressed",
    "lift_suppression",
    "move_subscription",
    "record",
    "set_conversation_step",
    "set_subscription_state",
    "suppress",
]
