"""A local HTTP server that answers like SendGrid's v3 ``POST /v3/mail/send``.

It lets adapters, tests and benchmarks drive the *real* ``sendgrid`` SDK (and its
``python_http_client``) over loopback. Request validation follows the ``mail_send`` operation of
SendGrid's OpenAPI description (sendgrid-oai ``spec/paths/mail_send/mail_send.json``; the copy in
``shared/specs/sendgrid_v3.json`` only references it): 1..1000 personalizations, each with a
non-empty ``to``; at most 1000 recipients (to + cc + bcc) per request; unique addresses within a
personalization; ``from.email``; a subject at top level or in every personalization (unless
``template_id``); ``content`` unless ``template_id``; at most 10 categories of <= 255 chars;
``custom_args`` string values, <= 10,000 bytes once merged; no reserved headers; ``send_at`` at
most 72 h ahead. Errors use SendGrid's body ``{"errors": [{"message", "field", "help"}]}``, all
problems of a request at once, as SendGrid does.

Answers: 202 with an empty body and a random ``X-Message-Id``; 200 and nothing sent when
``mail_settings.sandbox_mode.enable`` is true; 400 invalid; 401 bad key; 404 other paths;
``fail_next(n, status)`` for 429 (with ``X-RateLimit-Limit/Remaining/Reset``), 500, 503...

Pointing the SDK at the fake: ``SendGridAPIClient(api_key, host=fake.base_url)``; the host is read
at construction only (the SDK builds its ``python_http_client.Client`` then). Set
``sg.client.timeout``: the default is none. ``fake.client()`` does both. python_http_client uses
``urllib`` with ``Connection: close``, so there is no keep-alive on this side.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tests.fakes.twilio_server import FakeHTTPService, RecordedRequest, Reply, json_reply

if TYPE_CHECKING:
    from sendgrid import SendGridAPIClient

__all__ = ["FakeSendGrid", "SentEmail"]

MAX_PERSONALIZATIONS = 1000
MAX_RECIPIENTS = 1000
MAX_CATEGORIES = 10
MAX_CUSTOM_ARGS_BYTES = 10_000
MAX_SEND_AT_AHEAD = 72 * 3600
RESERVED_HEADERS = frozenset(
    h.lower()
    for h in (
        "x-sg-id", "x-sg-eid", "received", "dkim-signature", "Content-Type",
        "Content-Transfer-Encoding", "To", "From", "Subject", "Reply-To", "CC", "BCC",
    )
)  # fmt: skip
_HELP = "http://sendgrid.com/docs/API_Reference/Web_API_v3/Mail/errors.html#message.{}"
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_STATUS_MESSAGES = {
    400: "Bad Request",
    403: "access forbidden",
    413: "The JSON payload you have included in your request is too large.",
    429: "too many requests",
    500: "internal error",
    503: "service unavailable",
}


@dataclass(frozen=True, slots=True)
class SentEmail:
    """One accepted personalization, with message-level values merged in as SendGrid does."""

    message_id: str
    from_email: str
    to: list[str]
    subject: str | None
    custom_args: dict[str, str]
    headers: dict[str, str]
    categories: list[str]
    cc: list[str] = field(default_factory=list)
    bcc: list[str] = field(default_factory=list)
    template_id: str | None = None
    dynamic_template_data: dict[str, Any] | None = None
    substitutions: dict[str, str] = field(default_factory=dict)
    send_at: int | None = None
    asm_group_id: int | None = None
    content: list[dict[str, str]] = field(default_factory=list)


class _Errors:
    def __init__(self) -> None:
        self.items: list[dict[str, str | None]] = []

    def add(self, message: str, field: str | None = None, help_topic: str | None = None) -> None:
        help_url = _HELP.format(help_topic) if help_topic else None
        self.items.append({"message": message, "field": field, "help": help_url})


def _addresses(value: Any, where: str, errors: _Errors) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list):
        errors.add(f"The {where} field must be an array.", where)
        return []
    found = []
    for j, item in enumerate(value):
        email = item.get("email") if isinstance(item, dict) else None
        if not isinstance(email, str) or not _EMAIL.match(email):
            errors.add("Does not contain a valid address.", f"{where}.{j}.email")
        else:
            found.append(email)
    return found


def _string_map(value: Any, where: str, errors: _Errors, what: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        errors.add(f"Each {what} value must be a string.", where)
        return {}
    return value


class FakeSendGrid(FakeHTTPService):
    """Fake SendGrid v3 Mail Send. See the module docstring.

    ``fake.sent`` holds one :class:`SentEmail` per accepted personalization.
    """

    def __init__(
        self,
        api_key: str = "SG.test",
        latency: float = 0.0,
        *,
        record: bool = True,
        rate_limit: int = 600,
    ) -> None:
        super().__init__(latency=latency, record=record)
        self.api_key = api_key
        self.rate_limit = rate_limit
        """Value of ``X-RateLimit-Limit`` on a programmed 429."""
        self.sent_count = 0
        self._sent: list[SentEmail] = []

    # -- test API ----------------------------------------------------------------------------

    @property
    def sent(self) -> list[SentEmail]:
        """Snapshot of accepted personalizations, oldest first."""
        with self._lock:
            return list(self._sent)

    def fail_next(self, n: int = 1, status: int = 429) -> None:
        """Make the next ``n`` mail-send requests fail with ``status`` (nothing is sent)."""
        self._program_failures(n, status, None, created=False)

    def client(self, *, timeout: float = 10.0) -> SendGridAPIClient:
        """A real ``sendgrid.SendGridAPIClient`` pointed at this fake."""
        from sendgrid import SendGridAPIClient

        sg = SendGridAPIClient(self.api_key, host=self.base_url)
        sg.client.timeout = timeout
        return sg

    def _reset_resources(self) -> None:
        self._sent.clear()
        self.sent_count = 0

    # -- HTTP --------------------------------------------------------------------------------

    @staticmethod
    def _errors(status: int, errors: list[dict[str, str | None]]) -> Reply:
        return json_reply(status, {"errors": errors})

    @classmethod
    def _error(cls, status: int, message: str) -> Reply:
        return cls._errors(status, [{"message": message, "field": None, "help": None}])

    def handle(self, request: RecordedRequest) -> Reply:
        authorization = request.header("authorization")
        if not authorization:
            return self._error(401, "authorization required")
        if authorization != f"Bearer {self.api_key}":
            message = "The provided authorization grant is invalid, expired, or revoked"
            return self._error(401, message)
        if request.path.rstrip("/") != "/v3/mail/send":
            return self._error(404, "resource not found")
        if request.method != "POST":
            return self._error(405, "method not allowed")

        failure = self._take_failure()
        if failure is not None:
            reply = self._error(failure.status, _STATUS_MESSAGES.get(failure.status, "error"))
            if failure.status == 429:
                reply.headers.extend(
                    [
                        ("X-RateLimit-Limit", str(self.rate_limit)),
                        ("X-RateLimit-Remaining", "0"),
                        ("X-RateLimit-Reset", str(int(time.time()) + 1)),
                    ]
                )
            return reply

        try:
            mail = json.loads(request.body)
        except (ValueError, UnicodeDecodeError):
            mail = None
        if not isinstance(mail, dict):
            return self._error(400, "Bad Request")

        message_id = secrets.token_urlsafe(16)
        errors = _Errors()
        emails = self._validate(mail, message_id, errors)
        if errors.items:
            return self._errors(400, errors.items)
        sandbox = (mail.get("mail_settings") or {}).get("sandbox_mode") or {}
        if sandbox.get("enable"):
            return Reply(200, [], b"")
        with self._lock:
            self.sent_count += len(emails)
            if self.record:
                self._sent.extend(emails)
        return Reply(202, [("X-Message-Id", message_id)], b"")

    def _validate(self, mail: dict[str, Any], message_id: str, errors: _Errors) -> list[SentEmail]:
        sender = mail.get("from")
        from_email = sender.get("email") if isinstance(sender, dict) else None
        if not from_email:
            errors.add(
                "The from object must be provided for every email send. It is an object that "
                "requires the email parameter, but may also contain a name parameter.",
                "from.email",
                "from",
            )
        elif not _EMAIL.match(from_email):
            errors.add("The from email does not contain a valid address.", "from.email", "from")

        template_id = mail.get("template_id")
        subject = mail.get("subject")
        content = mail.get("content")
        if not template_id:
            if not isinstance(content, list) or not content:
                errors.add(
                    "Unless a valid template_id is provided, the content parameter is required. "
                    "There must be at least one defined content block. We typically suggest both "
                    "text/plain and text/html blocks are included, but only one block is required.",
                    "content",
                    "content",
                )
            else:
                for k, block in enumerate(content):
                    if not isinstance(block, dict) or not block.get("type"):
                        errors.add("The content type must be provided.", f"content.{k}.type")
                    elif not isinstance(block.get("value"), str) or not block["value"]:
                        errors.add(
                            "The content value must be a string at least one character in length.",
                            f"content.{k}.value",
                        )

        categories = mail.get("categories") or []
        if not isinstance(categories, list) or not all(isinstance(c, str) for c in categories):
            errors.add("The categories field must be an array of strings.", "categories")
            categories = []
        elif len(categories) > MAX_CATEGORIES:
            message = f"You may not have more than {MAX_CATEGORIES} categories per request."
            errors.add(message, "categories")
        elif any(len(c) > 255 for c in categories):
            errors.add("A category cannot exceed 255 characters.", "categories")

        top_args = _string_map(mail.get("custom_args"), "custom_args", errors, "custom_args")
        top_headers = _string_map(mail.get("headers"), "headers", errors, "header")
        self._check_headers(top_headers, "headers", errors)
        self._check_send_at(mail.get("send_at"), "send_at", errors)
        asm = mail.get("asm")
        if asm is not None and not (isinstance(asm, dict) and isinstance(asm.get("group_id"), int)):
            errors.add("The asm group_id must be an integer.", "asm.group_id")

        personalizations = mail.get("personalizations")
        if not isinstance(personalizations, list) or not personalizations:
            errors.add(
                "The personalizations field is required and must have at least one "
                "personalization.",
                "personalizations",
                "personalizations",
            )
            return []
        if len(personalizations) > MAX_PERSONALIZATIONS:
            errors.add(
                f"You may not have more than {MAX_PERSONALIZATIONS} personalizations per request.",
                "personalizations",
                "personalizations",
            )
            return []

        emails: list[SentEmail] = []
        recipients = 0
        subject_missing = False
        for i, p in enumerate(personalizations):
            where = f"personalizations.{i}"
            if not isinstance(p, dict):
                errors.add("Each personalization must be an object.", where)
                continue
            to = _addresses(p.get("to"), f"{where}.to", errors)
            if not p.get("to"):
                errors.add(
                    "The to array is required for all personalization objects, and must have at "
                    "least one email object with a valid email address.",
                    f"{where}.to",
                    "personalizations.to",
                )
            cc = _addresses(p.get("cc"), f"{where}.cc", errors)
            bcc = _addresses(p.get("bcc"), f"{where}.bcc", errors)
            recipients += len(to) + len(cc) + len(bcc)
            seen: set[str] = set()
            for kind, group in (("to", to), ("cc", cc), ("bcc", bcc)):
                for address in group:
                    if address.lower() in seen:
                        errors.add(
                            "Each email address in the personalization block should be unique "
                            "between to, cc, and bcc. We found the first duplicate instance of "
                            f"[{address}] in the {where}.{kind} field.",
                            f"{where}.{kind}",
                            "personalizations",
                        )
                    seen.add(address.lower())
            p_subject = p.get("subject")
            subject_missing = subject_missing or not (template_id or subject or p_subject)
            p_args = _string_map(
                p.get("custom_args"), f"{where}.custom_args", errors, "custom_args"
            )
            args = {**top_args, **p_args}
            if len(json.dumps(args, separators=(",", ":")).encode()) > MAX_CUSTOM_ARGS_BYTES:
                errors.add(
                    f"The custom_args must not exceed {MAX_CUSTOM_ARGS_BYTES:,} bytes.",
                    f"{where}.custom_args",
                    "custom_args",
                )
            p_headers = _string_map(p.get("headers"), f"{where}.headers", errors, "header")
            self._check_headers(p_headers, f"{where}.headers", errors)
            self._check_send_at(p.get("send_at"), f"{where}.send_at", errors)
            emails.append(
                SentEmail(
                    message_id=message_id,
                    from_email=str(((p.get("from") or {}).get("email")) or from_email),
                    to=to,
                    subject=p_subject or subject,
                    custom_args=args,
                    headers={**top_headers, **p_headers},
                    categories=list(categories),
                    cc=cc,
                    bcc=bcc,
                    template_id=template_id,
                    dynamic_template_data=p.get("dynamic_template_data"),
                    substitutions=p.get("substitutions") or {},
                    send_at=p.get("send_at", mail.get("send_at")),
                    asm_group_id=asm.get("group_id") if isinstance(asm, dict) else None,
                    content=list(content) if isinstance(content, list) else [],
                )
            )
        if subject_missing:
            errors.add(
                "The subject is required. You can get around this requirement if you use a "
                "template with a subject defined or if every personalization has a subject "
                "defined.",
                "subject",
                "subject",
            )
        if recipients > MAX_RECIPIENTS:
            errors.add(
                "The total number of recipients (to, cc and bcc) must be no more than "
                f"{MAX_RECIPIENTS}.",
                "personalizations",
                "personalizations",
            )
        return emails

    @staticmethod
    def _check_headers(headers: dict[str, str], where: str, errors: _Errors) -> None:
        for name in headers:
            if name.lower() in RESERVED_HEADERS:
                message = f"The header {name} is a reserved header and cannot be set."
                errors.add(message, where, "headers")

    @staticmethod
    def _check_send_at(value: Any, where: str, errors: _Errors) -> None:
        if value is None:
            return
        if not isinstance(value, int):
            errors.add("send_at must be a unix timestamp (integer).", where, "send_at")
        elif value > time.time() + MAX_SEND_AT_AHEAD:
            message = "send_at cannot be scheduled more than 72 hours in advance."
            errors.add(message, where, "send_at")
