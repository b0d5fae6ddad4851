"""Two requests that meet in the database: hold their writes until both are in flight."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from sqlalchemy import text

from outreach.services import Services


@contextmanager
def held(services: Services, waiters: int, table: str = "members") -> Iterator[Callable[[], None]]:
    """Hold writes to ``table`` until the returned ``wait`` saw ``waiters`` requests blocked.

    PostgreSQL: a SHARE lock, which lets the requests read and write elsewhere, then stops each
    where it writes to ``table``; let go, they go on side by side. SQLite: its one write lock,
    which stops them at BEGIN; let go, they run one after the other, and must come out the same.
    """
    engine = services.engine
    with engine.connect() as connection:
        if engine.dialect.name == "postgresql":
            connection.execute(text(f"LOCK TABLE {table} IN SHARE MODE"))

            def wait() -> None:
                deadline = time.monotonic() + 20
                while time.monotonic() < deadline:
                    blocked = connection.execute(
                        text("SELECT count(*) FROM pg_locks WHERE NOT granted")
                    ).scalar_one()
                    if blocked >= waiters:
                        return
                    time.sleep(0.02)
                raise AssertionError(f"fewer than {waiters} requests reached {table}")

        else:
            connection.exec_driver_sql("SELECT 1")  # begins IMMEDIATE (outreach.db)

            def wait() -> None:
                time.sleep(0.5)  # they wait at BEGIN IMMEDIATE, which nothing here can observe

        try:
            yield wait
        finally:
            connection.rollback()
