"""What a signed-in organizer (or their API token) may see and do, per huddle.

Every page and endpoint that shows a huddle's data asks :class:`Access` for the huddles it may
use for a capability, and filters by them: another huddle's objects are simply not found.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from outreach.models import Huddle, Organizer, OrganizerHuddle
from outreach.models import accounts as a

INBOX = "inbox"  # read and answer replies
MEMBERS = "members"  # members, their consent history, imports and exports
SEGMENTS = "segments"
CAMPAIGNS = "campaigns"
SETTINGS = "settings"  # huddle settings (admins)
USERS = "users"  # accounts, tokens, the audit log (admins)
CAPABILITIES = (INBOX, MEMBERS, SEGMENTS, CAMPAIGNS, SETTINGS, USERS)

ROLE_CAPABILITIES: dict[str, frozenset[str]] = {
    a.RESPONDER: frozenset({INBOX}),
    a.ORGANIZER: frozenset({INBOX, MEMBERS, SEGMENTS, CAMPAIGNS}),
    a.ADMIN: frozenset(CAPABILITIES),
}


@dataclass(frozen=True)
class Access:
    organizer_id: int
    email: str
    is_admin: bool
    roles: dict[int, str] = field(default_factory=dict)  # huddle id → role

    def huddle_ids(self, capability: str, every_huddle: Collection[int] = ()) -> set[int]:
        """The huddles this person may use ``capability`` in (admins: ``every_huddle``)."""
        if self.is_admin:
            return set(every_huddle)
        return {h for h, role in self.roles.items() if capability in ROLE_CAPABILITIES[role]}

    def can(self, capability: str, huddle_id: int | None = None) -> bool:
        if self.is_admin:
            return True
        if huddle_id is None:
            return any(capability in ROLE_CAPABILITIES[r] for r in self.roles.values())
        role = self.roles.get(huddle_id)
        return role is not None and capability in ROLE_CAPABILITIES[role]

    def visible_huddles(self, session: Session, capability: str = INBOX) -> list[Huddle]:
        query = select(Huddle).order_by(Huddle.slug)
        if not self.is_admin:
            query = query.where(Huddle.id.in_(self.huddle_ids(capability)))
        return list(session.scalars(query))


def access_of(session: Session, organizer: Organizer) -> Access:
    rows = session.execute(
        select(OrganizerHuddle.huddle_id, OrganizerHuddle.role).where(
            OrganizerHuddle.organizer_id == organizer.id
        )
    )
    roles: dict[int, str] = dict(rows.all())
    return Access(organizer.id, organizer.email, organizer.is_admin, roles)
