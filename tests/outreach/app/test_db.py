"""SQLite transactions: every one takes the write lock at BEGIN, waiting for it, not failing."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import Engine, exc, text

from outreach.app import db


def _engine_with_table(path: Path, *, busy_timeout: float = db.BUSY_TIMEOUT, **pool: int) -> Engine:
    engine = db.make_engine(f"sqlite:///{path}", busy_timeout=busy_timeout, **pool)
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
        connection.execute(text("INSERT INTO t VALUES (2)"))
    holder.join()
    assert waited >= 0.2
    with engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM t")).scalar_one() == 2


def test_begin_gives_up_after_the_busy_timeout(tmp_path: Path) -> None:
    engine = _engine_with_table(tmp_path / "lock.db", busy_timeout=0.2)
    taken = threading.Event()
    holder = _hold_write_lock(engine, 1.5, taken)
    try:
        started = time.monotonic()
        with pytest.raises(exc.OperationalError, match="database is locked"), engine.begin():
            pass
        assert time.monotonic() - started >= 0.15
    finally:
        holder.join()
    # The connection that gave up is usable again.
    with engine.begin() as connection:
        assert connection.execute(text("SELECT count(*) FROM t")).scalar_one() == 1


def test_a_waiting_begin_gets_the_lock_in_a_gap_of_a_few_milliseconds(tmp_path: Path) -> None:
    """A writer that lets go for 10 ms between long transactions (an import's chunks) lets in
    the one waiting at its next gap: SQLite's own handler would be sleeping 100 ms at a time by
    then, and miss gap after gap."""
    engine = _engine_with_table(tmp_path / "gap.db")
    stop = threading.Event()
    committed: list[int] = []

    def importer() -> None:
        while not stop.is_set():
            with engine.begin() as connection:
                connection.execute(text("INSERT INTO t VALUES (0)"))
                stop.wait(0.4)
            committed.append(1)
            time.sleep(0.01)

    holder = threading.Thread(target=importer)
    holder.start()
    try:
        passed_while_waiting = []
        for _ in range(3):
            time.sleep(0.05)  # arrive while the importer holds the lock
            before = len(committed)
            with engine.begin() as connection:
                connection.execute(text("INSERT INTO t VALUES (1)"))
            passed_while_waiting.append(len(committed) - before)
    finally:
        stop.set()
        holder.join()
    assert max(passed_while_waiting) <= 1, passed_while_waiting


def test_a_read_only_session_holds_no_lock_and_cannot_write(tmp_path: Path) -> None:
    """An export or a segment count over a million members must not hold up the webhooks."""
    engine = _engine_with_table(tmp_path / "lock.db", busy_timeout=0.2)
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
