"""Launching a big campaign: time, the launcher's peak memory, and what the queue costs in Redis.

    .venv/bin/python bench/campaign_launch.py                       # SQLite: 100k, 1M, 2M
    .venv/bin/python bench/campaign_launch.py --postgres postgresql://postgres@127.0.0.1:5432/test
    .venv/bin/python bench/campaign_launch.py --sizes 100000 --sqlite-only

For each backend (SQLite always; PostgreSQL too with ``--postgres``, in a schema of its own that
is dropped at the end) and each size:

1. A fresh database and a fresh embedded Redis; a huddle with ``size`` SMS members built inside
   the database (bench/_common.build_audience: 92% active, 5% pending, 3% opted out, 0.5% of the
   active suppressed), by this process, so none of it counts toward the launcher's memory.
2. A draft campaign to everyone (empty segment).
3. A **fresh launcher subprocess** (the project's code only, settings from the environment,
   ``workers.context.install(services)``) runs what ``jobs.launch_campaign`` runs: ``fanout.start``,
   ``fanout.snapshot`` then ``jobs.enqueue_batches``, timing each, and reports
   ``getrusage(RUSAGE_SELF).ru_maxrss`` after the imports (baseline) and at the end (peak).
4. Redis ``INFO memory used_memory`` before and after, and the number of queued deliveries:
   Redis growth per million queued recipients.

Targets (shared/DESIGN.md's hot path, this bench's brief): 1M launched in < 30 s; launcher peak
< 150 MiB and flat (peak at 2M ≤ 1.15 × peak at 1M); Redis < 16 MiB per million queued.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    MIB,
    PYTHON,
    BenchInstance,
    Children,
    build_audience,
    child_env,
    create_campaign,
    fmt_int,
    install_signal_handlers,
    print_table,
)

DEFAULT_SIZES = [100_000, 1_000_000, 2_000_000]
LAUNCH_TIMEOUT = 600.0  # seconds a launcher may take before the bench gives up on it
APPLICATION_NAME = "outreach-bench-launcher"


# --------------------------------------------------------------------------------------------
# The launcher (a fresh subprocess per launch)
# --------------------------------------------------------------------------------------------


def _maxrss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _database_cpu(svc: Any) -> float | None:
    """CPU seconds of the PostgreSQL server processes behind our connections (None: SQLite).

    The pool keeps its connections for the whole launch, so their server processes' CPU time
    (from /proc, same machine) is the database's work for this launch, whatever else runs.
    """
    if svc.engine.dialect.name != "postgresql":
        return None
    from sqlalchemy import text

    with svc.engine.connect() as conn:
        pids = (
            conn.execute(
                text("SELECT pid FROM pg_stat_activity WHERE application_name = :n"),
                {"n": APPLICATION_NAME},
            )
            .scalars()
            .all()
        )
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def child_launch(campaign_id: int) -> None:
    from outreach.app.clock import utcnow
    from outreach.app.services import Services
    from outreach.app.settings import Settings
    from outreach.campaigns import fanout
    from workers import context, jobs

    svc = Services.build(Settings.from_env(dotenv=False))
    context.install(svc)
    baseline = _maxrss_mib()
    now = utcnow()
    started = time.perf_counter()
    with svc.sessions.begin() as session:
        state = fanout.start(session, campaign_id, now=now)
    assert state == "sending", state
    audience = fanout.snapshot(svc.sessions, campaign_id, now=now)
    snapshotted = time.perf_counter()
    after_snapshot = _maxrss_mib()
    batches = jobs.enqueue_batches(campaign_id)
    done = time.perf_counter()
    database_cpu = _database_cpu(svc)
    svc.close()
    print(
        json.dumps(
            {
                "audience": audience,
                "batches": batches,
                "snapshot_s": snapshotted - started,
                "enqueue_s": done - snapshotted,
                "total_s": done - started,
                "baseline_mib": baseline,
                "after_snapshot_mib": after_snapshot,
                "peak_mib": _maxrss_mib(),
                "launcher_cpu_s": _own_cpu(),
                "database_cpu_s": database_cpu,
            }
        ),
        flush=True,
    )


# --------------------------------------------------------------------------------------------
# The bench
# --------------------------------------------------------------------------------------------


def used_memory(instance: BenchInstance) -> int:
    import redis

    client = redis.Redis.from_url(instance.redis_url)
    try:
        return int(client.info("memory")["used_memory"])
    finally:
        client.close()


def queued_count(instance: BenchInstance, campaign_id: int) -> tuple[int, int]:
    from sqlalchemy import text

    engine = instance.engine()
    try:
        with engine.connect() as conn:
            rows = dict(
                conn.execute(
                    text(
                        "SELECT state, count(*) FROM deliveries WHERE campaign_id = :c"
                        " GROUP BY state"
                    ),
                    {"c": campaign_id},
                ).all()
            )
    finally:
        engine.dispose()
    return int(rows.get("queued", 0)), int(sum(rows.values()))


def queue_length(instance: BenchInstance) -> int:
    import redis

    from workers.queues import SEND_QUEUE

    client = redis.Redis.from_url(instance.redis_url)
    try:
        return int(client.llen(f"rq:queue:{SEND_QUEUE}"))
    finally:
        client.close()


def run_one(children: Children, postgres: str | None, size: int) -> dict[str, Any]:
    backend = "sqlite" if postgres is None else "postgresql"
    print(f"\n== {backend}, {size:,} members", flush=True)
    with BenchInstance(postgres) as instance:
        engine = instance.engine()
        built = time.perf_counter()
        build_audience(engine, size)
        campaign_id = create_campaign(engine)
        engine.dispose()
        print(f"    built in {time.perf_counter() - built:.1f} s", flush=True)
        before = used_memory(instance)
        env = instance.env()
        if postgres is not None:
            env["DATABASE_URL"] += f"&application_name={APPLICATION_NAME}"
        load_before = os.getloadavg()[0]
        result = children.run_json(
            [PYTHON, __file__, "--child-launch", str(campaign_id)],
            env=child_env(env),
            timeout=LAUNCH_TIMEOUT,
        )
        after = used_memory(instance)
        result["load"] = (load_before + os.getloadavg()[0]) / 2
        queued, total = queued_count(instance, campaign_id)
        jobs_in_queue = queue_length(instance)
    result.update(
        backend=backend,
        size=size,
        queued=queued,
        deliveries=total,
        jobs_in_queue=jobs_in_queue,
        redis_growth=after - before,
        redis_per_million_mib=(after - before) / MIB / max(queued, 1) * 1_000_000,
    )
    print(f"    {json.dumps(result)}", flush=True)
    return result


def report(results: list[dict[str, Any]]) -> None:
    print("\n## Campaign launch (snapshot + enqueue), fresh launcher process per launch\n")
    rows = []
    for r in results:
        db_cpu = r.get("database_cpu_s")
        rows.append(
            [
                r["backend"],
                fmt_int(r["size"]),
                fmt_int(r["queued"]),
                fmt_int(r["batches"]),
                f"{r['snapshot_s']:.1f}",
                f"{r['enqueue_s']:.1f}",
                f"{r['total_s']:.1f}",
                f"{r['launcher_cpu_s']:.1f}",
                "(in-process)" if db_cpu is None else f"{db_cpu:.1f}",
                f"{r['baseline_mib']:.0f}",
                f"{r['peak_mib']:.0f}",
                f"{r['redis_growth'] / MIB:.2f}",
                f"{r['redis_per_million_mib']:.2f}",
                f"{r['load']:.1f}",
            ]
        )
    print_table(
        [
            "db",
            "members",
            "queued",
            "jobs",
            "snapshot s",
            "enqueue s",
            "total s",
            "launcher CPU s",
            "PG server CPU s",
            "RSS after imports MiB",
            "peak RSS MiB",
            "Redis +MiB",
            "Redis MiB / 1M queued",
            "load avg",
        ],
        rows,
    )
    print(
        f"\n(wall times on a machine with {os.cpu_count()} cores; 'load avg' is the 1-minute load"
        " average around the launch, this bench included: above ~1 other work was competing.)"
    )
    print("\n## Targets\n")
    checks = []
    for backend in sorted({r["backend"] for r in results}):
        mine = {r["size"]: r for r in results if r["backend"] == backend}
        if 1_000_000 in mine:
            t = mine[1_000_000]["total_s"]
            checks.append([backend, "1M launched < 30 s", f"{t:.1f} s", _verdict(t < 30)])
        peak = max(r["peak_mib"] for r in mine.values())
        checks.append([backend, "launcher peak < 150 MiB", f"{peak:.0f} MiB", _verdict(peak < 150)])
        if 1_000_000 in mine and 2_000_000 in mine:
            ratio = mine[2_000_000]["peak_mib"] / mine[1_000_000]["peak_mib"]
            checks.append(
                [
                    backend,
                    "peak at 2M ≤ 1.15 × peak at 1M",
                    f"{ratio:.3f} ×",
                    _verdict(ratio <= 1.15),
                ]
            )
        big = [r for r in mine.values() if r["size"] >= 1_000_000] or list(mine.values())
        growth = max(r["redis_per_million_mib"] for r in big)
        checks.append(
            [backend, "Redis < 16 MiB per 1M queued", f"{growth:.2f} MiB", _verdict(growth < 16)]
        )
    print_table(["db", "target", "measured", "verdict"], checks)


def _verdict(ok: bool) -> str:
    return "pass" if ok else "FAIL"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--postgres", help="also run on PostgreSQL (a schema of its own)")
    parser.add_argument("--sqlite-only", action="store_true", help="skip PostgreSQL")
    parser.add_argument("--postgres-only", action="store_true", help="skip SQLite")
    parser.add_argument(
        "--sizes", default=",".join(map(str, DEFAULT_SIZES)), help="comma-separated member counts"
    )
    parser.add_argument("--child-launch", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_launch is not None:
        child_launch(args.child_launch)
        return
    install_signal_handlers()
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    backends: list[str | None] = []
    if not args.postgres_only:
        backends.append(None)
    if args.postgres and not args.sqlite_only:
        backends.append(args.postgres)
    children = Children()
    results = []
    try:
        for postgres in backends:
            for size in sizes:
                results.append(run_one(children, postgres, size))
    finally:
        children.stop_all()
    report(results)


if __name__ == "__main__":
    main()
