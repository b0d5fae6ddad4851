"""Shared plumbing for the email benchmarks (bench/email_*.py).

- :func:`build_email_audience`: two huddles with a from-address and a postal address, and N
  members with an email address subscribed to the first (the second gets the first
  ``personal_n``), built inside the database with one INSERT…SELECT per table, as
  bench/_common.build_audience does for SMS: seconds for a million rows.
- :func:`create_email_campaign`: a draft email campaign through the project's own checks.
- :class:`FakeSendGridProcess`: tests/fakes' FakeSendGrid (``record=False``: it keeps a count,
  not the requests) in a subprocess of its own, so it does not share the bench's GIL; asked for
  its counters and CPU time over a pipe; stopped when the bench ends (or its stdin closes).

Everything stays on loopback or unix sockets.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import PYTHON, Children, _h, child_env, run_build
from sqlalchemy import Engine, text

API_KEY = "SG.bench-key-0123456789"
PUBLIC_BASE_URL = "https://outreach.example.org"
POSTAL_ADDRESS = "1 Main St, Boston, MA 02128"
BATCH_SLUG = "newsletter"
PERSONAL_SLUG = "personal"
FAKE_LIFETIME = 3 * 3600.0  # seconds; the fake exits by itself after this, whatever happens

SUBJECT = "Saturday canvass: 10am at the library"
NEWSLETTER = (
    "## Saturday canvass\n\n"
    "Thanks to everyone in {{ huddle_name }} who knocked on doors last week: **412"
    " conversations** in four hours, and 37 new volunteers.\n\n"
    "This Saturday we meet at 10am at the library on Main St. Bring water and comfortable"
    " shoes; we provide clipboards, maps and coffee.\n\n"
    "- 10:00 training for first-timers\n"
    "- 10:30 turf assignments\n"
    "- 13:00 debrief and lunch\n\n"
    "[RSVP here](https://example.org/rsvp) so we know how many maps to print. Can't make it?"
    " [Join a phone bank](https://example.org/phonebank) instead.\n\n"
    "See you Saturday,\n\nThe organizing team\n"
)
# The same letter with a merge field only the member has: one request per recipient.
PERSONAL = 'Hi {{ first_name | default("friend") }},\n\n' + NEWSLETTER


def build_email_audience(
    engine: Engine,
    n: int,
    *,
    personal_n: int = 0,
    mixed: bool = True,
    verbose: bool = True,
) -> tuple[int, int]:
    """Huddles ``newsletter`` and ``personal``, ``n`` members with an email; their huddle ids.

    Every member (``member<i>@example.org``, first names cycling through eight) is subscribed
    by email to ``newsletter``; ``mixed``: 3% of those opted out and 0.5% of the rest suppressed
    (both skipped at launch), else everyone active. Members 1..``personal_n`` are also active
    subscribers of ``personal``.
    """
    from outreach.app.db import make_session_factory
    from outreach.people.huddles import create_huddle

    ids = []
    with make_session_factory(engine).begin() as session:
        for slug, name in ((BATCH_SLUG, "Newsletter Huddle"), (PERSONAL_SLUG, "Personal Huddle")):
            huddle = create_huddle(
                session,
                slug=slug,
                name=name,
                keywords=[slug.upper()],
                postal_address=POSTAL_ADDRESS,
                email_from_address=f"{slug}@example.org",
            )
            session.flush()
            ids.append(huddle.id)
    batch_id, personal_id = ids
    sqlite = engine.dialect.name == "sqlite"
    if sqlite:
        with_ = (
            f"WITH RECURSIVE seq(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM seq WHERE i < {n}) "
        )
        seq = "seq"
        ts = "'2026-01-05 12:00:00.000000'"
    else:
        with_, seq = "", f"generate_series(CAST(1 AS BIGINT), {n}) AS seq(i)"
        ts = "TIMESTAMPTZ '2026-01-05 12:00:00+00'"
    names = ["Maria", "James", "Aisha", "Wei", "Carlos", "Fatima", "John", "Priya"]
    first = "CASE i % 8 " + " ".join(f"WHEN {i} THEN '{v}'" for i, v in enumerate(names)) + " END"
    state = (
        f"CASE WHEN {_h('id', 0)} < 3 THEN 'opted_out' ELSE 'active' END" if mixed else "'active'"
    )
    statements = [
        f"{with_}INSERT INTO members (id, email, first_name, zip, created_at)"
        f" SELECT i, 'member' || i || '@example.org', {first}, '02128', {ts} FROM {seq}",
        "INSERT INTO subscriptions (member_id, huddle_id, channel, state, created_at, updated_at)"
        f" SELECT id, {batch_id}, 'email', {state}, {ts}, {ts} FROM members",
    ]
    if mixed:
        statements.append(
            "INSERT INTO suppressions (channel, address, scope, reason, created_at)"
            f" SELECT 'email', email, '*', 'bounce', {ts} FROM members"
            f" WHERE {_h('id', 0)} >= 3 AND {_h('id', 1)} < 1 AND id % 2 = 0"
        )
    if personal_n:
        statements.append(
            "INSERT INTO subscriptions (member_id, huddle_id, channel, state, created_at,"
            f" updated_at) SELECT id, {personal_id}, 'email', 'active', {ts}, {ts} FROM members"
            f" WHERE id <= {personal_n}"
        )
    run_build(engine, statements, analyze=not sqlite, verbose=verbose)
    return batch_id, personal_id


def create_email_campaign(engine: Engine, *, slug: str, body: str, subject: str = SUBJECT) -> int:
    from outreach import campaigns
    from outreach.app.db import make_session_factory

    with make_session_factory(engine).begin() as session:
        return campaigns.create_campaign(
            session,
            huddle_slug=slug,
            channel="email",
            segment_filter="",
            body=body,
            subject=subject,
        ).id


def sendgrid_env(url: str) -> dict[str, str]:
    """Settings (as environment variables) that send email through SendGrid at ``url``."""
    return {
        "EMAIL_BACKEND": "sendgrid",
        "SENDGRID_API_KEY": API_KEY,
        "SENDGRID_API_HOST": url,
        "PUBLIC_BASE_URL": PUBLIC_BASE_URL,
    }


def deliveries_by_state(engine: Engine, campaign_id: int) -> dict[str, int]:
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT state, count(*) FROM deliveries WHERE campaign_id = :c GROUP BY state"),
            {"c": campaign_id},
        ).all()
    return {str(state): int(count) for state, count in rows}


# --------------------------------------------------------------------------------------------
# FakeSendGrid in a process of its own
# --------------------------------------------------------------------------------------------


def serve_fake(api_key: str, lifetime: float = FAKE_LIFETIME) -> None:
    """The child's side: serve until stdin says ``stop`` or closes, or ``lifetime`` passes.

    Answers ``stats`` with one JSON line: requests and accepted personalizations so far, and
    this process's CPU seconds.
    """
    from tests.fakes import FakeSendGrid

    timer = threading.Timer(lifetime, os._exit, args=(3,))
    timer.daemon = True
    timer.start()
    fake = FakeSendGrid(api_key=api_key, record=False).start()
    try:
        print(json.dumps({"url": fake.base_url}), flush=True)
        for line in sys.stdin:
            command = line.strip()
            if command == "stats":
                stats = {
                    "requests": fake.request_count,
                    "sent": fake.sent_count,
                    "cpu_s": time.process_time(),
                }
                print(json.dumps(stats), flush=True)
            elif command == "stop":
                break
    finally:
        fake.stop()
        timer.cancel()


class FakeSendGridProcess:
    """FakeSendGrid(record=False) in a subprocess: ``url``, ``stats()``, ``stop()``."""

    def __init__(self, children: Children, script: str, api_key: str = API_KEY) -> None:
        self._children = children
        self.proc = children.start(
            [PYTHON, script, "--serve-fake", api_key],
            env=child_env({}),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        self.url: str = self._read()["url"]

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _read(self, timeout: float = 30.0) -> dict[str, Any]:
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline() if ready else ""
        if not line:
            raise RuntimeError(f"the fake SendGrid process did not answer (rc={self.proc.poll()})")
        result: dict[str, Any] = json.loads(line)
        return result

    def stats(self) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write("stats\n")
        self.proc.stdin.flush()
        return self._read()

    def stop(self) -> None:
        if self.proc.poll() is None and self.proc.stdin is not None:
            try:
                self.proc.stdin.write("stop\n")
                self.proc.stdin.close()
                self.proc.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                pass
        self._children.stop(self.proc)


def rss_kib(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of ``pid`` in KiB, from /proc; (0, 0) once it is gone."""
    values = {"VmRSS": 0, "VmHWM": 0}
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                name, _, rest = line.partition(":")
                if name in values:
                    values[name] = int(rest.split()[0])
    except (FileNotFoundError, ProcessLookupError, ValueError):
        pass
    return values["VmRSS"], values["VmHWM"]
