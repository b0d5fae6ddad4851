"""How fast does ``outreach members import`` take a big member list, and what does it cost?

    .venv/bin/python bench/member_import.py                       # 1,000,000 rows, SQLite
    .venv/bin/python bench/member_import.py --postgres postgresql://postgres@127.0.0.1:5432/test
    .venv/bin/python bench/member_import.py --rows 100000 --rows 1000000   # memory: flat?
    .venv/bin/python bench/member_import.py --stops               # STOPs during the import
    .venv/bin/python bench/member_import.py --rows 20000 --against 64f0f85   # side by side

For each ``--rows``: writes a CSV (phone in five written forms, email, names, zip, a tag or two,
a custom field; about 1% of rows invalid), then on a fresh database (a temp SQLite file, or a
schema of its own on PostgreSQL) runs the CLI as an organizer would, ``outreach members import
FILE --huddle logan --consent sms,email``, in a child process, twice: the new list, then the same
file again (every row a merge). Prints wall time, rows/s and the child's peak RSS, and checks that
the second run wrote no member, subscription or ledger row.

``--stops`` (SQLite): 2,000 members are imported first; then, while the big import runs, a client
posts a signed Twilio STOP from one of them every 50 ms to gunicorn serving ``web:create_app()``
(the Procfile's server); prints the STOPs' latency and checks every one was applied.

``--against REV`` runs the same file with the importer of git revision REV (a worktree) first.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

from _common import (
    AUTH_TOKEN,
    PYTHON,
    ROOT,
    SENDER,
    BenchInstance,
    child_env,
    print_table,
)
from sqlalchemy import Engine, text
from twilio.request_validator import RequestValidator

from outreach.app.db import make_session_factory
from outreach.people.huddles import create_huddle

AREAS = ("801", "385", "617", "857", "212", "646", "415", "628", "503", "971", "312", "773")
FORMATS = ("({a}) {b}-{c}", "{a}-{b}-{c}", "+1{a}{b}{c}", "{a}.{b}.{c}", "1{a}{b}{c}")
FIRST = ("Ana", "Ben", "Chloe", "Dev", "Esi", "Farah", "Gus", "Hana", "Ivan", "Jo")
LAST = ("Lee", "Garcia", "Nguyen", "Smith", "Okafor", "Kim", "Haddad", "Silva", "Cohen", "Brown")
ZIPS = ("84321", "84060", "02128", "10027", "94110", "97214", "60614")
TAGS = ("walk", "volunteer;donor", "host", "", "canvasser")
PUBLIC_BASE_URL = "https://outreach.bench.example"
SMS_PATH = "/webhooks/twilio/sms"
STOP_EVERY = 0.05
STOP_MEMBERS = 2000


def phone_of(i: int) -> str:
    """Member i's number, written one of five ways; unique per i below 12 × 700 × 10,000."""
    area = AREAS[i % len(AREAS)]
    rest = i // len(AREAS)
    exchange = 200 + rest % 700
    line = rest // 700
    return FORMATS[i % len(FORMATS)].format(a=area, b=f"{exchange:03d}", c=f"{line:04d}")


def write_csv(path: Path, rows: int, start: int = 0) -> None:
    with path.open("w", encoding="utf-8", newline="") as out:
        out.write("phone,email,first_name,last_name,zip,tags,language\n")
        for i in range(start, start + rows):
            phone = phone_of(i) if i % 97 else "555-01"  # about 1% unreadable
            email = f"Member.{i}@Example{i % 40}.org"
            out.write(
                f"{phone},{email},{FIRST[i % 10]},{LAST[i // 10 % 10]},{ZIPS[i % 7]},"
                f"{TAGS[i % 5]},{'es' if i % 6 == 0 else 'en'}\n"
            )


@dataclass
class Run:
    label: str
    rows: int
    seconds: float
    peak_mib: float
    output: str


def run_import(
    instance: BenchInstance, csv: Path, label: str, rows: int, pythonpath: Path = ROOT
) -> Run:
    """The CLI in a child; its peak RSS read by a launcher that does nothing else."""
    launcher = (
        "import resource, subprocess, sys;"
        "r = subprocess.run(sys.argv[1:], capture_output=True, text=True);"
        "print(r.stdout + r.stderr);"
        "print('MAXRSS', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    )
    command = [PYTHON, "-c", launcher, PYTHON, "-c", "from cli.main import main; main()"]
    command += ["members", "import", str(csv), "--huddle", "logan", "--consent", "sms,email"]
    env = child_env(instance.env())
    env["PYTHONPATH"] = str(pythonpath)
    started = time.perf_counter()
    done = subprocess.run(
        command, env=env, capture_output=True, text=True, check=True, cwd=pythonpath
    )
    seconds = time.perf_counter() - started
    lines = done.stdout.strip().splitlines()
    peak_kib = int(lines[-1].split()[1])
    output = "\n".join(line for line in lines[:-1] if not line.startswith("line "))
    return Run(label, rows, seconds, peak_kib / 1024, output.strip())


def counts(engine: Engine) -> tuple[int, int, int, int]:
    with engine.connect() as conn:
        return tuple(  # type: ignore[return-value]
            conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()
            for table in ("members", "subscriptions", "consent_events", "member_tags")
        )


def fresh_instance(postgres: str | None) -> BenchInstance:
    instance = BenchInstance(postgres, redis=False)
    engine = instance.engine()
    with make_session_factory(engine).begin() as session:
        create_huddle(session, slug="logan", name="Logan", keywords=["LOGAN"], sender=SENDER)
    engine.dispose()
    return instance


class StopClient(threading.Thread):
    """Posts a signed STOP from a member every STOP_EVERY seconds until told to stop."""

    def __init__(self, port: int, numbers: list[str]) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.numbers = numbers
        self.latencies: list[float] = []
        self.sent: list[str] = []
        self.failures: list[str] = []
        self.halt = threading.Event()

    def run(self) -> None:
        validator = RequestValidator(AUTH_TOKEN)
        for n, number in enumerate(self.numbers):
            if self.halt.is_set():
                return
            params = {
                "MessageSid": f"SM{n:032x}",
                "AccountSid": "AC" + "0" * 32,
                "From": number,
                "To": SENDER,
                "Body": "STOP",
                "NumMedia": "0",
            }
            signature = validator.compute_signature(PUBLIC_BASE_URL + SMS_PATH, params)
            request = urllib.request.Request(
                f"http://127.0.0.1:{self.port}{SMS_PATH}",
                data=urlencode(params).encode(),
                headers={"X-Twilio-Signature": signature},
            )
            started = time.perf_counter()
            try:
                with urllib.request.urlopen(request, timeout=30) as response:
                    response.read()
                self.latencies.append(time.perf_counter() - started)
                self.sent.append(number)
            except (urllib.error.URLError, OSError) as exc:
                self.failures.append(f"{number}: {exc}")
            self.halt.wait(STOP_EVERY)


def start_gunicorn(instance: BenchInstance, port: int) -> subprocess.Popen[bytes]:
    env = child_env(
        instance.env(
            OUTREACH_ENV="production",
            PUBLIC_BASE_URL=PUBLIC_BASE_URL,
            TWILIO_AUTH_TOKEN=AUTH_TOKEN,
            REDIS_URL="redis://127.0.0.1:6379/15",
        )
    )
    command = [PYTHON, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}", "--workers", "2"]
    command += ["--chdir", str(ROOT), "web:create_app()"]
    log = (instance.tmp / "gunicorn.log").open("wb")
    process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with (
            contextlib.suppress(OSError),
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2),
        ):
            return process
        time.sleep(0.2)
    process.kill()
    raise RuntimeError((instance.tmp / "gunicorn.log").read_text()[-3000:])


def measure_stops(csv: Path, rows: int) -> None:
    instance = fresh_instance(None)
    try:
        small = instance.tmp / "first.csv"
        write_csv(small, STOP_MEMBERS, start=10_000_000)
        run_import(instance, small, "first members", STOP_MEMBERS)
        engine = instance.engine()
        with engine.connect() as conn:
            numbers = list(conn.execute(text("SELECT phone FROM members")).scalars())
        random.Random(7).shuffle(numbers)
        port = 18000 + os.getpid() % 1000
        server = start_gunicorn(instance, port)
        client = StopClient(port, numbers)
        try:
            client.start()
            run = run_import(instance, csv, "import with STOPs", rows)
            client.halt.set()
            client.join()
        finally:
            server.terminate()
            server.wait(timeout=20)
        with engine.connect() as conn:
            applied = conn.execute(
                text(
                    "SELECT count(DISTINCT m.phone) FROM members m JOIN subscriptions s "
                    "ON s.member_id = m.id WHERE s.channel = 'sms' AND s.state = 'opted_out'"
                )
            ).scalar_one()
        engine.dispose()
        latencies = sorted(client.latencies)
        p99 = latencies[int(len(latencies) * 0.99) - 1] if latencies else float("nan")
        print(f"\n{run.output}\n")
        print_table(
            ["import s", "STOPs sent", "applied", "failed", "p50 ms", "p99 ms", "max ms"],
            [
                [
                    f"{run.seconds:.1f}",
                    len(client.sent),
                    applied,
                    len(client.failures),
                    f"{statistics.median(latencies) * 1000:.0f}",
                    f"{p99 * 1000:.0f}",
                    f"{latencies[-1] * 1000:.0f}",
                ]
            ],
        )
        for failure in client.failures[:5]:
            print("failed:", failure)
    finally:
        instance.close()


def worktree(rev: str) -> Path:
    path = Path(tempfile.mkdtemp(prefix="ob-rev-"))
    subprocess.run(["git", "worktree", "add", "--detach", str(path), rev], cwd=ROOT, check=True)
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, action="append")
    parser.add_argument("--postgres")
    parser.add_argument("--stops", action="store_true")
    parser.add_argument("--against", help="git revision to compare with")
    args = parser.parse_args()
    sizes = args.rows or [1_000_000]
    backend = "postgresql" if args.postgres else "sqlite"
    table: list[list[object]] = []
    for rows in sizes:
        csv = Path(tempfile.gettempdir()) / f"ob-import-{rows}.csv"
        if not csv.exists():
            write_csv(csv, rows)
        if args.stops:
            measure_stops(csv, rows)
            continue
        plans: list[tuple[str, Path]] = []
        old: Path | None = None
        if args.against:
            old = worktree(args.against)
            plans.append((args.against, old))
        plans.append(("this tree", ROOT))
        try:
            for label, path in plans:
                instance = fresh_instance(args.postgres)
                try:
                    engine = instance.engine()
                    first = run_import(instance, csv, "new", rows, path)
                    after_first = counts(engine)
                    again = run_import(instance, csv, "again", rows, path)
                    after_again = counts(engine)
                    engine.dispose()
                finally:
                    instance.close()
                print(f"\n{label}, {rows:,} rows, first run:\n{first.output}")
                unchanged = "yes" if after_again == after_first else f"NO {after_again}"
                for run in (first, again):
                    table.append(
                        [
                            backend,
                            label,
                            f"{rows:,}",
                            run.label,
                            f"{run.seconds:.1f}",
                            f"{rows / run.seconds:,.0f}",
                            f"{run.peak_mib:.0f}",
                            unchanged if run is again else f"{after_first[0]:,} members",
                        ]
                    )
        finally:
            if old is not None:
                remove = ["git", "worktree", "remove", "--force", str(old)]
                subprocess.run(remove, cwd=ROOT, check=False)
    if table:
        print()
        print_table(
            ["database", "code", "rows", "run", "seconds", "rows/s", "peak MiB", "result"], table
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
