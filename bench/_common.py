"""Shared plumbing for the campaign benchmarks (bench/campaign_*.py).

- :class:`BenchInstance`: a migrated database (a SQLite file in a temp directory, or a
  PostgreSQL schema of its own, dropped at the end) plus an embedded Redis on a unix socket in
  that temp directory; ``env()`` gives the environment a worker or launcher subprocess needs.
- :func:`build_audience`: a huddle and N SMS members built inside the database with one
  INSERT…SELECT per table (as bench/segment_count.py does): seconds for a million rows.
- :class:`Children`: every subprocess a bench starts, stopped at exit (also on SIGTERM).
- :func:`print_table`: a Markdown table, so the output can be pasted into RESULTS.md.

Everything stays on loopback or unix sockets.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from sqlalchemy import Engine, text  # noqa: E402

from outreach.app import migrate  # noqa: E402
from outreach.app.db import make_engine  # noqa: E402
from outreach.app.embedded_redis import EmbeddedRedis  # noqa: E402
from outreach.app.settings import Settings  # noqa: E402

PYTHON = sys.executable
ACCOUNT_SID = "AC" + "0" * 32
AUTH_TOKEN = "bench-auth-token-0123456789abcdef"  # noqa: S105 - a fake server's token
SENDER = "+16175550100"
MIB = 1024 * 1024


# --------------------------------------------------------------------------------------------
# Signals: turn SIGTERM into SystemExit so that every ``finally`` runs and children are stopped.
# --------------------------------------------------------------------------------------------


def _raise_exit(signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def install_signal_handlers() -> None:
    signal.signal(signal.SIGTERM, _raise_exit)


# --------------------------------------------------------------------------------------------
# Subprocesses
# --------------------------------------------------------------------------------------------


class Children:
    """Subprocesses started by a bench; ``stop_all()`` terminates whatever is still running."""

    def __init__(self) -> None:
        self._procs: list[subprocess.Popen[str]] = []

    def start(self, args: Sequence[str], **kwargs: Any) -> subprocess.Popen[str]:
        kwargs.setdefault("text", True)
        proc = subprocess.Popen(list(args), **kwargs)
        self._procs.append(proc)
        return proc

    def run_json(
        self, args: Sequence[str], *, env: dict[str, str], timeout: float
    ) -> dict[str, Any]:
        """Run a child that prints one JSON object on its last stdout line; return it."""
        proc = self.start(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.stop(proc)
            raise RuntimeError(f"child {args[1:3]} did not finish in {timeout:.0f} s") from None
        finally:
            with contextlib.suppress(ValueError):
                self._procs.remove(proc)
        if proc.returncode != 0:
            raise RuntimeError(f"child {args[1:3]} failed ({proc.returncode}):\n{err[-4000:]}")
        lines = [line for line in out.splitlines() if line.startswith("{")]
        if not lines:
            raise RuntimeError(f"child {args[1:3]} printed no JSON:\n{out[-2000:]}{err[-2000:]}")
        result: dict[str, Any] = json.loads(lines[-1])
        return result

    def stop(self, proc: subprocess.Popen[str], timeout: float = 5.0) -> None:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        with contextlib.suppress(ValueError):
            self._procs.remove(proc)

    def stop_all(self) -> None:
        for proc in list(self._procs):
            self.stop(proc)


def child_env(extra: dict[str, str]) -> dict[str, str]:
    """The environment for a child: PATH and the like, our settings, the project on sys.path."""
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "TZ")
    env = {k: v for k, v in os.environ.items() if k in keep}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(BENCH)])
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.update(extra)
    return env


# --------------------------------------------------------------------------------------------
# Database + Redis
# --------------------------------------------------------------------------------------------


class BenchInstance:
    """A migrated database and an embedded Redis of our own; both removed by ``close()``."""

    def __init__(self, postgres: str | None = None, *, redis: bool = True) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="ob-"))  # short: unix socket paths are limited
        self.postgres = postgres
        self.schema: str | None = None
        self._admin: Engine | None = None
        self.redis_server: EmbeddedRedis | None = None
        try:
            if postgres is None:
                self.database_url = f"sqlite:///{self.tmp / 'bench.db'}"
            else:
                self.schema = f"bench_{uuid.uuid4().hex[:12]}"
                self._admin = make_engine(_normalize(postgres))
                with self._admin.begin() as conn:
                    conn.execute(text(f'CREATE SCHEMA "{self.schema}"'))
                sep = "&" if "?" in postgres else "?"
                self.database_url = f"{postgres}{sep}options=-csearch_path%3D{self.schema}"
            engine = self.engine()
            migrate.upgrade(engine)
            engine.dispose()
            if redis:
                self.redis_server = EmbeddedRedis(self.tmp / "redis.sock").start()
        except BaseException:
            self.close()
            raise

    @property
    def backend(self) -> str:
        return "sqlite" if self.postgres is None else "postgresql"

    @property
    def redis_url(self) -> str:
        if self.redis_server is None:
            raise RuntimeError("this instance has no Redis")
        return self.redis_server.url

    def engine(self) -> Engine:
        return make_engine(_normalize(self.database_url))

    def env(self, **extra: str) -> dict[str, str]:
        values = {
            "OUTREACH_ENV": "test",
            "DATABASE_URL": self.database_url,
            "SECRET_KEY": "bench-secret-key-" + "x" * 32,
            "OUTREACH_INSTANCE_PATH": str(self.tmp / "instance"),
            "SMS_BACKEND": "sandbox",
            "EMAIL_BACKEND": "sandbox",
            "SANDBOX_FAILURE_RATE": "0",
        }
        if self.redis_server is not None:
            values["REDIS_URL"] = self.redis_server.url
        values.update(extra)
        return values

    def settings(self, **extra: str) -> Settings:
        return Settings.from_env(self.env(**extra), dotenv=False)

    def close(self) -> None:
        if self.redis_server is not None:
            with contextlib.suppress(Exception):
                self.redis_server.stop()
            self.redis_server = None
        if self._admin is not None and self.schema is not None:
            with contextlib.suppress(Exception), self._admin.begin() as conn:
                conn.execute(text(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE'))
            self._admin.dispose()
            self._admin = None
        shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self) -> BenchInstance:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _normalize(url: str) -> str:
    return Settings.from_env({"DATABASE_URL": url}, dotenv=False).database_url


# --------------------------------------------------------------------------------------------
# Audience
# --------------------------------------------------------------------------------------------


def _h(expr: str, k: int) -> str:
    """A deterministic pseudo-random number in 0..99 from the integer ``expr``."""
    multipliers = [7919, 104729, 224737, 350377, 479909]
    return f"((CAST({expr} AS BIGINT) * {multipliers[k]} + {k * 7}) % 1000003 % 100)"


def build_audience(
    engine: Engine,
    n: int,
    *,
    places: Sequence[tuple[str, str]] = (("02128", "617"),),
    mixed: bool = True,
    slug: str = "bench",
    timezone: str = "America/New_York",
    verbose: bool = True,
) -> int:
    """A huddle ``slug`` sending from SENDER, and ``n`` members subscribed to it by SMS.

    ``mixed``: 92% active, 5% pending (not audience), 3% opted out (skipped), and 0.5% of the
    active ones suppressed (skipped); else everyone active. Member i lives at ``places[i % k]``
    (zip, area code); phones are +1 AREA 2000001…. Returns the huddle id.
    """
    from outreach.app.db import make_session_factory
    from outreach.people.huddles import create_huddle

    with make_session_factory(engine).begin() as session:
        huddle = create_huddle(
            session,
            slug=slug,
            name="Bench Huddle",
            keywords=[slug.upper()],
            sender=SENDER,
            timezone=timezone,
        )
        huddle_id = huddle.id
    sqlite = engine.dialect.name == "sqlite"
    if sqlite:
        with_ = (
            f"WITH RECURSIVE seq(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM seq WHERE i < {n}) "
        )
        seq = "seq"
        ts = "'2026-01-05 12:00:00.000000'"
    else:
        with_, seq = "", f"generate_series(CAST(1 AS BIGINT), {n}) AS seq(i)"
        ts = "TIMESTAMPTZ '2026-01-05 12:00:00+00'"
    state = (
        f"CASE WHEN {_h('id', 0)} < 3 THEN 'opted_out' WHEN {_h('id', 0)} < 8 THEN 'pending'"
        " ELSE 'active' END"
        if mixed
        else "'active'"
    )
    names = ["Maria", "James", "Aisha", "Wei", "Carlos", "Fatima", "John", "Priya"]
    first = _pick("i % 8", names)
    zips = _pick(f"i % {len(places)}", [z for z, _ in places])
    areas = _pick(f"i % {len(places)}", [a for _, a in places])
    statements = [
        f"{with_}INSERT INTO members (id, phone, first_name, zip, created_at)"
        f" SELECT i, '+1' || {areas} || (2000000 + i), {first}, {zips}, {ts} FROM {seq}",
        "INSERT INTO subscriptions (member_id, huddle_id, channel, state, created_at, updated_at)"
        f" SELECT id, {huddle_id}, 'sms', {state}, {ts}, {ts} FROM members",
    ]
    if mixed:
        statements.append(
            "INSERT INTO suppressions (channel, address, scope, reason, created_at)"
            f" SELECT 'sms', phone, '*', 'invalid', {ts} FROM members"
            f" WHERE {_h('id', 0)} >= 8 AND {_h('id', 1)} < 1 AND id % 2 = 0"
        )
    run_build(engine, statements, analyze=not sqlite, verbose=verbose)
    return huddle_id


def run_build(engine: Engine, statements: Sequence[str], *, analyze: bool, verbose: bool) -> None:
    """Run bulk-load statements in one transaction, timing each; then ANALYZE (PostgreSQL)."""
    with engine.begin() as conn:
        for sql in statements:
            started = time.perf_counter()
            conn.execute(text(sql))
            if verbose:
                print(f"    {time.perf_counter() - started:6.1f} s  {sql[:64]}…", flush=True)
    if analyze:
        with engine.connect() as conn:
            conn.execution_options(isolation_level="AUTOCOMMIT").execute(text("ANALYZE"))


def _pick(expr: str, values: Sequence[str]) -> str:
    whens = " ".join(f"WHEN {i} THEN '{v}'" for i, v in enumerate(values))
    return f"(CASE {expr} {whens} END)"


def create_campaign(
    engine: Engine,
    *,
    slug: str = "bench",
    body: str = "Rally Saturday at 10, {{ first_name }}! Bring a friend.",
    rate: float | None = None,
    respect_quiet_hours: bool = True,
) -> int:
    from outreach import campaigns
    from outreach.app.db import make_session_factory

    with make_session_factory(engine).begin() as session:
        campaign = campaigns.create_campaign(
            session, huddle_slug=slug, channel="sms", segment_filter="", body=body, rate=rate
        )
        campaign.respect_quiet_hours = respect_quiet_hours
        return campaign.id


# US places (zip, area code), by zone, across states with and without stricter windows.
PLACES = {
    "America/New_York": [
        ("02128", "617"), ("10001", "212"), ("19103", "215"), ("30303", "404"),
        ("33130", "305"), ("20001", "202"), ("06103", "860"), ("48201", "313"),
    ],
    "America/Chicago": [("60601", "312"), ("75201", "214"), ("55401", "612"), ("70112", "504")],
    "America/Denver": [("80202", "303"), ("85004", "602"), ("84101", "801")],
    "America/Los_Angeles": [
        ("94103", "415"), ("98101", "206"), ("97201", "503"), ("89101", "702"),
    ],
    "America/Anchorage": [("99501", "907")],
    "Pacific/Honolulu": [("96813", "808")],
}  # fmt: skip


def sendable_places(now: datetime, margin: timedelta) -> list[tuple[str, str]]:
    """The (zip, area code) pairs whose recipients may be texted from now to now + margin.

    Asks the project's own rules (the zip's zone, the area code's zones, the state's window), so
    the bench's members are really sendable and the quiet-hours check really runs.
    """
    from outreach.campaigns import quiet_hours

    found = []
    for fallback, places in PLACES.items():
        for zip_code, area in places:
            zones = quiet_hours.zones_for(
                zip_code=zip_code,
                stored_zone=None,
                phone_e164=f"+1{area}5550100",
                fallback_zone=fallback,
            )
            try:
                window = quiet_hours.window_for(
                    state=quiet_hours.state_for_zip(zip_code), campaign_window=None
                )
                if not quiet_hours.is_allowed(now, zones, window):
                    continue
                closes = quiet_hours.window_closes_at(now, zones, window)
            except (quiet_hours.NoCommonWindowError, quiet_hours.EmptyWindowError):
                continue
            if closes - now >= margin:
                found.append((zip_code, area))
    return found


def utcnow() -> datetime:
    return datetime.now(UTC)


# --------------------------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------------------------


def print_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Print (and return) a Markdown table."""
    cells = [[str(c) for c in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]

    def line(row: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |"

    out = [line(cells[0]), "| " + " | ".join("-" * w for w in widths) + " |"]
    out.extend(line(r) for r in cells[1:])
    rendered = "\n".join(out)
    print(rendered, flush=True)
    return rendered


def fmt_int(value: float) -> str:
    return f"{value:,.0f}"


@contextlib.contextmanager
def stopwatch() -> Iterator[list[float]]:
    """``with stopwatch() as t: ...`` then ``t[0]`` is the elapsed seconds."""
    box = [0.0]
    started = time.perf_counter()
    try:
        yield box
    finally:
        box[0] = time.perf_counter() - started
