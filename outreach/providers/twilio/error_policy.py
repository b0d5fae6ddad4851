"""What a Twilio error code means for us: opt the number out, suppress it, flag the campaign.

Twilio says codes may change, so the mapping is a setting (``TWILIO_ERROR_POLICY``,
``"30003=suppress,30008=none"``) over these defaults. The actions themselves are applied in
:mod:`outreach.sms.error_actions`.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum


class ErrorAction(StrEnum):
    OPT_OUT = "opt_out"  # the carrier says the person replied STOP
    SUPPRESS = "suppress"  # the number cannot take texts (invalid, landline, unknown)
    FLAG_CAMPAIGN = "flag_campaign"  # a content problem: tell the organizer, keep the person
    NONE = "none"


DEFAULT_ERROR_POLICY: Mapping[str, ErrorAction] = {
    "21610": ErrorAction.OPT_OUT,
    "21211": ErrorAction.SUPPRESS,
    "21614": ErrorAction.SUPPRESS,
    "21635": ErrorAction.SUPPRESS,
    "30005": ErrorAction.SUPPRESS,
    "30006": ErrorAction.SUPPRESS,
    "30007": ErrorAction.FLAG_CAMPAIGN,
}


def parse_error_policy(text: str | None) -> dict[str, ErrorAction]:
    """``"30003=suppress,30008=none"`` over the defaults; raises ValueError with the bad part."""
    policy = dict(DEFAULT_ERROR_POLICY)
    for part in (text or "").split(","):
        if not part.strip():
            continue
        code, _, action = part.partition("=")
        code, action = code.strip(), action.strip().lower()
        if not code.isdigit() or action not in {a.value for a in ErrorAction}:
            raise ValueError(f"bad error policy entry {part!r}: expected CODE=ACTION")
        policy[code] = ErrorAction(action)
    return policy
