"""The audit log: who did what, appended in the same transaction as the thing done."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from outreach.app.clock import utcnow
from outreach.models import AuditEvent

SIGNED_IN = "signed_in"
SIGNED_OUT = "signed_out"
SIGN_IN_REFUSED = "sign_in_refused"
USER_CREATED = "user_created"
USER_DISABLED = "user_disabled"
ACCESS_GRANTED = "access_granted"
ACCESS_REVOKED = "access_revoked"
TOKEN_CREATED = "token_created"  # noqa: S105 - an action name
TOKEN_REVOKED = "token_revoked"  # noqa: S105 - an action name
HUDDLE_CREATED = "huddle_created"
CAMPAIGN_CREATED = "campaign_created"
CAMPAIGN_LAUNCHED = "campaign_launched"
MEMBERS_EXPORTED = "members_exported"
MEMBERS_IMPORTED = "members_imported"
OPTED_OUT_FOR_MEMBER = "opted_out_for_member"
INVITATION_SENT = "invitation_sent"
INVITATION_ACCEPTED = "invitation_accepted"
PASSWORD_RESET_SENT = "password_reset_sent"  # noqa: S105 - an action name
PASSWORD_RESET = "password_reset"  # noqa: S105 - an action name
PASSWORD_SET = "password_set"  # noqa: S105 - an action name
HUDDLE_SETTINGS_CHANGED = "huddle_settings_changed"


def record(
    session: Session,
    action: str,
    *,
    actor_id: int | None,
    actor_email: str,
    huddle_id: int | None = None,
    subject: str | None = None,
    detail: dict[str, Any] | None = None,
    ip: str | None = None,
) -> None:
    session.add(
        AuditEvent(
            at=utcnow(),
            actor_id=actor_id,
            actor_email=actor_email,
            action=action,
            huddle_id=huddle_id,
            subject=subject,
            detail=detail,
            ip=ip,
        )
    )


def recent(session: Session, limit: int = 100) -> list[AuditEvent]:
    return list(session.scalars(select(AuditEvent).order_by(AuditEvent.id.desc()).limit(limit)))
