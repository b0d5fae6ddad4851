"""Two requests that meet in the database: hold their writes until both are in flight."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from sqlalchemy import Connection, text

from outreach.app.services import Services


class Hold:
    """What :func:`held` holds; ``wait`` returns once enough requests are stopped by it."""

    def __init__(self, connection: Connection, table: str) -> None:
        self.connection = connection
        self.table = table

    def wait(self, waiters: int, *, or_until: Callable[[], bool] = lambda: False) -> None:
        """Until ``waiters`` requests wait for a lock (or ``or_until()``: one of them finished).

        SQLite: they wait at BEGIN IMMEDIATE, which nothing here can observe; half a second.
        """
        if self.connection.dialect.name != "postgresql":
            time.sleep(0.5)
            return
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            blocked = self.connection.execute(
                text("SELECT count(*) FROM pg_locks WHERE NOT granted")
            ).scalar_one()
            if blocked >= waiters or or_until():
                return
            time.sleep(0.02)
        raise AssertionError(f"fewer than {waiters} requests reached {self.table}")


@contextmanager
def held(services: Services, table: str = "members") -> Iterator[Hold]:
    """Hold writes to ``table`` until the block ends.

    PostgreSQL: a SHARE lock, which lets requests read and write elsewhere, then stops each
    where it writes to ``table``; let go, they go on side by side. SQLite: its one write lock,
    which stops them at BEGIN; let go, they run one after the other, and must come out the same.
    """
    engine = services.engine
    with engine.connect() as connection:
        if engine.dialect.name == "postgresql":
            connection.execute(text(f"LOCK TABLE {table} IN SHARE MODE"))
        else:
            connection.exec_driver_sql("SELECT 1")  # begins IMMEDIATE (outreach.app.db)
        try:
            yield Hold(connection, table)
        finally:
            connection.rollback()
