"""Real worker processes: several at once never double-send; SIGTERM hands a range back.

Killed workers and Redis restarts: ``test_self_healing``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import datetime

import pytest
from sqlalchemy import func, select

from outreach import campaigns
from outreach.app.clock import utcnow
from outreach.app.services import Services
from outreach.models import Delivery, OutboxMessage
from outreach.models import campaigns as k
from tests.workers.campaign_helpers import add_members, draft, make_huddle, outbox_counts
from workers import jobs


@pytest.fixture
def worker_env(test_env: dict[str, str]) -> dict[str, str]:
    env = {**os.environ, **test_env}
    # Sandbox receipts would be posted here: a closed loopback port, so nothing leaves the machine.
    env["PUBLIC_BASE_URL"] = "http://127.0.0.1:9"
    return env


def start_worker(env: dict[str, str], *, burst: bool = True) -> subprocess.Popen[bytes]:
    args = [sys.executable, "-m", "cli", "worker"] + (["--burst"] if burst else [])
    return subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def daytime_zone(now: datetime) -> str:
    """A fixed-offset zone where it is now about 1 pm: inside every sending window.

    The workers are real processes, so the clock cannot be travelled as in-process tests do;
    the members are put where it is daytime instead, or the suite would fail every US night.
    """
    offset = (13 - now.hour + 12) % 24 - 12  # -12..+11 hours from UTC
    return f"Etc/GMT{-offset:+d}" if offset else "Etc/UTC"  # Etc/GMT+5 is UTC-5


def launch(services: Services, members: int, rate: float) -> int:
    with services.sessions.begin() as session:
        huddle = make_huddle(session)
        for member in add_members(session, huddle, members):
            member.timezone = daytime_zone(utcnow())
    campaign_id = draft(services, rate=rate)
    jobs.launch_campaign(campaign_id)
    return campaign_id


def finish_with_a_new_worker(
    services: Services, env: dict[str, str], campaign_id: int, *, members: int
) -> None:
    """A burst worker empties the queue: every member has exactly one text, the campaign is done."""
    worker = start_worker(env)
    _, err = worker.communicate(timeout=180)
    assert worker.returncode == 0, err.decode()[-2000:]
    after = outbox_counts(services)
    assert len(after) == members
    assert set(after.values()) == {1}
    with services.sessions() as session:
        report = campaigns.status(session, campaign_id)
    assert report.by_state == {k.SENT: members}
    assert report.state == k.COMPLETED


def test_three_worker_processes_send_exactly_one_text_each(
    services: Services, worker_env: dict[str, str]
) -> None:
    campaign_id = launch(services, 400, rate=2000.0)
    # Every batch twice over, so that the workers really do compete for the same rows.
    jobs.enqueue_batches(campaign_id)
    workers = [start_worker(worker_env) for _ in range(3)]
    for process in workers:
        _, err = process.communicate(timeout=180)
        assert process.returncode == 0, err.decode()[-2000:]
    sent = outbox_counts(services)
    assert len(sent) == 400
    assert set(sent.values()) == {1}
    with services.sessions() as session:
        assert campaigns.status(session, campaign_id).state == k.COMPLETED
        assert session.scalar(select(func.count(OutboxMessage.id))) == 400


def test_sigterm_ends_a_slow_batch_after_its_group_and_hands_the_rest_back(
    services: Services, worker_env: dict[str, str]
) -> None:
    campaign_id = launch(services, 60, rate=4.0)  # one send job of 60 texts: 15 s at this rate
    worker = start_worker(worker_env, burst=False)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(outbox_counts(services)) < 3:
        time.sleep(0.05)
    worker.send_signal(signal.SIGTERM)
    _, err = worker.communicate(timeout=60)
    assert worker.returncode == 0, err.decode()[-2000:]
    sent = outbox_counts(services)
    assert 3 <= len(sent) < 60, "the job should have stopped early, not run to its end"
    with services.sessions() as session:
        states = dict(
            session.execute(
                select(Delivery.state, func.count(Delivery.id))
                .where(Delivery.campaign_id == campaign_id)
                .group_by(Delivery.state)
            ).all()
        )
    # Nothing left claimed for the reconciler: the group in flight finished or went back.
    assert k.CLAIMED not in states
    assert states[k.SENT] == len(sent)
    # The rest of the range is back on the queue: the next worker finishes it, no reconciler.
    finish_with_a_new_worker(services, worker_env, campaign_id, members=60)
