"""Texts the database could not take, kept in Redis and applied once it can.

Twilio does not send an inbound text again after a 500 (it calls the Fallback URL, when there
is one), so a text that arrives while the database restarts, fails over, or stays locked past
its busy timeout would be lost: a STOP among them. The webhook still answers such a text with a
500 (it was not committed: the answer must not say it was), and first puts it here. The worker
applies what is here every 15 seconds through the same :func:`outreach.inbound.handle_inbound`
(a MessageSid applied meanwhile, by a Twilio retry, changes nothing) and sends the answer the
webhook could not give through the SMS provider. The spool is as durable as Redis.

A text that fails because the database is unreachable stays, however long that lasts. One that
fails for another reason (a bug) is tried ``MAX_ATTEMPTS`` times, then set aside on a list of its
own (``DEAD``) and logged as an error: kept for an operator, not tried forever.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass

import redis
from sqlalchemy.exc import DBAPIError, OperationalError

from outreach.clock import utcnow
from outreach.db import HeldConnections
from outreach.inbound import InboundSms, handle_inbound
from outreach.phones import mask_phone, try_normalize_phone
from outreach.transports.base import OutboundSms, SendError, SmsTransport

log = logging.getLogger(__name__)

SPOOL = "outreach:inbound:spool"  # texts waiting, oldest first
REPLAYING = "outreach:inbound:replaying"  # the one being applied: back to the spool after a crash
DEAD = "outreach:inbound:dead"  # texts that failed MAX_ATTEMPTS times for another reason
MAX_ATTEMPTS = 5


@dataclass(frozen=True)
class Spooled:
    sms: InboundSms
    spooled_at: str  # ISO 8601, UTC
    attempts: int = 0  # failures for a reason other than an unreachable database
    error: str | None = None  # the last failure's exception class

    def dumps(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False)

    @classmethod
    def loads(cls, raw: str) -> Spooled:
        data = json.loads(raw)
        return cls(
            sms=InboundSms(**data["sms"]),
            spooled_at=data["spooled_at"],
            attempts=data.get("attempts", 0),
            error=data.get("error"),
        )


def spool(client: redis.Redis, sms: InboundSms) -> None:
    """Keep a text the webhook could not apply. Raises what Redis raises."""
    client.rpush(SPOOL, Spooled(sms, utcnow().isoformat()).dumps())
    log.warning("inbound %s spooled for later: the database did not take it", sms.message_sid)


@dataclass
class Replayed:
    applied: int = 0
    duplicates: int = 0  # applied meanwhile (Twilio retried it): nothing changed, nothing sent
    answered: int = 0  # answers sent through the provider
    waiting: int = 0  # left in the spool
    dead: int = 0  # set aside this run


def replay(
    client: redis.Redis,
    connections: HeldConnections,
    transport: SmsTransport,
    *,
    default_region: str = "US",
    limit: int = 1000,
) -> Replayed:
    """Try each spooled text once (up to ``limit``), oldest first; stop at an unreachable database.

    One replay at a time per spool (callers hold a lock): a text moves to ``REPLAYING`` while it
    is applied, and one left there by a crash goes back to the head of the spool first.
    """
    outcome = Replayed()
    while client.lmove(REPLAYING, SPOOL, "RIGHT", "LEFT") is not None:
        pass  # a crashed run's text: applying it again is harmless (MessageSid)
    for _ in range(min(limit, int(client.llen(SPOOL)))):  # each text at most once a run
        moved = client.lmove(SPOOL, REPLAYING, "LEFT", "RIGHT")
        if moved is None:
            break
        raw = moved.decode() if isinstance(moved, bytes) else str(moved)
        spooled = Spooled.loads(raw)
        try:
            result = handle_inbound(connections, spooled.sms, default_region=default_region)
        except DBAPIError as error:
            if isinstance(error, OperationalError) or error.connection_invalidated:
                client.lmove(REPLAYING, SPOOL, "RIGHT", "LEFT")  # keeps its place
                log.info("inbound spool: database unreachable (%s)", type(error).__name__)
                break
            _failed(client, raw, spooled, error, outcome)
            continue
        except Exception as error:  # noqa: BLE001 - a bug: count it, keep the text
            _failed(client, raw, spooled, error, outcome)
            continue
        client.lrem(REPLAYING, 1, raw)
        if result.duplicate:
            outcome.duplicates += 1
            continue
        outcome.applied += 1
        if result.reply and _answer(transport, spooled.sms, result.reply, default_region):
            outcome.answered += 1
    outcome.waiting = int(client.llen(SPOOL))
    return outcome


def _failed(
    client: redis.Redis, raw: str, spooled: Spooled, error: Exception, outcome: Replayed
) -> None:
    """A failure the database's absence does not explain: try again later, or set it aside."""
    again = Spooled(spooled.sms, spooled.spooled_at, spooled.attempts + 1, type(error).__name__)
    pipe = client.pipeline()  # MULTI: the text is on exactly one list at any time
    pipe.lrem(REPLAYING, 1, raw)
    if again.attempts >= MAX_ATTEMPTS:
        pipe.rpush(DEAD, again.dumps())
        outcome.dead += 1
        log.error(
            "inbound %s set aside after %d failed replays",
            spooled.sms.message_sid,
            again.attempts,
            exc_info=error,
        )
    else:
        pipe.rpush(SPOOL, again.dumps())
        log.warning("inbound %s replay failed (%s)", spooled.sms.message_sid, again.error)
    pipe.execute()


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
