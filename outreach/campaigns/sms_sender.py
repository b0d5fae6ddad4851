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
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from functools import lru_cache
from typing import cast
from zoneinfo import ZoneInfo

from sqlalchemy import Table, and_, bindparam, exists, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from outreach.addresses.phones import mask_phone
from outreach.campaigns import get_campaign, move, quiet_hours
from outreach.campaigns.ratelimit import DEFAULT_LONG_CODE_RATE, RateLimiter
from outreach.messages import templating
from outreach.messages.encoding import analyze
from outreach.models import (
    Campaign,
    Delivery,
    Huddle,
    Member,
    MemberField,
    Subscription,
    Suppression,
)
from outreach.models import campaigns as k
from outreach.models import consent as c
from outreach.models import members as m
from outreach.providers.sms import (
    AccountError,
    InvalidRecipient,
    OutboundSms,
    PermanentSendError,
    RecipientOptedOut,
    SendError,
    SendResult,
    SmsTransport,
    TransientSendError,
    UncertainSendError,
)
from outreach.sms.receipts import (
    DEFAULT_ERROR_POLICY,
    ErrorAction,
    apply_error_action,
    lock_message_ids,
    replay_early_events,
)

log = logging.getLogger(__name__)

COMPLIANCE_INTERVAL = timedelta(days=30)
MAX_DEFERRAL = timedelta(days=3)  # a text that cannot go out within 3 days is skipped
GROUP_SECONDS = 0.25  # a group holds about this much of the sender's rate
GROUP_PER_THREAD = 16  # and at most this many texts per sending thread (an unlimited rate)
MAX_VALIDITY = 36_000  # Twilio's ValidityPeriod ceiling, seconds
SHUTDOWN = "shutdown"  # BatchOutcome.stopped: the worker is stopping; the job hands its range back


def _never() -> bool:
    return False


def _nothing() -> None:
    return None


@dataclass
class SendContext:
    """What a batch needs from the process: database, pacing, transports, clock."""

    sessions: sessionmaker[Session]
    limiter: RateLimiter
    transport_for_thread: Callable[[], SmsTransport]
    status_callback_url: str | None
    now: Callable[[], datetime]
    concurrency: int = 16
    default_rate: float = DEFAULT_LONG_CODE_RATE
    # True once the worker process was asked to stop: a batch ends after its current group
    # instead of running on (at a slow rate a batch lasts minutes, longer than a deploy waits).
    stopping: Callable[[], bool] = _never
    # what a provider error code means (TWILIO_ERROR_POLICY), for callbacks that came early
    error_policy: Mapping[str, ErrorAction] = field(default_factory=lambda: DEFAULT_ERROR_POLICY)
    # Applies the Twilio webhooks spooled while the database was away (outreach.sms.spool)
    # before a group's last consent check: a STOP among them counts before anything goes out,
    # not when the replay job's turn comes (sends are queued ahead of it).
    apply_spooled: Callable[[], None] = _nothing
    _pool: ThreadPoolExecutor | None = field(default=None, repr=False)

    def pool(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="send")
        return self._pool


@dataclass
class BatchOutcome:
    claimed: int = 0
    sent: int = 0
    skipped: int = 0
    failed: int = 0
    unknown: int = 0
    deferred_until: list[datetime] = field(default_factory=list)
    retry_after: float | None = None  # transient provider trouble: run the batch again later
    stopped: str | None = None  # "paused" / "cancelled" / "not-sending" / SHUTDOWN
    completed: bool = False
    sent_ids: list[str] = field(default_factory=list)  # provider ids (sandbox receipts)


@dataclass
class ClaimedDelivery:
    """A delivery this worker claimed, with what sending it needs (SMS here, email in
    ``outreach.campaigns.email_sender``, which shares these steps: checks, recording, deferring, releasing).
    """

    delivery_id: int
    member_id: int
    address: str
    body: str = ""
    segments: int = 1
    validity: int | None = None


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


def claimed_groups(
    ctx: SendContext,
    campaign_id: int,
    first_id: int,
    last_id: int,
    group_size: int,
    outcome: BatchOutcome,
) -> Iterator[tuple[list[ClaimedDelivery], datetime]]:
    """Claim the batch's queued deliveries a group at a time, for the SMS and email senders.

    Before each claim the campaign must still be sending and the worker not stopping: a pause,
    a cancel or a shutdown ends the loop, with ``outcome.stopped`` set. When nothing is left to
    claim, the campaign completes if no other batch has rows queued or claimed. Each group comes
    with the time it was claimed at.
    """
    while True:
        state = _campaign_state(ctx, campaign_id)
        if state == k.SENDING and ctx.stopping():
            state = SHUTDOWN
        if state != k.SENDING:
            outcome.stopped = state
            return
        now = ctx.now()
        items = _claim(ctx, campaign_id, first_id, last_id, group_size, now)
        if not items:
            _maybe_complete(ctx, campaign_id, outcome)
            return
        outcome.claimed += len(items)
        yield items, now


def _claim(
    ctx: SendContext, campaign_id: int, first_id: int, last_id: int, size: int, now: datetime
) -> list[ClaimedDelivery]:
    """Atomically take up to ``size`` queued, due rows of the range; no two workers get one.

    Two statements, not UPDATE … WHERE id IN (SELECT … LIMIT): PostgreSQL may rescan such a
    subquery and claim far more than the limit. The SELECT locks what it picks (SKIP LOCKED lets
    other workers take the next rows); SQLite's write lock serializes claimers anyway.
    """
    with ctx.sessions() as session, session.begin():
        due = session.scalars(
            select(Delivery.id)
            .where(
                Delivery.campaign_id == campaign_id,
                Delivery.id >= first_id,
                Delivery.id <= last_id,
                Delivery.state == k.QUEUED,
                or_(Delivery.not_before.is_(None), Delivery.not_before <= now),
            )
            .order_by(Delivery.id)
            .limit(size)
            .with_for_update(skip_locked=True)
        ).all()
        if not due:
            return []
        claimed = session.execute(
            update(Delivery)
            .where(Delivery.id.in_(due), Delivery.state == k.QUEUED)
            .values(state=k.CLAIMED, claimed_at=now, attempts=Delivery.attempts + 1)
            .returning(Delivery.id, Delivery.member_id, Delivery.address)
        ).all()
    return [ClaimedDelivery(d, mid, addr) for d, mid, addr in sorted(claimed)]


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
        campaign_window = _campaign_window(campaign)
        verdicts: dict[tuple[tuple[ZoneInfo, ...], quiet_hours.Window], _Verdict] = {}
        for item in items:
            member = members.get(item.member_id)
            if member is None or item.delivery_id in blocked:
                plan.skips.append(
                    (item.delivery_id, k.SKIPPED, blocked.get(item.delivery_id, "no-member"))
                )
                continue
            if campaign.respect_quiet_hours:
                verdict = check_quiet_hours(
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


def _campaign_window(campaign: Campaign) -> quiet_hours.Window | None:
    if not (campaign.quiet_start and campaign.quiet_end):
        return None
    return quiet_hours.Window(_hhmm(campaign.quiet_start), _hhmm(campaign.quiet_end))


def _hhmm(text: str) -> time:
    hours, minutes = text.split(":")
    return time(int(hours), int(minutes))


_Verdict = str | tuple[datetime | None, datetime]  # see check_quiet_hours


@lru_cache(maxsize=4096)
def _zones_and_window(
    zip_code: str | None,
    stored_zone: str | None,
    phone_prefix: str,
    fallback_zone: str,
    campaign_window: quiet_hours.Window | None,
) -> tuple[tuple[ZoneInfo, ...], quiet_hours.Window]:
    """Zones and window for a recipient. Cached: recipients share zips and area codes."""
    zones = quiet_hours.zones_for(
        zip_code=zip_code,
        stored_zone=stored_zone,
        phone_e164=phone_prefix + "5550100" if phone_prefix else None,
        fallback_zone=fallback_zone,
    )
    window = quiet_hours.window_for(
        state=quiet_hours.state_for_zip(zip_code), campaign_window=campaign_window
    )
    return zones, window


def check_quiet_hours(
    member: Member,
    address: str,
    fallback_zone: str,
    campaign_window: quiet_hours.Window | None,
    now: datetime,
    memo: dict[tuple[tuple[ZoneInfo, ...], quiet_hours.Window], _Verdict] | None = None,
) -> _Verdict:
    """(None, closes) when sendable now; (opens, opens) when not yet; a skip reason if never.

    ``memo`` (one per group, so one ``now``) keeps the answer per (zones, window): recipients
    share a handful of those, and working out when the window closes costs ~0.3 ms each time.
    """
    # A NANP number's zone follows its area code: +1 NPA is what phonenumbers looks at.
    prefix = address[:5] if address.startswith("+1") and len(address) == 12 else ""
    if not prefix and address.startswith("+"):
        zones = quiet_hours.zones_for(
            zip_code=member.zip,
            stored_zone=member.timezone,
            phone_e164=address,
            fallback_zone=fallback_zone,
        )
        window = quiet_hours.window_for(
            state=quiet_hours.state_for_zip(member.zip), campaign_window=campaign_window
        )
    else:
        try:
            zones, window = _zones_and_window(
                member.zip, member.timezone, prefix, fallback_zone, campaign_window
            )
        except quiet_hours.EmptyWindowError:
            return "no-sending-window"
    if memo is None:
        return _window_verdict(now, zones, window)
    verdict = memo.get((zones, window))
    if verdict is None:
        verdict = memo[zones, window] = _window_verdict(now, zones, window)
    return verdict


def _window_verdict(
    now: datetime, zones: tuple[ZoneInfo, ...], window: quiet_hours.Window
) -> _Verdict:
    try:
        if quiet_hours.is_allowed(now, zones, window):
            return None, quiet_hours.window_closes_at(now, zones, window)
        opens = quiet_hours.next_allowed(now, zones, window)
    except quiet_hours.NoCommonWindowError:
        return "no-common-window"
    return opens, opens


_subscriptions = cast(Table, Subscription.__table__)
_ACTIVE_MEMBERS = select(_subscriptions.c.member_id).where(
    _subscriptions.c.huddle_id == bindparam("huddle_id"),
    _subscriptions.c.channel == bindparam("channel"),
    _subscriptions.c.state == m.ACTIVE,
    _subscriptions.c.member_id.in_(bindparam("member_ids", expanding=True)),
)
_suppressions = cast(Table, Suppression.__table__)
_SUPPRESSED = select(_suppressions.c.address).where(
    _suppressions.c.channel == bindparam("channel"),
    _suppressions.c.address.in_(bindparam("addresses", expanding=True)),
    _suppressions.c.scope.in_(bindparam("scopes", expanding=True)),
    _suppressions.c.lifted_at.is_(None),
)


def blocked_deliveries(
    session: Session, huddle: Huddle, channel: str, items: Sequence[ClaimedDelivery]
) -> dict[int, str]:
    """Deliveries that must not go out now: subscription not active, or address suppressed."""
    by_member = {i.member_id: i.delivery_id for i in items}
    reasons: dict[int, str] = {}
    connection = session.connection()  # Core, statements built once: this runs twice a group
    active = set(
        connection.execute(
            _ACTIVE_MEMBERS,
            {"huddle_id": huddle.id, "channel": channel, "member_ids": list(by_member)},
        ).scalars()
    )
    for member_id, delivery_id in by_member.items():
        if member_id not in active:
            reasons[delivery_id] = "opted-out"
    by_address = {i.address: i.delivery_id for i in items}
    for address in connection.execute(
        _SUPPRESSED,
        {
            "channel": channel,
            "addresses": list(by_address),
            "scopes": [c.ALL_SENDERS, huddle.sender_key],
        },
    ).scalars():
        reasons.setdefault(by_address[address], "suppressed")
    for item in items:
        if not item.address:
            reasons.setdefault(item.delivery_id, "no-address")
    return reasons


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


def record_outcomes(
    ctx: SendContext, rows: Iterable[tuple[int, str, str]], outcome: BatchOutcome
) -> None:
    """Settle claimed deliveries that were not sent: (id, skipped / failed / unknown, why)."""
    rows = list(rows)
    if not rows:
        return
    now = ctx.now()
    with ctx.sessions() as session, session.begin():
        for delivery_id, state, detail in rows:
            values: dict[str, object] = {"state": state, "updated_at": now}
            if state == k.SKIPPED:
                values["skip_reason"] = detail
                outcome.skipped += 1
            else:
                values["error_code"] = detail
                if state == k.FAILED:
                    outcome.failed += 1
                elif state == k.UNKNOWN:
                    outcome.unknown += 1
            session.execute(
                update(Delivery)
                .where(Delivery.id == delivery_id, Delivery.state == k.CLAIMED)
                .values(**values)
            )


def defer_deliveries(
    ctx: SendContext, deferred: list[tuple[int, datetime]], outcome: BatchOutcome
) -> None:
    """Hand claimed deliveries back until their recipient's window opens (quiet hours)."""
    if not deferred:
        return
    with ctx.sessions() as session, session.begin():
        for delivery_id, opens in deferred:
            session.execute(
                update(Delivery)
                .where(Delivery.id == delivery_id, Delivery.state == k.CLAIMED)
                .values(state=k.QUEUED, not_before=opens, claimed_at=None)
            )
    outcome.deferred_until = sorted({opens for _, opens in deferred})


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
        should_stop=lambda: ctx.stopping() or _campaign_state(ctx, campaign_id) != k.SENDING,
    ):
        state = _campaign_state(ctx, campaign_id)
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
    transient = _store_results(ctx, huddle, group, results, outcome)
    if transient:
        release_deliveries(ctx, transient, cancelled=False, outcome=outcome)
        if outcome.stopped is None:
            outcome.retry_after = 30.0
        return False
    return True


def _send_group(
    ctx: SendContext, plan: _Plan, group: list[ClaimedDelivery]
) -> list[SendResult | SendError]:
    def send_one(item: ClaimedDelivery) -> SendResult | SendError:
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
    member = session.get(Member, item.member_id)
    if isinstance(error, RecipientOptedOut):
        apply_error_action(
            session,
            action=ErrorAction.OPT_OUT,
            code=error.code or "21610",
            address=item.address,
            huddle=huddle,
            member=member,
            campaign=None,
        )
        return k.SKIPPED, "opted-out"
    if isinstance(error, InvalidRecipient):
        apply_error_action(
            session,
            action=ErrorAction.SUPPRESS,
            code=error.code or "21211",
            address=item.address,
            huddle=huddle,
            member=member,
            campaign=None,
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


def release_deliveries(
    ctx: SendContext, items: list[ClaimedDelivery], *, cancelled: bool, outcome: BatchOutcome
) -> None:
    """Hand claimed-but-unsent rows back (pause, transient errors) or skip them (cancel)."""
    if not items:
        return
    ids = [i.delivery_id for i in items]
    values: dict[str, object]
    if cancelled:
        values = {"state": k.SKIPPED, "skip_reason": "cancelled", "updated_at": ctx.now()}
        outcome.skipped += len(ids)
    else:
        values = {"state": k.QUEUED, "claimed_at": None}
    with ctx.sessions() as session, session.begin():
        session.execute(
            update(Delivery)
            .where(Delivery.id.in_(ids), Delivery.state == k.CLAIMED)
            .values(**values)
        )


def _campaign_state(ctx: SendContext, campaign_id: int) -> str:
    with ctx.sessions() as session:
        state = session.scalar(select(Campaign.state).where(Campaign.id == campaign_id))
    return state or k.CANCELLED


def _maybe_complete(ctx: SendContext, campaign_id: int, outcome: BatchOutcome) -> None:
    """A sending campaign with nothing queued or claimed left is complete."""
    with ctx.sessions() as session, session.begin():
        left = session.scalar(
            select(
                exists().where(
                    and_(
                        Delivery.campaign_id == campaign_id,
                        Delivery.state.in_([k.QUEUED, k.CLAIMED]),
                    )
                )
            )
        )
        if left:
            return
        campaign = get_campaign(session, campaign_id, for_update=True)
        if campaign.state == k.SENDING:
            move(campaign, k.COMPLETED)
            outcome.completed = True
            log.info("campaign %s completed", campaign_id)
