"""RQ jobs. Each takes ids, reloads what it needs, and can run twice without harm.

``launch_campaign`` snapshots the audience and enqueues ``send_batch`` jobs (id ranges, a few
bytes each). ``send_batch`` sends one range and schedules what quiet hours deferred.
``reconcile_claims`` runs every minute and settles rows a dead worker left ``claimed``;
``replay_twilio_spool`` every 15 seconds applies the Twilio webhooks the database could not take
(see ``outreach.sms.spool``).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable
from datetime import timedelta
from typing import Any

from rq import Queue
from sqlalchemy import select

from outreach.app.clock import utcnow
from outreach.campaigns import email_sender, fanout, reconcile, sms_sender
from outreach.campaigns.ratelimit import RateLimiter
from outreach.models import Campaign
from outreach.providers import email_transport, sms_transport
from outreach.providers.email import EmailTransport
from outreach.providers.sandbox.email import (
    SandboxEmailTransport,
    sandbox_event_keys,
    sign_events,
)
from outreach.providers.sandbox.sms import SandboxSmsTransport, sign_status_callback
from outreach.providers.sms import SmsTransport
from outreach.providers.twilio.error_policy import parse_error_policy
from outreach.sms import spool
from workers import context
from workers.queues import DEFAULT_QUEUE, SEND_QUEUE

log = logging.getLogger(__name__)

ENQUEUE_CHUNK = 1000
RECONCILE_EVERY = timedelta(minutes=1)
REPLAY_EVERY = timedelta(seconds=15)  # a STOP spooled in a database outage applies this soon after
REPLAY_SECONDS = 10.0  # a replay run's time budget (about 10,000 texts on SQLite here)
REPLAY_LIMIT = 1_000_000
CLAIM_TIMEOUT = timedelta(minutes=5)  # a claim older than this belongs to a dead worker
RESULT_TTL = 0  # results are in the database; keep Redis small

_send_context: sms_sender.SendContext | None = None
_send_context_lock = threading.Lock()
_local = threading.local()


def send_context() -> sms_sender.SendContext:
    """One per worker process: the thread pool and HTTP connections are reused across jobs."""
    global _send_context  # noqa: PLW0603 - one per process, by design
    with _send_context_lock:
        svc = context.services()
        if _send_context is None or _send_context.sessions is not svc.sessions:
            settings = svc.settings
            callback = (
                f"{settings.public_base_url}/webhooks/twilio/status"
                if settings.public_base_url
                else None
            )
            _send_context = sms_sender.SendContext(
                sessions=svc.sessions,
                limiter=RateLimiter(svc.redis),
                transport_for_thread=_thread_transport,
                status_callback_url=callback,
                now=utcnow,
                concurrency=settings.send_concurrency,
                default_rate=settings.default_sms_rate,
                stopping=context.stop_requested,
                error_policy=parse_error_policy(settings.twilio_error_policy),
                apply_spooled=_apply_spooled,
            )
        return _send_context


def email_context() -> email_sender.EmailContext:
    svc = context.services()
    return email_sender.EmailContext(
        base=send_context(), settings=svc.settings, transport_for_thread=_thread_email_transport
    )


def _thread_email_transport() -> EmailTransport:
    svc = context.services()
    transport: EmailTransport | None = getattr(_local, "email_transport", None)
    if transport is None or getattr(_local, "email_sessions", None) is not svc.sessions:
        transport = email_transport(svc.settings, sessions=svc.sessions)
        _local.email_transport = transport
        _local.email_sessions = svc.sessions
    return transport


def _thread_transport() -> SmsTransport:
    svc = context.services()
    transport: SmsTransport | None = getattr(_local, "transport", None)
    if transport is None or getattr(_local, "sessions", None) is not svc.sessions:
        transport = sms_transport(svc.settings, sessions=svc.sessions)
        _local.transport = transport
        _local.sessions = svc.sessions
    return transport


def _queue(name: str) -> Queue:
    return Queue(name, connection=context.services().redis)


def launch_campaign(campaign_id: int) -> str:
    """Start a campaign: schedule it, or snapshot its audience and enqueue its batches."""
    svc = context.services()
    now = utcnow()
    with svc.sessions.begin() as session:
        state = fanout.start(session, campaign_id, now=now)
        send_at = fanout.get_campaign(session, campaign_id).send_at
    if state == "scheduled" and send_at is not None:
        _queue(DEFAULT_QUEUE).enqueue_at(
            send_at, launch_campaign, campaign_id, result_ttl=RESULT_TTL
        )
        log.info("campaign %s scheduled for %s", campaign_id, send_at.isoformat())
        return state
    fanout.snapshot(svc.sessions, campaign_id, now=now)
    count = enqueue_batches(campaign_id)
    log.info("campaign %s launched: %s batches", campaign_id, count)
    if count == 0:
        sms_sender.send_batch(send_context(), campaign_id, 0, 0)  # completes an empty campaign
    return state


def enqueue_batches(campaign_id: int) -> int:
    """Enqueue a send job per batch of queued deliveries, in pipelined chunks."""
    queue = _queue(SEND_QUEUE)
    svc = context.services()
    count = 0
    chunk: list[fanout.Batch] = []
    for batch in fanout.plan_batches(svc.sessions, campaign_id):
        chunk.append(batch)
        if len(chunk) == ENQUEUE_CHUNK:
            count += _enqueue(queue, chunk)
            chunk = []
    if chunk:
        count += _enqueue(queue, chunk)
    return count


def _enqueue(queue: Queue, batches: Iterable[fanout.Batch]) -> int:
    jobs = [
        Queue.prepare_data(
            send_batch,
            args=(b.campaign_id, b.first_id, b.last_id),
            result_ttl=RESULT_TTL,
            timeout=3600,
        )
        for b in batches
    ]
    with queue.connection.pipeline() as pipe:
        queue.enqueue_many(jobs, pipeline=pipe)
        pipe.execute()
    return len(jobs)


def send_batch(campaign_id: int, first_id: int, last_id: int) -> dict[str, int]:
    svc = context.services()
    with svc.sessions() as session:
        channel = session.scalar(select(Campaign.channel).where(Campaign.id == campaign_id))
    if channel == "email":
        outcome = email_sender.send_email_batch(email_context(), campaign_id, first_id, last_id)
    else:
        outcome = sms_sender.send_batch(send_context(), campaign_id, first_id, last_id)
    queue = _queue(SEND_QUEUE)
    if outcome.stopped == sms_sender.SHUTDOWN:
        # This worker is stopping: the next one takes the rest of the range.
        queue.enqueue(send_batch, campaign_id, first_id, last_id, result_ttl=RESULT_TTL)
    for opens in outcome.deferred_until:
        queue.enqueue_at(opens, send_batch, campaign_id, first_id, last_id, result_ttl=RESULT_TTL)
    if outcome.retry_after is not None:
        queue.enqueue_in(
            timedelta(seconds=outcome.retry_after),
            send_batch,
            campaign_id,
            first_id,
            last_id,
            result_ttl=RESULT_TTL,
        )
    settings = svc.settings
    if outcome.sent_ids and settings.public_base_url:
        if channel == "email" and settings.email_backend == "sandbox":
            _queue(DEFAULT_QUEUE).enqueue_in(
                timedelta(seconds=2),
                post_sandbox_email_events,
                outcome.sent_ids,
                result_ttl=RESULT_TTL,
            )
        elif channel != "email" and settings.sms_backend == "sandbox":
            _queue(DEFAULT_QUEUE).enqueue_in(
                timedelta(seconds=1),
                post_sandbox_receipts,
                outcome.sent_ids,
                result_ttl=RESULT_TTL,
            )
    return {
        "claimed": outcome.claimed,
        "sent": outcome.sent,
        "skipped": outcome.skipped,
        "failed": outcome.failed,
        "unknown": outcome.unknown,
        "deferred": len(outcome.deferred_until),
    }


def resume_campaign(campaign_id: int) -> int:
    """Re-enqueue every queued delivery of a campaign that was paused (or lost its jobs)."""
    return enqueue_batches(campaign_id)


def post_sandbox_receipts(provider_message_ids: list[str]) -> int:
    """Play Twilio: post signed status callbacks for sandbox messages to our own webhook."""
    settings = context.services().settings
    transport = _thread_transport()
    if not isinstance(transport, SandboxSmsTransport) or not settings.public_base_url:
        return 0
    url = f"{settings.public_base_url}/webhooks/twilio/status"
    posted = 0
    for sid in provider_message_ids:
        for status, error_code in transport.simulated_receipts(sid):
            params = {"MessageSid": sid, "MessageStatus": status, "AccountSid": "AC" + "0" * 32}
            if error_code:
                params["ErrorCode"] = error_code
            signature = sign_status_callback(settings, url, params)
            request = urllib.request.Request(  # noqa: S310 - our own configured URL
                url,
                data=urllib.parse.urlencode(params).encode(),
                headers={"X-Twilio-Signature": signature},
                method="POST",
            )
            try:
                with urllib.request.urlopen(request, timeout=10):  # noqa: S310
                    posted += 1
            except (urllib.error.URLError, TimeoutError) as exc:
                log.warning("sandbox receipt for %s not delivered: %s", sid, exc)
    return posted


def post_sandbox_email_events(message_ids: list[str]) -> int:
    """Play SendGrid: post signed event batches for sandbox emails to our own webhook."""
    settings = context.services().settings
    transport = _thread_email_transport()
    if not isinstance(transport, SandboxEmailTransport) or not settings.public_base_url:
        return 0
    key, _ = sandbox_event_keys(settings)
    url = f"{settings.public_base_url}/webhooks/sendgrid/events"
    posted = 0
    for message_id in message_ids:
        events = transport.simulated_events(message_id)
        if not events:
            continue
        payload = json.dumps(events).encode()
        timestamp = str(int(time.time()))
        request = urllib.request.Request(  # noqa: S310 - our own configured URL
            url,
            data=payload,
            headers={
                "Content-Type": "application/json",
                "X-Twilio-Email-Event-Webhook-Signature": sign_events(key, payload, timestamp),
                "X-Twilio-Email-Event-Webhook-Timestamp": timestamp,
            },
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=10):  # noqa: S310
                posted += len(events)
        except (urllib.error.URLError, TimeoutError) as exc:
            log.warning("sandbox email events for %s not delivered: %s", message_id, exc)
    return posted


def reconcile_claims(*, reschedule: bool = True) -> dict[str, int]:
    """Settle deliveries a dead worker left ``claimed``; then schedule the next run."""
    svc = context.services()
    try:
        result = reconcile.reconcile_claims(
            svc.sessions, _thread_transport(), older_than=CLAIM_TIMEOUT, now=utcnow()
        )
        for campaign_id in sorted(result.campaigns):
            enqueue_batches(campaign_id)
    finally:
        if reschedule:
            schedule_reconciler(force=True)
    return {"sent": result.sent, "requeued": result.requeued, "unknown": result.unknown}


def schedule_reconciler(*, force: bool = False) -> None:
    _keep_one_chain("outreach:reconciler:scheduled", RECONCILE_EVERY, reconcile_claims, force)


def _keep_one_chain(key: str, every: timedelta, job: Callable[..., Any], force: bool) -> None:
    """Keep exactly one chain of a job that schedules its next run alive: a Redis key guards
    against a second chain when another worker starts (``force``: the chain's own next run)."""
    redis = context.services().redis
    ttl = max(int(every.total_seconds()) * 3, 60)
    if force:
        redis.set(key, "1", ex=ttl)
    elif not redis.set(key, "1", ex=ttl, nx=True):
        return
    _queue(DEFAULT_QUEUE).enqueue_in(every, job, result_ttl=RESULT_TTL)


def replay_twilio_spool(*, reschedule: bool = True) -> dict[str, int]:
    """Apply the Twilio webhooks spooled while the database was away (one replay at a time);
    then schedule the next run: at once while a backlog drains, else in REPLAY_EVERY."""
    svc = context.services()
    draining = False
    try:
        lock = svc.redis.lock("outreach:twilio:replay-lock", timeout=600)
        if not lock.acquire(blocking=False):
            return {"skipped": 1}
        try:
            replayer = spool.Replayer(
                engine=svc.engine,
                transport=_thread_transport(),
                default_region=svc.settings.default_region,
                policy=parse_error_policy(svc.settings.twilio_error_policy),
            )
            # After a long outage the spool may hold many minutes of traffic: drain it for a
            # time budget, not a fixed count, and go on at once while it applies.
            result = spool.replay(svc.redis, replayer, limit=REPLAY_LIMIT, seconds=REPLAY_SECONDS)
        finally:
            lock.release()
        draining = result.waiting > 0 and (result.applied + result.unchanged) > 0
        if result.applied or result.dead:
            log.info("twilio spool: %s", result)
        return dataclasses.asdict(result)
    finally:
        if reschedule:
            schedule_twilio_replay(force=True, soon=draining)


def _apply_spooled() -> None:
    """Before a campaign group goes out: apply what the Twilio webhooks spooled, if anything.

    One Redis call when the spool is empty. When another worker is replaying, this group goes
    on (that replay is applying it); when the database is still away, so is the group's send.
    """
    if context.services().redis.exists(spool.SPOOL, spool.REPLAYING):
        replay_twilio_spool(reschedule=False)  # (Redis keeps no empty list: one call)


def schedule_twilio_replay(*, force: bool = False, soon: bool = False) -> None:
    every = timedelta(seconds=1) if soon else REPLAY_EVERY
    _keep_one_chain("outreach:twilio:replay-scheduled", every, replay_twilio_spool, force)
