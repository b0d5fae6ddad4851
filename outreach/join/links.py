"""The signed link in the confirmation email (itsdangerous, salt ``join-confirm``)."""

from __future__ import annotations

from dataclasses import dataclass

from itsdangerous import BadData, SignatureExpired, URLSafeTimedSerializer

from outreach.app.settings import Settings

CONFIRM_SALT = "join-confirm"
CONFIRM_MAX_AGE = 7 * 24 * 3600  # seconds


class ConfirmLinkError(ValueError):
    """A confirmation link that can't be used."""


class InvalidConfirmLink(ConfirmLinkError):
    """Not a link we signed (tampered or cut short)."""


class ExpiredConfirmLink(ConfirmLinkError):
    """Signed by us, older than :data:`CONFIRM_MAX_AGE`."""


@dataclass(frozen=True)
class ConfirmTarget:
    member_id: int
    huddle_id: int
    email: str  # the address confirmed: a link never confirms an address it wasn't sent to


def _confirm_serializer(settings: Settings) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(settings.secret_key, salt=CONFIRM_SALT)


def make_confirm_token(settings: Settings, member_id: int, huddle_id: int, email: str) -> str:
    return str(_confirm_serializer(settings).dumps([member_id, huddle_id, email]))


def read_confirm_token(settings: Settings, token: str) -> ConfirmTarget:
    try:
        payload = _confirm_serializer(settings).loads(token, max_age=CONFIRM_MAX_AGE)
    except SignatureExpired:
        raise ExpiredConfirmLink("confirmation link expired") from None
    except BadData:
        raise InvalidConfirmLink("confirmation link is not valid") from None
    if (
        isinstance(payload, list)
        and len(payload) == 3
        and isinstance(payload[0], int)
        and isinstance(payload[1], int)
        and isinstance(payload[2], str)
    ):
        return ConfirmTarget(payload[0], payload[1], payload[2])
    raise InvalidConfirmLink("confirmation link names nothing we know")


def confirm_url(base_url: str, slug: str, token: str) -> str:
    """``<base>/join/<slug>/confirm/<token>``: the link in the confirmation email."""
    return f"{base_url.rstrip('/')}/join/{slug}/confirm/{token}"
