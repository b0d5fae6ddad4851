"""The ticker: each chore once per period across every worker, never twice at once, outages
survived. Two tickers stand for two worker processes; the clock is injected."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import redis

from outreach.app.services import Services
from outreach.campaigns.leases import Lease
from workers.ticker import Chore, Ticker


class Clock:
    def __init__(self) -> None:
        self.value = 0.0

    def __call__(self) -> float:
        return self.value


def make_ticker(services: Services, name: str, clock: Clock, chores: list[Chore]) -> Ticker:
    lease = Lease(services.sessions, name, now=lambda: datetime.now(UTC), monotonic=clock)
    return Ticker(lease, services.redis, chores, monotonic=clock)


def test_two_workers_run_a_chore_once_per_period(services: Services) -> None:
    runs: list[str] = []
    clock = Clock()
    a = make_ticker(services, "a", clock, [Chore("c", 60, lambda: runs.append("a"))])
    b = make_ticker(services, "b", clock, [Chore("c", 60, lambda: runs.append("b"))])
    a.tick()
    b.tick()
    assert runs == ["a"]
    clock.value = 30  # their next tries come after a period of their own
    a.tick()
    b.tick()
    assert runs == ["a"]
    services.redis.delete("outreach:chore:c")  # the period is over (the key's TTL)
    clock.value = 61
    b.tick()
    a.tick()
    assert runs == ["a", "b"]


def test_a_chore_still_running_is_not_started_again(services: Services) -> None:
    clock = Clock()
    runs: list[str] = []
    other = Lease(services.sessions, "b", now=lambda: datetime.now(UTC))
    other.beat()  # alive
    lock = services.redis.lock("outreach:chore:slow:running", timeout=60)
    assert lock.acquire(blocking=False, token="b")  # another worker is in the middle of it
    ticker = make_ticker(services, "a", clock, [Chore("slow", 1, lambda: runs.append("a"))])
    ticker.tick()
    assert runs == []
    lock.release()


def test_failures_are_logged_once_and_the_ticker_goes_on(
    services: Services, caplog: pytest.LogCaptureFixture
) -> None:
    clock = Clock()
    calls: list[int] = []

    def broken() -> None:
        calls.append(1)
        raise redis.ConnectionError("Redis went away")

    ticker = make_ticker(services, "a", clock, [Chore("broken", 1, broken)])
    for step in range(3):
        services.redis.delete("outreach:chore:broken")
        clock.value = step * 2
        ticker.tick()
    assert len(calls) == 3
    assert caplog.text.count("ticker: broken failed") == 1


def test_the_lease_is_renewed_on_its_own_period(services: Services) -> None:
    clock = Clock()
    ticker = make_ticker(services, "a", clock, [])
    renewed: list[float] = []
    ticker._lease.beat = lambda: renewed.append(clock.value)  # type: ignore[method-assign]
    for value in (0, 1, 2, 2.5, 3, 4.9, 5, 6):
        clock.value = value
        ticker.tick()
    assert renewed == [0, 2.5, 5]


def test_a_chore_lock_left_by_a_dead_worker_is_taken_over(services: Services) -> None:
    """A worker killed mid-sweep must not stop every sweep for the lock's ten minutes."""
    clock = Clock()
    runs: list[str] = []
    dead = Lease(services.sessions, "dead", now=lambda: datetime.now(UTC) - timedelta(minutes=5))
    dead.beat()  # its last beat, five minutes ago
    alive = Lease(services.sessions, "alive", now=lambda: datetime.now(UTC))
    alive.beat()
    for holder in ("alive", "dead"):
        services.redis.delete("outreach:chore:sweep")  # a new period
        services.redis.set("outreach:chore:sweep:running", holder, px=600_000)
        ticker = make_ticker(services, "a", clock, [Chore("sweep", 1, lambda: runs.append("a"))])
        ticker.tick()
        clock.value += 2
    assert runs == ["a"]  # only once its holder was dead
    assert services.redis.get("outreach:chore:sweep:running") is None  # and released after
