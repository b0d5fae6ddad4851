"""Send throughput of one worker process through the real Twilio adapter, next to its ceiling.

    .venv/bin/python bench/campaign_send.py                          # SQLite ledger
    .venv/bin/python bench/campaign_send.py --postgres postgresql://postgres@127.0.0.1:5432/test
    .venv/bin/python bench/campaign_send.py --latencies 0 --concurrency 16 --messages 2000

What runs, all on loopback, all stopped at the end (also on Ctrl-C or SIGTERM):

- **The provider**: ``tests/fakes/twilio_server.FakeTwilio(record=False)`` in a process of its
  own (so it does not share the worker's GIL), answering after ``latency`` (0 and 100 ms).
- **Our worker** (per latency and ``send_concurrency``): a fresh database with ``--messages``
  active SMS members whose zip and area code are inside the sending window at this run's wall
  clock (the quiet-hours check really runs; if no US zone is open, ``respect_quiet_hours`` is
  turned off on the campaign row and the table says so); a campaign with no rate (``rate`` None,
  huddle rate None, ``DEFAULT_SMS_RATE=0``: the limiter is skipped); launched in this process
  (``jobs.launch_campaign``: 500-delivery batch jobs); then one ``outreach worker --burst``-style
  process (``workers.main.run_worker``) with ``SMS_BACKEND=twilio`` and ``TWILIO_API_BASE_URL`` at
  the fake sends them all: claim, re-check, quiet hours, render, send, record. Messages/s =
  sent / the worker's time in ``run_worker``. The ledger is checked afterwards: every delivery
  ``sent``, and the fake created exactly that many messages.
- **(a) The ceiling**: a process doing nothing but ``client.messages.create(...)`` with the same
  parameters (to, from, body, StatusCallback, ValidityPeriod) from the same number of threads,
  one SDK client per thread, twice: with the SDK's own HTTP client (``LoopbackTwilioHttpClient``
  from the fake's module) and with our adapter's HTTP client (quiet logging, no per-request
  environment scan). The higher of the two is "the ceiling".
- **(b) One RQ job per message**: ``--fork-jobs`` jobs, each sending one message with a new SDK
  client, run by RQ's default ``Worker`` (a fork per job), in one process. Jobs/s.

Targets (the brief): our worker ≥ 0.7 × the ceiling; ≥ 15 × (b); at 100 ms latency ≥ 250/s.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import resource
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path
from statistics import median
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    PYTHON,
    SENDER,
    BenchInstance,
    Children,
    build_audience,
    child_env,
    create_campaign,
    install_signal_handlers,
    print_table,
    sendable_places,
    utcnow,
)

BODY = "Rally Saturday at 10, {{ first_name }}! Bring a friend."
RENDERED = "Rally Saturday at 10, Maria! Bring a friend.\nReply STOP to opt out"
CALLBACK = "https://outreach.bench.invalid/webhooks/twilio/status"
CHILD_TIMEOUT = 600.0
FAKE_LIFETIME = 3600.0  # the fake provider exits on its own after this, whatever happens

# The fake provider's process: starts FakeTwilio, prints its port, obeys "latency X" / "count"
# on stdin, and stops at EOF (the bench went away) or after FAKE_LIFETIME seconds.
FAKE_SERVER = r"""
import os, sys, threading
from tests.fakes.twilio_server import FakeTwilio
sid, token, lifetime = sys.argv[1], sys.argv[2], float(sys.argv[3])
fake = FakeTwilio(sid, token, record=False).start()
threading.Timer(lifetime, lambda: os._exit(3)).start()
print(fake.port, flush=True)
for line in sys.stdin:
    words = line.split()
    if words and words[0] == "latency":
        fake.latency = float(words[1])
        print("ok", flush=True)
    elif words and words[0] == "count":
        print(fake.request_count, fake.created_count, flush=True)
fake.stop()
os._exit(0)
"""


class FakeProvider:
    """The fake Twilio API in its own process."""

    def __init__(self, children: Children) -> None:
        self._children = children
        self.proc = children.start(
            [PYTHON, "-c", FAKE_SERVER, ACCOUNT_SID, AUTH_TOKEN, str(FAKE_LIFETIME)],
            env=child_env({}),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            bufsize=1,
        )
        self.port = int(self._ask(None))
        self.base_url = f"http://127.0.0.1:{self.port}"

    def _ask(self, command: str | None) -> str:
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        if command is not None:
            self.proc.stdin.write(command + "\n")
            self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the fake Twilio process died")
        return line.strip()

    def set_latency(self, seconds: float) -> None:
        assert self._ask(f"latency {seconds}") == "ok"

    def created(self) -> int:
        return int(self._ask("count").split()[1])

    def stop(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)
        self._children.stop(self.proc)


# --------------------------------------------------------------------------------------------
# Children
# --------------------------------------------------------------------------------------------


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def child_worker() -> None:
    """One worker process, as ``outreach worker --burst`` runs it (settings from the env)."""
    logging.basicConfig(level=logging.WARNING)  # what the CLI sets up
    from outreach.app.services import Services
    from outreach.app.settings import Settings
    from workers import context
    from workers.main import run_worker

    svc = Services.build(Settings.from_env(dotenv=False))
    context.install(svc)
    # Warm up like the ceiling's threads do: the SDK imports its API modules on first use.
    import twilio.rest.api.v2010.account.message  # noqa: F401

    cpu, started = _cpu(), time.perf_counter()
    run_worker(burst=True)
    elapsed = time.perf_counter() - started
    print(json.dumps({"elapsed": elapsed, "cpu": _cpu() - cpu}), flush=True)
    svc.close()


def _numbers(count: int) -> list[str]:
    return [f"+1617{3000000 + i}" for i in range(count)]


def child_ceiling(base_url: str, threads: int, count: int, client_kind: str) -> None:
    """``count`` messages.create calls from ``threads`` threads, one SDK client per thread."""
    from twilio.rest import Client

    from outreach.providers.twilio.client import TwilioSmsTransport
    from tests.fakes.twilio_server import LoopbackTwilioHttpClient

    def make_client() -> Any:
        if client_kind == "adapter":  # our adapter's Client (its _HttpClient), nothing else
            return TwilioSmsTransport(ACCOUNT_SID, AUTH_TOKEN, base_url=base_url)._client
        http = LoopbackTwilioHttpClient(base_url, timeout=15.0)
        return Client(ACCOUNT_SID, AUTH_TOKEN, http_client=http)

    numbers = _numbers(count)
    errors = [0] * threads
    barrier = threading.Barrier(threads + 1)

    def work(index: int) -> None:
        client = make_client()
        client.messages.create(to="+16175559999", from_=SENDER, body="warm-up")
        barrier.wait()
        for to in numbers[index::threads]:
            try:
                client.messages.create(
                    to=to,
                    from_=SENDER,
                    body=RENDERED,
                    status_callback=CALLBACK,
                    validity_period=36000,
                )
            except Exception:  # noqa: BLE001 - counted and reported
                errors[index] += 1

    pool = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(threads)]
    for thread in pool:
        thread.start()
    barrier.wait()
    cpu, started = _cpu(), time.perf_counter()
    for thread in pool:
        thread.join(timeout=CHILD_TIMEOUT)
    elapsed = time.perf_counter() - started
    print(
        json.dumps(
            {"elapsed": elapsed, "cpu": _cpu() - cpu, "count": count, "errors": sum(errors)}
        ),
        flush=True,
    )


def one_message_job(base_url: str, to: str) -> str:
    """The "one RQ job per message" pattern: a job sends one text with a fresh SDK client."""
    from twilio.rest import Client

    from tests.fakes.twilio_server import LoopbackTwilioHttpClient

    client = Client(
        ACCOUNT_SID, AUTH_TOKEN, http_client=LoopbackTwilioHttpClient(base_url, timeout=15.0)
    )
    message = client.messages.create(
        to=to, from_=SENDER, body=RENDERED, status_callback=CALLBACK, validity_period=36000
    )
    return str(message.sid)


def child_fork_worker(redis_url: str, queue_name: str) -> None:
    """RQ's default Worker (forks a work horse per job), burst mode."""
    import campaign_send  # noqa: F401 - the job's module, imported once before forking
    import redis
    from rq import Queue, Worker
    from twilio.rest import Client

    from tests.fakes.twilio_server import LoopbackTwilioHttpClient

    # Warm up as a tuned app would: the SDK imports its API modules on first use, and without
    # this every forked job imports them again (~0.3 s a job).
    warm = Client(ACCOUNT_SID, AUTH_TOKEN, http_client=LoopbackTwilioHttpClient("http://x"))
    assert warm.messages is not None
    logging.basicConfig(level=logging.WARNING)
    connection = redis.Redis.from_url(redis_url)
    queue = Queue(queue_name, connection=connection)
    jobs = queue.count
    started = time.perf_counter()
    Worker([queue], connection=connection).work(burst=True, logging_level="WARNING")
    elapsed = time.perf_counter() - started
    failed = queue.failed_job_registry.count
    print(json.dumps({"elapsed": elapsed, "jobs": jobs, "failed": failed}), flush=True)


# --------------------------------------------------------------------------------------------
# The bench
# --------------------------------------------------------------------------------------------


def run_worker_case(
    children: Children,
    fake: FakeProvider,
    postgres: str | None,
    messages: int,
    concurrency: int,
) -> dict[str, Any]:
    from sqlalchemy import text

    from outreach.app.services import Services
    from outreach.app.settings import Settings
    from workers import context, jobs

    places = sendable_places(utcnow(), margin_for(messages))
    with BenchInstance(postgres) as instance:
        engine = instance.engine()
        build_audience(
            engine, messages, places=places or [("02128", "617")], mixed=False, verbose=False
        )
        campaign_id = create_campaign(
            engine, body=BODY, rate=None, respect_quiet_hours=bool(places)
        )
        engine.dispose()
        env = instance.env(
            SMS_BACKEND="twilio",
            TWILIO_ACCOUNT_SID=ACCOUNT_SID,
            TWILIO_AUTH_TOKEN=AUTH_TOKEN,
            TWILIO_API_BASE_URL=fake.base_url,
            PUBLIC_BASE_URL="https://outreach.bench.invalid",
            DEFAULT_SMS_RATE="0",
            SEND_CONCURRENCY=str(concurrency),
        )
        svc = Services.build(Settings.from_env(env, dotenv=False))
        context.install(svc)
        try:
            jobs.launch_campaign(campaign_id)
        finally:
            context.install(None)
            svc.close()
        created_before = fake.created()
        result = children.run_json(
            [PYTHON, __file__, "--child-worker"], env=child_env(env), timeout=CHILD_TIMEOUT
        )
        created = fake.created() - created_before
        engine = instance.engine()
        with engine.connect() as conn:
            states = dict(
                conn.execute(text("SELECT state, count(*) FROM deliveries GROUP BY state")).all()
            )
        engine.dispose()
    sent = int(states.get("sent", 0))
    return {
        "sent": sent,
        "states": states,
        "created": created,
        "ok": sent == messages and created == messages,
        "rate": sent / result["elapsed"],
        "cpu_ms": result["cpu"] / max(sent, 1) * 1000,
        "places": len(places) if places else "none open: quiet hours off",
        **result,
    }


def margin_for(messages: int) -> timedelta:
    """How long the sending window must stay open: the run, with room to spare."""
    return timedelta(minutes=10) + timedelta(seconds=messages / 50)


def run_ceiling(
    children: Children, fake: FakeProvider, threads: int, count: int, kind: str
) -> dict[str, Any]:
    before = fake.created()
    result = children.run_json(
        [PYTHON, __file__, "--child-ceiling", fake.base_url, str(threads), str(count), kind],
        env=child_env({}),
        timeout=CHILD_TIMEOUT,
    )
    result["created"] = fake.created() - before
    result["rate"] = count / result["elapsed"]
    result["cpu_ms"] = result["cpu"] / count * 1000
    return result


def run_fork_jobs(children: Children, fake: FakeProvider, jobs_count: int) -> dict[str, Any]:
    from rq import Queue

    with BenchInstance(None) as instance:  # only its Redis is used
        import redis

        connection = redis.Redis.from_url(instance.redis_url)
        queue = Queue("bench-one-per-message", connection=connection)
        datas = [
            Queue.prepare_data(
                "campaign_send.one_message_job", args=(fake.base_url, to), result_ttl=0
            )
            for to in _numbers(jobs_count)
        ]
        with connection.pipeline() as pipe:
            queue.enqueue_many(datas, pipeline=pipe)
            pipe.execute()
        connection.close()
        before = fake.created()
        result = children.run_json(
            [PYTHON, __file__, "--child-fork-worker", instance.redis_url, queue.name],
            env=child_env({}),
            timeout=CHILD_TIMEOUT,
        )
        result["created"] = fake.created() - before
    result["rate"] = result["jobs"] / result["elapsed"]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--postgres", help="also use PostgreSQL for the ledger (own schema)")
    parser.add_argument("--latencies", default="0,0.1", help="fake provider latencies, seconds")
    parser.add_argument("--concurrency", default="16,64", help="SEND_CONCURRENCY values")
    parser.add_argument("--messages", type=int, default=4000, help="audience per worker run")
    parser.add_argument("--ceiling-messages", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3, help="ceiling+worker rounds (median)")
    parser.add_argument("--fork-jobs", type=int, default=300, help="(b) jobs at 0 ms latency")
    parser.add_argument("--fork-jobs-slow", type=int, default=100, help="(b) jobs at >0 ms")
    parser.add_argument("--child-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--child-ceiling", nargs=4, help=argparse.SUPPRESS)
    parser.add_argument("--child-fork-worker", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_worker:
        child_worker()
        return
    if args.child_ceiling:
        base_url, threads, count, kind = args.child_ceiling
        child_ceiling(base_url, int(threads), int(count), kind)
        return
    if args.child_fork_worker:
        child_fork_worker(*args.child_fork_worker)
        return

    install_signal_handlers()
    latencies = [float(x) for x in args.latencies.split(",")]
    concurrencies = [int(x) for x in args.concurrency.split(",")]
    backends: list[str | None] = [None] + ([args.postgres] if args.postgres else [])
    children = Children()
    rows: list[list[object]] = []
    checks: list[list[object]] = []
    try:
        fake = FakeProvider(children)
        try:
            for latency in latencies:
                fake.set_latency(latency)
                fork_jobs = args.fork_jobs if latency == 0 else args.fork_jobs_slow
                print(f"\n== latency {latency * 1000:.0f} ms", flush=True)
                fork = run_fork_jobs(children, fake, fork_jobs)
                print(f"   (b) one job per message: {json.dumps(fork)}", flush=True)
                for concurrency in concurrencies:
                    for postgres in backends:
                        db = "sqlite" if postgres is None else "postgresql"
                        rounds = []
                        for number in range(args.rounds):  # interleaved: same load for each
                            ceilings = {
                                kind: run_ceiling(
                                    children, fake, concurrency, args.ceiling_messages, kind
                                )
                                for kind in ("sdk", "adapter")
                            }
                            run = run_worker_case(
                                children, fake, postgres, args.messages, concurrency
                            )
                            rounds.append((ceilings, run))
                            print(
                                f"   round {number + 1} x{concurrency} {db}: "
                                f"sdk {json.dumps(ceilings['sdk'])} "
                                f"adapter {json.dumps(ceilings['adapter'])} "
                                f"worker {json.dumps(run)}",
                                flush=True,
                            )
                        rows.append(row(latency, concurrency, db, rounds, fork))
                        worker_rate = median(r["rate"] for _, r in rounds)
                        ratio = median(r["rate"] / best_rate(c) for c, r in rounds)
                        checks.append(
                            [
                                f"{latency * 1000:.0f} ms ×{concurrency} {db}",
                                _verdict(ratio >= 0.7),
                                _verdict(worker_rate >= 15 * fork["rate"]),
                                _verdict(worker_rate >= 250) if latency >= 0.1 else "-",
                            ]
                        )
        finally:
            fake.stop()
    finally:
        children.stop_all()
    print("\n## Send throughput, one worker process (rate limit lifted)\n")
    print_table(
        [
            "latency ms",
            "concurrency",
            "ledger",
            "rounds × sent",
            "worker msg/s",
            "worker CPU ms/msg",
            "(a) SDK loop msg/s",
            "(a) adapter-client loop msg/s",
            "worker / best (a)",
            "per round",
            "(a) CPU ms/msg (lower)",
            "CPU ratio (a)/worker",
            "(b) fork-per-job jobs/s",
            "worker / (b)",
            "ledger check",
            "load avg",
        ],
        rows,
    )
    print(
        "\n(Medians of the rounds; 'per round' lists each round's worker / best (a)."
        f" One worker process; the fake provider, Redis and this bench are other processes on"
        f" the same {os.cpu_count()} cores. 'CPU ratio' = the ceiling's CPU per message over the"
        " worker's: what 'worker / best (a)' would be with a free core for each, whatever the"
        " load.)"
    )
    print("\n## Targets\n")
    print_table(["case", "≥ 0.7 × ceiling", "≥ 15 × (b)", "≥ 250/s at 100 ms"], checks)


def best_rate(ceilings: dict[str, dict[str, Any]]) -> float:
    return max(c["rate"] for c in ceilings.values())


def best_cpu(ceilings: dict[str, dict[str, Any]]) -> float:
    return min(c["cpu_ms"] for c in ceilings.values())


def row(
    latency: float,
    concurrency: int,
    db: str,
    rounds: list[tuple[dict[str, dict[str, Any]], dict[str, Any]]],
    fork: dict[str, Any],
) -> list[object]:
    """Medians over the rounds (each round: both ceilings, then the worker, back to back)."""
    worker_rate = median(r["rate"] for _, r in rounds)
    ok = all(r["ok"] for _, r in rounds)
    return [
        f"{latency * 1000:.0f}",
        concurrency,
        db,
        f"{len(rounds)} × {rounds[0][1]['sent']:,}",
        f"{worker_rate:,.0f}",
        f"{median(r['cpu_ms'] for _, r in rounds):.2f}",
        f"{median(c['sdk']['rate'] for c, _ in rounds):,.0f}",
        f"{median(c['adapter']['rate'] for c, _ in rounds):,.0f}",
        f"{median(r['rate'] / best_rate(c) for c, r in rounds):.2f}",
        " ".join(f"{r['rate'] / best_rate(c):.2f}" for c, r in rounds),
        f"{median(best_cpu(c) for c, _ in rounds):.2f}",
        f"{median(best_cpu(c) / r['cpu_ms'] for c, r in rounds):.2f}",
        f"{fork['rate']:.1f}",
        f"{worker_rate / fork['rate']:.0f}×",
        "ok" if ok else "MISMATCH " + str([r["states"] for _, r in rounds]),
        f"{os.getloadavg()[0]:.1f}",
    ]


def _verdict(ok: bool) -> str:
    return "pass" if ok else "FAIL"


if __name__ == "__main__":
    main()
