"""Worker leases: renewal, the fence that stops a stale worker's sends, what counts as alive."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from outreach.app.services import Services
from outreach.campaigns import leases
from outreach.models import WorkerLease

T0 = datetime(2027, 1, 12, 15, 0, tzinfo=UTC)


class Clocks:
    def __init__(self) -> None:
        self.wall = T0
        self.mono = 100.0

    def now(self) -> datetime:
        return self.wall

    def monotonic(self) -> float:
        return self.mono

    def advance(self, seconds: float) -> None:
        self.wall += timedelta(seconds=seconds)
        self.mono += seconds


def test_a_lease_is_renewed_and_its_token_is_alive_until_the_timeout(services: Services) -> None:
    clocks = Clocks()
    lease = leases.Lease(
        services.sessions, "w1", now=clocks.now, timeout=15, monotonic=clocks.monotonic
    )
    assert lease.beat_every == 2.5
    lease.beat()
    token = lease.hold(7)
    assert token == "w1:7:1"
    assert leases.campaign_of(token) == 7
    with services.sessions() as session:
        assert leases.live_tokens(session, now=clocks.now(), timeout=15) == {token}
        assert (
            leases.live_tokens(session, now=clocks.now() + timedelta(seconds=16), timeout=15)
            == set()
        )
    lease.release()
    lease.beat()
    with services.sessions() as session:
        assert leases.live_tokens(session, now=clocks.now(), timeout=15) == set()
        assert session.scalar(select(WorkerLease.holding)) is None
    assert lease.hold(7) == "w1:7:2"  # each job its own token


def test_a_worker_that_cannot_renew_stops_sending_before_it_can_be_called_dead(
    services: Services,
) -> None:
    clocks = Clocks()
    lease = leases.Lease(
        services.sessions, "w1", now=clocks.now, timeout=15, monotonic=clocks.monotonic
    )
    assert not lease.may_send()  # no job holds it yet
    lease.hold(1)
    assert lease.may_send()
    clocks.advance(7.4)
    assert lease.may_send()
    clocks.advance(0.2)  # half the timeout without a renewal: no more sends
    assert not lease.may_send()
    lease.beat()
    assert lease.may_send()


def test_a_clean_exit_removes_the_lease_and_dead_ones_are_forgotten(services: Services) -> None:
    clocks = Clocks()
    first = leases.Lease(services.sessions, "w1", now=clocks.now, monotonic=clocks.monotonic)
    second = leases.Lease(services.sessions, "w2", now=clocks.now, monotonic=clocks.monotonic)
    first.beat()
    second.beat()
    first.end()
    with services.sessions() as session:
        assert session.scalars(select(WorkerLease.worker_id)).all() == ["w2"]
        assert leases.live_workers(session, now=clocks.now()) == 1
    with services.sessions.begin() as session:
        leases.forget_dead(session, now=clocks.now() + leases.FORGET_AFTER + timedelta(seconds=1))
    with services.sessions() as session:
        assert session.scalars(select(WorkerLease.worker_id)).all() == []


def test_worker_ids_are_unique_and_never_contain_the_token_separator() -> None:
    ids = {leases.new_worker_id() for _ in range(50)}
    assert len(ids) == 50
    assert not any(":" in worker_id for worker_id in ids)
