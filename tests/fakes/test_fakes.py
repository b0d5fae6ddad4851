"""The fakes answer the real twilio and sendgrid SDKs the way the real APIs do."""

from __future__ import annotations

import base64
import json
import re
import threading
import time
from collections.abc import Iterator
from datetime import datetime

import pytest
from python_http_client.exceptions import (
    BadRequestsError,
    TooManyRequestsError,
    UnauthorizedError,
)
from sendgrid import SendGridAPIClient
from sendgrid.helpers.mail import (
    Category,
    CustomArg,
    Header,
    Mail,
    Personalization,
    To,
)
from twilio.base.exceptions import TwilioRestException
from twilio.rest import Client

from tests.fakes import FakeSendGrid, FakeTwilio, LoopbackTwilioHttpClient
from tests.fakes.twilio_server import count_segments

ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
AUTH_TOKEN = "secret-token"
SERVICE_SID = "MG" + "fedcba9876543210" * 2
SENDER = "+15005550001"
MEMBER = "+15005550006"


@pytest.fixture
def twilio_fake() -> Iterator[FakeTwilio]:
    with FakeTwilio(ACCOUNT_SID, AUTH_TOKEN) as fake:
        yield fake


@pytest.fixture
def twilio(twilio_fake: FakeTwilio) -> Client:
    return twilio_fake.client(timeout=5.0)


@pytest.fixture
def sendgrid_fake() -> Iterator[FakeSendGrid]:
    with FakeSendGrid("SG.test-key") as fake:
        yield fake


@pytest.fixture
def sendgrid(sendgrid_fake: FakeSendGrid) -> SendGridAPIClient:
    return sendgrid_fake.client(timeout=5.0)


# -- lifecycle -------------------------------------------------------------------------------


def test_fakes_start_and_stop_fast() -> None:
    timings = []
    for _ in range(5):
        began = time.perf_counter()
        with FakeTwilio(ACCOUNT_SID, AUTH_TOKEN) as fake:
            started = time.perf_counter()
            assert re.fullmatch(r"http://127\.0\.0\.1:\d+", fake.base_url)
        timings.append((started - began, time.perf_counter() - started))
    assert min(start for start, _ in timings) < 0.05
    assert min(stop for _, stop in timings) < 0.05


def test_each_fake_gets_its_own_port() -> None:
    with FakeTwilio(ACCOUNT_SID, AUTH_TOKEN) as one, FakeSendGrid() as two:
        assert one.port != two.port


# -- Twilio ----------------------------------------------------------------------------------


def test_create_message_returns_the_resource_and_records_the_exact_form(
    twilio_fake: FakeTwilio, twilio: Client
) -> None:
    message = twilio.messages.create(
        to=MEMBER, from_=SENDER, body="Rally at 6pm!", status_callback="https://example.org/cb"
    )

    assert re.fullmatch(r"SM[0-9a-f]{32}", message.sid)
    assert message.status == "queued"
    assert (message.to, message.from_, message.body) == (MEMBER, SENDER, "Rally at 6pm!")
    assert message.account_sid == ACCOUNT_SID
    assert message.num_segments == "1"
    assert message.api_version == "2010-04-01"
    assert message.error_code is None
    assert message.price is None
    assert isinstance(message.date_created, datetime)
    assert message.uri == f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/{message.sid}.json"

    [request] = twilio_fake.requests
    assert request.method == "POST"
    assert request.path == f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"
    assert request.form == {
        "To": [MEMBER],
        "From": [SENDER],
        "Body": ["Rally at 6pm!"],
        "StatusCallback": ["https://example.org/cb"],
    }
    assert request.auth == (ACCOUNT_SID, AUTH_TOKEN)
    expected = base64.b64encode(f"{ACCOUNT_SID}:{AUTH_TOKEN}".encode()).decode()
    assert request.header("Authorization") == f"Basic {expected}"
    assert request.status == 201
    assert [m["sid"] for m in twilio_fake.messages] == [message.sid]


def test_fetch_returns_a_created_message_and_404_otherwise(
    twilio_fake: FakeTwilio, twilio: Client
) -> None:
    created = twilio.messages.create(to=MEMBER, from_=SENDER, body="hi")
    twilio_fake.set_status(created.sid, "undelivered", error_code=30003)

    fetched = twilio.messages(created.sid).fetch()
    assert (fetched.sid, fetched.status, fetched.error_code) == (created.sid, "undelivered", 30003)

    with pytest.raises(TwilioRestException) as caught:
        twilio.messages("SM" + "0" * 32).fetch()
    assert (caught.value.status, caught.value.code) == (404, 20404)


def test_wrong_auth_token_is_401_authenticate(twilio_fake: FakeTwilio) -> None:
    intruder = Client(
        ACCOUNT_SID, "wrong", http_client=LoopbackTwilioHttpClient(twilio_fake.base_url)
    )
    with pytest.raises(TwilioRestException) as caught:
        intruder.messages.create(to=MEMBER, from_=SENDER, body="hi")
    assert (caught.value.status, caught.value.code) == (401, 20003)
    assert "Authenticate" in caught.value.msg
    assert twilio_fake.messages == []


@pytest.mark.parametrize("code", [21610, 21211, 21614])
def test_reject_to_answers_400_with_the_twilio_code(
    twilio_fake: FakeTwilio, twilio: Client, code: int
) -> None:
    twilio_fake.reject_to[MEMBER] = code
    with pytest.raises(TwilioRestException) as caught:
        twilio.messages.create(to=MEMBER, from_=SENDER, body="hi")
    assert (caught.value.status, caught.value.code) == (400, code)
    assert twilio_fake.messages == []
    # Other recipients are unaffected.
    assert twilio.messages.create(to="+15005550009", from_=SENDER, body="hi").status == "queued"


def test_fail_next_429_then_recovers(twilio_fake: FakeTwilio, twilio: Client) -> None:
    twilio_fake.fail_next(2, status=429, code=20429)
    for _ in range(2):
        with pytest.raises(TwilioRestException) as caught:
            twilio.messages.create(to=MEMBER, from_=SENDER, body="hi")
        assert (caught.value.status, caught.value.code) == (429, 20429)
        assert "Too Many Requests" in caught.value.msg
    assert twilio_fake.messages == []
    assert twilio.messages.create(to=MEMBER, from_=SENDER, body="hi").status == "queued"


def test_fail_next_created_stores_the_message_despite_the_error(
    twilio_fake: FakeTwilio, twilio: Client
) -> None:
    twilio_fake.fail_next(1, status=500, code=20500, created=True)
    with pytest.raises(TwilioRestException) as caught:
        twilio.messages.create(to=MEMBER, from_=SENDER, body="hi")
    assert caught.value.status == 500
    [found] = twilio.messages.list(to=MEMBER)  # what reconciliation would look for
    assert found.body == "hi"


def test_latency_is_honored_and_can_change_while_running(
    twilio_fake: FakeTwilio, twilio: Client
) -> None:
    twilio_fake.latency = 0.2
    began = time.perf_counter()
    twilio.messages.create(to=MEMBER, from_=SENDER, body="hi")
    assert time.perf_counter() - began >= 0.2
    twilio_fake.latency = 0.0
    began = time.perf_counter()
    twilio.messages.create(to=MEMBER, from_=SENDER, body="hi")
    assert time.perf_counter() - began < 0.2


def test_messaging_service_sid_without_from(twilio_fake: FakeTwilio, twilio: Client) -> None:
    message = twilio.messages.create(to=MEMBER, messaging_service_sid=SERVICE_SID, body="hi")

    assert message.messaging_service_sid == SERVICE_SID
    assert message.from_ is None
    assert message.status == "accepted"  # the service picks the sender later
    assert twilio_fake.requests[-1].form == {
        "To": [MEMBER],
        "MessagingServiceSid": [SERVICE_SID],
        "Body": ["hi"],
    }


@pytest.mark.parametrize(
    ("kwargs", "code"),
    [
        ({"to": "", "from_": SENDER, "body": "hi"}, 21604),
        ({"to": MEMBER, "body": "hi"}, 21603),
        ({"to": MEMBER, "from_": SENDER}, 21602),
        ({"to": MEMBER, "from_": SENDER, "body": "x" * 1601}, 21617),
        ({"to": "555-1234", "from_": SENDER, "body": "hi"}, 21211),
        ({"to": MEMBER, "messaging_service_sid": "MG123", "body": "hi"}, 21701),
    ],
)
def test_invalid_create_is_400_with_the_twilio_code(
    twilio: Client, kwargs: dict[str, str], code: int
) -> None:
    with pytest.raises(TwilioRestException) as caught:
        twilio.messages.create(**kwargs)
    assert (caught.value.status, caught.value.code) == (400, code)


def test_media_only_message_is_an_mms(twilio: Client) -> None:
    message = twilio.messages.create(
        to=MEMBER, from_=SENDER, media_url=["https://example.org/a.png"]
    )
    assert message.sid.startswith("MM")
    assert message.num_media == "1"


def test_list_filters_and_pages(twilio: Client) -> None:
    sids = [twilio.messages.create(to=MEMBER, from_=SENDER, body=str(i)).sid for i in range(5)]
    twilio.messages.create(to="+15005550009", from_=SENDER, body="other")

    listed = twilio.messages.list(to=MEMBER, page_size=2)

    assert [m.sid for m in listed] == sids[::-1]  # newest first, across three pages


def test_sdk_edge_and_region_still_reach_the_fake(twilio_fake: FakeTwilio) -> None:
    http_client = LoopbackTwilioHttpClient(twilio_fake.base_url, timeout=5.0)
    client = Client(ACCOUNT_SID, AUTH_TOKEN, edge="sydney", region="au1", http_client=http_client)
    assert client.messages.create(to=MEMBER, from_=SENDER, body="hi").status == "queued"


def test_api_base_url_override_also_works(twilio_fake: FakeTwilio) -> None:
    from twilio.http.http_client import TwilioHttpClient

    client = Client(ACCOUNT_SID, AUTH_TOKEN, http_client=TwilioHttpClient(timeout=5.0))
    client.api.base_url = twilio_fake.base_url
    assert client.messages.create(to=MEMBER, from_=SENDER, body="hi").status == "queued"


def test_concurrent_clients_get_distinct_messages(twilio_fake: FakeTwilio) -> None:
    def send(results: list[str]) -> None:
        client = twilio_fake.client(timeout=5.0)
        results.extend(
            client.messages.create(to=MEMBER, from_=SENDER, body="hi").sid for _ in range(25)
        )

    results: list[str] = []
    threads = [threading.Thread(target=send, args=(results,)) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(results)) == 100
    assert twilio_fake.request_count == 100
    assert len(twilio_fake.messages) == 100


def test_reset_forgets_requests_and_messages(twilio_fake: FakeTwilio, twilio: Client) -> None:
    twilio.messages.create(to=MEMBER, from_=SENDER, body="hi")
    twilio_fake.fail_next(1)
    twilio_fake.reset()
    assert (twilio_fake.requests, twilio_fake.messages) == ([], [])
    assert twilio.messages.create(to=MEMBER, from_=SENDER, body="hi").status == "queued"


@pytest.mark.parametrize(
    ("body", "segments"),
    [
        ("", 1),
        ("a" * 160, 1),
        ("a" * 161, 2),
        ("a" * 153 * 3, 3),
        ("{" * 80, 1),  # extension chars count 2
        ("{" * 81, 2),
        ("ç" * 70, 1),  # not GSM-7: UCS-2
        ("ç" * 71, 2),
        ("👍" * 35, 1),  # an emoji is two UTF-16 units
        ("👍" * 36, 2),
    ],
)
def test_count_segments(body: str, segments: int) -> None:
    assert count_segments(body) == segments


# -- SendGrid --------------------------------------------------------------------------------


def _mail_with_two_personalizations() -> Mail:
    mail = Mail(
        from_email="huddle@example.org",
        subject="Rally on Saturday",
        plain_text_content="See you there.",
        html_content="<p>See you there.</p>",
    )
    for email, member_id in (("ana@example.com", "m-1"), ("bo@example.com", "m-2")):
        personalization = Personalization()
        personalization.add_to(To(email))
        personalization.add_custom_arg(CustomArg("member_id", member_id))
        mail.add_personalization(personalization)
    mail.add_custom_arg(CustomArg("campaign_id", "c-42"))
    mail.add_header(Header("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"))
    mail.add_category(Category("campaign"))
    return mail


def test_send_mail_with_two_personalizations(
    sendgrid_fake: FakeSendGrid, sendgrid: SendGridAPIClient
) -> None:
    response = sendgrid.send(_mail_with_two_personalizations())

    assert response.status_code == 202
    assert response.body == b""
    message_id = response.headers["X-Message-Id"]
    assert message_id
    by_recipient = {tuple(sent.to): sent for sent in sendgrid_fake.sent}
    assert set(by_recipient) == {("ana@example.com",), ("bo@example.com",)}
    ana = by_recipient[("ana@example.com",)]
    assert ana.custom_args == {"campaign_id": "c-42", "member_id": "m-1"}
    assert by_recipient[("bo@example.com",)].custom_args["member_id"] == "m-2"
    assert ana.subject == "Rally on Saturday"
    assert ana.headers == {"List-Unsubscribe-Post": "List-Unsubscribe=One-Click"}
    assert ana.categories == ["campaign"]
    assert ana.from_email == "huddle@example.org"
    assert ana.message_id == message_id
    [request] = sendgrid_fake.requests
    assert request.header("authorization") == "Bearer SG.test-key"
    assert request.json_body()["from"] == {"email": "huddle@example.org"}


def test_bad_key_is_401(sendgrid_fake: FakeSendGrid) -> None:
    intruder = SendGridAPIClient("SG.wrong", host=sendgrid_fake.base_url)
    intruder.client.timeout = 5.0
    with pytest.raises(UnauthorizedError) as caught:
        intruder.send(_mail_with_two_personalizations())
    assert caught.value.status_code == 401
    [error] = json.loads(caught.value.body)["errors"]
    assert set(error) == {"message", "field", "help"}
    assert sendgrid_fake.sent == []


def test_too_many_personalizations_is_400_with_errors(
    sendgrid_fake: FakeSendGrid, sendgrid: SendGridAPIClient
) -> None:
    mail = Mail(from_email="huddle@example.org", subject="Hi", plain_text_content="Hi")
    for i in range(1001):
        personalization = Personalization()
        personalization.add_to(To(f"member{i}@example.com"))
        mail.add_personalization(personalization, index=i)

    with pytest.raises(BadRequestsError) as caught:
        sendgrid.send(mail)

    assert caught.value.status_code == 400
    errors = json.loads(caught.value.body)["errors"]
    assert [e["field"] for e in errors] == ["personalizations"]
    assert sendgrid_fake.sent == []


def test_missing_subject_content_and_from_are_all_reported(sendgrid: SendGridAPIClient) -> None:
    body = {"personalizations": [{"to": [{"email": "ana@example.com"}]}]}
    with pytest.raises(BadRequestsError) as caught:
        sendgrid.send(body)
    fields = {e["field"] for e in json.loads(caught.value.body)["errors"]}
    assert fields == {"from.email", "subject", "content"}


def test_duplicate_recipient_and_oversized_custom_args_are_400(
    sendgrid: SendGridAPIClient,
) -> None:
    body = {
        "from": {"email": "huddle@example.org"},
        "subject": "Hi",
        "content": [{"type": "text/plain", "value": "Hi"}],
        "personalizations": [
            {
                "to": [{"email": "ana@example.com"}],
                "cc": [{"email": "ANA@example.com"}],
                "custom_args": {"blob": "x" * 10_001},
            }
        ],
    }
    with pytest.raises(BadRequestsError) as caught:
        sendgrid.send(body)
    fields = {e["field"] for e in json.loads(caught.value.body)["errors"]}
    assert fields == {"personalizations.0.cc", "personalizations.0.custom_args"}


def test_template_id_replaces_subject_and_content(
    sendgrid_fake: FakeSendGrid, sendgrid: SendGridAPIClient
) -> None:
    body = {
        "from": {"email": "huddle@example.org"},
        "template_id": "d-123",
        "personalizations": [
            {"to": [{"email": "ana@example.com"}], "dynamic_template_data": {"name": "Ana"}}
        ],
    }
    assert sendgrid.send(body).status_code == 202
    [sent] = sendgrid_fake.sent
    assert (sent.template_id, sent.dynamic_template_data) == ("d-123", {"name": "Ana"})


def test_fail_next_429_carries_rate_limit_headers(
    sendgrid_fake: FakeSendGrid, sendgrid: SendGridAPIClient
) -> None:
    sendgrid_fake.fail_next(1, status=429)
    with pytest.raises(TooManyRequestsError) as caught:
        sendgrid.send(_mail_with_two_personalizations())
    assert caught.value.status_code == 429
    headers = caught.value.headers
    assert headers["X-RateLimit-Remaining"] == "0"
    assert int(headers["X-RateLimit-Reset"]) >= int(time.time())
    assert int(headers["X-RateLimit-Limit"]) > 0
    assert sendgrid_fake.sent == []
    assert sendgrid.send(_mail_with_two_personalizations()).status_code == 202


def test_sandbox_mode_validates_but_sends_nothing(
    sendgrid_fake: FakeSendGrid, sendgrid: SendGridAPIClient
) -> None:
    body = _mail_with_two_personalizations().get()
    body["mail_settings"] = {"sandbox_mode": {"enable": True}}
    assert sendgrid.send(body).status_code == 200
    assert sendgrid_fake.sent == []


def test_sendgrid_latency_is_honored(
    sendgrid_fake: FakeSendGrid, sendgrid: SendGridAPIClient
) -> None:
    sendgrid_fake.latency = 0.2
    began = time.perf_counter()
    sendgrid.send(_mail_with_two_personalizations())
    assert time.perf_counter() - began >= 0.2
