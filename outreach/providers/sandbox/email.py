"""The sandbox email backend: emails land as ``.eml`` files and outbox rows; delivery is simulated.

A first-class backend (the default one), not a test double: a fresh install, a demo or a staging
site "sends" through it. ``send`` takes an :class:`~outreach.providers.email.OutboundEmail`
the way SendGrid does and, for each recipient, applies the substitutions to the subject and both
parts and writes the message a mailbox would receive, as RFC 5322 (multipart/alternative, text
then HTML, with the recipient's ``List-Unsubscribe`` headers), to::

    <instance>/outbox/<YYYY-MM-DD, UTC>/<message id>.<n>.eml      n: the recipient's position

Any mail client opens them. Then one short transaction stores an
:class:`~outreach.models.OutboxMessage` per recipient, all with the request's message id (what
SendGrid's ``X-Message-Id`` is, and what the delivery ledger keeps). It answers like SendGrid: the
message id and the number of recipients accepted; and it refuses what SendGrid refuses with a 400
(an invalid address, more than 10 categories, a reserved header, no subject, no content), as a
:class:`PermanentSendError` listing every problem. Call it outside any open write transaction, as
you would a provider.

Delivery is simulated, not performed: :meth:`SandboxEmailTransport.simulated_events` gives the
events SendGrid would post for a request (``processed``, then ``delivered`` or ``bounce``), shaped
like SendGrid's event webhook, with the custom args flattened in; a worker job signs them with
:func:`sign_events` (key pair from :func:`sandbox_event_keys`) and posts them to our own webhook.
The outcome is a pure function of the per-recipient ``sg_message_id``
(:func:`simulated_outcome`): ``delivered``, or for a ``SANDBOX_FAILURE_RATE`` share of
recipients a ``bounce`` of type ``bounce`` (5.1.1, no such user) or ``blocked`` (5.7.1). Event ids
are derived from the message too, so posting the same events twice is deduplicated downstream.

Each ``.eml`` also carries ``X-SMTPAPI``, SendGrid's SMTP API header, with the recipient's
custom args and the categories: SendGrid strips it before delivery; the sandbox keeps it as its
record of what events must carry.

Thread-safe: sessions come from the sessionmaker per call; no other state.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import re
import secrets
import stat
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.contentmanager import raw_data_manager
from email.message import EmailMessage
from email.parser import BytesHeaderParser
from email.policy import Compat32
from email.utils import format_datetime, formataddr
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import insert, select
from sqlalchemy.orm import Session, sessionmaker

from outreach.addresses.emails import mask_email
from outreach.app.clock import utcnow
from outreach.app.db import transaction
from outreach.app.settings import ConfigError, Settings
from outreach.models import OutboxMessage
from outreach.providers.email import EmailRecipient, EmailSendResult, OutboundEmail
from outreach.providers.sendgrid.client import custom_args
from outreach.providers.sms import PermanentSendError

__all__ = [
    "EVENT_KEY_FILE",
    "SandboxEmailTransport",
    "SimulatedBounce",
    "sandbox_event_keys",
    "sign_events",
    "simulated_outcome",
]

log = logging.getLogger(__name__)

PROVIDER = "sandbox"
CHANNEL = "email"
OUTBOX_KINDS = frozenset({"campaign", "confirmation", "reply", "test"})
EVENT_KEY_FILE = "sandbox-event-key.pem"
MAX_CATEGORIES = 10
# SendGrid's reserved headers (its API docs for personalizations.headers)
RESERVED_HEADERS = frozenset(
    h.lower()
    for h in (
        "x-sg-id", "x-sg-eid", "received", "dkim-signature", "Content-Type",
        "Content-Transfer-Encoding", "To", "From", "Subject", "Reply-To", "CC", "BCC",
    )
)  # fmt: skip
_ADDRESS = re.compile(r"^[^@\s<>]+@[^@\s<>]+\.[^@\s<>]+$")
_HEADER_NAME = re.compile(r"^[!-9;-~]+$")  # RFC 5322 ftext: printable ASCII but ":"


class _EmlPolicy(Compat32):
    """How the ``.eml`` files are written: RFC 5322 with CRLF, headers folded at 78.

    compat32, not ``email.policy.SMTP``, whose header objects re-parse and refold every value
    (a send writes a file per recipient); a short ASCII header is written as it is, since
    ``email.header.Header`` would return it unchanged. Any policy parses the files.
    """

    def fold_binary(self, name: str, value: str) -> bytes:
        limit = self.max_line_length or 78
        if isinstance(value, str) and value.isascii() and len(name) + len(value) + 2 <= limit:
            return f"{name}: {value}{self.linesep}".encode("ascii")
        return super().fold_binary(name, value)


_EML_POLICY = _EmlPolicy(linesep="\r\n")


@dataclass(frozen=True)
class SimulatedBounce:
    type: str  # SendGrid's bounce "type": bounce (the address is bad) or blocked (the content/IP)
    status: str
    reason: str
    classification: str


BOUNCES = (
    SimulatedBounce(
        "bounce",
        "5.1.1",
        "550 5.1.1 The email account that you tried to reach does not exist.",
        "Invalid Address",
    ),
    SimulatedBounce(
        "blocked",
        "5.7.1",
        "550 5.7.1 Message rejected by the receiving server's policy.",
        "Reputation",
    ),
)


def simulated_outcome(sg_message_id: str, failure_rate: float) -> SimulatedBounce | None:
    """The bounce a recipient's message gets, or None if delivered: the same answer every time."""
    digest = hashlib.sha256(sg_message_id.encode()).digest()
    draw = int.from_bytes(digest[:8], "big") / 2**64  # uniform in [0, 1)
    if draw >= failure_rate:
        return None
    return BOUNCES[digest[8] % len(BOUNCES)]


class SandboxEmailTransport:
    """Writes emails to the outbox instead of sending them. See the module docstring."""

    name = PROVIDER
    max_request_seconds = 0.0  # the outbox row is written before send returns

    def __init__(self, settings: Settings, sessions: sessionmaker[Session]) -> None:
        self._failure_rate = settings.sandbox_failure_rate
        self._sessions = sessions
        self._outbox = settings.instance_path / "outbox"

    def send(self, email: OutboundEmail) -> EmailSendResult:
        _check(email)
        message_id = secrets.token_hex(16)
        now = utcnow()
        folder = self.folder(now)
        folder.mkdir(parents=True, exist_ok=True)
        rows: list[dict[str, Any]] = []
        written: list[Path] = []
        try:
            for n, recipient in enumerate(email.recipients):
                subject, body, data = _message(email, recipient, f"{message_id}.{n}", now)
                path = folder / f"{message_id}.{n}.eml"
                path.write_bytes(data)
                written.append(path)
                kind, delivery_id = _kind_and_delivery(recipient.reference)
                rows.append(
                    {
                        "channel": CHANNEL,
                        "provider": PROVIDER,
                        "provider_message_id": message_id,
                        "to_address": recipient.to,
                        "from_address": email.from_email,
                        "subject": subject,
                        "body": body,
                        "delivery_id": delivery_id,
                        "kind": kind,
                        "created_at": now,
                    }
                )
            with transaction(self._sessions) as session:
                session.execute(insert(OutboxMessage), rows)
        except BaseException:
            for path in written:  # nothing was "sent": leave no half of it behind
                path.unlink(missing_ok=True)
            raise
        log.info(
            "sandbox send %s (%d) to %s: accepted as %s",
            email.recipients[0].reference,
            len(email.recipients),
            mask_email(email.recipients[0].to),
            message_id,
        )
        return EmailSendResult(message_id=message_id, accepted=len(email.recipients))

    def folder(self, when: datetime) -> Path:
        """Where the ``.eml`` files of emails sent at ``when`` are."""
        return self._outbox / when.strftime("%Y-%m-%d")

    def simulated_events(self, message_id: str) -> list[dict[str, Any]]:
        """The events SendGrid would post for the request ``message_id``; [] if unknown.

        For each recipient, in order: ``processed`` at the time of the send, then ``delivered``
        or ``bounce`` 1-5 s later. Each event carries ``email``, ``timestamp``, ``event``,
        ``sg_event_id`` (unique, stable), ``sg_message_id``, ``smtp-id``, ``category`` (a list,
        if the email had categories) and the recipient's custom args (``delivery_id``...) at
        top level, as SendGrid sends them; bounces add ``type``, ``status``, ``reason`` and
        ``bounce_classification``.
        """
        with self._sessions() as session:
            rows = session.execute(
                select(
                    OutboxMessage.to_address, OutboxMessage.delivery_id, OutboxMessage.created_at
                )
                .where(
                    OutboxMessage.provider_message_id == message_id,
                    OutboxMessage.provider == PROVIDER,
                    OutboxMessage.channel == CHANNEL,
                )
                .order_by(OutboxMessage.id)
            ).all()
        events: list[dict[str, Any]] = []
        for n, (to_address, delivery_id, created_at) in enumerate(rows):  # n: position in request
            local_id = f"{message_id}.{n}"
            sg_message_id = f"{local_id}.sandbox"
            stored = self._stored(created_at, local_id)
            if stored is not None:
                to, args, categories, smtp_id = stored
            else:  # the .eml is gone: what the outbox row remembers
                to = to_address
                args = {} if delivery_id is None else {"delivery_id": str(delivery_id)}
                categories, smtp_id = [], f"<{local_id}@sandbox>"
            sent = int(created_at.timestamp())
            common: dict[str, Any] = {
                "email": to,
                "smtp-id": smtp_id,
                "sg_message_id": sg_message_id,
            }
            if categories:
                common["category"] = categories
            bounce = simulated_outcome(sg_message_id, self._failure_rate)
            outcome: dict[str, Any]
            if bounce is None:
                outcome = {"event": "delivered", "response": "250 2.0.0 OK"}
            else:
                outcome = {
                    "event": "bounce",
                    "type": bounce.type,
                    "status": bounce.status,
                    "reason": bounce.reason,
                    "bounce_classification": bounce.classification,
                }
            delay = 1 + hashlib.sha256(sg_message_id.encode()).digest()[9] % 5
            for at, fields in ((sent, {"event": "processed"}), (sent + delay, outcome)):
                event = {**args, **common, "timestamp": at, **fields}
                event["sg_event_id"] = _event_id(sg_message_id, event["event"])
                events.append(event)
        return events

    def find_sent(self, *, to: str, reference: str, since: datetime) -> str | None:
        """The message id the outbox holds for ``reference`` (``delivery:N``), or "" if none."""
        _, delivery_id = _kind_and_delivery(reference)
        if delivery_id is None:
            return None
        with self._sessions() as session:
            found = session.scalar(
                select(OutboxMessage.provider_message_id)
                .where(
                    OutboxMessage.delivery_id == delivery_id,
                    OutboxMessage.channel == CHANNEL,
                    OutboxMessage.to_address == to,
                    OutboxMessage.created_at >= since - timedelta(seconds=5),
                )
                .limit(1)
            )
        return found or ""

    def close(self) -> None:
        """Nothing to release: sessions are per call."""

    def _stored(
        self, created_at: datetime, local_id: str
    ) -> tuple[str, dict[str, str], list[str], str] | None:
        """(To, custom args, categories, Message-ID) from the ``.eml``; None if it is gone."""
        try:
            data = (self.folder(created_at) / f"{local_id}.eml").read_bytes()
        except FileNotFoundError:
            return None
        headers = BytesHeaderParser().parsebytes(data)  # compat32: raw values, folds kept

        def unfolded(name: str, default: str = "") -> str:
            return "".join(str(headers.get(name, default)).splitlines())

        smtpapi = json.loads(unfolded("X-SMTPAPI", "{}"))
        return (
            unfolded("To"),
            dict(smtpapi.get("unique_args") or {}),
            list(smtpapi.get("category") or []),
            unfolded("Message-ID").strip(),
        )


def sandbox_event_keys(settings: Settings) -> tuple[ec.EllipticCurvePrivateKey, str]:
    """The sandbox's event-signing key pair: the private key, and the public key as SendGrid shows
    it (base64 DER SubjectPublicKeyInfo: what ``EventWebhook(public_key)`` takes).

    Created on first use as ``<instance>/sandbox-event-key.pem`` (PKCS#8, mode 0600); when
    processes race, the first file written wins and everyone loads it.
    """
    path = settings.instance_path / EVENT_KEY_FILE
    if not path.exists():
        _create_key(path)
    elif path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("%s is readable by others; chmod 600 it", path)
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ConfigError(f"{path} must hold a P-256 (secp256r1) private key")
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return key, base64.b64encode(public).decode("ascii")


def sign_events(private_key: ec.EllipticCurvePrivateKey, payload: bytes, timestamp: str) -> str:
    """``X-Twilio-Email-Event-Webhook-Signature`` for ``payload`` (the raw body) at ``timestamp``.

    As SendGrid signs: ECDSA P-256 with SHA-256 over ``timestamp + payload``, DER, base64.
    """
    signature = private_key.sign(timestamp.encode() + payload, ec.ECDSA(hashes.SHA256()))
    return base64.b64encode(signature).decode("ascii")


def _create_key(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.fchmod(descriptor, 0o600)  # whatever the umask
        with os.fdopen(descriptor, "wb") as file:
            file.write(pem)
        try:
            os.link(temporary, path)  # atomic, and refuses to replace a key another process made
        except FileExistsError:
            pass
        else:
            log.info("created the sandbox event signing key %s", path)
    finally:
        temporary.unlink(missing_ok=True)


def _check(email: OutboundEmail) -> None:
    """Refuse, all problems at once, what SendGrid answers with a 400."""
    problems: list[str] = []
    if not _ADDRESS.match(email.from_email):
        problems.append("The from email does not contain a valid address.")
    if not email.subject:
        problems.append("The subject is required.")
    if not (email.text or email.html):
        problems.append(
            "Unless a valid template_id is provided, the content parameter is required."
        )
    if len(email.categories) > MAX_CATEGORIES:
        problems.append(f"You may not have more than {MAX_CATEGORIES} categories per request.")
    headers = [*email.headers, *(name for r in email.recipients for name in r.headers)]
    for name in sorted({h for h in headers if h.lower() in RESERVED_HEADERS}):
        problems.append(f"The header {name} is a reserved header and cannot be set.")
    if any(not _ADDRESS.match(r.to) for r in email.recipients):
        problems.append("Does not contain a valid address.")
    if problems:
        raise PermanentSendError("; ".join(problems), http_status=400)


def _message(
    email: OutboundEmail, recipient: EmailRecipient, local_id: str, now: datetime
) -> tuple[str, str, bytes]:
    """(subject, text or else HTML, RFC 5322 bytes) of the message ``recipient`` would receive."""
    substitutions = recipient.substitutions
    subject = _substitute(email.subject, substitutions)
    text = _substitute(email.text, substitutions)
    html = _substitute(email.html, substitutions)
    headers = {
        "From": formataddr((email.from_name or "", email.from_email)),
        "To": recipient.to,
        "Subject": subject,
        "Date": format_datetime(now),
        "Message-ID": f"<{local_id}@{email.from_email.rpartition('@')[2]}>",
        **email.headers,
        **recipient.headers,
        "X-SMTPAPI": json.dumps(
            {"unique_args": custom_args(recipient), "category": list(email.categories)}
        ),
    }
    for name, value in headers.items():
        # compat32 keeps line breaks in a value as they are: refuse them (header injection)
        if not _HEADER_NAME.match(name) or "\r" in value or "\n" in value:
            raise PermanentSendError(
                f"the header {name!r} has a line break or a character headers cannot have",
                http_status=400,
            )
    message = EmailMessage(policy=_EML_POLICY)
    for name, value in headers.items():
        message[name] = value
    if text:
        message.set_content(text, content_manager=raw_data_manager)
        if html:
            message.add_alternative(html, subtype="html", content_manager=raw_data_manager)
            message.set_boundary(f"=_{local_id}")  # unique; spares a regex scan of the body
    else:
        message.set_content(html, subtype="html", content_manager=raw_data_manager)
    return subject, text or html, message.as_bytes()


def _substitute(text: str, substitutions: dict[str, str]) -> str:
    """Replace every substitution tag in one pass (a value is never substituted again)."""
    tags = sorted((t for t in substitutions if t), key=len, reverse=True)
    if not text or not tags:
        return text
    pattern = re.compile("|".join(map(re.escape, tags)))
    return pattern.sub(lambda m: substitutions[m.group()], text)


def _event_id(sg_message_id: str, event: str) -> str:
    digest = hashlib.sha256(f"{sg_message_id}:{event}".encode()).digest()
    return base64.urlsafe_b64encode(digest[:16]).decode("ascii").rstrip("=")


def _kind_and_delivery(reference: str) -> tuple[str, int | None]:
    """``delivery:123`` -> ("campaign", 123); ``test:…`` / ``confirmation:…`` -> that kind."""
    prefix, _, rest = reference.partition(":")
    if prefix == "delivery" and rest.isdigit():
        return "campaign", int(rest)
    if prefix in OUTBOX_KINDS:
        return prefix, None
    return "campaign", None
