"""Twilio webhooks the database could not take, kept in Redis and applied once it can.

Twilio sends neither an inbound text nor a status callback again after a 500 (a text goes to
the Fallback URL, when there is one), so what arrived while the database restarted, failed
over, or stayed locked past its busy timeout was lost: a STOP, or a 21610 that opts a number
out. The webhook still answers with the 500 (nothing was committed: for a STOP the answer must
not say it was) and first puts the request here. The worker applies what is here every 15
seconds through the same :func:`outreach.sms.inbound.handle_inbound` and
:func:`outreach.sms.receipts.handle_status` (what Twilio delivered again meanwhile changes nothing)
and sends a text's answer, which the webhook could not give, through the SMS provider. The
spool is as durable as Redis.

A request that fails because the database is unreachable waits, however long that lasts. One
that fails for another reason (a bug) is tried ``MAX_ATTEMPTS`` times, then set aside on a list
of its own (``DEAD``) and logged as an error: kept for an operator, not tried forever.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import redis
from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError, OperationalError

from outreach.addresses.phones import mask_phone, try_normalize_phone
from outreach.app.clock import utcnow
from outreach.providers.sms import OutboundSms, SendError, SmsTransport
from outreach.providers.twilio.error_policy import DEFAULT_ERROR_POLICY, ErrorAction
from outreach.sms.inbound import InboundSms, Media, handle_inbound
from outreach.sms.receipts import handle_status

log = logging.getLogger(__name__)

SPOOL = "outreach:twilio:spool"  # requests waiting, oldest first
REPLAYING = "outreach:twilio:replaying"  # the one being applied: back to the spool after a crash
DEAD = "outreach:twilio:dead"  # requests that failed MAX_ATTEMPTS times for another reason
MAX_ATTEMPTS = 5

TEXT = "text"  # an inbound text: InboundSms's fields (media: a list of {url, content_type})
STATUS = "status"  # a status callback: message_sid, status, error_code
UNREADABLE = "unreadable"  # what set_aside shows for an entry that does not parse


@dataclass(frozen=True)
class Spooled:
    kind: str  # TEXT or STATUS
    request: dict[str, Any]
    spooled_at: str  # ISO 8601, UTC
    attempts: int = 0  # failures for a reason other than an unreachable database
    error: str | None = None  # the last failure's exception class

    def dumps(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False)

    @classmethod
    def loads(cls, raw: str) -> Spooled:
        """Raises ValueError for an entry that is not one (written by hand, or by a bug)."""
        try:
            spooled = cls(**json.loads(raw))
        except (TypeError, ValueError) as error:
            raise ValueError(f"not a spooled request: {error}") from None
        if spooled.kind not in (TEXT, STATUS) or not isinstance(spooled.request, dict):
            raise ValueError(f"not a spooled request: kind {spooled.kind!r}")
        return spooled

    @property
    def message_sid(self) -> str:
        return str(self.request.get("message_sid") or "-")


def spool_text(client: redis.Redis, sms: InboundSms) -> None:
    """Keep an inbound text the webhook could not apply. Raises what Redis raises."""
    _spool(client, Spooled(TEXT, asdict(sms), utcnow().isoformat()))


def spool_status(
    client: redis.Redis, *, message_sid: str, status: str, error_code: str | None
) -> None:
    """Keep a status callback the webhook could not apply. Raises what Redis raises."""
    request = {"message_sid": message_sid, "status": status, "error_code": error_code}
    _spool(client, Spooled(STATUS, request, utcnow().isoformat()))


def _spool(client: redis.Redis, spooled: Spooled) -> None:
    client.rpush(SPOOL, spooled.dumps())
    log.warning(
        "twilio %s %s spooled for later: the database did not take it",
        spooled.kind,
        spooled.message_sid,
    )


def waiting(client: redis.Redis) -> int:
    """Requests not applied yet (one may be mid-replay)."""
    return int(client.llen(SPOOL)) + int(client.llen(REPLAYING))


def set_aside(client: redis.Redis) -> list[Spooled]:
    """The requests that failed ``MAX_ATTEMPTS`` times, oldest first (an unreadable entry as
    kind "unreadable": nothing of it is shown, it may hold a number)."""
    entries = []
    for raw in map(_text, client.lrange(DEAD, 0, -1)):
        try:
            entries.append(Spooled.loads(raw))
        except ValueError:
            entries.append(Spooled(UNREADABLE, {}, "?", error="unreadable"))
    return entries


def retry_set_aside(client: redis.Redis) -> int:
    """Put the requests set aside back in the spool, as new (once the bug is fixed). Unreadable
    entries stay where they are."""
    moved = 0
    for raw in map(_text, client.lrange(DEAD, 0, -1)):
        try:
            fresh = replace(Spooled.loads(raw), attempts=0, error=None)
        except ValueError:
            continue
        pipe = client.pipeline()  # MULTI: on one list or the other, never both or neither
        pipe.lrem(DEAD, 1, raw)
        pipe.rpush(SPOOL, fresh.dumps())
        removed, _ = pipe.execute()
        moved += int(removed)
    return moved


def _text(raw: Any) -> str:
    return raw.decode() if isinstance(raw, bytes) else str(raw)


@dataclass
class Replayed:
    applied: int = 0
    unchanged: int = 0  # applied meanwhile (Twilio delivered it again), or moved nothing
    answered: int = 0  # texts' answers sent through the provider
    waiting: int = 0  # left in the spool
    dead: int = 0  # set aside this run


@dataclass(frozen=True)
class Replayer:
    """What applying a spooled request takes: the webhooks' own database handles and settings."""

    engine: Engine
    transport: SmsTransport
    default_region: str = "US"
    policy: Mapping[str, ErrorAction] = field(default_factory=lambda: dict(DEFAULT_ERROR_POLICY))


def replay(
    client: redis.Redis,
    replayer: Replayer,
    *,
    limit: int = 1000,
    seconds: float | None = None,
) -> Replayed:
    """Try each spooled request once (up to ``limit``, for up to ``seconds``), oldest first; stop
    at an unreachable database.

    One replay at a time per spool (callers hold a lock): a request moves to ``REPLAYING`` while
    it is applied, and one left there by a crash goes back to the head of the spool first.
    """
    outcome = Replayed()
    deadline = None if seconds is None else time.monotonic() + seconds
    while client.lmove(REPLAYING, SPOOL, "RIGHT", "LEFT") is not None:
        pass  # a crashed run's request: applying it again is harmless (MessageSid)
    for _ in range(min(limit, int(client.llen(SPOOL)))):  # each request at most once a run
        if deadline is not None and time.monotonic() > deadline:
            break
        moved = client.lmove(SPOOL, REPLAYING, "LEFT", "RIGHT")
        if moved is None:
            break
        raw = _text(moved)
        try:
            spooled = Spooled.loads(raw)
        except ValueError as error:
            _unreadable(client, raw, error, outcome)
            continue
        try:
            _apply(spooled, replayer, outcome)
        except DBAPIError as error:
            if isinstance(error, OperationalError) or error.connection_invalidated:
                client.lmove(REPLAYING, SPOOL, "RIGHT", "LEFT")  # keeps its place
                log.info("twilio spool: database unreachable (%s)", type(error).__name__)
                break
            _failed(client, raw, spooled, error, outcome)
            continue
        except Exception as error:  # noqa: BLE001 - a bug: count it, keep the request
            _failed(client, raw, spooled, error, outcome)
            continue
        client.lrem(REPLAYING, 1, raw)
    outcome.waiting = int(client.llen(SPOOL))
    return outcome


def _apply(spooled: Spooled, replayer: Replayer, outcome: Replayed) -> None:
    if spooled.kind == STATUS:
        status = handle_status(replayer.engine, policy=replayer.policy, **spooled.request)
        if status.applied:
            outcome.applied += 1
        else:
            outcome.unchanged += 1
        return
    sms = _inbound(spooled.request)
    result = handle_inbound(replayer.engine, sms, default_region=replayer.default_region)
    if result.duplicate:
        outcome.unchanged += 1
        return
    outcome.applied += 1
    if result.reply and _answer(replayer.transport, sms, result.reply, replayer.default_region):
        outcome.answered += 1


def _inbound(request: dict[str, Any]) -> InboundSms:
    """The text as spooled: ``asdict`` made its media a list of dicts (none before MMS)."""
    media = tuple(Media(**attachment) for attachment in request.get("media") or ())
    return InboundSms(**{**request, "media": media})


def _failed(
    client: redis.Redis, raw: str, spooled: Spooled, error: Exception, outcome: Replayed
) -> None:
    """A failure the database's absence does not explain: try again later, or set it aside."""
    again = replace(spooled, attempts=spooled.attempts + 1, error=type(error).__name__)
    pipe = client.pipeline()  # MULTI: the request is on exactly one list at any time
    pipe.lrem(REPLAYING, 1, raw)
    if again.attempts >= MAX_ATTEMPTS:
        pipe.rpush(DEAD, again.dumps())
        outcome.dead += 1
        log.error(
            "twilio %s %s set aside after %d failed replays",
            spooled.kind,
            spooled.message_sid,
            again.attempts,
            exc_info=error,
        )
    else:
        pipe.rpush(SPOOL, again.dumps())
        log.warning(
            "twilio %s %s replay failed (%s)", spooled.kind, spooled.message_sid, again.error
        )
    pipe.execute()


def _unreadable(client: redis.Redis, raw: str, error: ValueError, outcome: Replayed) -> None:
    """An entry that is not a spooled request cannot be applied: set it aside as it is."""
    pipe = client.pipeline()
    pipe.lrem(REPLAYING, 1, raw)
    pipe.rpush(DEAD, raw)
    pipe.execute()
    outcome.dead += 1
    log.error("twilio spool: an entry set aside unread: %s", error)


def _answer(transport: SmsTransport, sms: InboundSms, reply: str, default_region: str) -> bool:
    """Send the answer the webhook would have given, from the number (or service) texted."""
    to = try_normalize_phone(sms.from_raw, default_region)
    ours = try_normalize_phone(sms.to, default_region)
    if to is None or (ours is None and not sms.messaging_service_sid):
        return False
    message = OutboundSms(
        to=to,
        body=reply,
        from_number=ours,
        messaging_service_sid=sms.messaging_service_sid,
        reference=f"reply:{sms.message_sid}",
    )
    try:
        transport.send(message)
    except SendError as error:
        log.warning("inbound %s: answer to %s not sent: %s", sms.message_sid, mask_phone(to), error)
        return False
    return True
