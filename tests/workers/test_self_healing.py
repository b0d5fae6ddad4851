"""Campaigns and imports heal themselves: workers killed, Redis restarted empty, STOP meanwhile.

Every test starts ``outreach worker`` as the Procfile does and repairs nothing by hand: the
workers' leases, the sweep and the reconnect loop must bring the campaign to its end. The lease
timeout is 3 s here (``WORKER_LEASE_TIMEOUT``) so that a dead worker is noticed in seconds.
"""

from __future__ import annotations

import io
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import func, select, text

from outreach import campaigns
from outreach.app.embedded_redis import EmbeddedRedis
from outreach.app.services import Services
from outreach.models import ConsentEvent, Delivery, Member, Subscription, WorkerLease
from outreach.models import campaigns as k
from outreach.models import imports as import_states
from outreach.models import members as m
from outreach.people import imports
from outreach.people.huddles import create_huddle
from tests.conftest import TEST_ACCOUNT_SID, TEST_AUTH_TOKEN
from tests.fakes import FakeTwilio
from tests.webhooks.twilio_helpers import Phone
from tests.workers.campaign_helpers import SENDER, outbox_counts
from tests.workers.test_worker_processes import launch
from web.app import create_app
from workers import context, jobs

LEASE_TIMEOUT = "3"


@pytest.fixture
def worker_env(test_env: dict[str, str]) -> dict[str, str]:
    env = {**os.environ, **test_env, "WORKER_LEASE_TIMEOUT": LEASE_TIMEOUT}
    env["PUBLIC_BASE_URL"] = "http://127.0.0.1:9"  # sandbox receipts go nowhere
    return env


class Worker(subprocess.Popen[bytes]):
    """``outreach worker`` logging to a file: a pipe nobody reads fills up and blocks it."""

    def __init__(self, env: dict[str, str]) -> None:
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 - closed with the process
        super().__init__(
            [sys.executable, "-m", "cli", "worker"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=self.log,
        )

    def log_tail(self, size: int = 4000) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")[-size:]


def start_worker(env: dict[str, str]) -> Worker:
    return Worker(env)


@pytest.fixture
def workers() -> Iterator[list[Worker]]:
    started: list[Worker] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process in started:
        try:
            process.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
        process.log.close()


def wait_for(what: str, condition: Callable[[], bool], *, timeout: float = 60) -> float:
    """Poll real processes' progress (there is no clock to inject); seconds it took."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.05)
    return time.monotonic() - started


def completed(services: Services, campaign_id: int) -> Callable[[], bool]:
    def check() -> bool:
        with services.sessions() as session:
            return campaigns.status(session, campaign_id).state == k.COMPLETED

    return check


def assert_exactly_once(services: Services, campaign_id: int, members: int) -> None:
    sent = outbox_counts(services)
    assert set(sent.values()) == {1}, "somebody got two copies"
    with services.sessions() as session:
        report = campaigns.status(session, campaign_id)
    assert report.state == k.COMPLETED
    assert report.by_state.get(k.CLAIMED, 0) == 0
    assert report.by_state.get(k.QUEUED, 0) == 0
    assert report.by_state.get(k.SENT, 0) == len(sent)
    assert sum(report.by_state.values()) == members


def leases(services: Services) -> int:
    with services.sessions() as session:
        return session.scalar(select(func.count(WorkerLease.worker_id))) or 0


def kill(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)


def test_the_only_worker_killed_a_new_one_finishes_the_campaign_alone(
    services: Services, worker_env: dict[str, str], workers: list[Worker]
) -> None:
    campaign_id = launch(services, 200, rate=60.0)
    workers.append(start_worker(worker_env))
    wait_for("40 texts", lambda: len(outbox_counts(services)) >= 40)
    kill(workers[0])
    assert len(outbox_counts(services)) < 200, "the worker should have died mid-campaign"
    workers.append(start_worker(worker_env))
    wait_for("the campaign to complete", completed(services, campaign_id))
    assert_exactly_once(services, campaign_id, 200)
    with services.sessions() as session:  # the sandbox can always tell: nothing is unknown
        assert campaigns.status(session, campaign_id).by_state == {k.SENT: 200}


def test_one_of_two_workers_killed_the_survivor_finishes(
    services: Services, worker_env: dict[str, str], workers: list[Worker]
) -> None:
    campaign_id = launch(services, 300, rate=90.0)
    workers.extend([start_worker(worker_env), start_worker(worker_env)])
    wait_for("both workers' leases", lambda: leases(services) == 2)  # both really started
    wait_for("40 texts", lambda: len(outbox_counts(services)) >= 40)
    kill(workers[0])
    wait_for("the campaign to complete", completed(services, campaign_id))
    assert_exactly_once(services, campaign_id, 300)
    assert leases(services) == 2  # the dead worker's stays until forgotten (after an hour)


def _import_file(rows: int) -> bytes:
    lines = ["phone,email,first_name,tags"]
    lines += [
        f"(617) {200 + i // 10000}-{i % 10000:04d},m{i}@example.org,Name{i},walk"
        for i in range(rows)
    ]
    lines[rows // 2] = "not a phone,,,"
    return ("\n".join(lines) + "\n").encode()


def test_a_worker_killed_mid_import_another_finishes_it_from_the_next_line(
    services: Services, worker_env: dict[str, str], workers: list[Worker]
) -> None:
    rows = 40_000
    with services.sessions.begin() as session:
        create_huddle(session, slug="logan", name="Logan", keywords=["LOGAN"], sender=SENDER)
    import_id = imports.store(
        services.sessions,
        huddle_slug="logan",
        upload=io.BytesIO(_import_file(rows)),
        source_name="big.csv",
        consent_channels={m.SMS},
    )
    jobs.enqueue_import(import_id)
    workers.append(start_worker(worker_env))

    def progress() -> tuple[str, int]:
        with services.read_sessions() as session:
            current = imports.status(session, import_id)
        return current.state, current.rows

    wait_for("the first chunk", lambda: progress()[1] > 0)
    kill(workers[0])
    state, rows_in = progress()
    assert state == import_states.RUNNING
    assert rows_in < rows, "it should have died mid-file"
    workers.append(start_worker(worker_env))
    try:
        wait_for("the import to end", lambda: progress()[0] == import_states.DONE)
    except AssertionError:
        raise AssertionError(workers[1].log_tail()) from None

    with services.read_sessions() as session:
        done = imports.status(session, import_id)
        members = session.scalar(select(func.count()).select_from(Member))
        subscriptions = session.scalar(select(func.count()).select_from(Subscription))
        ledger = session.scalar(select(func.count()).select_from(ConsentEvent))
    assert done.attempts == 2
    assert (done.rows, done.error_count) == (rows, 1)
    assert done.created == members == subscriptions == ledger == rows - 1


def test_a_sigterm_leaves_no_lease_behind(
    services: Services, worker_env: dict[str, str], workers: list[Worker]
) -> None:
    workers.append(start_worker(worker_env))
    wait_for("the lease", lambda: leases(services) == 1)
    # RQ installs its signal handlers after it registers, before it first waits for a job.
    wait_for("RQ's worker waiting for jobs", lambda: _rq_worker_states(services) == {b"idle"})
    workers[0].send_signal(signal.SIGTERM)
    workers[0].wait(timeout=30)
    assert workers[0].returncode == 0, workers[0].log_tail()
    assert leases(services) == 0


def test_redis_restarted_empty_mid_campaign_the_worker_reconnects_and_a_stop_still_counts(
    services: Services,
    worker_env: dict[str, str],
    workers: list[Worker],
    tmp_path: Path,
) -> None:
    own = EmbeddedRedis(tmp_path / "own-redis.sock").start()
    try:
        own_services = Services.build(replace(services.settings, redis_url=own.url))
        context.install(own_services)
        campaign_id = launch(own_services, 300, rate=60.0)
        env = {**worker_env, "REDIS_URL": own.url}
        workers.append(start_worker(env))
        wait_for("40 texts", lambda: len(outbox_counts(services)) >= 40)
        own.stop()  # every queued job, the rate buckets and the locks are gone with it

        # The last member texts STOP while Redis is down: the webhook needs only the database.
        with services.sessions() as session:
            last = session.scalars(
                select(Delivery)
                .where(Delivery.campaign_id == campaign_id)
                .order_by(Delivery.id.desc())
            ).first()
            assert last is not None
            assert last.state == k.QUEUED
            victim, victim_id = last.address, last.member_id
        app = create_app(own_services.settings, own_services)
        Phone(app.test_client(), victim, SENDER).text("STOP")
        with services.sessions() as session:
            states = session.scalars(
                select(Subscription.state).where(Subscription.member_id == victim_id)
            ).all()
        assert states == [m.OPTED_OUT]

        own.start()
        wait_for("the campaign to complete", completed(services, campaign_id), timeout=90)
        assert workers[0].poll() is None, "the worker exited instead of reconnecting"
        assert victim not in outbox_counts(services)
        assert_exactly_once(services, campaign_id, 300)
        with services.sessions() as session:
            report = campaigns.status(session, campaign_id)
        assert report.by_state.get(k.SKIPPED) == 1
        own_services.close()
    finally:
        context.install(services)
        own.stop()


def test_through_twilio_a_killed_worker_429s_and_an_unreadable_message_list(
    services: Services,
    worker_env: dict[str, str],
    workers: list[Worker],
) -> None:
    """The user's report: SIGKILL mid-campaign through Twilio, the new worker's lookups answered
    with 500s for a while ("Unable to fetch page"), and 429s on the sends that follow."""
    with FakeTwilio(TEST_ACCOUNT_SID, TEST_AUTH_TOKEN) as fake:
        env = {
            **worker_env,
            "SMS_BACKEND": "twilio",
            "TWILIO_ACCOUNT_SID": TEST_ACCOUNT_SID,
            "TWILIO_API_BASE_URL": fake.base_url,
        }
        campaign_id = launch(services, 108, rate=100.0)
        workers.append(start_worker(env))
        wait_for("24 texts", lambda: len(fake.messages) >= 24)
        kill(workers[0])
        fake.fail_lists(20)
        fake.fail_next(6, status=429, code=20429)
        workers.append(start_worker(env))
        wait_for("the campaign to complete", completed(services, campaign_id), timeout=120)
        texts = Counter(message["to"] for message in fake.messages)
    assert len(texts) == 108
    assert set(texts.values()) == {1}, "somebody got two copies"
    with services.sessions() as session:
        by_state = campaigns.status(session, campaign_id).by_state
    assert by_state == {k.SENT: 108}  # the message list told every dead claim's fate


def test_the_database_gone_for_seconds_mid_campaign_the_worker_rides_it_out(
    services: Services, worker_env: dict[str, str], workers: list[Worker]
) -> None:
    """A PostgreSQL restart as the worker sees it: every connection it has, and every new one,
    cut for three seconds (the shared server here cannot itself be restarted). On SQLite, the
    nearest thing: another process holds the write lock for as long."""
    campaign_id = launch(services, 300, rate=60.0)
    name = f"worker-{uuid.uuid4().hex[:8]}"
    workers.append(start_worker({**worker_env, "PGAPPNAME": name}))
    wait_for("40 texts", lambda: len(outbox_counts(services)) >= 40)
    until = time.monotonic() + 3.0
    if services.engine.dialect.name == "postgresql":
        cut = 0
        with services.engine.connect() as conn:
            while time.monotonic() < until:
                cut += conn.execute(
                    text(
                        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                        " WHERE application_name = :name"
                    ),
                    {"name": name},
                ).scalar_one()
                conn.commit()
                time.sleep(0.02)
        assert cut > 0, "the worker should have been connected"
    else:
        database = services.engine.url.database
        assert database is not None
        lock = sqlite3.connect(database, isolation_level=None)
        lock.execute("BEGIN EXCLUSIVE")
        time.sleep(until - time.monotonic())
        lock.execute("ROLLBACK")
        lock.close()
    assert len(outbox_counts(services)) < 300, "the fault should have struck mid-campaign"
    wait_for("the campaign to complete", completed(services, campaign_id), timeout=90)
    assert workers[0].poll() is None, "the worker exited instead of riding it out"
    assert_exactly_once(services, campaign_id, 300)


def _rq_worker_states(services: Services) -> set[bytes]:
    redis = services.redis
    return {redis.hget(key, "state") or b"" for key in redis.smembers("rq:workers")}
