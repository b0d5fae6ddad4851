"""The Twilio endpoints' HTTP contract (webhooks.twilio): what Twilio sends, what it gets back."""

from __future__ import annotations

import io
import logging
from pathlib import Path
from urllib.parse import quote, urlparse

import pytest
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import func, select, text
from twilio.request_validator import RequestValidator, add_port, remove_port
from werkzeug.datastructures import MultiDict
from werkzeug.test import EnvironBuilder, run_wsgi_app
from werkzeug.wrappers import Request

from outreach.app.db import make_engine, make_session_factory
from outreach.app.services import Services
from outreach.models import InboundMessage
from outreach.providers.twilio.signature import is_valid_signature, public_url
from tests.conftest import TEST_AUTH_TOKEN
from tests.webhooks.conftest import LOGAN_NUMBER, MARIA
from tests.webhooks.twilio_helpers import BASE, Phone, new_sid, signed_post
from web import create_app
from web.app import MAX_REQUEST_BYTES

PATHS = ("/webhooks/twilio/sms", "/webhooks/twilio/status")
FORM = "application/x-www-form-urlencoded"


def inbound_count(services: Services) -> int:
    with services.sessions() as session:
        return session.scalar(select(func.count(InboundMessage.id))) or 0


@pytest.mark.parametrize("path", PATHS)
def test_other_methods_get_405_with_allow(client: FlaskClient, path: str) -> None:
    for method in ("GET", "PUT", "DELETE"):
        response = client.open(path, method=method)
        assert response.status_code == 405
        assert response.headers["Allow"] == "POST"


def test_a_body_over_the_limit_gets_413_and_changes_nothing(
    client: FlaskClient, services: Services
) -> None:
    body = "x" * (MAX_REQUEST_BYTES + 1)
    params = {"MessageSid": new_sid(), "From": MARIA, "To": LOGAN_NUMBER, "Body": body}
    assert signed_post(client, PATHS[0], params).status_code == 413
    assert inbound_count(services) == 0


def test_a_chunked_body_is_read_to_its_end(app: Flask, logan: None, services: Services) -> None:
    """No Content-Length (Transfer-Encoding: chunked): the server marks the input terminated."""
    params = {"MessageSid": new_sid(), "From": MARIA, "To": LOGAN_NUMBER, "Body": "hello"}
    signature = RequestValidator(TEST_AUTH_TOKEN).compute_signature(BASE + PATHS[0], params)
    body = "&".join(f"{k}={quote(v)}" for k, v in params.items()).encode()
    environ = EnvironBuilder(
        path=PATHS[0], method="POST", content_type=FORM, headers={"X-Twilio-Signature": signature}
    ).get_environ()
    del environ["CONTENT_LENGTH"]  # as gunicorn passes a chunked request
    environ.update({"wsgi.input": io.BytesIO(body), "wsgi.input_terminated": True})
    _body, status, _headers = run_wsgi_app(app, environ, buffered=True)
    assert status.startswith("200 ")
    assert inbound_count(services) == 1


def test_a_body_that_is_not_a_form_has_no_parameters(phone: Phone, services: Services) -> None:
    """JSON (or any other type) is read as no parameters, as Flask's form would be."""
    url_only = RequestValidator(TEST_AUTH_TOKEN).compute_signature(BASE + PATHS[0], {})
    response = phone.client.post(
        PATHS[0],
        json={"MessageSid": new_sid(), "From": MARIA, "To": LOGAN_NUMBER, "Body": "STOP"},
        headers={"X-Twilio-Signature": url_only},
    )
    assert response.status_code == 400  # signed over no parameters: valid, but no MessageSid
    assert inbound_count(services) == 0


def test_a_garbled_content_length_is_a_400(app: Flask) -> None:
    environ = EnvironBuilder(
        path=PATHS[0], method="POST", data="MessageSid=SM1", content_type=FORM
    ).get_environ()
    environ["CONTENT_LENGTH"] = "many"  # what a test client would never send
    _body, status, _headers = run_wsgi_app(app, environ, buffered=True)
    assert status.startswith("400 ")


def test_a_database_without_our_tables_is_a_logged_500(
    services: Services, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Twilio then retries or calls the fallback URL; the operator sees the traceback."""
    url = services.settings.database_url
    if url.startswith("sqlite"):
        elsewhere = f"sqlite:///{tmp_path / 'empty.db'}"
    else:  # the test schema is named in search_path; name one that does not exist
        elsewhere = url.split("options=")[0] + "options=-csearch_path%3Dno_such_schema"
    engine = make_engine(elsewhere)
    broken = Services(services.settings, engine, make_session_factory(engine), services.redis)
    client = create_app(services.settings, broken).test_client()
    try:
        with caplog.at_level(logging.ERROR, logger="webhooks.twilio"):
            response = Phone(client, MARIA, LOGAN_NUMBER).send("hello")
    finally:
        engine.dispose()
    assert response.status_code == 500
    assert response.data == b"Internal Server Error\n"  # the cause goes to the log only
    assert "twilio webhook /webhooks/twilio/sms failed" in caplog.text
    cause = "no such table" if url.startswith("sqlite") else "does not exist"
    assert cause in caplog.text


def test_other_paths_still_reach_flask(client: FlaskClient) -> None:
    assert client.get("/healthz").status_code == 200
    assert client.post("/webhooks/twilio/elsewhere").status_code == 404


def test_public_url_prefers_the_configured_base() -> None:
    environ = {
        "PATH_INFO": "/webhooks/twilio/sms",
        "QUERY_STRING": "a=1",
        "wsgi.url_scheme": "http",
        "HTTP_HOST": "10.0.0.5:8000",
        "SERVER_NAME": "10.0.0.5",
        "SERVER_PORT": "8000",
        "SCRIPT_NAME": "",
    }
    request = Request(environ)

    def url(base: str | None) -> str:
        query = request.query_string.decode()
        return public_url(request.path, query, base_url=base, request_url=request.url)

    assert url("https://example.org") == "https://example.org/webhooks/twilio/sms?a=1"
    assert url(None) == "http://10.0.0.5:8000/webhooks/twilio/sms?a=1"


_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=8)  # UTF-8-encodable
_forms = st.dictionaries(_text, st.lists(_text, min_size=1, max_size=3), max_size=6)
_URLS = ["https://outreach.test/webhooks/twilio/sms", "https://x.example:8443/status?a=1&b=%20"]


@given(_forms, st.sampled_from(_URLS))
def test_a_form_is_valid_only_with_the_sdks_signature(form: dict[str, list[str]], url: str) -> None:
    """Repeated names, repeated values, any Unicode: signed as the SDK signs a Flask form."""
    multidict = MultiDict([(name, value) for name, values in form.items() for value in values])
    expected = RequestValidator(TEST_AUTH_TOKEN).compute_signature(url, multidict)
    assert is_valid_signature(TEST_AUTH_TOKEN, url, multidict, expected)
    assert not is_valid_signature("another-token", url, multidict, expected)
    assert not is_valid_signature(TEST_AUTH_TOKEN, url + "x", multidict, expected)
    assert not is_valid_signature(TEST_AUTH_TOKEN, url, multidict, "")


_VARIANTS = ["as given", "port added or removed", "another url", "garbage", "non-ascii"]


@given(
    _forms,
    st.sampled_from([*_URLS, "https://outreach.test:443/webhooks/twilio/sms"]),
    st.sampled_from(_VARIANTS),
)
def test_the_signature_check_agrees_with_the_sdks_validate(
    form: dict[str, list[str]], url: str, variant: str
) -> None:
    """One HMAC first, then ``validate``: the same verdict as ``validate`` alone, always."""
    multidict = MultiDict([(name, value) for name, values in form.items() for value in values])
    validator = RequestValidator(TEST_AUTH_TOKEN)
    parsed = urlparse(url)
    signed_url = {
        "as given": url,
        "port added or removed": remove_port(parsed) if parsed.port else add_port(parsed),
        "another url": url + "/other",
    }.get(variant)
    signature = {"garbage": "not-a-signature", "non-ascii": "sïgnature="}.get(variant) or (
        validator.compute_signature(signed_url, multidict)
    )
    expected = validator.validate(url, multidict, signature)
    assert is_valid_signature(TEST_AUTH_TOKEN, url, multidict, signature) == expected
    assert expected == (variant in ("as given", "port added or removed"))


def test_a_lost_database_connection_loses_no_text(
    phone: Phone, services: Services, caplog: pytest.LogCaptureFixture
) -> None:
    """The pool's connection dies (a server restart): it is replaced, and no text is lost.

    PostgreSQL's pool pings a connection before lending it, so the next text goes through; on
    SQLite the text that meets the closed connection fails with a 500 and Twilio's retry works.
    """
    assert phone.send("hello").status_code == 200
    with services.engine.connect() as pooled:  # the connection the webhook just gave back
        if services.engine.dialect.name == "postgresql":
            pid = pooled.connection.dbapi_connection.info.backend_pid  # type: ignore[union-attr]
            with services.engine.begin() as admin:
                admin.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        else:
            pooled.connection.dbapi_connection.close()  # type: ignore[union-attr]
    sid = new_sid()
    with caplog.at_level(logging.ERROR, logger="webhooks.twilio"):
        first = phone.send("see you there", sid=sid).status_code
    assert first in (200, 500)
    if first == 500:
        assert phone.send("see you there", sid=sid).status_code == 200  # Twilio's retry
    with services.sessions() as session:
        bodies = session.scalars(select(InboundMessage.body).order_by(InboundMessage.id)).all()
    assert bodies == ["hello", "see you there"]
