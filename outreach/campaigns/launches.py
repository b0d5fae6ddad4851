"""Launching, pausing, resuming and cancelling a campaign; test sends; how long a launch takes.

Shared by the JSON API and the dashboard, so both refuse a second launch the same way. Each
transition runs on a campaign row the caller has locked (``SELECT … FOR UPDATE``) in its write
transaction: two clicks on "Send", or a retry, serialize on that lock, and the second sees the
state the first left (``sending``) and is refused. Work for the workers (the launch job, the
resume job) is enqueued only once the transaction commits: a job never sees a launch that is
not there. The queue is the caller's (``workers`` imports ``outreach``, not the reverse), handed
in as a function of the campaign id. If enqueueing fails, the change stands and the sweep
(``reconcile.lost_launches``) heals it.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import redis
from sqlalchemy import event
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from outreach import campaigns
from outreach.app.settings import Settings
from outreach.campaigns import CampaignError, fanout, previews, segments
from outreach.models import Campaign, Huddle
from outreach.models import campaigns as k
from outreach.models import members as m
from outreach.providers import email_transport, sms_transport
from outreach.providers.email import OutboundEmail
from outreach.providers.sms import OutboundSms

log = logging.getLogger(__name__)

Enqueue = Callable[[int], object]

#: Email is not paced by us: SendGrid takes 1,000 recipients a request, and 500-id batch jobs
#: reached about 800 messages/s on one worker (docs/DESIGN.md). An estimate, said as one.
EMAIL_MESSAGES_PER_SECOND = 500.0


class TransitionRefused(CampaignError):
    """The campaign is not in a state that allows this; ``state`` is the one it is in."""

    def __init__(self, message: str, state: str) -> None:
        super().__init__(message)
        self.state = state


def after_commit(session: Session, what: str, action: Callable[[], object]) -> None:
    """Run ``action`` once ``session`` commits, and never if it does not (a refused request,
    an idempotency race lost). A failure is logged: the change stands and the sweep heals it."""

    def run(_: Session) -> None:
        try:
            action()
        except (redis.RedisError, SQLAlchemyError):
            log.warning("%s committed, its job not enqueued: the sweep will", what, exc_info=True)

    event.listen(session, "after_commit", run, once=True)


def launch(session: Session, campaign: Campaign, *, now: datetime, enqueue: Enqueue) -> str:
    """Launch a draft (or a due scheduled one): ``sending``, or ``scheduled`` when its send time
    is ahead. ``campaign`` must be locked in ``session``. A second launch raises
    :class:`TransitionRefused`: ``fanout.start`` would take "sending" again without a word."""
    due = campaign.send_at is None or campaign.send_at <= now
    if campaign.state not in (k.DRAFT, k.SCHEDULED) or (campaign.state == k.SCHEDULED and not due):
        why = "it was cancelled" if campaign.state == k.CANCELLED else "it was launched already"
        raise TransitionRefused(
            f"Campaign {campaign.id} is {campaign.state}: {why}.", campaign.state
        )
    try:
        state = fanout.start(session, campaign.id, now=now)
    except CampaignError as exc:
        raise TransitionRefused(str(exc), campaign.state) from None
    if state == k.SENDING:  # a scheduled one is launched by the sweep when it is due
        campaign_id = campaign.id
        after_commit(session, f"launch of campaign {campaign_id}", lambda: enqueue(campaign_id))
    return state


def pause(session: Session, campaign: Campaign) -> None:
    """Stop sending after the current group; resume picks up where it stopped."""
    _refusing(lambda: campaigns.pause(session, campaign.id), campaign)


def cancel(session: Session, campaign: Campaign) -> None:
    """Stop for good: what was not sent is skipped as ``cancelled``."""
    _refusing(lambda: campaigns.cancel(session, campaign.id), campaign)


def resume(
    session: Session, campaign: Campaign, *, enqueue_launch: Enqueue, enqueue_resume: Enqueue
) -> None:
    """Continue a paused campaign (``campaign`` locked in ``session``)."""
    if campaign.state != k.PAUSED:  # move() would take a draft to sending, unlaunched
        raise TransitionRefused(
            f"campaign {campaign.id} is {campaign.state}; only a paused one resumes",
            campaign.state,
        )
    campaigns.move(campaign, k.SENDING)
    # Paused before its launch job snapshotted the audience: that job gave up on it.
    again = enqueue_launch if campaign.audience_size == 0 else enqueue_resume
    campaign_id = campaign.id
    after_commit(session, f"resume of campaign {campaign_id}", lambda: again(campaign_id))


def transition(
    session: Session,
    campaign: Campaign,
    action: str,
    *,
    enqueue_launch: Enqueue,
    enqueue_resume: Enqueue,
) -> None:
    """``pause``, ``cancel`` or ``resume`` the (locked) campaign, as the pages and the API ask."""
    if action == "pause":
        pause(session, campaign)
    elif action == "cancel":
        cancel(session, campaign)
    elif action == "resume":
        resume(session, campaign, enqueue_launch=enqueue_launch, enqueue_resume=enqueue_resume)
    else:
        raise ValueError(f"no campaign action {action!r}")


def _refusing(change: Callable[[], object], campaign: Campaign) -> None:
    state = campaign.state
    try:
        change()
    except TransitionRefused:
        raise
    except CampaignError as exc:
        raise TransitionRefused(str(exc), state) from None


# --- test sends ------------------------------------------------------------------------------


@dataclass(frozen=True)
class TestSent:
    """What a test send sent, and the provider's id for it."""

    __test__ = False  # not a pytest class, whatever its name

    to: str
    channel: str
    provider_message_id: str | None
    subject: str | None
    text: str


def test_message(
    session: Session, campaign: Campaign, huddle: Huddle, to: str, *, default_region: str
) -> OutboundSms | OutboundEmail:
    """The campaign's message for ``to`` (a number or an address), marked [TEST]. Raises
    CampaignError: ``"to: …"`` for an address that cannot be used, else the message."""
    if campaign.channel == m.EMAIL:
        return previews.email_test_message(session, campaign, huddle, to)
    return previews.sms_test_message(session, campaign, huddle, to, default_region=default_region)


def send_test(
    message: OutboundSms | OutboundEmail, settings: Settings, sessions: sessionmaker[Session]
) -> TestSent:
    """Send a test message through the configured provider, now. Call it outside any write
    transaction (the sandbox writes its outbox row). Raises the provider's SendError."""
    if isinstance(message, OutboundEmail):
        mail = email_transport(settings, sessions=sessions)
        try:
            sent = mail.send(message)
        finally:
            mail.close()
        to = message.recipients[0].to
        return TestSent(to, m.EMAIL, sent.message_id, message.subject, message.text)
    texts = sms_transport(settings, sessions=sessions)
    try:
        result = texts.send(message)
    finally:
        texts.close()
    return TestSent(message.to, m.SMS, result.provider_message_id, None, message.body)


# --- how long it will take -------------------------------------------------------------------


@dataclass(frozen=True)
class Estimate:
    """What a launch means: who gets it, and about how long it takes at the sender's pace."""

    audience: int
    channel: str
    segments: int | None  # SMS: segments per text (the longest sample)
    rate: float | None  # SMS: segments/s for this sender; None: unlimited. Email: messages/s
    seconds: float | None  # None: no limit of ours, as fast as the provider takes them

    @property
    def messages_per_second(self) -> float | None:
        if self.rate is None:
            return None
        if self.channel == m.SMS:
            return self.rate / max(1, self.segments or 1)
        return self.rate


def estimate(
    session: Session, campaign: Campaign, huddle: Huddle, *, now: datetime, default_sms_rate: float
) -> Estimate:
    """The audience a launch now would queue, and the time the sender's rate needs for it.

    The audience is counted as the launch snapshot counts it (active, with an address, not
    suppressed). SMS: the rate is the campaign's, else the huddle's, else the default (the
    order the sender uses), charged per segment. Quiet hours can stretch it: texts wait for
    each member's sending hours.
    """
    audience = segments.reachable_count(
        session,
        huddle_id=huddle.id,
        channel=campaign.channel,
        filter_text=campaign.segment_filter or "",
        now=now,
    )
    if campaign.channel == m.EMAIL:
        return Estimate(
            audience, m.EMAIL, None, EMAIL_MESSAGES_PER_SECOND, audience / EMAIL_MESSAGES_PER_SECOND
        )
    shown = previews.preview(session, campaign, huddle, now=now)
    per_text = max((s.segments or 1 for s in shown.samples), default=1)
    rate = campaign.rate or huddle.sms_rate or default_sms_rate
    if not rate or rate <= 0:
        return Estimate(audience, m.SMS, per_text, None, None)
    return Estimate(audience, m.SMS, per_text, rate, audience * per_text / rate)


def duration_words(seconds: float | None) -> str:
    """ "About 21 minutes", "About 3 hours 10 minutes", "Under a minute"."""
    if seconds is None:
        return "As fast as the provider takes them"
    if seconds < 60:
        return "Under a minute"
    minutes = math.ceil(seconds / 60) if seconds < 3600 else round(seconds / 60)
    if minutes < 60:
        return f"About {minutes} minute{'s' if minutes != 1 else ''}"
    hours, rest = divmod(minutes, 60)
    text = f"About {hours} hour{'s' if hours != 1 else ''}"
    return f"{text} {rest} minute{'s' if rest != 1 else ''}" if rest else text
