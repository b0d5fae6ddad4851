"""RQ jobs. Each takes ids, reloads what it needs, and can run twice without harm.

``launch_campaign`` snapshots the audience and enqueues ``send_batch`` jobs (id ranges, a few
bytes each). ``send_batch`` sends one range under this worker's lease. Nothing is scheduled in
RQ: what must happen later (quiet hours, a provider's "try again", a scheduled launch, a job lost
with its worker or with Redis) is in the ledger, and :func:`sweep`, run every few seconds by
whichever worker gets there first (``workers.ticker``), enqueues it when it is due.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import secrets
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable
from datetime import datetime

from redis.exceptions import LockError
from rq import Queue
from sqlalchemy import select
from sqlalchemy.orm import Session

from outreach.accounts import idempotency
from outreach.app.clock import utcnow
from outreach.campaigns import email_sender, fanout, leases, reconcile, sms_sender
from outreach.campaigns.ratelimit import RateLimiter
from outreach.models import Campaign
from outreach.models import members as m
from outreach.people import imports
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
from workers.queues import DEFAULT_QUEUE, IMPORT_QUEUE, SEND_QUEUE

log = logging.getLogger(__name__)

ENQUEUE_CHUNK = 1000
REPLAY_SECONDS = 10.0  # a replay run's time budget (about 10,000 texts on SQLite here)
REPLAY_LIMIT = 1_000_000
RESULT_TTL = 0  # results are in the database; keep Redis small
SEND_JOB_PREFIX = "send-"  # send job ids: send-<campaign>-<first>-<last>-<random>
LAUNCH_JOB_PREFIX = "launch-"  # launch job ids: launch-<campaign>-<random>
IMPORT_JOB_PREFIX = "import-"  # member import job ids: import-<import>-<random>
IMPORT_JOB_TIMEOUT = 6 * 3600  # a stopped import resumes where it was; this only bounds a hang
LAUNCHING = "outreach:launching:"  # + campaign id: a lock held while its launch job runs

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
                lease_token=context.lease_token,
                may_send=context.may_send,
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
    """Start a campaign: leave it scheduled (the sweep launches it when due), or snapshot its
    audience and enqueue its batches."""
    svc = context.services()
    lock = svc.redis.lock(f"{LAUNCHING}{campaign_id}", timeout=3600)
    if not lock.acquire(blocking=False):
        log.info("campaign %s is being launched by another job", campaign_id)
        return "launching"
    try:
        now = utcnow()
        with svc.sessions.begin() as session:
            state = fanout.start(session, campaign_id, now=now)
            send_at = fanout.get_campaign(session, campaign_id).send_at
        if state == "scheduled" and send_at is not None:
            log.info("campaign %s scheduled for %s", campaign_id, send_at.isoformat())
            return state
        fanout.snapshot(svc.sessions, campaign_id, now=now)
        count = enqueue_batches(campaign_id)
        log.info("campaign %s launched: %s batches", campaign_id, count)
        if count == 0:
            sms_sender.send_batch(send_context(), campaign_id, 0, 0)  # completes an empty one
        return state
    finally:
        with contextlib.suppress(LockError):  # Redis restarted meanwhile: the lock is gone
            lock.release()


def enqueue_launch(campaign_id: int) -> None:
    _queue(DEFAULT_QUEUE).enqueue(
        launch_campaign,
        campaign_id,
        job_id=f"{LAUNCH_JOB_PREFIX}{campaign_id}-{secrets.token_hex(4)}",
        result_ttl=RESULT_TTL,
    )


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
            job_id=_send_job_id(b.campaign_id, b.first_id, b.last_id),
            result_ttl=RESULT_TTL,
            timeout=3600,
        )
        for b in batches
    ]
    with queue.connection.pipeline() as pipe:
        queue.enqueue_many(jobs, pipeline=pipe)
        pipe.execute()
    return len(jobs)


def _send_job_id(campaign_id: int, first_id: int, last_id: int) -> str:
    return f"{SEND_JOB_PREFIX}{campaign_id}-{first_id}-{last_id}-{secrets.token_hex(4)}"


def _campaign_of_job(job_id: str, prefix: str) -> int | None:
    head = job_id.removeprefix(prefix).partition("-")[0]
    return int(head) if job_id.startswith(prefix) and head.isdigit() else None


def enqueue_import(import_id: int) -> None:
    _queue(IMPORT_QUEUE).enqueue(
        import_members,
        import_id,
        job_id=f"{IMPORT_JOB_PREFIX}{import_id}-{secrets.token_hex(4)}",
        result_ttl=RESULT_TTL,
        job_timeout=IMPORT_JOB_TIMEOUT,
    )


def import_members(import_id: int) -> str:
    """Import a stored member file (``outreach.people.imports``) under this worker's lease."""
    svc = context.services()
    lease = context.lease()
    timeout = svc.settings.worker_lease_timeout
    runner = lease.hold(f"import-{import_id}") if lease else f"in-process:{secrets.token_hex(6)}"

    def live_tokens() -> set[str]:
        with svc.sessions() as session:
            return leases.live_tokens(session, now=utcnow(), timeout=timeout)

    try:
        return imports.run(
            svc.engine,
            import_id,
            runner=runner,
            live_tokens=live_tokens,
            timeout=timeout,
            stop_requested=context.stop_requested,
        )
    finally:
        if lease is not None:
            lease.release()


def send_batch(campaign_id: int, first_id: int, last_id: int) -> dict[str, int]:
    """Send one range under this worker's lease (see ``outreach.campaigns.leases``)."""
    svc = context.services()
    lease = context.lease()
    if lease is not None:
        lease.hold(campaign_id)  # written before anything is claimed
    try:
        with svc.sessions() as session:
            channel = session.scalar(select(Campaign.channel).where(Campaign.id == campaign_id))
        if channel == "email":
            outcome = email_sender.send_email_batch(email_context(), campaign_id, first_id, last_id)
        else:
            outcome = sms_sender.send_batch(send_context(), campaign_id, first_id, last_id)
    finally:
        if lease is not None:
            lease.release()
    if outcome.stopped == sms_sender.SHUTDOWN:
        # This worker is stopping: the next one takes the rest of the range.
        _queue(SEND_QUEUE).enqueue(
            send_batch,
            campaign_id,
            first_id,
            last_id,
            job_id=_send_job_id(campaign_id, first_id, last_id),
            result_ttl=RESULT_TTL,
        )
    settings = svc.settings
    if outcome.sent_ids and settings.public_base_url:
        if channel == "email" and settings.email_backend == "sandbox":
            _queue(DEFAULT_QUEUE).enqueue(
                post_sandbox_email_events, outcome.sent_ids, result_ttl=RESULT_TTL
            )
        elif channel != "email" and settings.sms_backend == "sandbox":
            _queue(DEFAULT_QUEUE).enqueue(
                post_sandbox_receipts, outcome.sent_ids, result_ttl=RESULT_TTL
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


def sweep() -> dict[str, int]:
    """Heal what the ledger says is left: give jobs to campaigns that have none, launch what is
    due, settle dead claims, complete what they finished. Run every few seconds by one worker at
    a time (``workers.ticker``). Jobs first: a provider slow to answer lookups delays no send.
    """
    svc = context.services()
    timeout = svc.settings.worker_lease_timeout
    now = utcnow()
    stalled, launched = _give_jobs(now, timeout)
    resumed = _give_imports(now, timeout)
    transports = {m.SMS: _thread_transport(), m.EMAIL: _thread_email_transport()}
    result = reconcile.reconcile_claims(svc.sessions, transports, now=now, lease_timeout=timeout)
    for campaign_id in sorted(result.campaigns):
        enqueue_batches(campaign_id)  # what the dead claims gave back
    with svc.sessions.begin() as session:
        completed = reconcile.complete_finished(session, busy=_busy(session, now, timeout))
        leases.forget_dead(session, now=now)
        idempotency.forget_expired(session, now=now)
    return {
        "sent": result.sent,
        "requeued": result.requeued,
        "unknown": result.unknown,
        "waiting": result.waiting,
        "stalled": stalled,
        "launched": launched,
        "imports": resumed,
        "completed": len(completed),
    }


def _busy(session: Session, now: datetime, timeout: float) -> set[int]:
    """Campaigns with a send job: on the queue, or running under a live lease."""
    queued = {
        _campaign_of_job(job_id, SEND_JOB_PREFIX) for job_id in _queue(SEND_QUEUE).get_job_ids()
    }
    running = {leases.campaign_of(t) for t in leases.live_tokens(session, now=now, timeout=timeout)}
    return {c for c in queued | running if c is not None}


def _give_jobs(now: datetime, timeout: float) -> tuple[int, int]:
    """Enqueue sends for stalled campaigns and launches for due or unfinished ones."""
    svc = context.services()
    queued_launches = {
        _campaign_of_job(job_id, LAUNCH_JOB_PREFIX)
        for job_id in _queue(DEFAULT_QUEUE).get_job_ids()
    }
    with svc.sessions() as session:
        stalled = reconcile.stalled_campaigns(session, now=now, busy=_busy(session, now, timeout))
        launches = reconcile.lost_launches(session, now=now)
    for campaign_id in sorted(stalled):
        count = enqueue_batches(campaign_id)
        log.warning("campaign %s had due deliveries and no job: %s batches", campaign_id, count)
    launched = 0
    for campaign_id in sorted(launches - {c for c in queued_launches if c is not None}):
        if not svc.redis.exists(f"{LAUNCHING}{campaign_id}"):
            enqueue_launch(campaign_id)
            launched += 1
    return len(stalled), launched


def _give_imports(now: datetime, timeout: float) -> int:
    """Enqueue member imports that are due and have no job, or whose worker died."""
    svc = context.services()
    queued = {
        _campaign_of_job(job_id, IMPORT_JOB_PREFIX) for job_id in _queue(IMPORT_QUEUE).get_job_ids()
    }
    with svc.sessions() as session:
        live = leases.live_tokens(session, now=now, timeout=timeout)
        waiting = imports.waiting(session, now=now, live_tokens=live, timeout=timeout)
    given = 0
    for import_id in waiting:
        if import_id not in queued:
            log.warning("member import %s had no worker: enqueued", import_id)
            enqueue_import(import_id)
            given += 1
    return given


def replay_twilio_spool() -> dict[str, int]:
    """Apply the Twilio webhooks spooled while the database was away (one replay at a time)."""
    svc = context.services()
    if not svc.redis.exists(spool.SPOOL, spool.REPLAYING):
        return {}
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
        # After a long outage the spool may hold many minutes of traffic: drain it for a time
        # budget, not a fixed count; the ticker comes back within seconds for the rest.
        result = spool.replay(svc.redis, replayer, limit=REPLAY_LIMIT, seconds=REPLAY_SECONDS)
    finally:
        with contextlib.suppress(LockError):
            lock.release()
    if result.applied or result.dead:
        log.info("twilio spool: %s", result)
    return dataclasses.asdict(result)


def _apply_spooled() -> None:
    """Before a campaign group goes out: apply what the Twilio webhooks spooled, if anything.

    One Redis call when the spool is empty. When another worker is replaying, this group goes
    on (that replay is applying it); when the database is still away, so is the group's send.
    """
    replay_twilio_spool()
