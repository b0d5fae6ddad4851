"""Email transports: one contract for every backend, then what each one adds.

SendGrid runs the real SDK against FakeSendGrid over loopback (SENDGRID_API_HOST); the sandbox
runs against the test database and a temporary instance folder.
"""

from __future__ import annotations

import json
import logging
import random
import re
import socket
import stat
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from email import message_from_bytes, policy
from email.message import EmailMessage, Message
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sendgrid.helpers.eventwebhook import EventWebhook
from sqlalchemy import create_engine, select
from sqlalchemy.orm import sessionmaker

from outreach.app.clock import utcnow
from outreach.app.services import Services
from outreach.app.settings import ConfigError, Settings
from outreach.models import OutboxMessage
from outreach.providers import email_transport
from outreach.providers.email import (
    MAX_RECIPIENTS,
    EmailRecipient,
    EmailSendResult,
    EmailTransport,
    OutboundEmail,
)
from outreach.providers.sandbox.email import (
    EVENT_KEY_FILE,
    SandboxEmailTransport,
    sandbox_event_keys,
    sign_events,
    simulated_outcome,
)
from outreach.providers.sendgrid.client import (
    RetryPolicy,
    SendGridEmailTransport,
    custom_args,
    error_from_response,
    mail_body,
)
from outreach.providers.sms import (
    AccountError,
    PermanentSendError,
    TransientSendError,
    UncertainSendError,
)
from tests.fakes import FakeSendGrid

API_KEY = "SG.test-key"
SENDER = "team@northside.example.org"
MEMBER = "maria.lopez@example.com"
OTHER = "sam@example.net"
UNSUBSCRIBE_TAG = "%%unsubscribe_url%%"
SUBJECT = "Rally Saturday"
TEXT = "See you at 10. Unsubscribe: %%unsubscribe_url%%"
HTML = '<p>See you at 10.</p><p><a href="%%unsubscribe_url%%">Unsubscribe</a></p>'


# -- fixtures and helpers ---------------------------------------------------------------------


@pytest.fixture
def fake() -> Iterator[FakeSendGrid]:
    with FakeSendGrid(API_KEY) as server:
        yield server


def sendgrid_settings(settings: Settings, host: str, *, api_key: str = API_KEY) -> Settings:
    return settings.with_overrides(
        email_backend="sendgrid", sendgrid_api_key=api_key, sendgrid_api_host=host
    )


class Sleeps(list[float]):
    """An injected sleep that records the waits instead of waiting."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def sendgrid(
    settings: Settings, fake: FakeSendGrid, sleeps: Sleeps
) -> Iterator[SendGridEmailTransport]:
    transport = SendGridEmailTransport.from_settings(
        sendgrid_settings(settings, fake.base_url), sleep=sleeps, rng=random.Random(7)
    )
    yield transport
    transport.close()


@pytest.fixture
def sandbox(services: Services) -> SandboxEmailTransport:
    return SandboxEmailTransport(services.settings, services.sessions)


@pytest.fixture(params=["sendgrid", "sandbox"])
def transport(request: pytest.FixtureRequest, services: Services) -> Iterator[EmailTransport]:
    """Every backend, built the way the application builds it: ``email_transport(settings)``."""
    settings = services.settings
    if request.param == "sendgrid":
        settings = sendgrid_settings(settings, request.getfixturevalue("fake").base_url)
    built = email_transport(settings, sessions=services.sessions)
    assert built.name == request.param
    yield built
    built.close()


def recipient(to: str = MEMBER, delivery_id: int = 1, **options: Any) -> EmailRecipient:
    url = f"https://outreach.test/u/token-{delivery_id}"
    options.setdefault("custom_args", {"campaign_id": "7"})
    options.setdefault(
        "headers",
        {
            "List-Unsubscribe": f"<{url}>, <mailto:unsubscribe@northside.example.org>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        },
    )
    options.setdefault("substitutions", {UNSUBSCRIBE_TAG: url})
    return EmailRecipient(to=to, reference=f"delivery:{delivery_id}", **options)


def outbound(*recipients: EmailRecipient, **options: Any) -> OutboundEmail:
    options.setdefault("from_email", SENDER)
    options.setdefault("from_name", "Northside Huddle")
    options.setdefault("subject", SUBJECT)
    options.setdefault("html", HTML)
    options.setdefault("text", TEXT)
    options.setdefault("categories", ["campaign-7", "huddle-northside"])
    return OutboundEmail(recipients=list(recipients or [recipient()]), **options)


def many(n: int) -> list[EmailRecipient]:
    return [recipient(f"member{i}@example.com", delivery_id=1000 + i) for i in range(n)]


def closed_port_url() -> str:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}"


# -- the contract every transport keeps ---------------------------------------------------------


def test_send_returns_the_request_id_and_the_count(transport: EmailTransport) -> None:
    result = transport.send(outbound(recipient(), recipient(OTHER, delivery_id=2)))

    assert isinstance(result, EmailSendResult)
    assert result.message_id
    assert result.accepted == 2


def test_each_send_gets_its_own_id(transport: EmailTransport) -> None:
    ids = {transport.send(outbound()).message_id for _ in range(3)}
    assert len(ids) == 3


def test_a_full_batch_goes_in_one_request(transport: EmailTransport) -> None:
    result = transport.send(outbound(*many(MAX_RECIPIENTS)))
    assert result.accepted == MAX_RECIPIENTS


def test_more_than_a_batch_is_refused_before_any_transport() -> None:
    with pytest.raises(ValueError, match=r"1\.\.1000"):
        outbound(*many(MAX_RECIPIENTS + 1))


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"recipients": [recipient("not-an-address")]}, "valid address"),
        ({"from_email": "nobody"}, "from email"),
        ({"categories": [f"c{i}" for i in range(11)]}, "more than 10 categories"),
        ({"headers": {"Reply-To": "x@example.org"}}, "Reply-To is a reserved header"),
    ],
    ids=["bad-to", "bad-from", "11-categories", "reserved-header"],
)
def test_what_sendgrid_refuses_is_permanent(
    transport: EmailTransport, change: dict[str, Any], reason: str
) -> None:
    fields = {"recipients": [recipient()], **change}
    with pytest.raises(PermanentSendError) as info:
        transport.send(outbound(*fields.pop("recipients"), **fields))
    assert type(info.value) is PermanentSendError
    assert info.value.http_status == 400
    assert reason in info.value.message


def test_logs_mask_addresses(transport: EmailTransport, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="outreach")
    transport.send(outbound(recipient(delivery_id=9)))

    assert "delivery:9" in caplog.text
    assert "m***@example.com" in caplog.text
    assert MEMBER not in caplog.text


# -- SendGrid ---------------------------------------------------------------------------------


def test_sendgrid_request_is_what_the_api_expects(
    sendgrid: SendGridEmailTransport, fake: FakeSendGrid
) -> None:
    test_recipient = EmailRecipient(to=OTHER, reference="test:3")
    result = sendgrid.send(
        outbound(recipient(), test_recipient, headers={"X-Entity-Ref-ID": "campaign-7"})
    )

    (request,) = fake.requests
    assert (request.method, request.path) == ("POST", "/v3/mail/send")
    assert request.header("authorization") == f"Bearer {API_KEY}"
    assert request.header("content-type") == "application/json"
    assert request.json_body() == {
        "personalizations": [
            {
                "to": [{"email": MEMBER}],
                "custom_args": {"campaign_id": "7", "delivery_id": "1"},
                "headers": {
                    "List-Unsubscribe": "<https://outreach.test/u/token-1>, "
                    "<mailto:unsubscribe@northside.example.org>",
                    "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
                },
                "substitutions": {UNSUBSCRIBE_TAG: "https://outreach.test/u/token-1"},
            },
            {"to": [{"email": OTHER}]},
        ],
        "from": {"email": SENDER, "name": "Northside Huddle"},
        "subject": SUBJECT,
        "content": [{"type": "text/plain", "value": TEXT}, {"type": "text/html", "value": HTML}],
        "categories": ["campaign-7", "huddle-northside"],
        "headers": {"X-Entity-Ref-ID": "campaign-7"},
    }
    assert result == EmailSendResult(message_id=fake.sent[0].message_id, accepted=2)
    assert [s.custom_args.get("delivery_id") for s in fake.sent] == ["1", None]


def test_sendgrid_body_leaves_out_what_is_empty() -> None:
    body = mail_body(
        outbound(
            EmailRecipient(to=MEMBER, reference="confirmation:4"),
            from_name=None,
            text="",
            categories=[],
        )
    )
    assert body == {
        "personalizations": [{"to": [{"email": MEMBER}]}],
        "from": {"email": SENDER},
        "subject": SUBJECT,
        "content": [{"type": "text/html", "value": HTML}],
    }


def test_delivery_id_from_the_reference_wins_over_custom_args() -> None:
    forged = EmailRecipient(to=MEMBER, reference="delivery:5", custom_args={"delivery_id": "6"})
    assert custom_args(forged) == {"delivery_id": "5"}
    kept = EmailRecipient(to=MEMBER, reference="test:1", custom_args={"delivery_id": "6"})
    assert custom_args(kept) == {"delivery_id": "6"}


def test_sendgrid_sends_a_thousand_recipients_in_one_request(
    sendgrid: SendGridEmailTransport, fake: FakeSendGrid
) -> None:
    result = sendgrid.send(outbound(*many(MAX_RECIPIENTS)))

    assert len(fake.requests) == 1
    assert len(fake.requests[0].json_body()["personalizations"]) == MAX_RECIPIENTS
    assert result.accepted == fake.sent_count == MAX_RECIPIENTS
    assert {s.custom_args["delivery_id"] for s in fake.sent} == {
        str(1000 + i) for i in range(MAX_RECIPIENTS)
    }


def test_sendgrid_retries_429_with_backoff(
    sendgrid: SendGridEmailTransport, fake: FakeSendGrid, sleeps: Sleeps
) -> None:
    fake.fail_next(2, status=429)

    result = sendgrid.send(outbound())

    assert result.message_id
    assert [r.status for r in fake.requests] == [429, 429, 202]
    assert len(sleeps) == 2
    # FakeSendGrid's X-RateLimit-Reset is at most a second away: the wait covers it, plus jitter
    assert all(0.25 <= s <= 1.0 + RetryPolicy().base_delay for s in sleeps)
    assert fake.sent_count == 1


def test_sendgrid_waits_for_the_rate_limit_reset(
    settings: Settings, fake: FakeSendGrid, sleeps: Sleeps
) -> None:
    transport = SendGridEmailTransport.from_settings(
        sendgrid_settings(settings, fake.base_url),
        sleep=sleeps,
        clock=lambda: time.time() - 3,  # the reset (now + 1 s) is then 4 s away
    )
    fake.fail_next(1, status=429)

    transport.send(outbound())

    assert len(sleeps) == 1
    assert 3.0 <= sleeps[0] <= 4.0 + RetryPolicy().base_delay


def test_sendgrid_leaves_a_distant_reset_to_the_caller(
    settings: Settings, fake: FakeSendGrid, sleeps: Sleeps
) -> None:
    transport = SendGridEmailTransport.from_settings(
        sendgrid_settings(settings, fake.base_url), sleep=sleeps, clock=lambda: time.time() - 60
    )
    fake.fail_next(1, status=429)

    with pytest.raises(TransientSendError) as info:
        transport.send(outbound())

    assert sleeps == []
    assert len(fake.requests) == 1
    assert "resets in" in info.value.message


def test_sendgrid_gives_up_on_429_after_bounded_attempts(
    sendgrid: SendGridEmailTransport, fake: FakeSendGrid, sleeps: Sleeps
) -> None:
    fake.fail_next(100, status=429)

    with pytest.raises(TransientSendError) as info:
        sendgrid.send(outbound())

    assert info.value.http_status == 429
    assert "too many requests" in info.value.message
    assert len(fake.requests) == RetryPolicy().attempts == 4
    assert len(sleeps) == 3
    assert sum(sleeps) <= RetryPolicy().budget
    assert fake.sent == []


def test_sendgrid_400_is_permanent_with_sendgrid_reasons(
    sendgrid: SendGridEmailTransport, fake: FakeSendGrid, sleeps: Sleeps
) -> None:
    with pytest.raises(PermanentSendError) as info:
        sendgrid.send(outbound(from_email="nobody", subject=""))

    assert type(info.value) is PermanentSendError
    assert info.value.http_status == 400
    assert info.value.message == (
        "The from email does not contain a valid address.; The subject is required. You can get "
        "around this requirement if you use a template with a subject defined or if every "
        "personalization has a subject defined."
    )
    assert len(fake.requests) == 1
    assert sleeps == []


def test_sendgrid_error_messages_mask_addresses() -> None:
    body = json.dumps(
        {"errors": [{"message": f"We found the first duplicate instance of [{MEMBER}] here."}]}
    )
    error = error_from_response(400, body.encode())
    assert MEMBER not in str(error)
    assert "[m***@example.com]" in str(error)


def test_sendgrid_error_without_a_json_body_names_the_status() -> None:
    error = error_from_response(502, b"<html>Bad Gateway</html>", "Bad Gateway")
    assert isinstance(error, UncertainSendError)
    assert error.message == "SendGrid answered 502 Bad Gateway"


@pytest.mark.parametrize("status", [500, 503])
def test_sendgrid_never_retries_a_5xx(
    sendgrid: SendGridEmailTransport, fake: FakeSendGrid, sleeps: Sleeps, status: int
) -> None:
    fake.fail_next(1, status=status)

    with pytest.raises(UncertainSendError) as info:
        sendgrid.send(outbound(*many(10)))

    assert info.value.http_status == status
    assert len(fake.requests) == 1
    assert sleeps == []


def test_sendgrid_bad_key_is_an_account_error(
    settings: Settings, fake: FakeSendGrid, sleeps: Sleeps
) -> None:
    wrong = sendgrid_settings(settings, fake.base_url, api_key="SG.wrong")
    transport = SendGridEmailTransport.from_settings(wrong, sleep=sleeps)

    with pytest.raises(AccountError) as info:
        transport.send(outbound())

    assert isinstance(info.value, PermanentSendError)
    assert info.value.http_status == 401
    assert "authorization grant is invalid" in info.value.message
    assert len(fake.requests) == 1
    assert sleeps == []


def test_sendgrid_connection_refused_is_transient_after_retries(
    settings: Settings, sleeps: Sleeps
) -> None:
    transport = SendGridEmailTransport.from_settings(
        sendgrid_settings(settings, closed_port_url()), sleep=sleeps
    )

    with pytest.raises(TransientSendError) as info:
        transport.send(outbound())

    assert "could not send the request" in info.value.message
    assert "ConnectionRefusedError" in info.value.message
    assert len(sleeps) == 3


def test_sendgrid_read_timeout_is_uncertain_and_not_retried(
    settings: Settings, fake: FakeSendGrid, sleeps: Sleeps
) -> None:
    fake.latency = 0.5  # the fake accepts the batch, then answers too late
    transport = SendGridEmailTransport.from_settings(
        sendgrid_settings(settings, fake.base_url), timeout=0.05, sleep=sleeps
    )

    with pytest.raises(UncertainSendError) as info:
        transport.send(outbound())

    assert "timeout" in info.value.message
    assert fake.request_count == 1
    assert fake.sent_count == 1  # why it must not be retried: it went out
    assert sleeps == []


def test_sendgrid_needs_a_key(settings: Settings) -> None:
    with pytest.raises(ConfigError, match="SENDGRID_API_KEY"):
        email_transport(settings.with_overrides(email_backend="sendgrid", sendgrid_api_key=None))


# -- sandbox: the outbox ----------------------------------------------------------------------


def outbox(services: Services) -> list[OutboxMessage]:
    with services.sessions() as session:
        return list(session.scalars(select(OutboxMessage).order_by(OutboxMessage.id)))


def eml_files(settings: Settings) -> list[Path]:
    return sorted((settings.instance_path / "outbox").glob("*/*.eml"))


def parse(path: Path) -> EmailMessage:
    message = message_from_bytes(path.read_bytes(), policy=policy.default)
    assert isinstance(message, EmailMessage)
    return message


def test_sandbox_writes_rfc5322_messages(
    sandbox: SandboxEmailTransport, services: Services
) -> None:
    result = sandbox.send(outbound(recipient(), recipient(OTHER, delivery_id=2)))

    folder = services.settings.instance_path / "outbox" / utcnow().strftime("%Y-%m-%d")
    assert eml_files(services.settings) == [
        folder / f"{result.message_id}.0.eml",
        folder / f"{result.message_id}.1.eml",
    ]
    raw = (folder / f"{result.message_id}.0.eml").read_bytes()
    head = raw.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
    assert all(len(line) <= 78 for line in head)  # RFC 5322 line ends, headers folded
    assert b"List-Unsubscribe: <https://outreach.test/u/token-1>,\r\n <mailto:" in raw
    message = parse(folder / f"{result.message_id}.0.eml")
    assert message["From"] == f"Northside Huddle <{SENDER}>"
    assert message["To"] == MEMBER
    assert message["Subject"] == SUBJECT
    assert message["Date"].datetime.tzinfo is not None
    assert message["Message-ID"] == f"<{result.message_id}.0@northside.example.org>"
    assert message["List-Unsubscribe"] == (
        "<https://outreach.test/u/token-1>, <mailto:unsubscribe@northside.example.org>"
    )
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert message.get_content_type() == "multipart/alternative"
    text, html = message.iter_parts()
    assert text.get_content_type() == "text/plain"
    assert html.get_content_type() == "text/html"
    assert text.get_content().splitlines() == [
        "See you at 10. Unsubscribe: https://outreach.test/u/token-1"
    ]
    assert 'href="https://outreach.test/u/token-1"' in html.get_content()
    other = parse(folder / f"{result.message_id}.1.eml")
    assert other["To"] == OTHER
    other_text = other.get_body(preferencelist=("plain",))
    assert other_text is not None
    assert "token-2" in other_text.get_content()


def test_sandbox_messages_parse_back_with_the_stdlib_defaults(
    sandbox: SandboxEmailTransport, services: Services
) -> None:
    sandbox.send(outbound(recipient()))
    (path,) = eml_files(services.settings)

    legacy = message_from_bytes(path.read_bytes())  # the compat32 defaults
    assert legacy["To"] == MEMBER
    parts = legacy.get_payload()
    assert isinstance(parts, list)
    assert [p.get_content_type() for p in parts if isinstance(p, Message)] == [
        "text/plain",
        "text/html",
    ]


def test_sandbox_writes_the_outbox(sandbox: SandboxEmailTransport, services: Services) -> None:
    result = sandbox.send(
        outbound(
            recipient(),
            EmailRecipient(to=OTHER, reference="test:3"),
            EmailRecipient(to="new@example.org", reference="confirmation:8"),
        )
    )

    campaign, test, confirmation = outbox(services)
    assert (campaign.channel, campaign.provider, campaign.kind) == ("email", "sandbox", "campaign")
    assert campaign.provider_message_id == result.message_id
    assert (campaign.to_address, campaign.from_address) == (MEMBER, SENDER)
    assert campaign.subject == SUBJECT
    assert (
        campaign.body.rstrip("\n") == "See you at 10. Unsubscribe: https://outreach.test/u/token-1"
    )
    assert campaign.delivery_id == 1
    assert (test.kind, test.delivery_id, test.to_address) == ("test", None, OTHER)
    assert test.body.rstrip("\n") == "See you at 10. Unsubscribe: %%unsubscribe_url%%"
    assert (confirmation.kind, confirmation.delivery_id) == ("confirmation", None)
    assert {m.provider_message_id for m in (test, confirmation)} == {result.message_id}


def test_sandbox_substitutes_the_subject_and_html_only_emails(
    sandbox: SandboxEmailTransport, services: Services
) -> None:
    sandbox.send(
        outbound(
            recipient(substitutions={"-name-": "Maria", "-n-": "WRONG"}),
            subject="Hi -name-",
            text="",
            html="<p>Hi -name-, -n-</p>",
        )
    )

    (path,) = eml_files(services.settings)
    message = parse(path)
    assert message["Subject"] == "Hi Maria"
    assert message.get_content_type() == "text/html"
    assert message.get_content().strip() == "<p>Hi Maria, WRONG</p>"
    (row,) = outbox(services)
    assert row.body.strip() == "<p>Hi Maria, WRONG</p>"


def test_sandbox_refusals_store_nothing(sandbox: SandboxEmailTransport, services: Services) -> None:
    with pytest.raises(PermanentSendError):
        sandbox.send(outbound(recipient(), recipient("bad address", delivery_id=2)))
    with pytest.raises(PermanentSendError, match=r"X-Note.*line break"):
        sandbox.send(outbound(recipient(headers={"X-Note": "one\r\nBcc: victim@example.org"})))
    assert outbox(services) == []
    assert eml_files(services.settings) == []


def test_sandbox_leaves_no_files_when_the_outbox_cannot_be_written(
    settings: Settings, tmp_path: Path
) -> None:
    broken = create_engine(f"sqlite:///{tmp_path / 'missing' / 'nowhere' / 'x.db'}")
    transport = SandboxEmailTransport(settings, sessionmaker(bind=broken))

    with pytest.raises(Exception, match="unable to open database file"):
        transport.send(outbound(*many(3)))

    assert eml_files(settings) == []
    broken.dispose()


def test_sandbox_find_sent(sandbox: SandboxEmailTransport) -> None:
    since = utcnow()
    result = sandbox.send(outbound(recipient(delivery_id=41)))

    assert sandbox.find_sent(to=MEMBER, reference="delivery:41", since=since) == result.message_id
    assert sandbox.find_sent(to=MEMBER, reference="delivery:42", since=since) == ""
    assert sandbox.find_sent(to=MEMBER, reference="test:1", since=since) is None


# -- sandbox: simulated events ----------------------------------------------------------------


def test_sandbox_events_look_like_sendgrid_events(
    sandbox: SandboxEmailTransport, services: Services
) -> None:
    result = sandbox.send(outbound(recipient(), EmailRecipient(to=OTHER, reference="test:3")))
    assert result.message_id
    row = outbox(services)[0]

    events = sandbox.simulated_events(result.message_id)

    assert [(e["email"], e["event"]) for e in events] == [
        (MEMBER, "processed"),
        (MEMBER, "delivered"),
        (OTHER, "processed"),
        (OTHER, "delivered"),
    ]
    processed, delivered = events[:2]
    assert processed == {
        "campaign_id": "7",
        "delivery_id": "1",
        "email": MEMBER,
        "smtp-id": f"<{result.message_id}.0@northside.example.org>",
        "sg_message_id": f"{result.message_id}.0.sandbox",
        "category": ["campaign-7", "huddle-northside"],
        "timestamp": int(row.created_at.timestamp()),
        "event": "processed",
        "sg_event_id": processed["sg_event_id"],
    }
    assert 1 <= delivered["timestamp"] - processed["timestamp"] <= 5
    assert delivered["response"].startswith("250")
    assert "delivery_id" not in events[2]
    assert len({e["sg_event_id"] for e in events}) == 4
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{22}", e["sg_event_id"]) for e in events)
    json.dumps(events)  # what the worker posts


def test_sandbox_events_are_deterministic(services: Services) -> None:
    settings = services.settings.with_overrides(sandbox_failure_rate=0.5)
    first = SandboxEmailTransport(settings, services.sessions)
    result = first.send(outbound(*many(40)))
    assert result.message_id

    events = first.simulated_events(result.message_id)
    again = SandboxEmailTransport(settings, services.sessions).simulated_events(result.message_id)

    assert events == again
    outcomes = [e for e in events if e["event"] != "processed"]
    assert len(outcomes) == 40
    bounces = [e for e in outcomes if e["event"] == "bounce"]
    assert 0 < len(bounces) < 40  # both outcomes show up at a 50 % rate
    assert {b["type"] for b in bounces} <= {"bounce", "blocked"}
    assert all(b["reason"].startswith("550 5.") and b["status"] for b in bounces)
    for event in outcomes:
        expected = simulated_outcome(event["sg_message_id"], 0.5)
        assert (event["event"] == "bounce") == (expected is not None)


def test_simulated_outcome_follows_the_failure_rate() -> None:
    ids = [f"abc.{n}.sandbox" for n in range(2000)]
    assert all(simulated_outcome(i, 0.0) is None for i in ids)
    assert all(simulated_outcome(i, 1.0) is not None for i in ids)
    bounced = sum(simulated_outcome(i, 0.05) is not None for i in ids)
    assert 60 <= bounced <= 140


def test_sandbox_events_carry_long_folded_custom_args(
    sandbox: SandboxEmailTransport,
) -> None:
    note = "a custom arg with spaces, long enough to be folded over several header lines " * 3
    categories = ["Spring rally 2026", "huddle northside", "x" * 120]
    result = sandbox.send(
        outbound(recipient(custom_args={"note": note, "ünï": "çödé"}), categories=categories)
    )
    assert result.message_id

    processed, _ = sandbox.simulated_events(result.message_id)

    assert (processed["note"], processed["ünï"]) == (note, "çödé")
    assert processed["category"] == categories


def test_sandbox_events_survive_a_deleted_eml(
    sandbox: SandboxEmailTransport, services: Services
) -> None:
    result = sandbox.send(outbound(recipient(delivery_id=12)))
    assert result.message_id
    for path in eml_files(services.settings):
        path.unlink()

    processed, delivered = sandbox.simulated_events(result.message_id)

    assert processed["delivery_id"] == delivered["delivery_id"] == "12"
    assert "category" not in processed


def test_sandbox_has_no_events_for_an_unknown_id(sandbox: SandboxEmailTransport) -> None:
    assert sandbox.simulated_events("0" * 32) == []


# -- sandbox: signing events like SendGrid ------------------------------------------------------


def test_event_key_is_created_once_with_private_permissions(settings: Settings) -> None:
    key, public = sandbox_event_keys(settings)
    path = settings.instance_path / EVENT_KEY_FILE

    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")  # PKCS#8
    assert isinstance(key.curve, ec.SECP256R1)
    again, public_again = sandbox_event_keys(settings)
    assert public_again == public
    assert again.private_numbers() == key.private_numbers()


def test_event_key_creation_races_to_one_key(settings: Settings) -> None:
    with ThreadPoolExecutor(8) as pool:
        publics = {
            public for _, public in pool.map(lambda _: sandbox_event_keys(settings), range(8))
        }
    assert len(publics) == 1
    assert [p.name for p in settings.instance_path.iterdir()] == [EVENT_KEY_FILE]


def test_event_key_must_be_p256(settings: Settings) -> None:
    settings.instance_path.mkdir(parents=True, exist_ok=True)
    other = ec.generate_private_key(ec.SECP384R1())
    (settings.instance_path / EVENT_KEY_FILE).write_bytes(
        other.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    with pytest.raises(ConfigError, match="P-256"):
        sandbox_event_keys(settings)


def test_signed_events_verify_with_the_sendgrid_sdk(
    sandbox: SandboxEmailTransport, settings: Settings
) -> None:
    result = sandbox.send(outbound(*many(3)))
    assert result.message_id
    payload = json.dumps(sandbox.simulated_events(result.message_id)).encode()
    timestamp = str(int(time.time()))
    key, public = sandbox_event_keys(settings)

    signature = sign_events(key, payload, timestamp)

    verifier = EventWebhook(public)
    assert verifier.verify_signature(payload.decode(), signature, timestamp) is True
    tampered = payload.replace(b'"delivered"', b'"bounce"', 1)
    assert verifier.verify_signature(tampered.decode(), signature, timestamp) is False
    assert verifier.verify_signature(payload.decode(), signature, str(int(timestamp) + 1)) is False
    other_key = ec.generate_private_key(ec.SECP256R1())
    forged = sign_events(other_key, payload, timestamp)
    assert verifier.verify_signature(payload.decode(), forged, timestamp) is False


# -- the factory ------------------------------------------------------------------------------


def test_sandbox_needs_sessions(settings: Settings) -> None:
    with pytest.raises(ConfigError, match="sessions"):
        email_transport(settings)


def test_factory_builds_each_backend(settings: Settings, services: Services) -> None:
    assert isinstance(email_transport(settings, sessions=services.sessions), SandboxEmailTransport)
    built = email_transport(sendgrid_settings(settings, "http://127.0.0.1:9"))
    assert isinstance(built, SendGridEmailTransport)
