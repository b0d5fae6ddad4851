"""Email unsubscribe links: the page, the form, RFC 8058 one-click, bad and old tokens."""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from werkzeug.test import TestResponse

from outreach import consent
from outreach.app.clock import utcnow
from outreach.app.services import Services
from outreach.app.settings import Settings
from outreach.consent import unsubscribe as u
from outreach.models import ConsentEvent, Huddle, Member, Subscription, Suppression
from outreach.models import members as m
from outreach.people.huddles import create_huddle
from tests.members import active_member

EMAIL = "maria@example.org"
UA = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) TestBrowser/1.0"
IP = "198.51.100.23"


@dataclass(frozen=True)
class World:
    member_id: int
    logan_id: int
    eastie_id: int


@pytest.fixture
def world(services: Services) -> World:
    """Maria gets email from two huddles."""
    with services.sessions.begin() as session:
        logan = create_huddle(
            session,
            slug="logan",
            name="Logan Huddle",
            keywords=["LOGAN"],
            sender="+16175550100",
            email_from_address="logan@example.org",
        )
        logan.support_contact = "logan-organizers@example.org"
        eastie = create_huddle(
            session, slug="eastie", name="Eastie Huddle", keywords=["EASTIE"], sender="+16175550100"
        )
        maria = Member(email=EMAIL, first_name="Maria", created_at=utcnow())
        session.add(maria)
        session.flush()
        for huddle in (logan, eastie):
            consent.set_subscription_state(
                session,
                member=maria,
                huddle=huddle,
                channel=m.EMAIL,
                state=m.ACTIVE,
                provenance=consent.Provenance(source="import"),
            )
        return World(maria.id, logan.id, eastie.id)


def token_for(settings: Settings, world: World, huddle_id: int | None = None) -> str:
    return u.make_token(settings, world.member_id, huddle_id or world.logan_id, m.EMAIL)


def states(services: Services, world: World) -> dict[int, str]:
    with services.sessions() as session:
        return dict(
            session.execute(
                select(Subscription.huddle_id, Subscription.state).where(
                    Subscription.member_id == world.member_id, Subscription.channel == m.EMAIL
                )
            ).all()
        )


def opt_outs(services: Services) -> list[ConsentEvent]:
    with services.sessions() as session:
        return list(
            session.scalars(
                select(ConsentEvent)
                .where(ConsentEvent.action == "opt_out")
                .order_by(ConsentEvent.id)
            )
        )


def ledger_count(services: Services) -> int:
    with services.sessions() as session:
        return session.scalar(select(func.count(ConsentEvent.id))) or 0


def suppressions(services: Services) -> list[tuple[str, str, str, str]]:
    with services.sessions() as session:
        return [
            (s.channel, s.address, s.scope, s.reason)
            for s in session.scalars(select(Suppression).where(Suppression.lifted_at.is_(None)))
        ]


def post(client: FlaskClient, token: str, data: dict[str, str]) -> TestResponse:
    return client.post(
        f"/unsubscribe/{token}",
        data=data,
        headers={"User-Agent": UA},
        environ_base={"REMOTE_ADDR": IP},
    )


def one_click(client: FlaskClient, token: str) -> TestResponse:
    return client.post(
        f"/unsubscribe/{token}",
        data="List-Unsubscribe=One-Click",
        content_type="application/x-www-form-urlencoded",
    )


def page_text(response: TestResponse) -> str:
    return html.unescape(response.get_data(as_text=True))


def visible(response: TestResponse) -> str:
    """The words a person reads: tags dropped, spaces collapsed."""
    return " ".join(re.sub(r"<[^>]+>", " ", page_text(response)).split())


def test_get_shows_the_huddle_and_both_choices_and_changes_nothing(
    client: FlaskClient, services: Services, world: World
) -> None:
    before = ledger_count(services)
    response = client.get(f"/unsubscribe/{token_for(services.settings, world)}")
    assert response.status_code == 200
    text = page_text(response)
    assert "This will stop emails from Logan Huddle to m***@example.org" in visible(response)
    assert 'name="scope" value="huddle"' in text
    assert 'name="scope" value="all"' in text
    assert "all email from this network" in text
    assert "m***@example.org" in text
    assert EMAIL not in text
    assert 'method="post"' in text
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert states(services, world) == {world.logan_id: m.ACTIVE, world.eastie_id: m.ACTIVE}
    assert ledger_count(services) == before


def test_form_post_this_huddle(client: FlaskClient, services: Services, world: World) -> None:
    response = post(client, token_for(services.settings, world), {"scope": "huddle"})
    assert response.status_code == 200
    text = page_text(response)
    assert "You're unsubscribed" in text
    assert "any more emails from Logan Huddle" in visible(response)
    assert states(services, world) == {world.logan_id: m.OPTED_OUT, world.eastie_id: m.ACTIVE}
    (event,) = opt_outs(services)
    assert (event.member_id, event.huddle_id, event.channel, event.address) == (
        world.member_id,
        world.logan_id,
        m.EMAIL,
        EMAIL,
    )
    assert (event.source, event.ip, event.user_agent, event.actor) == ("form", IP, UA, "member")
    assert event.detail == "unsubscribe page: this huddle"
    assert suppressions(services) == []


def test_form_post_all_email_from_the_network(
    client: FlaskClient, services: Services, world: World
) -> None:
    response = post(client, token_for(services.settings, world), {"scope": "all"})
    assert response.status_code == 200
    assert "any more email from" in page_text(response)
    assert states(services, world) == {world.logan_id: m.OPTED_OUT, world.eastie_id: m.OPTED_OUT}
    assert suppressions(services) == [("email", EMAIL, "*", "unsubscribe")]
    events = opt_outs(services)
    # One row per huddle, and one for the network-wide opt-out itself.
    assert sorted((e.huddle_id or 0) for e in events) == sorted(
        [world.logan_id, world.eastie_id, 0]
    )
    for event in events:
        assert (event.source, event.ip, event.user_agent) == ("form", IP, UA)
        assert event.detail == "unsubscribe page: all email from this network"


def test_one_click_post_without_cookies(app: Flask, services: Services, world: World) -> None:
    client = app.test_client(use_cookies=False)
    response = client.post(
        f"/unsubscribe/{token_for(services.settings, world)}",
        data="List-Unsubscribe=One-Click",
        content_type="application/x-www-form-urlencoded",
        headers={"User-Agent": "Mail-Provider-Unsubscriber/1.0"},
        environ_base={"REMOTE_ADDR": "192.0.2.50"},
    )
    assert response.status_code == 200
    assert response.mimetype == "text/plain"
    assert "Logan Huddle" in response.get_data(as_text=True)
    assert "Set-Cookie" not in response.headers
    assert states(services, world) == {world.logan_id: m.OPTED_OUT, world.eastie_id: m.ACTIVE}
    (event,) = opt_outs(services)
    assert event.detail == "List-Unsubscribe one-click (RFC 8058)"
    assert (event.ip, event.user_agent) == ("192.0.2.50", "Mail-Provider-Unsubscriber/1.0")


def test_one_click_as_multipart_form_data(app: Flask, services: Services, world: World) -> None:
    client = app.test_client(use_cookies=False)
    response = client.post(
        f"/unsubscribe/{token_for(services.settings, world, world.eastie_id)}",
        data={"List-Unsubscribe": "One-Click"},
        content_type="multipart/form-data",
    )
    assert response.status_code == 200
    assert states(services, world) == {world.logan_id: m.ACTIVE, world.eastie_id: m.OPTED_OUT}


def test_one_click_ignores_a_scope_field(app: Flask, services: Services, world: World) -> None:
    client = app.test_client(use_cookies=False)
    client.post(
        f"/unsubscribe/{token_for(services.settings, world)}",
        data={"List-Unsubscribe": "One-Click", "scope": "all"},
    )
    assert states(services, world) == {world.logan_id: m.OPTED_OUT, world.eastie_id: m.ACTIVE}
    assert suppressions(services) == []


def test_client_ip_comes_through_the_proxy(
    client: FlaskClient, services: Services, world: World
) -> None:
    client.post(
        f"/unsubscribe/{token_for(services.settings, world)}",
        data={"scope": "huddle"},
        headers={"X-Forwarded-For": "203.0.113.9", "User-Agent": UA},
        environ_base={"REMOTE_ADDR": "10.0.0.2"},
    )
    (event,) = opt_outs(services)
    assert event.ip == "203.0.113.9"


def test_repeated_posts_are_harmless(client: FlaskClient, services: Services, world: World) -> None:
    token = token_for(services.settings, world)
    assert post(client, token, {"scope": "all"}).status_code == 200
    after_first = ledger_count(services)
    assert post(client, token, {"scope": "all"}).status_code == 200
    assert post(client, token, {"scope": "huddle"}).status_code == 200
    assert one_click(client, token).status_code == 200
    assert ledger_count(services) == after_first
    assert suppressions(services) == [("email", EMAIL, "*", "unsubscribe")]
    assert states(services, world) == {world.logan_id: m.OPTED_OUT, world.eastie_id: m.OPTED_OUT}


def test_already_unsubscribed_page_says_so(
    client: FlaskClient, services: Services, world: World
) -> None:
    token = token_for(services.settings, world)
    post(client, token, {"scope": "huddle"})
    text = page_text(client.get(f"/unsubscribe/{token}"))
    assert "already unsubscribed from emails from Logan Huddle" in text


@pytest.mark.parametrize(
    "mangle",
    [
        lambda t: t[:-2] + ("AA" if not t.endswith("AA") else "BB"),  # signature changed
        lambda t: t[:20],  # cut short
        lambda t: "x" + t,  # payload changed
        lambda _t: "not-a-token",
    ],
)
def test_tampered_token_is_a_friendly_400_and_changes_nothing(
    client: FlaskClient, services: Services, world: World, mangle: Callable[[str], str]
) -> None:
    token = mangle(token_for(services.settings, world))
    before = ledger_count(services)
    page = client.get(f"/unsubscribe/{token}")
    assert page.status_code == 400
    assert "doesn't work" in page_text(page)
    assert "Traceback" not in page_text(page)
    assert "reply to the email" in page_text(page).lower()
    form = post(client, token, {"scope": "all"})
    assert form.status_code == 400
    assert one_click(client, token).status_code == 400
    assert states(services, world) == {world.logan_id: m.ACTIVE, world.eastie_id: m.ACTIVE}
    assert ledger_count(services) == before
    assert suppressions(services) == []


def test_token_signed_with_another_key_is_refused(services: Services, world: World) -> None:
    other = services.settings.with_overrides(secret_key="another-secret-key-" + "y" * 32)
    with pytest.raises(u.InvalidToken):
        u.read_token(services.settings, token_for(other, world))


def test_expired_token_is_a_410_naming_the_huddle(
    client: FlaskClient, services: Services, world: World
) -> None:
    with time_machine.travel(datetime.now(UTC) - timedelta(days=401), tick=False):
        old = token_for(services.settings, world)
    before = ledger_count(services)
    page = client.get(f"/unsubscribe/{old}")
    assert page.status_code == 410
    text = page_text(page)
    assert "expired" in text
    assert "Logan Huddle" in text
    assert "logan-organizers@example.org" in text
    assert post(client, old, {"scope": "huddle"}).status_code == 410
    assert states(services, world) == {world.logan_id: m.ACTIVE, world.eastie_id: m.ACTIVE}
    assert ledger_count(services) == before


def test_tokens_last_well_over_60_days(services: Services, world: World) -> None:
    with time_machine.travel(datetime.now(UTC) - timedelta(days=399), tick=False):
        old = token_for(services.settings, world)
    assert u.read_token(services.settings, old) == u.UnsubscribeTarget(
        world.member_id, world.logan_id, m.EMAIL
    )
    assert u.TOKEN_MAX_AGE >= 60 * 24 * 3600


def test_unsubscribe_url(services: Services, world: World) -> None:
    token = token_for(services.settings, world)
    assert (
        u.unsubscribe_url(services.settings, token) == f"https://outreach.test/unsubscribe/{token}"
    )
    relative = services.settings.with_overrides(public_base_url=None)
    assert u.unsubscribe_url(relative, token) == f"/unsubscribe/{token}"


def test_make_token_refuses_unknown_channels(services: Services) -> None:
    with pytest.raises(ValueError, match="channel"):
        u.make_token(services.settings, 1, 2, "fax")


def test_a_huddle_the_member_never_subscribed_to_is_recorded_as_opted_out(
    client: FlaskClient, services: Services, world: World
) -> None:
    with services.sessions.begin() as session:
        other = create_huddle(session, slug="southie", name="Southie Huddle", keywords=["SOUTHIE"])
        other_id = other.id
    post(client, token_for(services.settings, world, other_id), {"scope": "huddle"})
    assert states(services, world)[other_id] == m.OPTED_OUT
    assert [e.huddle_id for e in opt_outs(services)] == [other_id]


def test_a_member_who_is_gone_gets_a_friendly_page(
    client: FlaskClient, services: Services, world: World
) -> None:
    token = u.make_token(services.settings, world.member_id + 1000, world.logan_id, m.EMAIL)
    page = client.get(f"/unsubscribe/{token}")
    assert page.status_code == 404
    assert "Nothing to unsubscribe" in page_text(page)
    assert one_click(client, token).status_code == 200


def test_unsubscribe_only_touches_the_token_s_member(
    client: FlaskClient, services: Services, world: World
) -> None:
    with services.sessions.begin() as session:
        logan = session.get_one(Huddle, world.logan_id)
        other = active_member(session, logan, email="someone@example.org", channel=m.EMAIL)
        other_id = other.id
    post(client, token_for(services.settings, world), {"scope": "all"})
    with services.sessions() as session:
        assert (
            session.scalar(select(Subscription.state).where(Subscription.member_id == other_id))
            == m.ACTIVE
        )
