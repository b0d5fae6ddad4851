"""SMS transports: one contract for every backend, then what each one adds.

Twilio runs the real SDK against FakeTwilio over loopback (TWILIO_API_BASE_URL); the sandbox runs
against the test database.
"""

from __future__ import annotations

import logging
import random
import re
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select
from twilio.base.exceptions import TwilioRestException
from twilio.request_validator import RequestValidator

from outreach.app.services import Services
from outreach.app.settings import ConfigError, Settings
from outreach.models import OutboxMessage
from outreach.providers import (
    AccountError,
    InvalidRecipient,
    OutboundSms,
    PermanentSendError,
    RecipientOptedOut,
    SendResult,
    SmsTransport,
    TransientSendError,
    UncertainSendError,
    sms_transport,
)
from outreach.providers.sandbox.sms import (
    Magic,
    SandboxSmsTransport,
    sign_status_callback,
    simulated_outcome,
)
from outreach.providers.twilio.client import RetryPolicy, TwilioSmsTransport, error_from_exception
from tests.fakes import FakeTwilio

ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
SERVICE_SID = "MG" + "fedcba9876543210" * 2
SENDER = "+16175550001"
MEMBER = "+16175550123"
OPTED_OUT = "+16175550101"  # sandbox magic numbers; FakeTwilio is told to refuse them alike
INVALID = "+16175550102"
TRANSIENT_ONCE = "+16175550103"
UNCERTAIN = "+16175550104"
UNREACHABLE = "+16175550105"
ALWAYS_DELIVERED = "+16175550100"
CALLBACK = "https://outreach.test/webhooks/twilio/status"
SID = re.compile(r"^SM[0-9a-f]{32}$")


# -- fixtures ---------------------------------------------------------------------------------


@pytest.fixture
def fake(settings: Settings) -> Iterator[FakeTwilio]:
    assert settings.twilio_auth_token
    with FakeTwilio(ACCOUNT_SID, settings.twilio_auth_token) as server:
        server.reject_to.update({OPTED_OUT: 21610, INVALID: 21211})
        yield server


def twilio_settings(settings: Settings, base_url: str) -> Settings:
    return settings.with_overrides(
        sms_backend="twilio", twilio_account_sid=ACCOUNT_SID, twilio_api_base_url=base_url
    )


class Sleeps(list[float]):
    """An injected sleep that records the waits instead of waiting."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def twilio(settings: Settings, fake: FakeTwilio, sleeps: Sleeps) -> Iterator[TwilioSmsTransport]:
    transport = TwilioSmsTransport.from_settings(
        twilio_settings(settings, fake.base_url), sleep=sleeps, rng=random.Random(7)
    )
    yield transport
    transport.close()


@pytest.fixture(params=["twilio", "sandbox"])
def transport(request: pytest.FixtureRequest, services: Services) -> Iterator[SmsTransport]:
    """Every backend, built the way the application builds it: ``sms_transport(settings)``."""
    settings = services.settings
    if request.param == "twilio":
        fake = request.getfixturevalue("fake")
        settings = twilio_settings(settings, fake.base_url)
    built = sms_transport(settings, sessions=services.sessions)
    assert built.name == request.param
    yield built
    built.close()


def sms(
    to: str = MEMBER,
    body: str = "Rally Saturday at 10. Reply STOP to opt out.",
    *,
    from_number: str | None = SENDER,
    **options: Any,
) -> OutboundSms:
    return OutboundSms(to=to, body=body, from_number=from_number, **options)


# -- the contract every transport keeps -------------------------------------------------------


def test_send_returns_a_provider_sid(transport: SmsTransport) -> None:
    result = transport.send(sms(reference="delivery:1", status_callback=CALLBACK))

    assert isinstance(result, SendResult)
    assert SID.match(result.provider_message_id)
    assert result.status == "queued"
    assert result.segments == 1
    assert transport.fetch_status(result.provider_message_id) is not None


def test_each_send_gets_its_own_sid(transport: SmsTransport) -> None:
    sids = {transport.send(sms()).provider_message_id for _ in range(3)}
    assert len(sids) == 3


def test_segments_are_counted_like_twilio(transport: SmsTransport) -> None:
    assert transport.send(sms(body="x" * 161)).segments == 2
    assert transport.send(sms(body="Don’t miss it")).segments == 1  # UCS-2, still short
    assert transport.send(sms(body="’" * 71)).segments == 2


def test_unknown_sid_has_no_status(transport: SmsTransport) -> None:
    assert transport.fetch_status("SM" + "0" * 32) is None


def test_opted_out_recipient_is_refused_for_good(transport: SmsTransport) -> None:
    with pytest.raises(RecipientOptedOut) as info:
        transport.send(sms(to=OPTED_OUT))
    assert isinstance(info.value, PermanentSendError)
    assert (info.value.code, info.value.http_status) == ("21610", 400)


def test_invalid_recipient_is_refused_for_good(transport: SmsTransport) -> None:
    with pytest.raises(InvalidRecipient) as info:
        transport.send(sms(to=INVALID))
    assert info.value.code == "21211"


def test_logs_mask_phone_numbers(transport: SmsTransport, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    transport.send(sms(reference="delivery:9"))
    with pytest.raises(RecipientOptedOut):
        transport.send(sms(to=OPTED_OUT))

    assert "delivery:9" in caplog.text
    assert "+1617***23" in caplog.text
    assert MEMBER not in caplog.text
    assert OPTED_OUT not in caplog.text


# -- Twilio -------------------------------------------------------------------------------------


def test_twilio_request_is_what_the_api_expects(
    twilio: TwilioSmsTransport, fake: FakeTwilio, settings: Settings
) -> None:
    result = twilio.send(
        sms(status_callback=CALLBACK, validity_period=3600, reference="delivery:5")
    )

    (request,) = fake.requests
    assert request.method == "POST"
    assert request.path == f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"
    assert request.auth == (ACCOUNT_SID, settings.twilio_auth_token)
    assert request.form == {
        "To": [MEMBER],
        "From": [SENDER],
        "Body": ["Rally Saturday at 10. Reply STOP to opt out."],
        "StatusCallback": [CALLBACK],
        "ValidityPeriod": ["3600"],
    }
    assert fake.message(result.provider_message_id)["to"] == MEMBER


def test_twilio_sends_through_a_messaging_service(
    twilio: TwilioSmsTransport, fake: FakeTwilio
) -> None:
    result = twilio.send(OutboundSms(to=MEMBER, body="hi", messaging_service_sid=SERVICE_SID))

    assert fake.requests[-1].form == {
        "To": [MEMBER],
        "MessagingServiceSid": [SERVICE_SID],
        "Body": ["hi"],
    }
    assert result.status == "accepted"  # the service picks the sender later


def test_twilio_retries_429_with_backoff(
    twilio: TwilioSmsTransport, fake: FakeTwilio, sleeps: Sleeps
) -> None:
    fake.fail_next(2, status=429, code=20429)

    result = twilio.send(sms())

    assert SID.match(result.provider_message_id)
    assert [r.status for r in fake.requests] == [429, 429, 201]
    assert len(sleeps) == 2
    assert 0.25 <= sleeps[0] <= 0.5
    assert 0.5 <= sleeps[1] <= 1.0


def test_twilio_gives_up_on_429_after_bounded_attempts(
    twilio: TwilioSmsTransport, fake: FakeTwilio, sleeps: Sleeps
) -> None:
    fake.fail_next(100, status=429, code=20429)

    with pytest.raises(TransientSendError) as info:
        twilio.send(sms())

    assert (info.value.code, info.value.http_status) == ("20429", 429)
    assert len(fake.requests) == RetryPolicy().attempts == 4
    assert len(sleeps) == 3
    assert sum(sleeps) <= RetryPolicy().budget
    assert fake.created_count == 0


@pytest.mark.parametrize("created", [False, True], ids=["lost", "queued-anyway"])
def test_twilio_never_retries_a_5xx(
    twilio: TwilioSmsTransport, fake: FakeTwilio, sleeps: Sleeps, created: bool
) -> None:
    fake.fail_next(1, status=500, code=20500, created=created)

    with pytest.raises(UncertainSendError) as info:
        twilio.send(sms())

    assert (info.value.code, info.value.http_status) == ("20500", 500)
    assert len(fake.requests) == 1
    assert sleeps == []
    assert fake.created_count == int(created)  # why it must not be retried: it may be queued


def test_twilio_opted_out_is_not_retried(twilio: TwilioSmsTransport, fake: FakeTwilio) -> None:
    with pytest.raises(RecipientOptedOut):
        twilio.send(sms(to=OPTED_OUT))
    assert len(fake.requests) == 1


@pytest.mark.parametrize("code", [21211, 21614, 21635])
def test_twilio_not_sms_capable_is_invalid_recipient(
    twilio: TwilioSmsTransport, fake: FakeTwilio, code: int
) -> None:
    fake.reject_to[MEMBER] = code
    with pytest.raises(InvalidRecipient) as info:
        twilio.send(sms())
    assert info.value.code == str(code)


def test_twilio_other_4xx_is_permanent_with_its_code(
    twilio: TwilioSmsTransport, fake: FakeTwilio
) -> None:
    with pytest.raises(PermanentSendError) as info:
        twilio.send(sms(body="x" * 1601))
    assert type(info.value) is PermanentSendError
    assert (info.value.code, info.value.http_status) == ("21617", 400)
    assert len(fake.requests) == 1


def test_twilio_bad_credentials_are_an_account_error(
    settings: Settings, fake: FakeTwilio, sleeps: Sleeps
) -> None:
    wrong = twilio_settings(settings, fake.base_url).with_overrides(twilio_auth_token="wrong")
    transport = TwilioSmsTransport.from_settings(wrong, sleep=sleeps)
    with pytest.raises(AccountError) as info:
        transport.send(sms())
    transport.close()
    assert (info.value.code, info.value.http_status) == ("20003", 401)
    assert len(fake.requests) == 1


def test_twilio_connection_refused_is_transient_after_retries(
    settings: Settings, sleeps: Sleeps
) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}"
    transport = TwilioSmsTransport.from_settings(twilio_settings(settings, closed), sleep=sleeps)

    with pytest.raises(TransientSendError) as info:
        transport.send(sms())
    transport.close()

    assert "could not connect" in info.value.message
    assert len(sleeps) == 3


def test_twilio_read_timeout_is_uncertain_and_not_retried(
    settings: Settings, fake: FakeTwilio, sleeps: Sleeps
) -> None:
    fake.latency = 0.5
    transport = TwilioSmsTransport.from_settings(
        twilio_settings(settings, fake.base_url), read_timeout=0.05, sleep=sleeps
    )

    with pytest.raises(UncertainSendError) as info:
        transport.send(sms())
    transport.close()

    assert "timeout" in info.value.message
    assert fake.request_count == 1
    assert sleeps == []


def test_twilio_fetch_status(twilio: TwilioSmsTransport, fake: FakeTwilio) -> None:
    sid = twilio.send(sms()).provider_message_id
    assert twilio.fetch_status(sid) == "queued"

    fake.set_status(sid, "undelivered", error_code=30003)

    assert twilio.fetch_status(sid) == "undelivered"
    assert fake.requests[-1].path == f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/{sid}.json"


def test_twilio_fetch_retries_what_a_create_must_not(
    settings: Settings, fake: FakeTwilio, twilio: TwilioSmsTransport, sleeps: Sleeps
) -> None:
    sid = twilio.send(sms()).provider_message_id  # sent with the usual timeout: no flake
    transport = TwilioSmsTransport.from_settings(
        twilio_settings(settings, fake.base_url), read_timeout=0.05, sleep=sleeps
    )
    fake.latency = 0.5  # every answer now comes after the read timeout

    with pytest.raises(TransientSendError):  # a GET changes nothing: safe to try again later
        transport.fetch_status(sid)
    transport.close()

    assert len(sleeps) == 3


def test_twilio_error_messages_mask_numbers() -> None:
    exc = TwilioRestException(
        400, "https://api.twilio.com/...", msg=f"The 'To' number {MEMBER} is not valid", code=21211
    )
    error = error_from_exception(exc)
    assert isinstance(error, InvalidRecipient)
    assert MEMBER not in str(error)
    assert "+1617***23" in str(error)


# -- sandbox ------------------------------------------------------------------------------------


@pytest.fixture
def sandbox(services: Services) -> SandboxSmsTransport:
    return SandboxSmsTransport(services.settings, services.sessions)


def outbox(services: Services) -> list[OutboxMessage]:
    with services.sessions() as session:
        return list(session.scalars(select(OutboxMessage).order_by(OutboxMessage.id)))


def test_sandbox_writes_the_outbox(sandbox: SandboxSmsTransport, services: Services) -> None:
    first = sandbox.send(sms(reference="delivery:123"))
    sandbox.send(
        OutboundSms(to=MEMBER, body="Yes", messaging_service_sid=SERVICE_SID, reference="reply:7")
    )

    campaign, reply = outbox(services)
    assert (campaign.channel, campaign.provider, campaign.kind) == ("sms", "sandbox", "campaign")
    assert campaign.provider_message_id == first.provider_message_id
    assert (campaign.to_address, campaign.from_address) == (MEMBER, SENDER)
    assert campaign.body == "Rally Saturday at 10. Reply STOP to opt out."
    assert campaign.delivery_id == 123
    assert (reply.kind, reply.delivery_id, reply.from_address) == ("reply", None, SERVICE_SID)


def test_sandbox_refusals_store_nothing(sandbox: SandboxSmsTransport, services: Services) -> None:
    with pytest.raises(RecipientOptedOut):
        sandbox.send(sms(to=OPTED_OUT))
    with pytest.raises(InvalidRecipient):
        sandbox.send(sms(to=INVALID))
    assert outbox(services) == []


def test_sandbox_transient_number_fails_once(
    sandbox: SandboxSmsTransport, services: Services
) -> None:
    with pytest.raises(TransientSendError) as info:
        sandbox.send(sms(to=TRANSIENT_ONCE))
    assert info.value.code == "20429"

    result = sandbox.send(sms(to=TRANSIENT_ONCE))

    assert [row.provider_message_id for row in outbox(services)] == [result.provider_message_id]


def test_sandbox_uncertain_number_is_stored_but_unconfirmed(
    sandbox: SandboxSmsTransport, services: Services
) -> None:
    with pytest.raises(UncertainSendError):
        sandbox.send(sms(to=UNCERTAIN))
    (row,) = outbox(services)
    assert row.to_address == UNCERTAIN  # "sent" after all: what reconciliation must find


def test_magic_numbers_match_any_area_code(sandbox: SandboxSmsTransport) -> None:
    assert sandbox.magic("+12125550101") is Magic.OPTED_OUT
    assert sandbox.magic("+16175550199") is None
    assert sandbox.magic("+4420755501010") is None


def test_magic_numbers_are_configurable(services: Services) -> None:
    custom = SandboxSmsTransport(
        services.settings, services.sessions, magic_numbers={MEMBER: Magic.INVALID}
    )
    with pytest.raises(InvalidRecipient):
        custom.send(sms())
    custom.send(sms(to=OPTED_OUT))  # no longer magic


def test_simulated_receipts_follow_the_failure_rate(services: Services) -> None:
    never = SandboxSmsTransport(services.settings, services.sessions)
    always = SandboxSmsTransport(
        services.settings.with_overrides(sandbox_failure_rate=1.0), services.sessions
    )
    sid = never.send(sms()).provider_message_id

    assert never.simulated_receipts(sid) == [("sent", None), ("delivered", None)]
    sent, final = always.simulated_receipts(sid)
    assert sent == ("sent", None)
    assert final in {("undelivered", "30003"), ("undelivered", "30005")}
    assert always.simulated_receipts(sid) == [sent, final]  # deterministic
    assert final == simulated_outcome(sid, 1.0)
    assert always.fetch_status(sid) == "undelivered"
    assert never.simulated_receipts("SM" + "0" * 32) == []


def test_simulated_outcome_is_a_function_of_the_sid() -> None:
    rng = random.Random(1)
    sids = ["SM" + rng.randbytes(16).hex() for _ in range(4000)]
    outcomes = [simulated_outcome(sid, 0.05) for sid in sids]

    assert outcomes == [simulated_outcome(sid, 0.05) for sid in sids]
    failed = [code for status, code in outcomes if status == "undelivered"]
    assert 0.03 < len(failed) / len(sids) < 0.07
    assert set(failed) == {"30003", "30005"}
    assert {simulated_outcome(sid, 0.0) for sid in sids} == {("delivered", None)}


def test_magic_numbers_force_the_outcome(services: Services) -> None:
    always = SandboxSmsTransport(
        services.settings.with_overrides(sandbox_failure_rate=1.0), services.sessions
    )
    never = SandboxSmsTransport(services.settings, services.sessions)

    delivered = always.send(sms(to=ALWAYS_DELIVERED)).provider_message_id
    unreachable = never.send(sms(to=UNREACHABLE)).provider_message_id

    assert always.simulated_receipts(delivered)[-1] == ("delivered", None)
    assert never.simulated_receipts(unreachable)[-1] == ("undelivered", "30003")


def test_status_callback_signature_verifies(settings: Settings) -> None:
    params = {
        "MessageSid": "SM" + "1" * 32,
        "MessageStatus": "undelivered",
        "ErrorCode": "30003",
        "To": MEMBER,
    }
    signature = sign_status_callback(settings, CALLBACK, params)

    validator = RequestValidator(settings.webhook_auth_token)
    assert validator.validate(CALLBACK, params, signature)
    assert not validator.validate(CALLBACK, {**params, "MessageStatus": "delivered"}, signature)


# -- the factory and the message ----------------------------------------------------------------


def test_factory_needs_what_each_backend_needs(settings: Settings) -> None:
    with pytest.raises(ConfigError, match="sessions"):
        sms_transport(settings)
    with pytest.raises(ConfigError, match="TWILIO_ACCOUNT_SID"):
        sms_transport(settings.with_overrides(sms_backend="twilio"))


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"from_number": None}, "from_number or messaging_service_sid"),
        ({"validity_period": 0}, "validity_period"),
        ({"validity_period": 36001}, "validity_period"),
    ],
)
def test_outbound_sms_refuses_what_twilio_would(options: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        sms(**options)
