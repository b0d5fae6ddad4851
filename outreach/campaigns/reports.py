"""A campaign's progress and report: what was sent, what arrived, what failed and why, who was
skipped and why, and the opt-outs and replies it caused.

Read at every poll of a live campaign (every 2 s) and at a million deliveries, so each figure is
one aggregate over an index (PostgreSQL):

* counts by state: an index-only scan of ``ix_deliveries_campaign_state_id``
  (campaign_id, state, id);
* failures by error code and skips by reason: the same index, narrowed to the failed /
  skipped states, so only those rows are read from the table;
* opt-outs: from the huddle's opted-out subscriptions
  (``ix_subscriptions_huddle_channel_state_member``), each looked up in this campaign's
  deliveries (the unique (campaign_id, member_id, channel) key) and in the consent ledger
  (``ix_consent_events_member_created``);
* replies: the huddle's inbound texts in the campaign's window
  (``ix_inbound_messages_huddle_received``), each looked up by that unique key.

Attribution. Nothing links a STOP or a reply to the text it answers (a member replies to a
number, not to a message), so a campaign is credited with what its recipients did *after their
own message was sent* and before :data:`ATTRIBUTION` has passed since the campaign finished (or
now, while it runs). A STOP the carrier reports on the send itself (error 21610) is a failure of
the campaign, listed by code. A member who opted out and rejoined since is not counted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import and_, exists, func, select
from sqlalchemy.orm import Session

from outreach.models import Campaign, ConsentEvent, Delivery, InboundMessage, Subscription
from outreach.models import campaigns as k
from outreach.models import consent as c
from outreach.models import members as m

ATTRIBUTION = timedelta(days=3)

#: Inbound intents that are opt-outs, counted as such and not as replies.
_OPT_OUT_INTENTS = ("opt_out", "opt_out_all")

#: Plain words for the error codes organizers meet (Twilio's; see
#: outreach/providers/twilio/error_policy.py for what each does to the number).
ERROR_WORDS: dict[str, str] = {
    "21211": "Not a valid phone number",
    "21408": "Texts to this country are not enabled",
    "21610": "Had replied STOP to this number earlier (the carrier refused it)",
    "21612": "The carrier cannot route texts to this number",
    "21614": "Not a mobile number",
    "21635": "A landline: it cannot take texts",
    "30003": "Phone unreachable (switched off or out of coverage)",
    "30004": "Blocked by the recipient",
    "30005": "Unknown number, or no longer in service",
    "30006": "A landline or a carrier that cannot take texts",
    "30007": "Filtered by the carrier as spam: check the wording",
    "30008": "The carrier gave no reason",
    "30034": "The sender is not registered for 10DLC texting",
    "20429": "The provider was busy (too many requests)",
}

#: Plain words for the skip reasons the ledger records.
SKIP_WORDS: dict[str, str] = {
    "opted-out": "Had opted out (a STOP, or the carrier said so)",
    "suppressed": "Blocked number or address (STOP, bounce, landline…)",
    "no-address": "No phone number or email address",
    "invalid-number": "Not a valid phone number",
    "quiet-hours-expired": "Their sending hours did not open in time",
    "no-sending-window": "The campaign's hours are outside the legal sending hours",
    "no-common-window": "No hour suits every time zone their number may be in",
    "cancelled": "The campaign was cancelled first",
    "not-sending": "The campaign had stopped sending",
    "no-member": "The member was deleted",
    "message-too-long": "Their message came out too long",
    "merge-value-too-long": "A merge field of theirs was too long",
    "render-failed": "Their message could not be written",
}


@dataclass(frozen=True)
class Progress:
    """Where a campaign is: its state and its deliveries by state."""

    campaign_id: int
    channel: str
    state: str
    audience: int
    by_state: dict[str, int]

    def _n(self, *states: str) -> int:
        return sum(self.by_state.get(s, 0) for s in states)

    @property
    def sent(self) -> int:
        """Accepted by the provider (arrived or not)."""
        return self._n(k.SENT, k.DELIVERED, k.UNDELIVERED)

    @property
    def delivered(self) -> int:
        return self._n(k.DELIVERED)

    @property
    def failed(self) -> int:
        """Refused by the provider, or sent and never arrived."""
        return self._n(k.FAILED, k.UNDELIVERED)

    @property
    def skipped(self) -> int:
        return self._n(k.SKIPPED)

    @property
    def unknown(self) -> int:
        return self._n(k.UNKNOWN)

    @property
    def remaining(self) -> int:
        """Still to go: queued or being sent right now."""
        return self._n(k.QUEUED, k.CLAIMED)

    @property
    def total(self) -> int:
        return sum(self.by_state.values())

    @property
    def finished(self) -> bool:
        return self.state in (k.COMPLETED, k.CANCELLED)

    @property
    def percent_done(self) -> int:
        total = self.total
        return 100 if self.finished or not total else int(100 * (total - self.remaining) / total)


@dataclass(frozen=True)
class Reason:
    code: str
    words: str
    count: int


@dataclass(frozen=True)
class Report:
    progress: Progress
    failures: list[Reason] = field(default_factory=list)
    skips: list[Reason] = field(default_factory=list)
    opt_outs: int = 0
    replies: int | None = None  # SMS only: texts back that were not opt-outs
    repliers: int | None = None
    counted_until: datetime | None = None  # the end of the attribution window


def progress(session: Session, campaign: Campaign) -> Progress:
    """State and deliveries by state (an index-only scan)."""
    by_state = {
        str(state): int(n)
        for state, n in session.execute(
            select(Delivery.state, func.count())
            .where(Delivery.campaign_id == campaign.id)
            .group_by(Delivery.state)
        )
    }
    return Progress(campaign.id, campaign.channel, campaign.state, campaign.audience_size, by_state)


def report(session: Session, campaign: Campaign, *, now: datetime) -> Report:
    """Progress, failures by code, skips by reason, and the opt-outs and replies it caused."""
    shown = progress(session, campaign)
    failures = [
        Reason(code or "none", _error_words(code), int(n))
        for code, n in session.execute(
            select(Delivery.error_code, func.count())
            .where(
                Delivery.campaign_id == campaign.id,
                Delivery.state.in_((k.FAILED, k.UNDELIVERED)),
            )
            .group_by(Delivery.error_code)
        )
    ]
    skips = [
        Reason(reason or "none", SKIP_WORDS.get(reason or "", reason or "No reason recorded"), n)
        for reason, n in session.execute(
            select(Delivery.skip_reason, func.count())
            .where(Delivery.campaign_id == campaign.id, Delivery.state == k.SKIPPED)
            .group_by(Delivery.skip_reason)
        )
    ]
    by_count = lambda r: (-r.count, r.code)  # noqa: E731 - a sort key
    if campaign.launched_at is None:
        return Report(shown, sorted(failures, key=by_count), sorted(skips, key=by_count))
    until = now if campaign.finished_at is None else campaign.finished_at + ATTRIBUTION
    replies, repliers = (None, None)
    if campaign.channel == m.SMS:
        replies, repliers = _replies(session, campaign, campaign.launched_at, until)
    return Report(
        shown,
        sorted(failures, key=by_count),
        sorted(skips, key=by_count),
        opt_outs=_opt_outs(session, campaign, until),
        replies=replies,
        repliers=repliers,
        counted_until=until,
    )


def _error_words(code: str | None) -> str:
    if not code:
        return "No error code given"
    return ERROR_WORDS.get(code, f"Error {code}")


def _opt_outs(session: Session, campaign: Campaign, until: datetime) -> int:
    """Recipients now opted out on the channel whose ledger shows an opt-out after their text."""
    delivery = and_(
        Delivery.campaign_id == campaign.id,
        Delivery.member_id == Subscription.member_id,
        Delivery.channel == campaign.channel,
        Delivery.sent_at.is_not(None),
    )
    stopped_after = exists().where(
        ConsentEvent.member_id == Subscription.member_id,
        ConsentEvent.created_at >= Delivery.sent_at,
        ConsentEvent.created_at <= until,
        ConsentEvent.action == c.OPT_OUT,
        ConsentEvent.channel == campaign.channel,
    )
    statement = (
        select(func.count())
        .select_from(Subscription)
        .join(Delivery, delivery)
        .where(
            Subscription.huddle_id == campaign.huddle_id,
            Subscription.channel == campaign.channel,
            Subscription.state == m.OPTED_OUT,
            stopped_after,
        )
    )
    return int(session.scalar(statement) or 0)


def _replies(
    session: Session, campaign: Campaign, since: datetime, until: datetime
) -> tuple[int, int]:
    """(texts, members): recipients' texts after their own, that were not opt-outs."""
    statement = (
        select(func.count(), func.count(func.distinct(InboundMessage.member_id)))
        .select_from(InboundMessage)
        .join(
            Delivery,
            and_(
                Delivery.campaign_id == campaign.id,
                Delivery.member_id == InboundMessage.member_id,
                Delivery.channel == m.SMS,
            ),
        )
        .where(
            InboundMessage.huddle_id == campaign.huddle_id,
            InboundMessage.received_at >= since,
            InboundMessage.received_at <= until,
            InboundMessage.received_at >= Delivery.sent_at,
            InboundMessage.intent.not_in(_OPT_OUT_INTENTS),
        )
    )
    texts, members = session.execute(statement).one()
    return int(texts or 0), int(members or 0)
