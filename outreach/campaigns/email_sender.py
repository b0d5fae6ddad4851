"""Sending one batch of an email campaign: same ledger, same claims, same re-checks as SMS.

When the message is the same for everyone but the unsubscribe link, up to 1,000 recipients go
in one request (SendGrid personalizations, the link as a substitution). When merge fields make
each message different, each recipient gets a request of their own, several in flight at once.
Quiet hours do not apply to email unless the campaign asks for them. Every message carries
RFC 8058 one-click unsubscribe headers.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, bindparam, case, or_, select, update
from sqlalchemy.orm import Session

from outreach.app.settings import Settings
from outreach.campaigns import get_campaign, recipient_window
from outreach.campaigns.claims import (
    RETRY_AFTER,
    BatchOutcome,
    ClaimedDelivery,
    SendContext,
    blocked_deliveries,
    claimed_groups,
    defer_deliveries,
    fenced,
    record_outcomes,
    release_deliveries,
)
from outreach.consent import unsubscribe
from outreach.email import render as email_render
from outreach.messages import templating
from outreach.models import Campaign, Delivery, Huddle, Member, MemberField
from outreach.models import campaigns as k
from outreach.models import members as m
from outreach.providers.email import (
    MAX_RECIPIENTS,
    EmailRecipient,
    EmailSendResult,
    EmailTransport,
    OutboundEmail,
)
from outreach.providers.sms import (
    PermanentSendError,
    SendError,
    TransientSendError,
    UncertainSendError,
)

log = logging.getLogger(__name__)


@dataclass
class EmailContext:
    base: SendContext
    settings: Settings
    transport_for_thread: Callable[[], EmailTransport]


@dataclass
class _Letter:
    """One request: the recipients it covers and what to send them."""

    items: list[ClaimedDelivery]
    email: OutboundEmail


def send_email_batch(
    ctx: EmailContext, campaign_id: int, first_id: int, last_id: int
) -> BatchOutcome:
    outcome = BatchOutcome()
    base = ctx.base
    with base.sessions() as session:
        campaign = get_campaign(session, campaign_id)
        huddle = session.get_one(Huddle, campaign.huddle_id)
    prepared = email_render.prepare(campaign, huddle)
    group_size = MAX_RECIPIENTS if prepared.batchable else base.concurrency * 4
    for items, now in claimed_groups(base, campaign_id, first_id, last_id, group_size, outcome):
        with base.sessions() as session:
            blocked = blocked_deliveries(session, huddle, m.EMAIL, items)
            ready, deferred = _timely(session, campaign, huddle, items, blocked, now)
            letters, skips = _letters(session, ctx, campaign, huddle, prepared, ready)
        record_outcomes(base, [(d, k.SKIPPED, r) for d, r in blocked.items()] + skips, outcome)
        defer_deliveries(base, deferred, outcome)
        results = _send(ctx, letters)
        transient = _store(base, letters, results, outcome)
        if transient:
            retry_at = base.now() + timedelta(seconds=RETRY_AFTER)
            release_deliveries(
                base, transient, cancelled=False, outcome=outcome, not_before=retry_at
            )
            outcome.retry_after = RETRY_AFTER
            break
    return outcome


def _timely(
    session: Session,
    campaign: Campaign,
    huddle: Huddle,
    items: list[ClaimedDelivery],
    blocked: dict[int, str],
    now: datetime,
) -> tuple[list[ClaimedDelivery], list[tuple[int, datetime]]]:
    """Items not blocked; those outside quiet hours (only when the campaign asks) deferred."""
    ready = [i for i in items if i.delivery_id not in blocked]
    if not campaign.respect_quiet_hours:
        return ready, []
    members = {
        mem.id: mem
        for mem in session.scalars(
            select(Member).where(Member.id.in_([i.member_id for i in ready]))
        )
    }
    sendable, deferred = [], []
    for item in ready:
        member = members.get(item.member_id)
        if member is None:
            continue
        verdict = recipient_window.check_quiet_hours(
            member, member.phone or "", huddle.timezone, None, now
        )
        if isinstance(verdict, tuple) and verdict[0] is not None:
            deferred.append((item.delivery_id, verdict[0]))
        else:
            sendable.append(item)
    return sendable, deferred


def _letters(
    session: Session,
    ctx: EmailContext,
    campaign: Campaign,
    huddle: Huddle,
    prepared: email_render.PreparedEmail,
    items: list[ClaimedDelivery],
) -> tuple[list[_Letter], list[tuple[int, str, str]]]:
    if not items:
        return [], []
    from_email = huddle.email_from_address or ""
    categories = [f"campaign-{campaign.id}", f"huddle-{huddle.slug}"]
    domain = from_email.partition("@")[2] or "localhost"
    recipients = {
        item.delivery_id: _recipient(ctx.settings, huddle, campaign, item, domain) for item in items
    }
    if prepared.batchable:
        merge = templating.MergeContext(
            None, None, None, huddle.name, {}, email_render.UNSUBSCRIBE_SUBSTITUTION
        )
        email = OutboundEmail(
            from_email=from_email,
            from_name=huddle.email_from_name or huddle.name,
            subject=prepared.subject.render(merge),
            html=prepared.html.render_html(merge),
            text=prepared.text.render(merge),
            recipients=[recipients[i.delivery_id] for i in items],
            categories=categories,
        )
        return [_Letter(items, email)], []
    members = {
        mem.id: mem
        for mem in session.scalars(
            select(Member).where(Member.id.in_([i.member_id for i in items]))
        )
    }
    fields: dict[int, dict[str, str]] = {}
    for member_id, name, value in session.execute(
        select(MemberField.member_id, MemberField.name, MemberField.value).where(
            MemberField.huddle_id == huddle.id,
            MemberField.member_id.in_([i.member_id for i in items]),
        )
    ):
        fields.setdefault(member_id, {})[name] = value
    letters: list[_Letter] = []
    skips: list[tuple[int, str, str]] = []
    for item in items:
        member = members[item.member_id]
        recipient = recipients[item.delivery_id]
        merge = templating.MergeContext(
            member.first_name,
            member.last_name,
            member.zip,
            huddle.name,
            fields.get(member.id, {}),
            recipient.substitutions[email_render.UNSUBSCRIBE_SUBSTITUTION],
        )
        try:
            email = OutboundEmail(
                from_email=from_email,
                from_name=huddle.email_from_name or huddle.name,
                subject=prepared.subject.render(merge),
                html=prepared.html.render_html(merge),
                text=prepared.text.render(merge),
                recipients=[recipient],
                categories=categories,
            )
        except templating.RenderError as exc:
            skips.append((item.delivery_id, k.SKIPPED, exc.reason))
            continue
        letters.append(_Letter([item], email))
    return letters, skips


def _recipient(
    settings: Settings, huddle: Huddle, campaign: Campaign, item: ClaimedDelivery, domain: str
) -> EmailRecipient:
    token = unsubscribe.make_token(settings, item.member_id, huddle.id, m.EMAIL)
    url = unsubscribe.unsubscribe_url(settings, token)
    return EmailRecipient(
        to=item.address,
        reference=f"delivery:{item.delivery_id}",
        custom_args={"campaign_id": str(campaign.id)},
        headers={
            "List-Unsubscribe": (
                f"<{url}>, <mailto:unsubscribe@{domain}?subject=unsubscribe-{token}>"
            ),
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        },
        substitutions={email_render.UNSUBSCRIBE_SUBSTITUTION: url},
    )


def _send(ctx: EmailContext, letters: list[_Letter]) -> list[EmailSendResult | SendError]:
    def send_one(letter: _Letter) -> EmailSendResult | SendError:
        if (refused := fenced(ctx.base)) is not None:
            return refused
        try:
            return ctx.transport_for_thread().send(letter.email)
        except SendError as exc:
            return exc
        except Exception as exc:  # an unexpected error: we cannot know if it went out
            log.exception("unexpected error sending %s emails", len(letter.items))
            return UncertainSendError(str(exc))

    if len(letters) <= 1:
        return [send_one(letter) for letter in letters]
    futures: list[Future[EmailSendResult | SendError]] = [
        ctx.base.pool().submit(send_one, letter) for letter in letters
    ]
    return [f.result() for f in futures]


_deliveries = cast(Table, Delivery.__table__)
_UNSENT = _deliveries.c.sent_at.is_(None)
_STILL_CLAIMED = _deliveries.c.state == k.CLAIMED
# The rows of an accepted request, in one UPDATE where there were two (a 500-id IN list each),
# built once (constructing and cache-keying it costs more than running it). An event may have
# moved a row on already (delivered): only rows still claimed become sent (with updated_at); the
# message id and send time belong to every row of the request that has none yet. The CASEs read
# each row as it was, as the two statements did.
_MARK_SENT = (
    update(_deliveries)
    .where(
        _deliveries.c.id.in_(bindparam("ids", expanding=True)),
        or_(_UNSENT, _STILL_CLAIMED),
    )
    .values(
        provider_message_id=case(
            (_UNSENT, bindparam("message_id", type_=_deliveries.c.provider_message_id.type)),
            else_=_deliveries.c.provider_message_id,
        ),
        sent_at=case(
            (_UNSENT, bindparam("at", type_=_deliveries.c.sent_at.type)),
            else_=_deliveries.c.sent_at,
        ),
        state=case((_STILL_CLAIMED, k.SENT), else_=_deliveries.c.state),
        updated_at=case(
            (_STILL_CLAIMED, bindparam("at", type_=_deliveries.c.updated_at.type)),
            else_=_deliveries.c.updated_at,
        ),
    )
)


def _still_claimed(ids: list[int]) -> Any:
    return update(Delivery).where(Delivery.id.in_(ids), Delivery.state == k.CLAIMED)


def _store(
    base: SendContext,
    letters: list[_Letter],
    results: list[EmailSendResult | SendError],
    outcome: BatchOutcome,
) -> list[ClaimedDelivery]:
    now = base.now()
    transient: list[ClaimedDelivery] = []
    with base.sessions() as session, session.begin():
        for letter, result in zip(letters, results, strict=True):
            ids = [i.delivery_id for i in letter.items]
            if isinstance(result, EmailSendResult):
                session.execute(
                    _MARK_SENT, {"ids": ids, "message_id": result.message_id, "at": now}
                )
                outcome.sent += len(ids)
                if result.message_id:
                    outcome.sent_ids.append(result.message_id)
            elif isinstance(result, TransientSendError):
                transient.extend(letter.items)
            elif isinstance(result, PermanentSendError):
                log.warning("email batch of %s refused: %s", len(ids), result)
                session.execute(
                    _still_claimed(ids).values(
                        state=k.FAILED,
                        error_code=result.code or str(result.http_status or ""),
                        skip_reason=result.message[:40],
                        updated_at=now,
                    )
                )
                outcome.failed += len(ids)
            else:
                log.warning(
                    "email batch of %s: answer uncertain (%s); not retried", len(ids), result
                )
                session.execute(_still_claimed(ids).values(state=k.UNKNOWN, updated_at=now))
                outcome.unknown += len(ids)
    return transient
