"""The public join flow: a huddle's web page, its double opt-in, its confirmations.

- :mod:`~outreach.join.form`: what the page says (recorded as consent evidence) and accepts
- :mod:`~outreach.join.flow`: the consent a submission writes; following the email's link
- :mod:`~outreach.join.links`: the signed confirmation link
- :mod:`~outreach.join.confirmations`: sending the confirmation email and the YES ask
"""

from outreach.join.flow import (
    CONFIRMED_BY_LINK,
    EMAIL_SENT,
    ConfirmResult,
    JoinOutcome,
    Visitor,
    confirm,
    submit,
)
from outreach.join.form import JoinForm, ValidJoin, email_disclosure, sms_disclosure, validate
from outreach.join.links import (
    CONFIRM_MAX_AGE,
    ConfirmLinkError,
    ConfirmTarget,
    ExpiredConfirmLink,
    InvalidConfirmLink,
    make_confirm_token,
    read_confirm_token,
)

__all__ = [
    "CONFIRMED_BY_LINK",
    "CONFIRM_MAX_AGE",
    "EMAIL_SENT",
    "ConfirmLinkError",
    "ConfirmResult",
    "ConfirmTarget",
    "ExpiredConfirmLink",
    "InvalidConfirmLink",
    "JoinForm",
    "JoinOutcome",
    "ValidJoin",
    "Visitor",
    "confirm",
    "email_disclosure",
    "make_confirm_token",
    "read_confirm_token",
    "sms_disclosure",
    "submit",
    "validate",
]
