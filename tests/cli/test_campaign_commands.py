"""``outreach campaign …`` as an organizer runs it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import time_machine
from click.testing import CliRunner
from sqlalchemy import func, select

from cli.main import main
from outreach.app.services import Services
from outreach.campaigns.ratelimit import RateLimiter
from outreach.models import OutboxMessage
from tests.workers.campaign_helpers import SENDER, add_members, make_huddle, run_worker


@pytest.fixture(autouse=True)
def morning() -> Iterator[None]:
    with time_machine.travel(datetime(2027, 1, 12, 15, 0, tzinfo=UTC), tick=True):
        yield


@pytest.fixture
def audience(services: Services) -> None:
    with services.sessions.begin() as session:
        huddle = make_huddle(session)
        add_members(session, huddle, 6, tag="volunteer")
        add_members(session, huddle, 4, start=100)


def run(cli: CliRunner, *args: str) -> str:
    result = cli.invoke(main, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def test_create_preview_launch_and_status(
    cli: CliRunner, services: Services, audience: None
) -> None:
    campaign_id = run(
        cli,
        "campaign",
        "create",
        "--huddle",
        "logan",
        "--segment",
        "tag:volunteer",
        "--body",
        "Hi {{ first_name }}, canvass Saturday!",
        "--rate",
        "500",
    ).strip()
    assert campaign_id.isdigit()
    preview = run(cli, "campaign", "preview", campaign_id)
    assert "audience: 6 active sms subscribers in logan" in preview
    assert "Hi Member" in preview
    assert "Reply STOP to opt out" in preview
    assert "[GSM-7," in preview
    launched = run(cli, "campaign", "launch", campaign_id)
    assert f"campaign {campaign_id} launched: 6 recipients, 6 queued, 0 skipped" in launched
    run_worker(services)
    report = json.loads(run(cli, "campaign", "status", campaign_id, "--json"))
    assert report["state"] == "completed"
    assert report["by_state"] == {"sent": 6}
    assert "sent" in run(cli, "campaign", "status", campaign_id)


def test_test_send_goes_to_one_number_only(
    cli: CliRunner, services: Services, audience: None
) -> None:
    campaign_id = run(
        cli, "campaign", "create", "--huddle", "logan", "--body", "Hi {{ first_name }}"
    ).strip()
    assert "sent test SM" in run(cli, "campaign", "test", campaign_id, "--to", "(617) 555-0177")
    with services.sessions() as session:
        rows = session.execute(
            select(OutboxMessage.to_address, OutboxMessage.body, OutboxMessage.kind)
        ).all()
    assert [tuple(r) for r in rows] == [
        ("+16175550177", "[TEST] Hi Maria\nReply STOP to opt out", "test")
    ]


def test_pause_resume_cancel_from_the_cli(
    cli: CliRunner, services: Services, audience: None
) -> None:
    campaign_id = run(
        cli, "campaign", "create", "--huddle", "logan", "--body", "Rally!", "--rate", "500"
    ).strip()
    run(cli, "campaign", "launch", campaign_id)
    assert "paused" in run(cli, "campaign", "pause", campaign_id)
    run_worker(services)
    with services.sessions() as session:
        assert session.scalar(select(func.count(OutboxMessage.id))) == 0
    assert "resumed" in run(cli, "campaign", "resume", campaign_id)
    run_worker(services)
    with services.sessions() as session:
        assert session.scalar(select(func.count(OutboxMessage.id))) == 10
    refused = cli.invoke(main, ["campaign", "cancel", campaign_id])
    assert refused.exit_code == 1
    assert "completed" in refused.output


def test_drafting_errors_are_clear(cli: CliRunner, services: Services, audience: None) -> None:
    bad = cli.invoke(
        main,
        ["campaign", "create", "--huddle", "logan", "--segment", "tag:volunteer or", "--body", "x"],
    )
    assert bad.exit_code == 1
    assert "segment:" in bad.output
    bad = cli.invoke(main, ["campaign", "create", "--huddle", "logan", "--body", "Hi {{ nmae }}"])
    assert bad.exit_code == 1
    assert "nmae" in bad.output
    missing = cli.invoke(main, ["campaign", "status", "999"])
    assert missing.exit_code == 1
    assert "no campaign 999" in missing.output


def test_scheduled_campaign_waits_for_its_time(
    cli: CliRunner, services: Services, audience: None
) -> None:
    campaign_id = run(
        cli,
        "campaign",
        "create",
        "--huddle",
        "logan",
        "--body",
        "Later",
        "--send-at",
        "2027-01-13T15:00:00+00:00",
    ).strip()
    assert "scheduled" in run(cli, "campaign", "launch", campaign_id)
    run_worker(services)
    with services.sessions() as session:
        assert session.scalar(select(func.count(OutboxMessage.id))) == 0


def test_segments_count_save_and_use_in_a_campaign(
    cli: CliRunner, services: Services, audience: None
) -> None:
    assert run(cli, "segment", "count", "--huddle", "logan", "tag:volunteer").startswith(
        "6 members"
    )
    assert run(cli, "segment", "count", "--huddle", "logan").startswith("10 members")
    bad = cli.invoke(main, ["segment", "count", "--huddle", "logan", "tag:volunteer or"])
    assert bad.exit_code == 1
    assert "^" in bad.output
    foreign = cli.invoke(main, ["segment", "count", "--huddle", "logan", "huddle:boston"])
    assert foreign.exit_code == 1
    assert "boston" in foreign.output
    assert "saved segment @volunteers" in run(
        cli, "segment", "save", "--huddle", "logan", "--name", "volunteers", "tag:volunteer"
    )
    assert "@volunteers\ttag:volunteer" in run(cli, "segment", "list", "--huddle", "logan")
    campaign_id = run(
        cli,
        "campaign",
        "create",
        "--huddle",
        "logan",
        "--segment",
        "@volunteers",
        "--body",
        "Hi",
        "--rate",
        "500",
    ).strip()
    assert "6 recipients" in run(cli, "campaign", "launch", campaign_id)
    missing = cli.invoke(
        main, ["campaign", "create", "--huddle", "logan", "--segment", "@nope", "--body", "Hi"]
    )
    assert missing.exit_code == 1
    assert "no saved segment 'nope'" in missing.output
    other = cli.invoke(
        main,
        ["campaign", "create", "--huddle", "logan", "--segment", "huddle:boston", "--body", "Hi"],
    )
    assert other.exit_code == 1
    assert "segment:" in other.output


def test_status_shows_the_last_progress_and_a_sender_slowed_by_429s(
    cli: CliRunner, services: Services, audience: None
) -> None:
    campaign_id = run(
        cli, "campaign", "create", "--huddle", "logan", "--body", "Hi!", "--rate", "500"
    ).strip()
    assert "last progress" not in run(cli, "campaign", "status", campaign_id)
    run(cli, "campaign", "launch", campaign_id)
    run_worker(services)
    RateLimiter(services.redis).slow_down(SENDER, seconds=40)
    shown = run(cli, "campaign", "status", campaign_id)
    assert "last progress: 2027-01-12 15:00:" in shown
    assert "sender slowed to 50% after provider 429s, for 40 s more" in shown
    report = json.loads(run(cli, "campaign", "status", campaign_id, "--json"))
    assert report["last_progress_at"].startswith("2027-01-12T15:00:")


def test_an_email_campaign_previews_with_its_subject(cli: CliRunner, services: Services) -> None:
    with services.sessions.begin() as session:
        huddle = make_huddle(session)
        huddle.email_from_address = "logan@example.org"
        huddle.postal_address = "1 Main St, Logan UT"
    campaign_id = run(
        cli,
        "campaign",
        "create",
        "--huddle",
        "logan",
        "--channel",
        "email",
        "--subject",
        "Saturday, {{ first_name | default('friend') }}",
        "--body",
        "**Canvass** at 10.",
    ).strip()
    preview = run(cli, "campaign", "preview", campaign_id)
    assert "audience: 0 active email subscribers in logan" in preview
    assert "Subject: Saturday, " in preview
    assert "Canvass at 10." in preview
