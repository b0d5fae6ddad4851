"""Engine and session wiring. SQLite (WAL, foreign keys on) by default, PostgreSQL in production.

On SQLite every transaction begins ``IMMEDIATE``, taking the write lock at BEGIN: with several
processes writing (web and workers), a deferred transaction that reads and then writes fails with
``SQLITE_BUSY`` instead of waiting. BEGIN tries for the lock every couple of milliseconds until
the busy timeout: SQLite's own busy handler backs off to 100 ms between tries, and a STOP waiting
that way behind a big import loses every short gap between the import's chunks to the import.
This is SQLAlchemy's documented recipe for pysqlite (the driver's own transaction handling
off, BEGIN emitted in the ``begin`` event). Sessions for reads only begin ``DEFERRED`` with
``query_only`` on: a WAL snapshot that takes no lock, so an export or a segment count over a
million members never holds up a webhook, and cannot write by mistake.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

BUSY_TIMEOUT = 30.0  # seconds a SQLite transaction waits for the write lock, then fails
BEGIN_POLL = 0.002  # seconds between a waiting BEGIN's tries for the write lock
_STATEMENT_BUSY_MS = 2  # SQLite's own wait inside a transaction (WAL: writers hold the lock)
_BUSY_TIMEOUT = "outreach_busy_timeout"
READ_ONLY = "outreach_read_only"  # execution option of read sessions' engine


def make_engine(database_url: str, *, busy_timeout: float = BUSY_TIMEOUT, **kwargs: Any) -> Engine:
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite":
        kwargs.setdefault("pool_pre_ping", True)
        kwargs.setdefault("pool_size", 5)
        kwargs.setdefault("max_overflow", 10)
        return create_engine(url, **kwargs)
    if url.database and url.database != ":memory:":
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(
        url, connect_args={"timeout": busy_timeout, "check_same_thread": False}, **kwargs
    )

    def connect(dbapi_connection: Any, record: Any) -> None:
        _sqlite_connect(dbapi_connection, record)
        record.info[_BUSY_TIMEOUT] = busy_timeout

    event.listen(engine, "connect", connect)
    event.listen(engine, "begin", _sqlite_begin)
    return engine


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None  # we emit BEGIN ourselves (see _sqlite_begin)
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={_STATEMENT_BUSY_MS}")  # BEGIN waits in _sqlite_begin
    cursor.close()


def _sqlite_begin(connection: Connection) -> None:
    read_only = bool(connection.get_execution_options().get(READ_ONLY))
    info = connection.connection.info
    if info.get(READ_ONLY, False) != read_only:  # the pooled connection's last use differed
        connection.exec_driver_sql(f"PRAGMA query_only={int(read_only)}")
        info[READ_ONLY] = read_only
    if read_only:
        connection.exec_driver_sql("BEGIN DEFERRED")
        return
    driver = connection.connection.driver_connection
    deadline = time.monotonic() + float(info.get(_BUSY_TIMEOUT, BUSY_TIMEOUT))
    while True:
        try:
            driver.execute("BEGIN IMMEDIATE")  # type: ignore[union-attr]
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() >= deadline:
                raise OperationalError("BEGIN IMMEDIATE", (), error) from error
        time.sleep(BEGIN_POLL)


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False)


def make_read_session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions for reads only (exports, counts, pages): on SQLite they take no write lock."""
    return sessionmaker(bind=engine.execution_options(**{READ_ONLY: True}), expire_on_commit=False)


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A session whose work commits on success and rolls back on any error."""
    with factory() as session, session.begin():
        yield session
