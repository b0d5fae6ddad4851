"""Every dashboard page escapes what strangers and organizers typed.

One huddle is filled with hostile text wherever text can go: a member's names, tags and fields,
their texts to the huddle, a segment, campaigns, a canned reply, an import's file name and its row
errors, the organizers' own names. Then every GET page of the dashboard is opened as an admin and
as the huddle's organizer; none may carry the markup unescaped. The pages are found from the
app's URL map, so a new page is swept too (or fails here, naming the argument it needs).
"""

from __future__ import annotations

import io
import re

import pytest
from argon2 import PasswordHasher, profiles
from flask import Flask
from flask.testing import FlaskClient
from rq import SimpleWorker
from sqlalchemy import select

from outreach.accounts import passwords, users
from outreach.app.services import Services
from outreach.campaigns import create_campaign
from outreach.campaigns.segments.storage import save_segment
from outreach.models import Campaign, Huddle, Member, MemberField, MemberTag
from outreach.models import accounts as a
from outreach.people.huddles import create_huddle
from outreach.sms import inbox
from outreach.sms.inbound import InboundSms, handle_inbound
from tests.web.dashboard.pages import PASSWORD, csrf_of, sign_in
from workers import jobs

SENDER = "+16175550100"
MEMBER = "+16175550111"
SCRIPT = "<script>alert('x')</script>"
IMAGE = '<img src=x onerror="alert(1)">'
HOSTILE = f"{SCRIPT}{IMAGE}"
FILE_NAME = "<img src=x onerror=alert(1)>.csv"  # a quote would not survive multipart
RAW = ("<script>alert", "<img src=x")  # what would run if either came back unescaped


@pytest.fixture(autouse=True)
def cheap_passwords(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(passwords, "_hasher", PasswordHasher.from_parameters(profiles.CHEAPEST))


def _text(services: Services, body: str, n: int) -> None:
    handle_inbound(services.engine, InboundSms(f"SM{n:032x}", MEMBER, SENDER, body))


@pytest.fixture
def hostile(services: Services, app: Flask) -> dict[str, int]:
    """The huddle, full of hostile text; the ids the pages' URLs need."""
    with services.sessions.begin() as session:
        create_huddle(session, slug="logan", name="Logan", keywords=["LOGAN"], sender=SENDER)
        users.create_user(
            session, email="boss@example.org", password=PASSWORD, admin=True, name=HOSTILE[:60]
        )
        users.create_user(
            session,
            email="lee@example.org",
            password=PASSWORD,
            huddles=["logan"],
            role=a.ORGANIZER,
            name=SCRIPT,
        )
    _text(services, "LOGAN", 1)
    _text(services, "YES", 2)
    _text(services, HOSTILE, 3)
    _text(services, f"please stop {SCRIPT}", 4)  # a possible opt-out: flagged, shown on top
    with services.sessions.begin() as session:
        huddle = session.scalars(select(Huddle).where(Huddle.slug == "logan")).one()
        member = session.scalars(select(Member).where(Member.phone == MEMBER)).one()
        huddle.email_from_address = "logan@example.org"
        huddle.email_from_name = SCRIPT
        huddle.postal_address = IMAGE
        member.first_name = SCRIPT
        member.last_name = IMAGE
        session.add(MemberTag(huddle_id=huddle.id, member_id=member.id, tag=IMAGE))
        session.add(
            MemberField(huddle_id=huddle.id, member_id=member.id, name="note", value=HOSTILE)
        )
        segment = save_segment(
            session, huddle_id=huddle.id, name=SCRIPT, filter_text='tag:"<b>x</b>" OR has:phone'
        )
        sms = create_campaign(
            session,
            huddle_slug="logan",
            channel="sms",
            segment_filter="",
            body=f"Hi {{{{ first_name }}}} {SCRIPT}",
            name=HOSTILE,
        )
        email = create_campaign(
            session,
            huddle_slug="logan",
            channel="email",
            segment_filter="",
            body=f"<p>Hi</p>{IMAGE}",
            subject=SCRIPT,
            name=IMAGE,
        )
        reply = inbox.add_canned_reply(session, huddle.id, title=SCRIPT, body=HOSTILE)
        session.flush()
        ids = {
            "member_id": member.id,
            "segment_id": segment.id,
            "campaign_id": sms.id,
            "email_campaign_id": email.id,
            "reply_id": reply.id,
        }
    boss = app.test_client()
    sign_in(boss, "boss@example.org")
    form = boss.get("/h/logan/members/import").get_data(as_text=True)
    started = boss.post(
        "/h/logan/members/import",
        data={
            "csrf_token": csrf_of(form),
            "file": (
                io.BytesIO(f"phone,first_name\n{SCRIPT},{IMAGE}\n".encode()),
                FILE_NAME,
            ),
            "consent": "sms",
        },
        content_type="multipart/form-data",
    )
    assert started.status_code == 302, started.get_data(as_text=True)
    SimpleWorker([jobs.IMPORT_QUEUE], connection=services.redis).work(burst=True)
    ids["import_id"] = int(started.headers["Location"].rstrip("/").rsplit("/", 1)[-1])
    return ids


def _pages(app: Flask, ids: dict[str, int]) -> list[str]:
    """Every GET page of a huddle's dashboard and of the accounts, with its URL filled in."""
    urls = ["/", "/audit", "/people", "/huddles/new"]
    for rule in app.url_map.iter_rules():
        if "GET" not in (rule.methods or ()) or not rule.rule.startswith("/h/<slug>/"):
            continue
        url = rule.rule.replace("<slug>", "logan")
        for name in re.findall(r"<(?:\w+:)?(\w+)>", url):
            assert name in ids, f"{rule.rule}: the sweep needs a value for <{name}>"
            url = re.sub(rf"<(?:\w+:)?{name}>", str(ids[name]), url)
        urls.append(url)
        if "<int:campaign_id>" in rule.rule:  # the email campaign's pages too
            urls.append(
                rule.rule.replace("<slug>", "logan").replace(
                    "<int:campaign_id>", str(ids["email_campaign_id"])
                )
            )
    # the live fragments, asked with hostile input the way the pages' script asks
    urls += [
        f"/h/logan/segments/audience?filter={SCRIPT}",
        f"/h/logan/segments/preview?filter=tag:%22{IMAGE}%22",
        f"/h/logan/campaigns/counter?body={SCRIPT}&channel=sms",
        f"/h/logan/settings/counter?text={IMAGE}",
        f"/h/logan/members/?q={SCRIPT}",
        f"/h/logan/members/?filter={IMAGE}",
        f"/h/logan/members/results?q={SCRIPT}",
        f"/h/logan/inbox/?q={SCRIPT}",
    ]
    return sorted(set(urls))


def _assert_escaped(client: FlaskClient, urls: list[str]) -> int:
    swept = 0
    for url in urls:
        response = client.get(url)
        assert response.status_code < 500, url
        if response.mimetype != "text/html" or response.status_code != 200:
            continue
        page = response.get_data(as_text=True)
        for raw in RAW:
            assert raw not in page, f"{url} carries {raw!r} unescaped"
        swept += 1
    return swept


def test_no_page_carries_hostile_text_unescaped(
    app: Flask, services: Services, hostile: dict[str, int]
) -> None:
    urls = _pages(app, hostile)
    boss = app.test_client()
    sign_in(boss, "boss@example.org")
    swept = _assert_escaped(boss, urls)
    assert swept >= 30, swept  # the sweep really opened the pages
    # the hostile text is on the pages, escaped (so the sweep looked where it is)
    member = boss.get(f"/h/logan/members/{hostile['member_id']}").get_data(as_text=True)
    assert "&lt;script&gt;alert(" in member
    assert "&lt;img src=x onerror=" in member
    conversation = boss.get(f"/h/logan/inbox/{hostile['member_id']}").get_data(as_text=True)
    assert "please stop &lt;script&gt;" in conversation
    report = boss.get(f"/h/logan/members/imports/{hostile['import_id']}").get_data(as_text=True)
    assert "&lt;img src=x onerror=" in report
    with services.read_sessions() as session:
        names = session.scalars(select(Campaign.name)).all()
    assert set(names) == {HOSTILE, IMAGE}


def test_the_organizers_view_escapes_too(
    app: Flask, services: Services, hostile: dict[str, int]
) -> None:
    lee = app.test_client()
    sign_in(lee, "lee@example.org")
    assert _assert_escaped(lee, _pages(app, hostile)) >= 25
