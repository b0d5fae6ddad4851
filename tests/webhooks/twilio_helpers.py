"""Signed Twilio webhook requests, as Twilio makes them (RequestValidator signs them)."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

from flask.testing import FlaskClient
from twilio.request_validator import RequestValidator
from werkzeug.test import TestResponse

from tests.conftest import TEST_AUTH_TOKEN

BASE = "https://outreach.test"
_sids = itertools.count(1)


def new_sid() -> str:
    return f"SM{next(_sids):032x}"


def signed_post(
    client: FlaskClient, path: str, params: dict[str, str], *, token: str = TEST_AUTH_TOKEN
) -> TestResponse:
    signature = RequestValidator(token).compute_signature(BASE + path, params)
    return client.post(path, data=params, headers={"X-Twilio-Signature": signature})


class Phone:
    """A supporter's phone texting one of our numbers."""

    def __init__(self, client: FlaskClient, number: str, to: str) -> None:
        self.client = client
        self.number = number
        self.to = to

    def text(self, body: str, *, media: Sequence[tuple[str, str]] = (), **extra: str) -> str:
        """Send ``body``; return the reply text ("" when the answer is an empty <Response/>)."""
        response = self.send(body, media=media, **extra)
        assert response.status_code == 200, response.get_data(as_text=True)
        assert response.mimetype == "text/xml"
        return reply_text(response.get_data(as_text=True))

    def send(
        self,
        body: str,
        *,
        sid: str | None = None,
        media: Sequence[tuple[str, str]] = (),
        **extra: str,
    ) -> TestResponse:
        """``media``: (url, content type) pairs, posted as Twilio posts an MMS's attachments."""
        params = {
            "MessageSid": sid or new_sid(),
            "AccountSid": "AC" + "0" * 32,
            "From": self.number,
            "To": self.to,
            "Body": body,
            "NumMedia": str(len(media)),
            **extra,
        }
        for index, (url, content_type) in enumerate(media):
            params[f"MediaUrl{index}"] = url
            params[f"MediaContentType{index}"] = content_type
        return signed_post(self.client, "/webhooks/twilio/sms", params)


def reply_text(twiml: str) -> str:
    from xml.etree import ElementTree

    root = ElementTree.fromstring(twiml)  # noqa: S314 - our own TwiML
    assert root.tag == "Response"
    return "\n".join((m.text or "") for m in root.iter("Message"))
