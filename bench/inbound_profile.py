"""One inbound webhook's cost in-process: the same data and requests as inbound_webhook.py.

    .venv/bin/python bench/inbound_profile.py                    # SQLite: timings + cProfile top 40
    .venv/bin/python bench/inbound_profile.py --postgres postgresql://postgres@127.0.0.1:5432/test
    .venv/bin/python bench/inbound_profile.py --requests 3000 --no-profile --sql
    .venv/bin/py-spy record -f raw -o /tmp/stop.txt -- \
        .venv/bin/python bench/inbound_profile.py --no-profile --kind stop   # sample one kind

Calls the WSGI app directly with the environ gunicorn would build (werkzeug's test client costs
more than the app), so the figures are the app's own: mean wall and CPU (thread) time per request
by kind of text, the SQL statements per text (``--sql``: SQLAlchemy's and the hot path's plain
DB-API ones), and the cProfile top functions of a second batch. The first batch warms up.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import logging
import os
import pstats
import random
import shutil
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import inbound_webhook as bench
from sqlalchemy import event

from outreach.app.embedded_redis import EmbeddedRedis

Request = tuple[str, bytes, str]  # kind, form body, signature


def environ_for(path: str, body: bytes, signature: str) -> dict[str, Any]:
    return {
        "REQUEST_METHOD": "POST",
        "SCRIPT_NAME": "",
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "CONTENT_TYPE": "application/x-www-form-urlencoded",
        "CONTENT_LENGTH": str(len(body)),
        "HTTP_HOST": "127.0.0.1:8000",
        "HTTP_X_TWILIO_SIGNATURE": signature,
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": False,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }


def load(file: bench.RequestFile) -> list[Request]:
    lines = file.path.read_text().splitlines()
    out = []
    for kind, line in zip(file.kinds, lines, strict=True):
        signature, body = line.split("\t", 1)
        out.append((kind, body.encode(), signature))
    return out


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--postgres", metavar="URL")
    parser.add_argument("--members", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=2000, help="per batch (3 batches)")
    parser.add_argument("--profile", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--sql", action="store_true", help="count SQL statements per kind")
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument(
        "--kind",
        help="profile only this kind of request (texts: reply, help, join, stop; status "
        "callbacks: sent, delivered, undelivered, failed, repeat, late)",
    )
    parser.add_argument(
        "--endpoint",
        choices=["sms", "status"],
        default="sms",
        help="inbound texts, or status callbacks for a campaign's deliveries",
    )
    args = parser.parse_args()
    rng = random.Random(7)
    workdir = Path(tempfile.mkdtemp(prefix="outreach-profile-"))
    seed_args = argparse.Namespace(postgres=args.postgres, members=args.members)
    instance = bench.create_instance(seed_args, workdir, rng)
    redis = EmbeddedRedis(workdir / "redis.sock").start()
    try:
        os.environ.update(
            {
                "OUTREACH_ENV": "production",
                "SECRET_KEY": os.urandom(32).hex(),
                "DATABASE_URL": instance.database_url,
                "REDIS_URL": redis.url,
                "PUBLIC_BASE_URL": bench.PUBLIC_BASE_URL,
                "TWILIO_AUTH_TOKEN": bench.AUTH_TOKEN,
                "OUTREACH_INSTANCE_PATH": str(workdir / "instance"),
            }
        )
        from inbound_app import create_bench_app

        app = create_bench_app()
        logging.disable(logging.INFO)  # the app logs a line per text; not what is measured here
        generator = bench.Generator(
            rng,
            instance.members,
            {*instance.members, *instance.pending, bench.SENDER},
            instance.pending,
        )

        def batch(name: str, number: int) -> list[Request]:
            path = workdir / f"{name}.txt"
            if args.endpoint == "status":
                file = bench.write_status_callbacks(instance, rng, path, number, args.requests)
                return load(file)
            return load(generator.write(path, number, args.requests))

        warm, measured, profiled = batch("warm", 1), batch("measured", 2), batch("profiled", 3)
        path = bench.STATUS_PATH if args.endpoint == "status" else bench.SMS_PATH
        answer = "204" if args.endpoint == "status" else "200"

        statements: Counter[str] = Counter()
        current = [""]
        if args.sql:
            engine = app.extensions["outreach"].engine

            @event.listens_for(engine, "before_cursor_execute")
            def count(*_args: Any) -> None:
                statements[current[0]] += 1

        def call(kind: str, body: bytes, signature: str) -> None:
            current[0] = kind
            status: list[str] = []
            environ = environ_for(path, body, signature)
            out = app(environ, lambda s, _h: status.append(s))
            b"".join(out)
            if hasattr(out, "close"):
                out.close()
            assert status[0].startswith(answer), status

        for r in warm:
            call(*r)
        statements.clear()
        wall: dict[str, list[float]] = defaultdict(list)
        cpu: dict[str, list[float]] = defaultdict(list)
        for r in measured:
            t, c = time.perf_counter(), time.thread_time()
            call(*r)
            cpu[r[0]].append(time.thread_time() - c)
            wall[r[0]].append(time.perf_counter() - t)
        n = len(measured)
        total_wall = sum(sum(v) for v in wall.values())
        total_cpu = sum(sum(v) for v in cpu.values())
        print(
            f"{instance.kind}: {n} requests, mean {total_wall / n * 1e3:.3f} ms wall, "
            f"{total_cpu / n * 1e3:.3f} ms CPU"
        )
        for kind in sorted(wall):
            k = len(wall[kind])
            sql = f", {statements[kind] / k:.1f} statements" if args.sql else ""
            print(
                f"  {kind:<7} n={k:<5} {sum(wall[kind]) / k * 1e3:7.3f} ms wall "
                f"{sum(cpu[kind]) / k * 1e3:7.3f} ms CPU{sql}"
            )
        # The third batch: profiled (cProfile), or run as it is for an outside sampler (py-spy).
        profiler = cProfile.Profile() if args.profile else None
        if profiler is not None:
            profiler.enable()
        for r in profiled:
            if args.kind is None or r[0] == args.kind:
                call(*r)
        if profiler is not None:
            profiler.disable()
            stats = pstats.Stats(profiler)
            stats.sort_stats("cumulative").print_stats(args.top)
            stats.sort_stats("tottime").print_stats(args.top)
    finally:
        redis.stop()
        instance.close()
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
