"""Email campaigns end to end: sandbox (.eml + outbox) and SendGrid's SDK against a local fake."""

from __future__ import annotations

import email
from collections.abc import Iterator
from email import policy
from pathlib import Path

import pytest
from sqlalchemy import func, select

from outreach import campaigns, consent
from outreach.app.services import Services
from outreach.campaigns import CampaignError
from outreach.models import Delivery, Huddle, Member, OutboxMessage
from outreach.models import campaigns as k
from outreach.models import members as m
from outreach.people.huddles import create_huddle
from tests.fakes import FakeSendGrid
from tests.workers.campaign_helpers import run_worker
from workers import context, jobs


@pytest.fixture
def huddle_id(services: Services) -> int:
    with services.sessions.begin() as session:
        huddle = create_huddle(
            session,
            slug="logan",
            name="Logan Huddle",
            keywords=["LOGAN"],
            postal_address="1 Main St, Boston, MA 02128",
            email_from_address="logan@example.org",
        )
        provenance = consent.Provenance(source="form", detail="test")
        for i in range(12):
            member = Member(email=f"person{i}@example.net", first_name=f"Pat{i}", zip="02128")
            session.add(member)
            session.flush()
            state = m.OPTED_OUT if i == 11 else m.ACTIVE
            consent.set_subscription_state(
                session,
                member=member,
                huddle=huddle,
                channel=m.EMAIL,
                state=m.ACTIVE,
                provenance=provenance,
            )
            if state == m.OPTED_OUT:
                consent.set_subscription_state(
                    session,
                    member=member,
                    huddle=huddle,
                    channel=m.EMAIL,
                    state=state,
                    provenance=provenance,
                )
        consent.suppress(session, channel=m.EMAIL, address="person10@example.net", reason="bounce")
        return huddle.id


def email_campaign(services: Services, body: str, subject: str = "Rally on Saturday") -> int:
    with services.sessions.begin() as session:
        return campaigns.create_campaign(
            session,
            huddle_slug="logan",
            channel="email",
            segment_filter="",
            body=body,
            subject=subject,
        ).id


def test_sandbox_email_campaign_writes_eml_files_with_one_click_unsubscribe(
    services: Services, huddle_id: int
) -> None:
    campaign_id = email_campaign(services, "Hi {{ first_name }},\n\nJoin us **Saturday** at 10.")
    jobs.launch_campaign(campaign_id)
    run_worker(services)
    with services.sessions() as session:
        report = campaigns.status(session, campaign_id)
        assert report.by_state == {k.SENT: 10, k.SKIPPED: 2}
        assert report.skipped == {"opted-out": 1, "suppressed": 1}
        assert report.state == k.COMPLETED
        rows = session.scalars(select(OutboxMessage).where(OutboxMessage.channel == "email")).all()
    assert len(rows) == 10
    assert len({r.to_address for r in rows}) == 10
    files = sorted((services.settings.instance_path / "outbox").rglob("*.eml"))
    assert len(files) == 10
    message = email.message_from_bytes(files[0].read_bytes(), policy=policy.default)
    assert message["Subject"] == "Rally on Saturday"
    assert message["From"].addresses[0].addr_spec == "logan@example.org"
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert "https://outreach.test/unsubscribe/" in message["List-Unsubscribe"]
    assert "mailto:unsubscribe@example.org" in message["List-Unsubscribe"]
    html = message.get_body(("html",)).get_content()
    text = message.get_body(("plain",)).get_content()
    assert "<strong>Saturday</strong>" in html
    assert "1 Main St, Boston, MA 02128" in html
    assert "Hi Pat" in text
    assert "Unsubscribe: https://outreach.test/unsubscribe/" in text


def test_the_unsubscribe_link_in_the_email_works(services: Services, huddle_id: int) -> None:
    from web import create_app

    campaign_id = email_campaign(services, "Plain news for everyone.")
    jobs.launch_campaign(campaign_id)
    run_worker(services)
    path = sorted((services.settings.instance_path / "outbox").rglob("*.eml"))[0]
    message = email.message_from_bytes(Path(path).read_bytes(), policy=policy.default)
    url = message["List-Unsubscribe"].split("<", 1)[1].split(">", 1)[0]
    client = create_app(services.settings, services).test_client()
    response = client.post(
        url.removeprefix("https://outreach.test"),
        data="List-Unsubscribe=One-Click",
        content_type="application/x-www-form-urlencoded",
    )
    assert response.status_code == 200
    address = str(message["To"].addresses[0].addr_spec)
    with services.sessions() as session:
        state = session.scalar(
            select(m.Subscription.state)
            .join(Member, Member.id == m.Subscription.member_id)
            .where(Member.email == address)
        )
    assert state == m.OPTED_OUT


@pytest.fixture
def sendgrid(services: Services) -> Iterator[FakeSendGrid]:
    with FakeSendGrid(api_key="SG.test-key") as fake:
        settings = services.settings.with_overrides(
            email_backend="sendgrid",
            sendgrid_api_key="SG.test-key",
            sendgrid_api_host=fake.base_url,
        )
        context.install(Services(settings, services.engine, services.sessions, services.redis))
        jobs._send_context = None
        yield fake
        jobs._send_context = None
        context.install(services)


def test_same_text_for_all_goes_as_one_request_of_personalizations(
    services: Services, huddle_id: int, sendgrid: FakeSendGrid
) -> None:
    campaign_id = email_campaign(services, "News for everyone in {{ huddle_name }}.")
    jobs.launch_campaign(campaign_id)
    run_worker(services)
    posts = [r for r in sendgrid.requests if r.method == "POST"]
    assert len(posts) == 1
    assert len(sendgrid.sent) == 10
    with services.sessions() as session:
        by_address = dict(session.execute(select(Delivery.address, Delivery.id)).all())
    for sent in sendgrid.sent:
        (address,) = sent.to
        assert sent.custom_args["delivery_id"] == str(by_address[address])
        assert sent.custom_args["campaign_id"] == str(campaign_id)
        assert sent.headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        url = sent.substitutions["%%unsubscribe_url%%"]
        assert url.startswith("https://outreach.test/unsubscribe/")
        assert url in sent.headers["List-Unsubscribe"]
        assert f"campaign-{campaign_id}" in sent.categories


def test_personal_text_goes_one_request_per_recipient(
    services: Services, huddle_id: int, sendgrid: FakeSendGrid
) -> None:
    campaign_id = email_campaign(
        services, "Hi {{ first_name }}!", subject="For you, {{ first_name }}"
    )
    jobs.launch_campaign(campaign_id)
    run_worker(services)
    assert len([r for r in sendgrid.requests if r.method == "POST"]) == 10
    subjects = sorted(s.subject or "" for s in sendgrid.sent)
    assert subjects[0] == "For you, Pat0"


def test_a_refused_batch_is_failed_with_the_reason_and_not_retried(
    services: Services, huddle_id: int, sendgrid: FakeSendGrid
) -> None:
    sendgrid.fail_next(1, status=400)
    campaign_id = email_campaign(services, "News for everyone.")
    jobs.launch_campaign(campaign_id)
    run_worker(services)
    assert len([r for r in sendgrid.requests if r.method == "POST"]) == 1
    with services.sessions() as session:
        assert campaigns.status(session, campaign_id).by_state == {k.FAILED: 10, k.SKIPPED: 2}


def test_email_campaigns_need_a_sender_and_a_postal_address(services: Services) -> None:
    with services.sessions.begin() as session:
        create_huddle(session, slug="bare", name="Bare", keywords=["BARE"])
    with pytest.raises(CampaignError, match="from-address"), services.sessions.begin() as session:
        campaigns.create_campaign(
            session, huddle_slug="bare", channel="email", segment_filter="", body="Hi", subject="Hi"
        )
    with services.sessions.begin() as session:
        session.scalars(select(Huddle)).one().email_from_address = "bare@example.org"
    with pytest.raises(CampaignError, match="postal address"), services.sessions.begin() as session:
        campaigns.create_campaign(
            session, huddle_slug="bare", channel="email", segment_filter="", body="Hi", subject="Hi"
        )


def test_scripts_and_forms_never_reach_an_email(services: Services, huddle_id: int) -> None:
    campaign_id = email_campaign(
        services, '<p onclick="x()">Hi</p><script>alert(1)</script><form action="/x"><input></form>'
    )
    jobs.launch_campaign(campaign_id)
    run_worker(services)
    with services.sessions() as session:
        assert session.scalar(select(func.count(OutboxMessage.id))) == 10
    raw = sorted((services.settings.instance_path / "outbox").rglob("*.eml"))[0].read_text()
    assert "<script" not in raw
    assert "<form" not in raw
    assert "onclick" not in raw


def test_email_pause_resume_and_cancel_as_for_sms(services: Services, huddle_id: int) -> None:
    def emails_sent() -> int:
        with services.sessions() as session:
            query = select(func.count()).where(OutboxMessage.channel == "email")
            return int(session.scalar(query.select_from(OutboxMessage)) or 0)

    paused = email_campaign(services, "Rally on Saturday at 10.")
    jobs.launch_campaign(paused)
    with services.sessions.begin() as session:
        campaigns.pause(session, paused)
    run_worker(services)
    assert emails_sent() == 0
    with services.sessions.begin() as session:
        campaigns.move(campaigns.get_campaign(session, paused), k.SENDING)
    jobs.resume_campaign(paused)
    run_worker(services)
    assert emails_sent() == 10
    with services.sessions() as session:
        assert campaigns.status(session, paused).state == k.COMPLETED

    cancelled = email_campaign(services, "Canvass on Sunday.", subject="Sunday")
    jobs.launch_campaign(cancelled)
    with services.sessions.begin() as session:
        campaigns.cancel(session, cancelled)
    run_worker(services)
    assert emails_sent() == 10
    with services.sessions() as session:
        report = campaigns.status(session, cancelled)
        assert report.by_state == {k.SKIPPED: 12}
