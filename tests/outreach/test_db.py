"""SQLite transactions: every one takes the write lock at BEGIN, waiting for it, not failing."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import Engine, exc, text

from outreach.app import db


def _engine_with_table(path: Path, **pool: int) -> Engine:
    engine = db.make_engine(f"sqlite:///{path}", **pool)
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE t (x INTEGER)"))
    return engine


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    return _engine_with_table(tmp_path / "lock.db")


def _hold_write_lock(engine: Engine, seconds: float, taken: threading.Event) -> threading.Thread:
    def hold() -> None:
        with engine.begin() as connection:
            connection.execute(text("INSERT INTO t VALUES (1)"))
            taken.set()
            time.sleep(seconds)

    thread = threading.Thread(target=hold)
    thread.start()
    assert taken.wait(5)
    return thread


def test_begin_waits_for_the_write_lock_then_sees_the_other_commit(engine: Engine) -> None:
    taken = threading.Event()
    holder = _hold_write_lock(engine, 0.3, taken)
    started = time.monotonic()
    with engine.begin() as connection:
        waited = time.monotonic() - started
        # BEGIN IMMEDIATE returned only once the holder committed: its row is visible.
        assert connection.execute(text("SELECT count(*) FROM t")).scalar_one() == 1
        # The busy timeout is back for the statements of the transaction.
        busy = connection.execute(text("PRAGMA busy_timeout")).scalar_one()
        assert busy == db.BUSY_TIMEOUT_MS
        connection.execute(text("INSERT INTO t VALUES (2)"))
    holder.join()
    assert waited >= 0.2
    with engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM t")).scalar_one() == 2


def test_begin_gives_up_after_the_busy_timeout(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(db, "BUSY_TIMEOUT_MS", 200)
    taken = threading.Event()
    holder = _hold_write_lock(engine, 1.5, taken)
    try:
        started = time.monotonic()
        with pytest.raises(exc.OperationalError, match="database is locked"), engine.begin():
            pass
        assert time.monotonic() - started >= 0.15
    finally:
        holder.join()
    # The connection that gave up is usable again, with the busy timeout restored.
    with engine.begin() as connection:
        assert connection.execute(text("PRAGMA busy_timeout")).scalar_one() == 200
        assert connection.execute(text("SELECT count(*) FROM t")).scalar_one() == 1


def test_held_connections_of_ended_threads_go_back_to_the_pool(tmp_path: Path) -> None:
    """A thread per request (Werkzeug's threaded server) must not keep a connection per request."""
    engine = db.make_engine(f"sqlite:///{tmp_path / 'held.db'}", pool_size=2, max_overflow=0)
    engine.pool._timeout = 1  # type: ignore[attr-defined] - fail fast if one is never returned
    held = db.HeldConnections(engine)

    def request() -> None:
        with held.begin() as connection:
            assert connection.execute(text("SELECT 1")).scalar() == 1

    for _ in range(10):  # five times the pool, one thread after another
        thread = threading.Thread(target=request)
        thread.start()
        thread.join()
    request()  # this thread's own, after the ended threads' were returned
    assert engine.pool.checkedout() == 1  # type: ignore[attr-defined]
    held.close()
    assert engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    engine.dispose()


def test_a_held_connection_waits_at_begin_and_goes_back_with_the_busy_timeout(
    tmp_path: Path,
) -> None:
    """Held connections keep the busy timeout off (no PRAGMA pair around each BEGIN): BEGIN still
    waits for the lock, and the pool gets the connection back as it lent it."""
    engine = _engine_with_table(tmp_path / "held.db", pool_size=2, max_overflow=0)
    held = db.HeldConnections(engine)
    taken = threading.Event()
    holder = _hold_write_lock(engine, 0.3, taken)
    started = time.monotonic()
    with held.begin() as connection:
        waited = time.monotonic() - started
        assert connection.execute(text("SELECT count(*) FROM t")).scalar_one() == 1
        assert connection.execute(text("PRAGMA busy_timeout")).scalar_one() == 0
    holder.join()
    assert waited >= 0.2
    held.close()
    with engine.connect() as first, engine.connect() as second:  # the pool's two, the held one too
        for connection in (first, second):
            driver = connection.connection.driver_connection  # no transaction: no write lock
            assert driver.execute("PRAGMA busy_timeout").fetchone() == (db.BUSY_TIMEOUT_MS,)
            assert not connection.connection.info.get(db.WAITS_AT_BEGIN_ONLY)
    engine.dispose()


def test_a_read_only_session_holds_no_lock_and_cannot_write(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An export or a segment count over a million members must not hold up the webhooks."""
    monkeypatch.setattr(db, "BUSY_TIMEOUT_MS", 200)
    reads = db.make_read_session_factory(engine)
    with reads() as session:
        assert session.execute(text("SELECT count(*) FROM t")).scalar_one() == 0
        # The read's transaction is open; a write elsewhere takes the lock at once and commits.
        started = time.monotonic()
        with engine.begin() as connection:
            connection.execute(text("INSERT INTO t VALUES (1)"))
        assert time.monotonic() - started < 0.15
        # The read keeps its snapshot until it ends...
        assert session.execute(text("SELECT count(*) FROM t")).scalar_one() == 0
        with pytest.raises(exc.OperationalError, match="readonly"):
            session.execute(text("INSERT INTO t VALUES (2)"))
    # ...and the next one sees the write.
    with reads() as session:
        assert session.execute(text("SELECT count(*) FROM t")).scalar_one() == 1


def test_a_connection_read_only_once_writes_again_from_the_pool(tmp_path: Path) -> None:
    engine = _engine_with_table(tmp_path / "one.db", pool_size=1, max_overflow=0)
    reads, writes = db.make_read_session_factory(engine), db.make_session_factory(engine)
    for _ in range(2):  # the pool's one connection, back and forth
        with reads() as session:
            assert session.execute(text("SELECT count(*) FROM t")).scalar() is not None
        with writes.begin() as session:
            session.execute(text("INSERT INTO t VALUES (1)"))
    with engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM t")).scalar_one() == 2
    engine.dispose()


def test_begin_on_driver_commits_rolls_back_and_writes_after_a_read_session(
    tmp_path: Path,
) -> None:
    """The inbound webhook's transaction, on the driver alone: the same outcomes as ``begin``,
    on a pooled connection a read session left query-only."""
    engine = _engine_with_table(tmp_path / "one.db", pool_size=1, max_overflow=0)
    with db.make_read_session_factory(engine)() as session:  # the pool's one connection
        assert session.execute(text("SELECT count(*) FROM t")).scalar_one() == 0
    held = db.HeldConnections(engine)
    with held.begin_on_driver() as connection:
        connection.connection.driver_connection.execute("INSERT INTO t VALUES (1)")

    def fail() -> None:
        with held.begin_on_driver() as connection:
            connection.connection.driver_connection.execute("INSERT INTO t VALUES (2)")
            raise RuntimeError("the text's work failed")

    with pytest.raises(RuntimeError):
        fail()
    held.close()
    with engine.connect() as connection:
        assert connection.execute(text("SELECT x FROM t")).scalars().all() == [1]
    engine.dispose()


def test_begin_on_driver_gives_up_as_begin_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A lock held past the busy timeout: SQLAlchemy's OperationalError (what the Twilio spool
    waits out), and the connection goes back to the pool."""
    monkeypatch.setattr(db, "BUSY_TIMEOUT_MS", 200)
    engine = _engine_with_table(tmp_path / "two.db", pool_size=2, max_overflow=0)
    held = db.HeldConnections(engine)
    taken = threading.Event()
    holder = _hold_write_lock(engine, 1.0, taken)
    try:
        with (
            pytest.raises(exc.OperationalError, match="database is locked"),
            held.begin_on_driver(),
        ):
            pass
        assert engine.pool.checkedout() == 1  # type: ignore[attr-defined] - the holder's only
    finally:
        holder.join()
    with held.begin_on_driver() as connection:
        connection.connection.driver_connection.execute("INSERT INTO t VALUES (2)")
    held.close()
    engine.dispose()
