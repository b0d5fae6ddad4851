"""The ``outreach`` commands as an organizer runs them."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner
from sqlalchemy import func, select

from cli.main import main
from outreach.app.services import Services
from outreach.models import ConsentEvent, Member, Subscription

CSV = """phone,email,first_name,last_name,zip,tags
(617) 555-0101,maria@example.org,Maria,Lopez,02128,volunteer
617-555-0102,,Sam,Lee,02128,
garbage,,Bad,Row,02128,
+1 617 555 0101,,Maria,,,donor
"""


def test_huddle_create_and_list(cli: CliRunner, services: Services) -> None:
    result = cli.invoke(
        main,
        [
            "huddle",
            "create",
            "--slug",
            "logan",
            "--name",
            "Logan Huddle",
            "--keyword",
            "LOGAN",
            "--keyword",
            "eastie",
            "--sender",
            "(617) 555-0100",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "created huddle logan" in result.output
    assert "+16175550100" in result.output
    listed = cli.invoke(main, ["huddle", "list"])
    assert listed.exit_code == 0
    assert "logan\tLogan Huddle\tEASTIE,LOGAN\t+16175550100" in listed.output


def test_huddle_create_reports_bad_input(cli: CliRunner, services: Services) -> None:
    result = cli.invoke(
        main, ["huddle", "create", "--slug", "x", "--name", "X", "--keyword", "STOP"]
    )
    assert result.exit_code == 1
    assert "reserved" in result.output


def test_import_reports_rows_and_errors_then_export(
    cli: CliRunner, services: Services, tmp_path: Path
) -> None:
    cli.invoke(
        main, ["huddle", "create", "--slug", "logan", "--name", "Logan", "--keyword", "LOGAN"]
    )
    path = tmp_path / "people.csv"
    path.write_text(CSV)
    result = cli.invoke(
        main, ["members", "import", str(path), "--huddle", "logan", "--consent", "sms"]
    )
    assert result.exit_code == 2, result.output  # partial success: some rows rejected
    assert "4 rows: 3 imported (2 new, 1 merged into existing), 1 rejected" in result.output
    assert "line 4: phone 'garbage'" in result.output
    with services.sessions() as session:
        assert session.scalar(select(func.count(Member.id))) == 2
        assert session.scalar(select(func.count(Subscription.id))) == 2
        details = set(session.scalars(select(ConsentEvent.detail)))
        assert details == {"people.csv line 2", "people.csv line 3"}
    exported = cli.invoke(main, ["members", "export", "--huddle", "logan"])
    assert exported.exit_code == 0
    assert (
        "+16175550101,maria@example.org,Maria,Lopez,02128,donor;volunteer,active,"
        in exported.output
    )
    history = cli.invoke(main, ["consent", "history", "617-555-0101"])
    assert history.exit_code == 0
    assert "opt_in" in history.output
    assert "people.csv line 2" in history.output


def test_import_errors_without_writing(cli: CliRunner, services: Services, tmp_path: Path) -> None:
    path = tmp_path / "people.csv"
    path.write_text(CSV)
    missing = cli.invoke(main, ["members", "import", str(path), "--huddle", "nowhere"])
    assert missing.exit_code == 1
    assert "no huddle with slug 'nowhere'" in missing.output
    bad_consent = cli.invoke(
        main, ["members", "import", str(path), "--huddle", "x", "--consent", "fax"]
    )
    assert bad_consent.exit_code == 2
    assert "sms and/or email" in bad_consent.output
    with services.sessions() as session:
        assert session.scalar(select(func.count(Member.id))) == 0


def test_seed_demo_gives_the_dashboard_something_to_show(
    cli: CliRunner, services: Services
) -> None:
    result = cli.invoke(main, ["seed-demo", "--members", "50"])
    assert result.exit_code == 0, result.output
    assert "demo huddle demo: 50 members" in result.output
    with services.sessions() as session:
        assert session.scalar(select(func.count(Member.id))) == 50
        assert session.scalar(select(func.count(Subscription.id))) == 100


def test_db_upgrade_is_idempotent(cli: CliRunner, services: Services) -> None:
    result = cli.invoke(main, ["db", "upgrade"])
    assert result.exit_code == 0, result.output
    assert "database at head" in result.output


def test_bad_configuration_is_a_clear_error(services: Services) -> None:
    result = CliRunner(env={"SMS_BACKEND": "pigeon", "OUTREACH_ENV": "test"}).invoke(
        main, ["huddle", "list"]
    )
    assert result.exit_code == 1
    assert "configuration: SMS_BACKEND must be sandbox or twilio" in result.output


def test_a_background_import_is_done_by_a_worker_and_followed_by_its_status(
    cli: CliRunner, services: Services, tmp_path: Path, test_env: dict[str, str]
) -> None:
    cli.invoke(
        main, ["huddle", "create", "--slug", "logan", "--name", "Logan", "--keyword", "LOGAN"]
    )
    path = tmp_path / "people.csv"
    path.write_text(CSV)
    queued = cli.invoke(
        main,
        ["members", "import", str(path), "--huddle", "logan", "--consent", "sms", "--background"],
    )
    assert queued.exit_code == 0, queued.output
    found = re.search(r"import (\d+) queued", queued.output)
    assert found, queued.output
    import_id = found.group(1)  # ids keep counting across tests on PostgreSQL
    with services.read_sessions() as session:
        assert session.scalar(select(func.count(Member.id))) == 0  # nothing until a worker runs

    worker = subprocess.run(
        [sys.executable, "-m", "cli", "worker", "--burst"],
        env={**os.environ, **test_env},
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert worker.returncode == 0, worker.stderr.decode()[-2000:]

    status = cli.invoke(main, ["members", "import-status", import_id, "--errors", "--wait"])
    assert status.exit_code == 0, status.output
    assert f"import {import_id} (people.csv into logan): done, 100%" in status.output
    assert "4 rows: 3 imported (2 new, 1 merged into existing), 1 rejected" in status.output
    assert "line 4: phone 'garbage'" in status.output
    listed = cli.invoke(main, ["members", "import-status"])
    assert listed.output.startswith(f"{import_id}\tdone\tlogan\tpeople.csv\t4 rows")
    with services.read_sessions() as session:
        details = set(session.scalars(select(ConsentEvent.detail)))
    assert details == {"people.csv line 2", "people.csv line 3"}

    refused = cli.invoke(
        main, ["members", "import", str(tmp_path), "--huddle", "logan", "--background"]
    )
    assert refused.exit_code == 2  # a directory is not a file
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    nothing = cli.invoke(
        main, ["members", "import", str(empty), "--huddle", "logan", "--background"]
    )
    assert nothing.exit_code == 1
    assert "the file is empty" in nothing.output
    missing = cli.invoke(main, ["members", "import-status", "99"])
    assert missing.exit_code == 1
    assert "no import 99" in missing.output


def test_user_commands_create_grant_token_and_disable(cli: CliRunner, services: Services) -> None:
    cli.invoke(
        main, ["huddle", "create", "--slug", "logan", "--name", "Logan", "--keyword", "LOGAN"]
    )
    made = cli.invoke(
        main,
        ["user", "create", "--email", "lee@example.org", "--huddle", "logan", "--password-stdin"],
        input="correct horse battery\n",
    )
    assert made.exit_code == 0, made.output
    assert "created lee@example.org (organizer of logan)" in made.output
    prompted = cli.invoke(
        main,
        ["user", "create", "--email", "boss@example.org", "--admin"],
        input="correct horse battery\ncorrect horse battery\n",
    )
    assert prompted.exit_code == 0, prompted.output
    short = cli.invoke(
        main,
        ["user", "create", "--email", "x@example.org", "--admin", "--password-stdin"],
        input="short\n",
    )
    assert short.exit_code == 1
    assert "at least 10 characters" in short.output
    nothing = cli.invoke(main, ["user", "create", "--email", "y@example.org"], input="")
    assert nothing.exit_code == 2
    assert "--admin, or the huddles" in nothing.output

    assert (
        cli.invoke(
            main,
            [
                "user",
                "grant",
                "--email",
                "lee@example.org",
                "--huddle",
                "logan",
                "--role",
                "responder",
            ],
        ).exit_code
        == 0
    )
    listed = cli.invoke(main, ["user", "list"]).output
    assert "boss@example.org\tboss\tadmin" in listed
    assert "lee@example.org\tlee\tresponder of logan" in listed

    token = cli.invoke(main, ["user", "token", "--email", "lee@example.org", "--name", "crm"])
    assert token.exit_code == 0
    assert token.output.startswith("hot_")
    assert "1\tcrm\t" in cli.invoke(main, ["user", "tokens", "--email", "lee@example.org"]).output
    assert (
        cli.invoke(main, ["user", "revoke-token", "--email", "lee@example.org", "1"]).exit_code == 0
    )
    again = cli.invoke(main, ["user", "revoke-token", "--email", "lee@example.org", "1"])
    assert again.exit_code == 1
    assert cli.invoke(main, ["user", "disable", "--email", "lee@example.org"]).exit_code == 0
    assert "(disabled)" in cli.invoke(main, ["user", "list"]).output
    missing = cli.invoke(main, ["user", "disable", "--email", "who@example.org"])
    assert missing.exit_code == 1
    assert "no user who@example.org" in missing.output
