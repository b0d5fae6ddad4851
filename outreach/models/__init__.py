"""The data model. Import models from here: ``from outreach.models import Member``."""

from outreach.models.accounts import (
    ApiToken,
    AuditEvent,
    IdempotencyKey,
    Organizer,
    OrganizerHuddle,
)
from outreach.models.base import Base, UTCDateTime
from outreach.models.campaigns import Campaign, Delivery, Segment
from outreach.models.consent import ConsentEvent, Suppression
from outreach.models.huddles import Huddle, HuddleDirectoryStamp, JoinKeyword
from outreach.models.imports import MemberImport, MemberImportError, MemberImportPart
from outreach.models.inbox import CannedReply, InboxAssignment
from outreach.models.members import HuddleMember, Member, MemberField, MemberTag, Subscription
from outreach.models.messaging import EmailEvent, InboundMessage, OutboxMessage, StatusEvent
from outreach.models.workers import WorkerLease

__all__ = [
    "ApiToken",
    "AuditEvent",
    "Base",
    "Campaign",
    "CannedReply",
    "ConsentEvent",
    "Delivery",
    "EmailEvent",
    "Huddle",
    "HuddleDirectoryStamp",
    "HuddleMember",
    "IdempotencyKey",
    "InboundMessage",
    "InboxAssignment",
    "JoinKeyword",
    "Member",
    "MemberField",
    "MemberImport",
    "MemberImportError",
    "MemberImportPart",
    "MemberTag",
    "Organizer",
    "OrganizerHuddle",
    "OutboxMessage",
    "Segment",
    "StatusEvent",
    "Subscription",
    "Suppression",
    "UTCDateTime",
    "WorkerLease",
]
