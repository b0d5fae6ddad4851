"""How fast does ``outreach.campaigns.segments.count`` answer on a big huddle?

SQLite and PostgreSQL.

    .venv/bin/python bench/segment_count.py                      # 1,000,000 members, SQLite
    .venv/bin/python bench/segment_count.py --members 200000
    .venv/bin/python bench/segment_count.py --postgres postgresql://postgres@127.0.0.1:5432/test
    .venv/bin/python bench/segment_count.py --indexes both       # then with the proposed indexes

Builds the data inside the database with one INSERT…SELECT per table (a recursive CTE on
SQLite, generate_series on PostgreSQL), from a deterministic hash of the row number, so both
databases hold the same rows and give the same counts:

- huddle ``logan``: every member subscribed by SMS (92% active, 5% pending, 3% opted out), the
  60% with an email also by email; tags volunteer ~10%, donor ~5%, host ~1%; custom field
  language (es ~15%, en ~45%); zips under 10 three-digit prefixes; 30% replied within a year.
- huddle ``other`` (every tenth member): its own subscriptions and tags, so isolation is real.

Then it times ``count()`` for selective and broad filters (median of 5 runs after a warm-up, each
run in a fresh session: planning included) and prints the query plans of one selective and one
broad filter (SQLite: EXPLAIN QUERY PLAN; PostgreSQL: EXPLAIN ANALYZE). SQLite works on a temp
file, as migrated, without ANALYZE (the state a deployment is in); PostgreSQL on a schema of its
own (VACUUM ANALYZE after the load, as autovacuum would), dropped at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, event, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from outreach.app import migrate
from outreach.app.db import make_engine
from outreach.app.settings import Settings
from outreach.campaigns import segments
from outreach.models import members as m

NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
FILTERS = [
    ("selective", "tag:volunteer zip:021*"),
    ("selective", "tag:host or (tag:donor zip:200*)"),
    ("selective", "zip:02128 field:language=es"),
    ("selective", "field:language=es replied<30d"),
    ("broad", ""),
    ("broad", "-tag:donor"),
    ("broad", "has:email -tag:volunteer"),
    ("broad", "joined>2025-06-01 -zip:100* or has:email"),
]
PLAN_FILTERS = ["tag:volunteer zip:021*", "-tag:donor"]
ZIP_PREFIXES = ["021", "022", "024", "100", "112", "200", "207", "606", "941", "981"]
FIRST_NAMES = ["Maria", "James", "Aisha", "Wei", "Carlos", "Fatima", "John", "Priya"]
# What this benchmark proposes for the schema (each replaces the index on its first columns).
PROPOSED_INDEXES = {
    "ix_subscriptions_huddle_channel_state_member": (
        "subscriptions (huddle_id, channel, state, member_id)"
    ),
    "ix_member_fields_huddle_name_value_member": (
        "member_fields (huddle_id, name, value, member_id)"
    ),
    "ix_members_zip_id": "members (zip, id)",  # PostgreSQL: index-only zip ranges
}


def h(expr: str, k: int) -> str:
    """A deterministic pseudo-random number in 0..99 from the integer ``expr`` (k: which one)."""
    multipliers = [7919, 104729, 224737, 350377, 479909, 611953, 746773, 882377, 1020379]
    return f"((CAST({expr} AS BIGINT) * {multipliers[k]} + {k * 7}) % 1000003 % 100)"


def h1000(expr: str, k: int) -> str:
    multipliers = [15485863, 32452843, 49979687, 67867967]
    return f"((CAST({expr} AS BIGINT) * {multipliers[k]}) % 1000003 % 1000)"


class Dialect:
    """The few SQL spellings that differ between SQLite and PostgreSQL."""

    def __init__(self, name: str) -> None:
        self.name = name

    def series(self, n: int) -> tuple[str, str]:
        """(a WITH prefix or "", a FROM item) yielding column ``i`` = 1..n."""
        if self.name == "sqlite":
            return (
                f"WITH RECURSIVE seq(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM seq "
                f"WHERE i < {n}) ",
                "seq",
            )
        return "", f"generate_series(CAST(1 AS BIGINT), {n}) AS seq(i)"

    def days_ago(self, days: str, seconds: str) -> str:
        """A timestamp ``days`` days and ``seconds`` seconds before :now (a bound epoch)."""
        if self.name == "sqlite":
            return (
                f"strftime('%Y-%m-%d %H:%M:%S', :now - ({days}) * 86400 - ({seconds}), "
                f"'unixepoch') || '.000000'"
            )
        return f"to_timestamp(:now - ({days}) * 86400 - ({seconds}))"

    def pad2(self, expr: str) -> str:
        if self.name == "sqlite":
            return f"printf('%02d', {expr})"
        return f"lpad(({expr})::text, 2, '0')"

    def pick(self, expr: str, values: list[str]) -> str:
        whens = " ".join(f"WHEN {i} THEN '{v}'" for i, v in enumerate(values))
        return f"(CASE {expr} {whens} END)"


def build(engine: Engine, n: int) -> None:
    d = Dialect(engine.dialect.name)
    with_, seq = d.series(n)
    now = int(NOW.timestamp())
    statements = [
        "INSERT INTO huddles (id, slug, name, timezone, country, opt_in_mode, profile_questions,"
        " message_frequency, created_at) VALUES"
        " (1, 'logan', 'Logan', 'America/New_York', 'US', 'double', false, 'x', :ts),"
        " (2, 'other', 'Other', 'America/Chicago', 'US', 'double', false, 'x', :ts)",
        # members
        f"{with_}INSERT INTO members (id, phone, email, first_name, zip, created_at,"
        f" last_replied_at) SELECT i, '+1' || (2000000000 + i),"
        f" CASE WHEN {h('i', 0)} < 60 THEN 'm' || i || '@example.org' END,"
        f" {d.pick('i % 8', FIRST_NAMES)},"
        f" {d.pick(h('i', 1) + ' % 10', ZIP_PREFIXES)} || {d.pad2(h('i', 2))},"
        f" {d.days_ago(h1000('i', 0) + ' % 730', 'i % 86400')},"
        f" CASE WHEN {h('i', 3)} < 30 THEN {d.days_ago(h1000('i', 1) + ' % 365', 'i % 3600')}"
        f" END FROM {seq}",
        # subscriptions: logan sms (everyone), logan email (those with an email), other sms
        "INSERT INTO subscriptions (member_id, huddle_id, channel, state, created_at, updated_at)"
        f" SELECT id, 1, 'sms', CASE WHEN {h('id', 4)} < 3 THEN 'opted_out'"
        f" WHEN {h('id', 4)} < 8 THEN 'pending' ELSE 'active' END,"
        f" {d.days_ago(h1000('id', 2) + ' % 700', 'id % 86400')}, created_at FROM members",
        "INSERT INTO subscriptions (member_id, huddle_id, channel, state, created_at, updated_at)"
        f" SELECT id, 1, 'email', CASE WHEN {h('id', 5)} < 4 THEN 'opted_out' ELSE 'active' END,"
        f" created_at, created_at FROM members WHERE email IS NOT NULL",
        "INSERT INTO subscriptions (member_id, huddle_id, channel, state, created_at, updated_at)"
        " SELECT id, 2, 'sms', 'active', created_at, created_at FROM members WHERE id % 10 = 0",
        # tags and fields (the order of the rows is the order of the index: fast inserts)
        "INSERT INTO member_tags (huddle_id, member_id, tag)"
        f" SELECT 1, id, 'volunteer' FROM members WHERE {h('id', 6)} < 10",
        "INSERT INTO member_tags (huddle_id, member_id, tag)"
        f" SELECT 1, id, 'donor' FROM members WHERE {h('id', 7)} < 5",
        "INSERT INTO member_tags (huddle_id, member_id, tag)"
        f" SELECT 1, id, 'host' FROM members WHERE {h1000('id', 3)} < 10",
        "INSERT INTO member_tags (huddle_id, member_id, tag)"
        " SELECT 2, id, 'volunteer' FROM members WHERE id % 10 = 0 AND id % 30 = 0",
        "INSERT INTO member_fields (huddle_id, member_id, name, value)"
        f" SELECT 1, id, 'language', CASE WHEN {h('id', 8)} < 15 THEN 'es' ELSE 'en' END"
        f" FROM members WHERE {h('id', 8)} < 60",
    ]
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            # Skip the per-row foreign-key triggers during the load (the rows are consistent by
            # construction) when the role may; a plain role just loads more slowly.
            with contextlib.suppress(DBAPIError), conn.begin_nested():
                conn.execute(text("SET LOCAL session_replication_role = replica"))
        for sql in statements:
            started = time.perf_counter()
            conn.execute(text(sql), {"now": now, "ts": NOW})
            print(f"  {time.perf_counter() - started:6.1f} s  {sql[:70]}…", flush=True)


def add_proposed_indexes(engine: Engine) -> None:
    with engine.begin() as conn:
        for name, target in PROPOSED_INDEXES.items():
            if name == "ix_members_zip_id" and engine.dialect.name == "sqlite":
                continue  # every SQLite index already holds the rowid (members.id)
            started = time.perf_counter()
            conn.execute(text(f"CREATE INDEX {name} ON {target}"))
            print(f"  {time.perf_counter() - started:6.1f} s  CREATE INDEX {name} ON {target}")


@contextlib.contextmanager
def capture(engine: Engine) -> Iterator[list[tuple[str, Any]]]:
    """The SQL and parameters as the driver receives them (for EXPLAIN)."""
    seen: list[tuple[str, Any]] = []

    def listener(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        seen.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", listener)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", listener)


def count_once(engine: Engine, filter_text: str) -> tuple[int, float, float]:
    """(count, wall seconds, this process's CPU seconds) of one count() in a fresh session."""
    with Session(engine) as session:
        started, cpu = time.perf_counter(), time.process_time()
        found = segments.count(
            session, huddle_id=1, channel=m.SMS, filter_text=filter_text, now=NOW
        )
        return found, time.perf_counter() - started, time.process_time() - cpu


def calibration() -> float:
    """Seconds for a fixed CPU-bound loop: how busy (or slow) the machine is right now."""
    started, total = time.perf_counter(), 0
    for i in range(10_000_000):
        total += i
    return time.perf_counter() - started


def time_filters(engine: Engine, runs: int) -> None:
    # On SQLite the query runs in this process, so its CPU time is the query's own cost, less
    # blurred than wall time when the machine is shared; PostgreSQL's runs in the server.
    sqlite = engine.dialect.name == "sqlite"
    cpu_header = f"{'cpu ms':>8}" if sqlite else ""
    print(
        f"\nload average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs; "
        f"calibration: a 10M-step Python loop takes {calibration():.2f} s here"
    )
    print(f"{'kind':<10} {'members':>9} {'median ms':>10} {'min ms':>8}{cpu_header}  filter")
    for kind, filter_text in FILTERS:
        found, _, _ = count_once(engine, filter_text)  # warm-up
        runs_ = [count_once(engine, filter_text) for _ in range(runs)]
        wall = [r[1] * 1000 for r in runs_]
        cpu = f"{statistics.median(r[2] * 1000 for r in runs_):>8.1f}" if sqlite else ""
        print(
            f"{kind:<10} {found:>9,} {statistics.median(wall):>10.1f} {min(wall):>8.1f}{cpu}  "
            f"{filter_text or '(empty)'}",
            flush=True,
        )


def print_plans(engine: Engine) -> None:
    for filter_text in PLAN_FILTERS:
        with Session(engine) as session:
            statement = segments.count_statement(
                session, huddle_id=1, channel=m.SMS, filter_text=filter_text, now=NOW
            )
            with capture(engine) as seen:
                session.execute(statement)
            sql, parameters = seen[-1]
            print(f"\n--- plan of count({filter_text!r})\n{sql}\n")
            conn = session.connection()
            if engine.dialect.name == "sqlite":
                rows = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql, parameters).all()
                depth = {0: -1}
                for node_id, parent, _, detail in rows:
                    depth[node_id] = depth.get(parent, -1) + 1
                    print("  " * depth[node_id] + detail)
            else:
                rows = conn.exec_driver_sql("EXPLAIN (ANALYZE, BUFFERS) " + sql, parameters).all()
                for (line,) in rows:
                    print(line)


def engine_for(url: str) -> Engine:
    return make_engine(Settings.from_env({"DATABASE_URL": url}, dotenv=False).database_url)


def run_sqlite(args: argparse.Namespace) -> None:
    directory = Path(tempfile.mkdtemp(prefix="segment-bench-"))
    path = directory / "bench.db"
    print(f"SQLite {path}, {args.members:,} members")
    url = f"sqlite:///{path}"
    try:
        engine = engine_for(url)
        migrate.upgrade(engine)
        started = time.perf_counter()
        with engine.connect() as conn:
            # A bigger page cache for the load only (the timing engine below has the default).
            conn.connection.dbapi_connection.execute("PRAGMA cache_size=-262144")  # type: ignore[union-attr]
        build(engine, args.members)
        if args.indexes == "proposed":
            add_proposed_indexes(engine)
        if args.analyze:
            with engine.begin() as conn:
                conn.execute(text("ANALYZE"))
        engine.dispose()
        size = path.stat().st_size / 2**20
        print(f"built in {time.perf_counter() - started:.0f} s, {size:,.0f} MiB")
        engine = engine_for(url)
        time_filters(engine, args.runs)
        print_plans(engine)
        if args.indexes == "both":
            print("\nwith the proposed indexes:")
            add_proposed_indexes(engine)
            engine.dispose()
            engine = engine_for(url)
            time_filters(engine, args.runs)
            print_plans(engine)
        engine.dispose()
    finally:
        if args.keep:
            print(f"kept {path}")
        else:
            for leftover in directory.iterdir():
                leftover.unlink()
            directory.rmdir()


def run_postgres(args: argparse.Namespace) -> None:
    schema = f"segment_bench_{uuid.uuid4().hex[:10]}"
    admin = engine_for(args.postgres)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in args.postgres else "?"
    url = f"{args.postgres}{sep}options=-csearch_path%3D{schema}"
    print(f"PostgreSQL schema {schema}, {args.members:,} members")
    try:
        engine = engine_for(url)
        migrate.upgrade(engine)
        started = time.perf_counter()
        build(engine, args.members)
        if args.indexes == "proposed":
            add_proposed_indexes(engine)
        vacuum_analyze(engine)
        print(f"built in {time.perf_counter() - started:.0f} s")
        time_filters(engine, args.runs)
        print_plans(engine)
        if args.indexes == "both":
            print("\nwith the proposed indexes:")
            add_proposed_indexes(engine)
            vacuum_analyze(engine)
            time_filters(engine, args.runs)
            print_plans(engine)
        engine.dispose()
    finally:
        if not args.keep:
            with admin.begin() as conn:
                conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        else:
            print(f"kept schema {schema}")
        admin.dispose()


def vacuum_analyze(engine: Engine) -> None:
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--members", type=int, default=1_000_000)
    parser.add_argument("--postgres", metavar="URL", help="also run on this PostgreSQL database")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument(
        "--indexes",
        choices=["schema", "proposed", "both"],
        default="schema",
        help="time with the migrated schema's indexes, with the proposed ones, or both in turn",
    )
    parser.add_argument("--analyze", action="store_true", help="run ANALYZE on SQLite too")
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    parser.add_argument("--skip-sqlite", action="store_true")
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    if not args.skip_sqlite:
        run_sqlite(args)
    if args.postgres:
        run_postgres(args)


if __name__ == "__main__":
    main()
