"""Sending one batch of a campaign: claim, re-check, quiet hours, render, pace, send, record.

Exactly once: a worker claims queued rows with one conditional UPDATE, so two workers never hold
the same delivery; a claimed row is sent at most once (a crash leaves it ``claimed`` for the
reconciler, never re-queued blindly); an answer we cannot trust (5xx, read timeout) makes the
row ``unknown``, never a retry.

Never to an opt-out: consent and suppression are checked again right before each group is sent,
after its rate-limit tokens were taken, so the window between the check and the provider call is
one group (about a quarter second of the sender's rate; without a rate, 16 texts per sending
thread, a fraction of a second), whatever the rate.

Never at night: each recipient's local window is checked at claim time; a recipient outside it
goes back to ``queued`` with ``not_before`` at the window's start, and Twilio's ValidityPeriod
ends with the window so a text stuck in the carrier's queue expires instead of arriving late.
"""

from __future__ import annotations

import logging
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import cast
from zoneinfo import ZoneInfo

from sqlalchemy import Table, bindparam, select, update
from sqlalchemy.orm import Session

from outreach.addresses.phones import mask_phone
from outreach.campaigns import get_campaign, move, quiet_hours, recipient_window
from outreach.campaigns.claims import (
    RETRY_AFTER,
    SHUTDOWN,
    BatchOutcome,
    ClaimedDelivery,
    SendContext,
    blocked_deliveries,
    campaign_state,
    claimed_groups,
    defer_deliveries,
    fenced,
    rate_limited,
    record_outcomes,
    release_deliveries,
)
from outreach.messages import templating
from outreach.messages.encoding import analyze
from outreach.models import (
    Campaign,
    Delivery,
    Huddle,
    Member,
    MemberField,
)
from outreach.models import campaigns as k
from outreach.models import members as m
from outreach.providers.sms import (
    AccountError,
    InvalidRecipient,
    OutboundSms,
    PermanentSendError,
    RecipientOptedOut,
    SendError,
    SendResult,
    TransientSendError,
    UncertainSendError,
)
from outreach.providers.twilio.error_policy import ErrorAction
from outreach.sms.error_actions import apply_error_action
from outreach.sms.receipts import lock_message_ids, replay_early_events

log = logging.getLogger(__name__)

COMPLIANCE_INTERVAL = timedelta(days=30)

MAX_DEFERRAL = timedelta(days=3)  # a text that cannot go out within 3 days is skipped

GROUP_SECONDS = 0.25  # a group holds about this much of the sender's rate

GROUP_PER_THREAD = 16  # and at most this many texts per sending thread (an unlimited rate)

MAX_VALIDITY = 36_000  # Twilio's ValidityPeriod ceiling, seconds


def send_batch(ctx: SendContext, campaign_id: int, first_id: int, last_id: int) -> BatchOutcome:
    """Send the queued deliveries of ``campaign_id`` with ids in [first_id, last_id].

    Rows are claimed a group at a time (about a quarter second of the sender's rate), so a claim
    is held only while its group is sent, and pause or cancel stop the batch at the next group.
    """
    outcome = BatchOutcome()
    with ctx.sessions() as session:
        campaign = get_campaign(session, campaign_id)
        huddle = session.get_one(Huddle, campaign.huddle_id)
        template = templating.compile_template(campaign.body, channel="sms")
    rate = campaign.rate or huddle.sms_rate or ctx.default_rate
    group_size = max(
        1, min(ctx.concurrency * GROUP_PER_THREAD, int(rate * GROUP_SECONDS) if rate else 10**6)
    )
    for items, now in claimed_groups(ctx, campaign_id, first_id, last_id, group_size, outcome):
        with ctx.sessions() as session:
            plan = _Plan.build(session, campaign, huddle, template, items, now)
        record_outcomes(ctx, plan.skips, outcome)
        defer_deliveries(ctx, plan.deferred, outcome)
        if plan.ready and not _send_group_paced(ctx, campaign_id, huddle, plan, rate, outcome):
            break
    return outcome


# Built once (with expanding IN parameters), not per group: constructing and cache-keying a
# statement costs more than running it on a group's few hundred ids.
_MEMBERS = select(Member).where(Member.id.in_(bindparam("member_ids", expanding=True)))


_FIELDS = select(MemberField.member_id, MemberField.name, MemberField.value).where(
    MemberField.huddle_id == bindparam("huddle_id"),
    MemberField.member_id.in_(bindparam("member_ids", expanding=True)),
)


@dataclass
class _Plan:
    """What to do with each claimed delivery, decided before anything is sent."""

    sender_from: str | None
    messaging_service_sid: str | None
    sender_key: str
    ready: list[ClaimedDelivery]
    skips: list[tuple[int, str, str]]  # (delivery id, state, reason/code)
    deferred: list[tuple[int, datetime]]

    @classmethod
    def build(
        cls,
        session: Session,
        campaign: Campaign,
        huddle: Huddle,
        template: templating.CompiledTemplate,
        items: list[ClaimedDelivery],
        now: datetime,
    ) -> _Plan:
        plan = cls(
            sender_from=huddle.sender_number,
            messaging_service_sid=huddle.messaging_service_sid,
            sender_key=huddle.sender_key,
            ready=[],
            skips=[],
            deferred=[],
        )
        member_ids = [i.member_id for i in items]
        members = {mem.id: mem for mem in session.scalars(_MEMBERS, {"member_ids": member_ids})}
        blocked = blocked_deliveries(session, huddle, campaign.channel, items)
        fields: dict[int, dict[str, str]] = {}
        for member_id, name, value in session.execute(
            _FIELDS, {"huddle_id": huddle.id, "member_ids": member_ids}
        ):
            fields.setdefault(member_id, {})[name] = value
        recently_told = _recently_told_how_to_stop(session, huddle.id, campaign.id, member_ids, now)
        campaign_window = recipient_window.campaign_window(campaign)
        verdicts: dict[
            tuple[tuple[ZoneInfo, ...], quiet_hours.Window], recipient_window.Verdict
        ] = {}
        for item in items:
            member = members.get(item.member_id)
            if member is None or item.delivery_id in blocked:
                plan.skips.append(
                    (item.delivery_id, k.SKIPPED, blocked.get(item.delivery_id, "no-member"))
                )
                continue
            if campaign.respect_quiet_hours:
                verdict = recipient_window.check_quiet_hours(
                    member, item.address, huddle.timezone, campaign_window, now, verdicts
                )
                if isinstance(verdict, str):
                    plan.skips.append((item.delivery_id, k.SKIPPED, verdict))
                    continue
                opens, closes = verdict
                if opens is not None:
                    if opens - now > MAX_DEFERRAL:
                        plan.skips.append((item.delivery_id, k.SKIPPED, "quiet-hours-expired"))
                    else:
                        plan.deferred.append((item.delivery_id, opens))
                    continue
                item.validity = max(1, min(MAX_VALIDITY, int((closes - now).total_seconds())))
            context = templating.MergeContext(
                first_name=member.first_name,
                last_name=member.last_name,
                zip=member.zip,
                huddle_name=huddle.name,
                fields=fields.get(member.id, {}),
            )
            try:
                body = template.render(context)
            except templating.RenderError as exc:
                plan.skips.append((item.delivery_id, k.SKIPPED, exc.reason))
                continue
            if member.id not in recently_told:
                body = templating.ensure_opt_out_line(body)
            item.body = body
            item.segments = analyze(body).segments
            plan.ready.append(item)
        return plan


def _recently_told_how_to_stop(
    session: Session, huddle_id: int, campaign_id: int, member_ids: list[int], now: datetime
) -> set[int]:
    """Members who got a text from this huddle in the last 30 days (it carried the STOP line)."""
    return set(
        session.scalars(
            select(Delivery.member_id)
            .join(Campaign, Campaign.id == Delivery.campaign_id)
            .where(
                Campaign.huddle_id == huddle_id,
                Campaign.channel == m.SMS,
                Delivery.campaign_id != campaign_id,
                Delivery.member_id.in_(member_ids),
                Delivery.sent_at >= now - COMPLIANCE_INTERVAL,
                Delivery.state.in_([k.SENT, k.DELIVERED]),
            )
            .distinct()
        )
    )


def _send_group_paced(
    ctx: SendContext,
    campaign_id: int,
    huddle: Huddle,
    plan: _Plan,
    rate: float,
    outcome: BatchOutcome,
) -> bool:
    """Take the group's tokens, check consent once more, send, record. False: stop the batch."""
    group = plan.ready
    segments = sum(i.segments for i in group)
    if rate > 0 and not ctx.limiter.take(
        plan.sender_key,
        segments,
        rate=rate,
        should_stop=lambda: ctx.stopping() or campaign_state(ctx, campaign_id) != k.SENDING,
    ):
        state = campaign_state(ctx, campaign_id)
        if state == k.SENDING:  # not paused or cancelled: the worker is stopping
            state = SHUTDOWN
        release_deliveries(ctx, group, cancelled=state == k.CANCELLED, outcome=outcome)
        outcome.stopped = state
        return False
    ctx.apply_spooled()
    with ctx.sessions() as session:
        blocked = blocked_deliveries(session, huddle, m.SMS, group)
    if blocked:
        record_outcomes(ctx, ((d, k.SKIPPED, r) for d, r in blocked.items()), outcome)
        group = [i for i in group if i.delivery_id not in blocked]
    results = _send_group(ctx, plan, group)
    if rate_limited(results):  # every worker sending for this sender slows down with us
        factor = ctx.limiter.slow_down(plan.sender_key)
        log.warning("campaign %s: provider 429; sender rate now %.0f%%", campaign_id, factor * 100)
    transient = _store_results(ctx, huddle, group, results, outcome)
    if transient:
        retry_at = ctx.now() + timedelta(seconds=RETRY_AFTER)
        release_deliveries(ctx, transient, cancelled=False, outcome=outcome, not_before=retry_at)
        if outcome.stopped is None:
            outcome.retry_after = RETRY_AFTER
        return False
    return True


def _send_group(
    ctx: SendContext, plan: _Plan, group: list[ClaimedDelivery]
) -> list[SendResult | SendError]:
    def send_one(item: ClaimedDelivery) -> SendResult | SendError:
        if (refused := fenced(ctx)) is not None:
            return refused
        message = OutboundSms(
            to=item.address,
            body=item.body,
            from_number=None if plan.messaging_service_sid else plan.sender_from,
            messaging_service_sid=plan.messaging_service_sid,
            status_callback=ctx.status_callback_url,
            validity_period=item.validity,
            reference=f"delivery:{item.delivery_id}",
        )
        try:
            return ctx.transport_for_thread().send(message)
        except SendError as exc:
            return exc
        except Exception as exc:  # an unexpected error: we cannot know if it went out
            log.exception("unexpected error sending delivery %s", item.delivery_id)
            return UncertainSendError(str(exc))

    if len(group) == 1:
        return [send_one(group[0])]
    futures: list[Future[SendResult | SendError]] = [
        ctx.pool().submit(send_one, item) for item in group
    ]
    return [f.result() for f in futures]


_deliveries = cast(Table, Delivery.__table__)

_MARK_SENT = (
    update(_deliveries)
    .where(_deliveries.c.id == bindparam("delivery_id"))
    .values(
        state=k.SENT,
        provider_message_id=bindparam("sid"),
        segments=bindparam("segs"),
        sent_at=bindparam("at", type_=_deliveries.c.sent_at.type),
        updated_at=bindparam("at", type_=_deliveries.c.updated_at.type),
    )
)


def _store_results(
    ctx: SendContext,
    huddle: Huddle,
    group: list[ClaimedDelivery],
    results: list[SendResult | SendError],
    outcome: BatchOutcome,
) -> list[ClaimedDelivery]:
    """Write what the provider said; return the items to try again later (transient errors)."""
    now = ctx.now()
    transient: list[ClaimedDelivery] = []
    sent_ids: list[str] = []
    account_error: AccountError | None = None
    sent_rows: list[dict[str, object]] = []
    with ctx.sessions() as session, session.begin():
        for item, result in zip(group, results, strict=True):
            if isinstance(result, SendResult):
                sent_rows.append(
                    {
                        "delivery_id": item.delivery_id,
                        "sid": result.provider_message_id,
                        "segs": result.segments or item.segments,
                        "at": now,
                    }
                )
                sent_ids.append(result.provider_message_id)
                outcome.sent += 1
                continue
            if isinstance(result, TransientSendError):
                transient.append(item)
                continue
            if isinstance(result, AccountError):
                # Our credentials or sender are refused: every other message would fail the
                # same way. Hand the row back and pause the campaign for a person to fix it.
                account_error = result
                transient.append(item)
                continue
            state, detail = _failure(session, huddle, item, result)
            session.execute(
                update(Delivery)
                .where(Delivery.id == item.delivery_id)
                .values(
                    state=state,
                    skip_reason=detail if state == k.SKIPPED else None,
                    error_code=result.code,
                    updated_at=now,
                )
            )
            if state == k.SKIPPED:
                outcome.skipped += 1
            elif state == k.UNKNOWN:
                outcome.unknown += 1
            else:
                outcome.failed += 1
        if sent_rows:  # one executemany for the group, not one ORM UPDATE per row
            lock_message_ids(session, sent_ids)  # a callback that came first waits for this
            session.connection().execute(_MARK_SENT, sent_rows)
        # A fast provider can call back before we wrote its id: apply what already arrived.
        replay_early_events(session, sent_ids, ctx.error_policy)
        if account_error is not None:
            campaign = get_campaign(session, group_campaign_id(group, session), for_update=True)
            if campaign.state == k.SENDING:
                move(campaign, k.PAUSED)
                campaign.flag = (
                    f"Paused: the provider refused our account or sender ({account_error})."
                )
                log.error("campaign %s paused: %s", campaign.id, account_error)
    outcome.sent_ids.extend(sent_ids)
    if account_error is not None:
        outcome.stopped = k.PAUSED
    return transient


def group_campaign_id(group: list[ClaimedDelivery], session: Session) -> int:
    campaign_id = session.scalar(
        select(Delivery.campaign_id).where(Delivery.id == group[0].delivery_id)
    )
    assert campaign_id is not None  # noqa: S101 - the row was claimed by this batch
    return campaign_id


def _failure(
    session: Session, huddle: Huddle, item: ClaimedDelivery, error: SendError
) -> tuple[str, str | None]:
    if isinstance(error, RecipientOptedOut):
        apply_error_action(
            session,
            action=ErrorAction.OPT_OUT,
            code=error.code or "21610",
            address=item.address,
            huddle=huddle,
            member_id=item.member_id,
            campaign_id=None,
        )
        return k.SKIPPED, "opted-out"
    if isinstance(error, InvalidRecipient):
        apply_error_action(
            session,
            action=ErrorAction.SUPPRESS,
            code=error.code or "21211",
            address=item.address,
            huddle=huddle,
            member_id=item.member_id,
            campaign_id=None,
        )
        return k.SKIPPED, "invalid-number"
    if isinstance(error, UncertainSendError):
        log.warning(
            "delivery %s to %s: provider answer uncertain (%s); not retried",
            item.delivery_id,
            mask_phone(item.address),
            error,
        )
        return k.UNKNOWN, None
    if isinstance(error, PermanentSendError):
        return k.FAILED, None
    return k.FAILED, None
