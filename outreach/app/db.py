"""Engine and session wiring. SQLite (WAL, foreign keys on) by default, PostgreSQL in production."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Dialect, Engine, create_engine, event, exc
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.types import TypeEngine


def make_engine(database_url: str, **kwargs: Any) -> Engine:
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        if url.database and url.database != ":memory:":
            Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url, connect_args={"timeout": 30, "check_same_thread": False}, **kwargs
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        # pysqlite's own transaction handling defers BEGIN; take it over and begin every
        # transaction IMMEDIATE: with several processes writing (web + workers), a deferred
        # transaction that reads and then writes fails with SQLITE_BUSY instead of waiting.
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    kwargs.setdefault("pool_size", 5)
    kwargs.setdefault("max_overflow", 10)
    return create_engine(url, **kwargs)


BUSY_TIMEOUT_MS = 30_000  # how long a SQLite transaction waits for the write lock, then fails


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None  # we emit BEGIN ourselves (see _sqlite_begin)
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    cursor.close()


READ_ONLY = "outreach_read_only"  # execution option of read_sessions' engine: see _sqlite_begin

# Connection info: this SQLite connection's busy timeout is 0 while it is held (HeldConnections).
# Only BEGIN IMMEDIATE waits for the lock, and once a write transaction has it, in WAL mode its
# statements do not wait for other connections: the two PRAGMAs around each BEGIN that set the
# timeout off and back cost more than the BEGIN itself.
WAITS_AT_BEGIN_ONLY = "outreach_waits_at_begin_only"


def _sqlite_begin(connection: Connection) -> None:
    """BEGIN IMMEDIATE: take the write lock now, waiting for it up to BUSY_TIMEOUT_MS.

    A read-only transaction (``make_read_session_factory``) begins DEFERRED instead, with
    ``query_only`` on: a WAL snapshot that takes no lock, so an export or a segment count over a
    million members never holds up a webhook, and cannot write by mistake.

    Straight to the driver: this runs for every transaction, and SQLAlchemy's statement machinery
    costs several times the BEGIN itself. Errors are wrapped as exec_driver_sql would wrap them
    (sqlite3.OperationalError "database is locked" -> sqlalchemy.exc.OperationalError).
    """
    driver: Any = connection.connection.driver_connection
    dbapi = connection.dialect.loaded_dbapi
    info = connection.connection.info
    read_only = bool(connection.get_execution_options().get(READ_ONLY))
    with _as_sqlalchemy_error(connection.dialect, "BEGIN IMMEDIATE"):
        if info.get(READ_ONLY, False) != read_only:  # the pooled connection's last use differed
            driver.execute(f"PRAGMA query_only={int(read_only)}")
            info[READ_ONLY] = read_only
        if read_only:
            driver.execute("BEGIN DEFERRED")
            return
        _begin_immediate(driver, dbapi, timeout_off=info.get(WAITS_AT_BEGIN_ONLY, False))


def _begin_immediate(driver: Any, dbapi: Any, *, timeout_off: bool) -> None:
    """Wait for the write lock with short sleeps first, then longer ones, up to the busy timeout.

    SQLite's own busy handler sleeps 1, 2, 5, 10, 15, 20, 25... ms between tries: a webhook whose
    transaction lasts about a millisecond then waits several for a lock freed long before, and
    with a few web processes the CPU idles while requests queue (bench/inbound_webhook.py: 77%
    busy, against 85% and 12% more texts/s with these sleeps). Here the first retry comes after
    0.1 ms, each wait half as long again as the last, up to 20 ms. Only BEGIN waits this way: the
    busy timeout is back for every statement of the transaction, but on a connection that keeps
    it off (``timeout_off``: see :data:`WAITS_AT_BEGIN_ONLY`).
    """
    if not timeout_off:
        driver.execute("PRAGMA busy_timeout=0")  # fail at once when the lock is taken
    try:
        deadline = None
        delay = 0.0001
        while True:
            try:
                driver.execute("BEGIN IMMEDIATE")
                return
            except dbapi.OperationalError as error:
                if error.sqlite_errorcode != dbapi.SQLITE_BUSY:
                    raise
                if deadline is None:
                    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
                elif time.monotonic() > deadline:
                    raise
            time.sleep(delay)
            delay = min(delay * 1.5, 0.02)
    finally:
        if not timeout_off:
            driver.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")


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


def driver_sql(dialect: Dialect, text: str) -> str:
    """Hot-path SQL written with ``?`` placeholders, on one line, in the driver's paramstyle
    (psycopg's is ``%s``): for statements sent without SQLAlchemy's compiler."""
    text = " ".join(text.split())
    return text if dialect.paramstyle == "qmark" else text.replace("?", "%s")


def bind_processor(type_: TypeEngine[Any], dialect: Dialect) -> Callable[[Any], Any]:
    """What SQLAlchemy does to a value of ``type_`` before the driver gets it (or nothing)."""
    return type_.dialect_impl(dialect).bind_processor(dialect) or identity


def identity(value: Any) -> Any:
    return value


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


def _set_busy_timeout(connection: Connection, milliseconds: int) -> None:
    """A SQLite connection's busy timeout, noted in its info (:data:`WAITS_AT_BEGIN_ONLY`)."""
    driver: Any = connection.connection.driver_connection
    driver.execute(f"PRAGMA busy_timeout={milliseconds}")
    connection.connection.info[WAITS_AT_BEGIN_ONLY] = milliseconds == 0


@contextmanager
def _as_sqlalchemy_error(dialect: Dialect, statement: str) -> Iterator[None]:
    """A driver error as SQLAlchemy would raise it ("database is locked": OperationalError)."""
    error_type = dialect.loaded_dbapi.Error
    try:
        yield
    except error_type as error:
        raise exc.DBAPIError.instance(statement, (), error, error_type, dialect=dialect) from error


def _set_writable(connection: Connection) -> None:
    """A pooled SQLite connection last lent to a read session writes again (see _sqlite_begin):
    ``begin_on_driver`` does not go through it."""
    info = connection.connection.info
    if info.get(READ_ONLY, False):
        driver: Any = connection.connection.driver_connection
        driver.execute("PRAGMA query_only=0")
        info[READ_ONLY] = False


def _give_back(connection: Connection) -> None:
    """Return a held connection to the pool as the pool's others are: with the busy timeout."""
    if connection.dialect.name == "sqlite" and not (connection.closed or connection.invalidated):
        try:
            _set_busy_timeout(connection, BUSY_TIMEOUT_MS)
        except connection.dialect.loaded_dbapi.Error:
            connection.invalidate()  # not in a state to be used again: the pool discards it
    connection.close()


class HeldConnections:
    """One connection per thread, kept checked out between transactions: the webhook's hot path.

    A connection checked out of the pool for each inbound text costs, on PostgreSQL, a ping
    (``pool_pre_ping``) and a ROLLBACK when it goes back: 3 of a reply's 10 round trips. On both
    databases it costs SQLAlchemy's checkout and return. A held connection skips them. After any
    error in its transaction it goes back to the pool (which discards it if it is broken: a lost
    server, a closed file), so the request that met a dead connection fails, Twilio retries it,
    and the retry gets a working one. After a fork the child holds its own (the parent's stay the
    parent's). ``close`` returns them all.

    On SQLite a held connection keeps its busy timeout off (:data:`WAITS_AT_BEGIN_ONLY`) and
    gets it back when it returns to the pool.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._local = threading.local()
        self._all: list[tuple[int, threading.Thread, Connection]] = []  # (pid, owner, connection)
        self._lock = threading.Lock()

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        """This thread's connection in a transaction that commits on success."""
        connection = self._connection()
        try:
            with connection.begin():
                yield connection
        except BaseException:
            self._release(connection)
            raise

    @contextmanager
    def begin_on_driver(self) -> Iterator[Connection]:
        """``begin`` for work done on the driver connection alone, with no SQLAlchemy statement.

        On SQLite BEGIN IMMEDIATE and COMMIT go straight to the driver: SQLAlchemy's transaction
        around them cost an inbound text 33k instructions (2% of its CPU), the commit's share
        inside the write lock. Errors come out as SQLAlchemy's, as they do from ``begin``.
        """
        connection = self._connection()
        if connection.dialect.name != "sqlite":
            with self.begin() as same:
                yield same
            return
        dialect = connection.dialect
        dbapi = dialect.loaded_dbapi
        driver: Any = connection.connection.driver_connection
        try:
            with _as_sqlalchemy_error(dialect, "BEGIN IMMEDIATE"):
                _begin_immediate(driver, dbapi, timeout_off=True)
            yield connection
            with _as_sqlalchemy_error(dialect, "COMMIT"):
                driver.commit()
        except BaseException:
            self._release(connection)  # the pool rolls the transaction back as it takes it
            raise

    def _connection(self) -> Connection:
        pid = os.getpid()
        connection: Connection | None = getattr(self._local, "connection", None)
        if connection is None or connection.closed or self._local.pid != pid:
            self._release_orphans(pid)
            connection = self.engine.connect()
            if connection.dialect.name == "sqlite":
                _set_busy_timeout(connection, 0)
                _set_writable(connection)
            with self._lock:
                self._all.append((pid, threading.current_thread(), connection))
            self._local.connection, self._local.pid = connection, pid
        return connection

    def _release_orphans(self, pid: int) -> None:
        """Return the connections of this process's threads that have ended.

        A server that starts a thread per request (Werkzeug's threaded server) would otherwise
        keep one connection per request it ever served, until the pool ran dry.
        """
        with self._lock:
            ended = [c for p, t, c in self._all if p == pid and not t.is_alive()]
            self._all = [(p, t, c) for p, t, c in self._all if p != pid or t.is_alive()]
        for connection in ended:
            _give_back(connection)

    def _release(self, connection: Connection) -> None:
        with self._lock:
            self._all = [(p, t, c) for p, t, c in self._all if c is not connection]
        self._local.connection = None
        _give_back(connection)

    def close(self) -> None:
        """Return this process's connections to the pool (a parent's are not the child's)."""
        pid = os.getpid()
        with self._lock:
            mine = [c for p, _, c in self._all if p == pid]
            self._all = []
        for connection in mine:
            _give_back(connection)
