"""A huddle on a Twilio number, and a supporter's phone texting it."""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient

from outreach.huddles import create_huddle
from outreach.services import Services
from tests.webhooks.twilio_helpers import Phone

LOGAN_NUMBER = "+16175550100"
MARIA = "+16175550111"


@pytest.fixture
def logan(services: Services) -> None:
    with services.sessions.begin() as session:
        create_huddle(
            session,
            slug="logan",
            name="Logan Huddle",
            keywords=["LOGAN", "EASTIE"],
            sender=LOGAN_NUMBER,
        )


@pytest.fixture
def phone(client: FlaskClient, logan: None) -> Phone:
    return Phone(client, MARIA, LOGAN_NUMBER)
