"""Inbound SMS webhook throughput and latency under gunicorn, next to an empty Flask endpoint.

    .venv/bin/python bench/inbound_webhook.py                  # SQLite (a temp file), defaults
    .venv/bin/python bench/inbound_webhook.py --postgres postgresql://postgres@127.0.0.1:5432/test
    .venv/bin/python bench/inbound_webhook.py --server sync:2 --server gthread:2x4   # compare
    .venv/bin/python bench/inbound_webhook.py --duration 5 --connections 8 --py-spy /tmp/spy
    .venv/bin/python bench/inbound_webhook.py --endpoint status   # delivery status callbacks

What it does, all on loopback and all stopped at the end (also on Ctrl-C or SIGTERM):

1. A temp instance: a SQLite file in a temp directory, or with ``--postgres`` a schema of its own
   (dropped at the end), migrated with ``outreach.app.migrate.upgrade``; an embedded Redis.
2. Seeds a huddle ``logan`` on +16175550100 (double opt-in) with ``--members`` SMS members, four
   fifths active (each with its import ledger row) and a fifth pending (joined by keyword, not
   confirmed yet), and 20 other huddles on other numbers.
3. Pre-generates signed inbound webhooks (``RequestValidator`` over PUBLIC_BASE_URL, all the
   parameters Twilio sends, a unique MessageSid each): 83% replies from active members ("See you
   Saturday!"…), 5% HELP from them, 6% ``JOIN LOGAN`` from numbers never seen before, 3% STOP
   from active members and 3% YES from pending ones (each member at most once). One file per run;
   each wrk thread takes its own slice (bench/inbound_wrk.lua), so no MessageSid is sent twice.
4. Starts gunicorn (``python -m gunicorn``, the Procfile's server, with its access log) on
   ``bench/inbound_app.py``: the real ``web.create_app()`` plus ``POST /bench/empty``, a minimal
   view returning the empty TwiML ``<Response />`` in the same processes. Workers: ``--server``
   (default sync:2 on SQLite, gthread:2x4 on PostgreSQL: what measured fastest, see
   DEFAULT_SERVER); several ``--server`` run one after the other and are compared.
5. Runs wrk (``--latency``, a Lua ``done()`` printing JSON) against ``/bench/empty`` and
   ``/webhooks/twilio/sms`` at each connection count, one after the other, after a short warm-up.
6. Checks the database afterwards: every answered request of a full-handler run has its inbound
   row, no row was written for a request never sent, each row's intent is the expected one, and
   every STOP and JOIN wrote its consent ledger row. Any mismatch counts as an error.

   With ``--endpoint status`` the full handler is ``/webhooks/twilio/status`` instead: each run
   inserts deliveries of its own (SENT, a campaign per ``--members`` of them), and the file
   holds what Twilio posts for them: "sent", then "delivered" (95%), "undelivered" 30003 (4%) or
   "failed" 30006 (1%: the error policy suppresses the number); 3% of the "sent" come after the
   final status, 2% of the callbacks twice. Step 6 then checks that every stored callback was
   sent, that at most one per connection of those sent is missing (in flight when wrk stopped),
   that each delivery is in the state its stored callbacks make it, and that every number that
   failed with 30006 is suppressed.
7. Prints a table (endpoint, connections, req/s, p50, p99, errors, the workers' CPU per request
   and the machine's busy share during the run), the ratio full/empty, req/s per core and the
   target (>= 600 texts/s at 8 connections, p99 <= 50 ms, no errors). ``--py-spy DIR`` samples
   the workers during the full-handler runs.

wrk, the server and the database share the machine's cores, as they would on a one-box setup;
``os.cpu_count()`` is the "core" in req/s per core. Everything it starts is stopped at the end,
each wait is bounded (about a minute per run at most), and nothing leaves loopback.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parent.parent
BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import Engine, func, insert, select, text  # noqa: E402
from twilio.request_validator import RequestValidator  # noqa: E402

from outreach.addresses.phones import try_normalize_phone  # noqa: E402
from outreach.app import migrate  # noqa: E402
from outreach.app.db import make_engine, make_session_factory  # noqa: E402
from outreach.app.embedded_redis import EmbeddedRedis  # noqa: E402
from outreach.app.settings import Settings  # noqa: E402
from outreach.models import (  # noqa: E402
    Campaign,
    ConsentEvent,
    Delivery,
    Huddle,
    InboundMessage,
    Member,
    StatusEvent,
    Subscription,
    Suppression,
)
from outreach.people.huddles import create_huddle  # noqa: E402
from outreach.sms.inbound.classify import classify  # noqa: E402

AUTH_TOKEN = "bench-auth-token-5f1c0d8e2b7a4c69"  # noqa: S105 - a throwaway token for the bench
ACCOUNT_SID = "AC" + "1" * 32
PUBLIC_BASE_URL = "https://outreach.bench.example"
SMS_PATH = "/webhooks/twilio/sms"
EMPTY_PATH = "/bench/empty"
SENDER = "+16175550100"
KEYWORD = "LOGAN"
AREA_CODES = ["617", "857", "508", "781", "978", "413", "774", "339", "351"]
REPLIES = [
    "See you Saturday!",
    "See you Saturday! Can I bring my neighbor?",
    "What time does the canvass start?",
    "I'll be there 👍",
    "Can't make it this week, sorry. Next time!",
    "Where do we meet?",
    "Count me in for the phone bank",
    "Is there parking near the library?",
]
# share of requests by kind; the rest are replies
MIX = {"help": 0.05, "join": 0.06, "stop": 0.03, "confirm": 0.03}
EXPECTED_INTENT = {
    "reply": "other",
    "help": "help",
    "join": "join",
    "stop": "opt_out",
    "confirm": "confirm",
}
CONFIRMS = ["YES", "yes", "Y"]
PENDING_SHARE = 0.2  # of the seeded members: joined, not confirmed yet (they text YES)


# ------------------------------------------------------------------------------------------
# instance: database, seed data, Redis
# ------------------------------------------------------------------------------------------


@dataclass
class Instance:
    workdir: Path
    database_url: str
    engine: Engine
    members: list[str]  # active
    kind: str  # "sqlite" or "postgresql"
    admin: Engine | None = None
    schema: str | None = None
    pending: list[str] = field(default_factory=list)  # joined, asked to confirm

    def close(self) -> None:
        self.engine.dispose()
        if self.admin is not None and self.schema is not None:
            with self.admin.begin() as conn:
                conn.execute(text(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE'))
            self.admin.dispose()


def random_numbers(rng: random.Random, count: int, taken: set[str]) -> list[str]:
    """``count`` valid US numbers in E.164, none in ``taken`` (which grows)."""
    found: list[str] = []
    while len(found) < count:
        exchange = rng.randrange(200, 1000)
        if exchange % 100 == 11 or exchange == 555:
            continue
        raw = f"+1{rng.choice(AREA_CODES)}{exchange}{rng.randrange(10000):04d}"
        e164 = try_normalize_phone(raw)
        if e164 is None or e164 in taken:
            continue
        taken.add(e164)
        found.append(e164)
    return found


def create_instance(args: argparse.Namespace, workdir: Path, rng: random.Random) -> Instance:
    if args.postgres:
        schema = f"bench_{uuid.uuid4().hex[:12]}"
        admin_url = Settings.from_env({"DATABASE_URL": args.postgres}, dotenv=False).database_url
        admin = make_engine(admin_url)
        with admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        sep = "&" if "?" in args.postgres else "?"
        url = f"{args.postgres}{sep}options=-csearch_path%3D{schema}"
        url = Settings.from_env({"DATABASE_URL": url}, dotenv=False).database_url
        engine = make_engine(url)
        instance = Instance(workdir, url, engine, [], "postgresql", admin, schema)
    else:
        url = f"sqlite:///{workdir / 'bench.db'}"
        instance = Instance(workdir, url, make_engine(url), [], "sqlite")
    migrate.upgrade(instance.engine)
    seed(instance, args.members, rng)
    return instance


def seed(instance: Instance, members: int, rng: random.Random) -> None:
    now = datetime.now(UTC)
    factory = make_session_factory(instance.engine)
    taken = {SENDER}
    with factory.begin() as session:
        logan = create_huddle(
            session, slug="logan", name="Logan Huddle", keywords=[KEYWORD], sender=SENDER
        )
        for n in range(20):
            create_huddle(
                session,
                slug=f"huddle-{n}",
                name=f"Huddle {n}",
                keywords=[f"HUDDLE{n}"],
                sender=f"+1617555{150 + n:04d}",
            )
            taken.add(f"+1617555{150 + n:04d}")
        logan_id = logan.id
    phones = random_numbers(rng, members, taken)
    pending = set(phones[int(members * (1 - PENDING_SHARE)) :])
    chunk = 2000
    with factory.begin() as session:
        for start in range(0, members, chunk):
            session.execute(
                insert(Member),
                [{"phone": p, "created_at": now} for p in phones[start : start + chunk]],
            )
        ids: dict[str, int] = dict(session.execute(select(Member.phone, Member.id)).all())
        for start in range(0, members, chunk):
            part = phones[start : start + chunk]
            session.execute(
                insert(Subscription),
                [
                    {
                        "member_id": ids[p],
                        "huddle_id": logan_id,
                        "channel": "sms",
                        "state": "pending" if p in pending else "active",
                        "created_at": now,
                        "updated_at": now,
                    }
                    for p in part
                ],
            )
            session.execute(
                insert(ConsentEvent),
                [
                    {
                        "member_id": ids[p],
                        "huddle_id": logan_id,
                        "channel": "sms",
                        "address": p,
                        "action": "opt_in_requested" if p in pending else "opt_in",
                        "source": "keyword" if p in pending else "import",
                        "detail": KEYWORD if p in pending else f"bench.csv line {start + i + 2}",
                        "actor": "member" if p in pending else "bench@example.org",
                        "created_at": now,
                    }
                    for i, p in enumerate(part)
                ],
            )
    if instance.kind == "postgresql":
        with instance.engine.begin() as conn:
            conn.execute(text("ANALYZE"))
    instance.members = [p for p in phones if p not in pending]
    instance.pending = [p for p in phones if p in pending]


# ------------------------------------------------------------------------------------------
# signed requests
# ------------------------------------------------------------------------------------------


@dataclass
class RequestFile:
    path: Path
    number: int  # MessageSids start with f"SM{number:04x}"
    sids: list[str]  # line i's MessageSid
    kinds: list[str]  # line i's kind: reply, help, join, stop (status: sent, delivered, ...)
    statuses: list[str] = field(default_factory=list)  # status callbacks: line i's status


@dataclass
class Generator:
    rng: random.Random
    members: list[str]
    taken: set[str]
    pending: list[str] = field(default_factory=list)  # members who will confirm, once each
    stopped: set[str] = field(default_factory=set)
    files: int = 0
    validator: RequestValidator = field(default_factory=lambda: RequestValidator(AUTH_TOKEN))

    def params(self, sid: str, from_: str, body: str) -> dict[str, str]:
        """What Twilio posts for an inbound SMS to a long code (every parameter it sends)."""
        return {
            "ToCountry": "US",
            "ToState": "MA",
            "SmsMessageSid": sid,
            "NumMedia": "0",
            "ToCity": "BOSTON",
            "FromZip": "02128",
            "SmsSid": sid,
            "FromState": "MA",
            "SmsStatus": "received",
            "FromCity": "BOSTON",
            "Body": body,
            "FromCountry": "US",
            "To": SENDER,
            "ToZip": "02108",
            "NumSegments": "1",
            "MessageSid": sid,
            "AccountSid": ACCOUNT_SID,
            "From": from_,
            "ApiVersion": "2010-04-01",
        }

    def one(self, sid: str) -> tuple[str, dict[str, str]]:
        roll = self.rng.random()
        if roll < MIX["stop"] and len(self.stopped) < len(self.members):
            while True:
                who = self.rng.choice(self.members)
                if who not in self.stopped:
                    break
            self.stopped.add(who)
            return "stop", self.params(sid, who, self.rng.choice(["STOP", "stop", "Stop"]))
        roll -= MIX["stop"]
        if roll < MIX["confirm"] and self.pending:
            who = self.pending.pop()
            return "confirm", self.params(sid, who, self.rng.choice(CONFIRMS))
        roll -= MIX["confirm"]
        if roll < MIX["join"]:
            (who,) = random_numbers(self.rng, 1, self.taken)
            body = self.rng.choice([f"JOIN {KEYWORD}", KEYWORD, KEYWORD.lower()])
            return "join", self.params(sid, who, body)
        roll -= MIX["join"]
        who = self.rng.choice(self.members)
        if roll < MIX["help"]:
            return "help", self.params(sid, who, self.rng.choice(["HELP", "help", "Info"]))
        return "reply", self.params(sid, who, self.rng.choice(REPLIES))

    def write(self, path: Path, run: int, count: int) -> RequestFile:
        url = PUBLIC_BASE_URL + SMS_PATH
        sids: list[str] = []
        kinds: list[str] = []
        with path.open("w", encoding="utf-8") as out:
            for i in range(count):
                sid = f"SM{run:04x}{i:028x}"
                kind, params = self.one(sid)
                signature = self.validator.compute_signature(url, params)
                out.write(f"{signature}\t{urlencode(params)}\n")
                sids.append(sid)
                kinds.append(kind)
        return RequestFile(path, run, sids, kinds)


# Status callbacks: what Twilio posts for each message a campaign sent. Each delivery gets "sent",
# then "delivered", or "undelivered" with 30003 (unreachable: recorded, no policy action), or
# "failed" with 30006 (a landline: the number is suppressed, the policy's ORM path); a share of
# callbacks are delivered twice (Twilio retries), and some "sent" arrive after the final status.
STATUS_PATH = "/webhooks/twilio/status"
ENDPOINTS = {"sms": SMS_PATH, "status": STATUS_PATH}
STATUS_MIX = {"undelivered": 0.04, "failed": 0.01}
STATUS_REPEAT = 0.02  # share of callbacks sent again (same MessageSid and status)
STATUS_LATE = 0.03  # share of deliveries whose "sent" comes after the final status
FINAL_STATE = {"delivered": "delivered", "undelivered": "undelivered", "failed": "failed"}


def write_status_callbacks(
    instance: Instance, rng: random.Random, path: Path, number: int, count: int
) -> RequestFile:
    """``count`` signed status callbacks for new deliveries (inserted here, SENT).

    Each run's callbacks are for deliveries of their own: a campaign per ``len(members)``
    deliveries (a member gets one message per campaign).
    """
    now = datetime.now(UTC)
    wanted = count // 2 + 1
    with make_session_factory(instance.engine).begin() as session:
        huddle_id = session.scalar(select(Huddle.id).where(Huddle.slug == "logan"))
        members = session.execute(select(Member.id, Member.phone).order_by(Member.id)).all()
        if not members:
            raise SystemExit("--endpoint status needs members to send to (--members)")
        targets: list[tuple[str, str]] = []  # (MessageSid, phone)
        while len(targets) < wanted:
            campaign = Campaign(
                huddle_id=huddle_id,
                name=f"bench {number}.{len(targets)}",
                channel="sms",
                body="Rally Saturday 10am at the library.",
                state="sending",
            )
            session.add(campaign)
            session.flush()
            rows = []
            for member_id, phone in members[: wanted - len(targets)]:
                sid = f"SM{number:04x}{len(targets):028x}"
                targets.append((sid, str(phone)))
                rows.append(
                    {
                        "campaign_id": campaign.id,
                        "member_id": member_id,
                        "channel": "sms",
                        "address": phone,
                        "state": "sent",
                        "provider_message_id": sid,
                        "segments": 1,
                        "attempts": 1,
                        "sent_at": now,
                        "updated_at": now,
                    }
                )
            session.execute(insert(Delivery), rows)
    validator = RequestValidator(AUTH_TOKEN)
    url = PUBLIC_BASE_URL + STATUS_PATH
    file = RequestFile(path, number, [], [])
    with path.open("w", encoding="utf-8") as out:
        for sid, phone in targets:
            roll = rng.random()
            final = "delivered"
            for status, share in STATUS_MIX.items():
                if roll < share:
                    final = status
                    break
                roll -= share
            order = ["sent", final] if rng.random() >= STATUS_LATE else [final, "sent"]
            lines = []
            for status in order:
                kind = "late" if status == "sent" and order[0] != "sent" else status
                lines.append((kind, status))
                if rng.random() < STATUS_REPEAT:
                    lines.append(("repeat", status))
            for kind, status in lines:
                if len(file.sids) == count:
                    return file
                params = status_params(sid, phone, status)
                out.write(f"{validator.compute_signature(url, params)}\t{urlencode(params)}\n")
                file.sids.append(sid)
                file.kinds.append(kind)
                file.statuses.append(status)
    return file


def status_params(sid: str, to: str, status: str) -> dict[str, str]:
    """What Twilio posts to a message's StatusCallback."""
    params = {
        "SmsSid": sid,
        "SmsStatus": status,
        "MessageStatus": status,
        "To": to,
        "MessagingServiceSid": "MG" + "2" * 32,
        "MessageSid": sid,
        "AccountSid": ACCOUNT_SID,
        "From": SENDER,
        "ApiVersion": "2010-04-01",
    }
    if status in ("undelivered", "failed"):
        params["ErrorCode"] = "30003" if status == "undelivered" else "30006"
    return params


def check_mix_classifies_as_expected() -> None:
    """The bodies above mean what the bench expects (so an intent mismatch is the server's)."""
    for body in REPLIES:
        assert classify(body, [KEYWORD]).intent.value == "other", body
    for body in ("HELP", "help", "Info"):
        assert classify(body, [KEYWORD]).intent.value == "help", body
    for body in ("STOP", "stop", "Stop"):
        assert classify(body, [KEYWORD]).intent.value == "opt_out", body
    for body in (f"JOIN {KEYWORD}", KEYWORD, KEYWORD.lower()):
        assert classify(body, [KEYWORD]).intent.value == "join", body
    for body in CONFIRMS:
        assert classify(body, [KEYWORD]).intent.value == "confirm", body


# ------------------------------------------------------------------------------------------
# processes
# ------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass(frozen=True)
class ServerConfig:
    """``sync:2`` (2 sync workers) or ``gthread:2x4`` (2 workers of 4 threads)."""

    worker_class: str
    workers: int
    threads: int = 1

    @classmethod
    def parse(cls, text: str) -> ServerConfig:
        kind, _, size = text.partition(":")
        if kind == "sync" and size.isdigit():
            return cls("sync", int(size))
        workers, _, threads = size.partition("x")
        if kind == "gthread" and workers.isdigit() and threads.isdigit():
            return cls("gthread", int(workers), int(threads))
        raise argparse.ArgumentTypeError(f"{text!r}: expected sync:N or gthread:NxT")

    def __str__(self) -> str:
        if self.worker_class == "sync":
            return f"sync:{self.workers}"
        return f"gthread:{self.workers}x{self.threads}"


# What measured fastest here (see README): on SQLite one sync worker per core (threads of one
# process only queue for SQLite's single write lock, and share a GIL); on PostgreSQL threads, which
# keep the cores busy while a worker waits for its round trips and the commit's WAL flush.
DEFAULT_SERVER = {"sqlite": ServerConfig("sync", 2), "postgresql": ServerConfig("gthread", 2, 4)}


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    port: int
    log: Path

    def worker_pids(self) -> list[int]:
        pids = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            with contextlib.suppress(OSError, IndexError, ValueError):
                stat = (entry / "stat").read_text()
                ppid = int(stat.rsplit(")", 1)[1].split()[1])
                if ppid == self.process.pid:
                    pids.append(int(entry.name))
        return pids

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)  # graceful: finish requests, then exit
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)  # its own group: started below
                self.process.wait(timeout=10)


def start_server(
    args: argparse.Namespace, config: ServerConfig, instance: Instance, redis_url: str
) -> Server:
    port = free_port()
    log = instance.workdir / f"gunicorn-{config.worker_class}-{config.workers}.log"
    env = {
        **os.environ,
        "OUTREACH_ENV": "production",
        "SECRET_KEY": os.urandom(32).hex(),
        "DATABASE_URL": instance.database_url,
        "REDIS_URL": redis_url,
        "PUBLIC_BASE_URL": PUBLIC_BASE_URL,
        "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "SMS_BACKEND": "sandbox",
        "EMAIL_BACKEND": "sandbox",
        "OUTREACH_INSTANCE_PATH": str(instance.workdir / "instance"),
        "PYTHONUNBUFFERED": "1",
    }
    command = [
        sys.executable,
        "-m",
        "gunicorn",
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        str(config.workers),
        "--worker-class",
        config.worker_class,
        "--graceful-timeout",
        "20",
        "--pythonpath",
        str(BENCH),
        "--chdir",
        str(ROOT),
    ]
    if config.worker_class == "gthread":
        command += ["--threads", str(config.threads)]
    if args.access_log:
        command += ["--access-logfile", "-"]  # as the Procfile does
    command.append("inbound_app:create_bench_app()")
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    return Server(process, port, log)  # the caller stops it, ready or not


def wait_ready(server: Server) -> None:
    deadline = time.monotonic() + 30
    while True:
        if server.process.poll() is not None:
            raise RuntimeError(f"gunicorn exited:\n{server.log.read_text()[-3000:]}")
        try:
            url = f"http://127.0.0.1:{server.port}/healthz"
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    break
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"gunicorn did not answer in 30 s:\n{server.log.read_text()[-3000:]}"
            )
        time.sleep(0.1)
    time.sleep(1.0)  # the arbiter boots the workers one after the other


def cpu_ticks(pids: list[int]) -> tuple[int, int]:
    """User and system CPU ticks of these processes."""
    user = system = 0
    for pid in pids:
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            user += int(fields[11])
            system += int(fields[12])
    return user, system


def machine_busy() -> tuple[int, int]:
    first = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    values = [int(v) for v in first]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


# ------------------------------------------------------------------------------------------
# runs
# ------------------------------------------------------------------------------------------


@dataclass
class Run:
    name: str
    path: str
    connections: int
    duration: int
    requests: RequestFile
    result: dict[str, Any] = field(default_factory=dict)
    db_errors: list[str] = field(default_factory=list)
    intents: Counter[str] = field(default_factory=Counter)
    worker_ms: float = 0.0
    worker_sys_ms: float = 0.0
    busy: float = 0.0

    @property
    def is_full(self) -> bool:
        return self.path != EMPTY_PATH

    @property
    def rps(self) -> float:
        return float(self.result["requests"]) / (self.result["duration_us"] / 1e6)

    @property
    def errors(self) -> int:
        wrk_errors = sum(self.result["errors"].values())
        wrapped = self.result["wrapped"] if self.is_full else 0
        return int(wrk_errors + wrapped + len(self.db_errors))


def run_wrk(args: argparse.Namespace, server: Server, run: Run) -> None:
    threads = min(args.wrk_threads, run.connections)
    command = [
        "wrk",
        f"-t{threads}",
        f"-c{run.connections}",
        f"-d{run.duration}s",
        "--timeout",
        "10s",
        "--latency",
        "-s",
        str(BENCH / "inbound_wrk.lua"),
        f"http://127.0.0.1:{server.port}{run.path}",
        "--",
        str(run.requests.path),
        run.path,
        str(threads),
    ]
    pids = server.worker_pids()
    spies = []
    if args.py_spy and run.is_full and run.name == "measure":
        # sample each worker while wrk runs (collapsed stacks, as flamegraph.pl reads them)
        out = Path(args.py_spy)
        out.mkdir(parents=True, exist_ok=True)
        for pid in pids:
            spies.append(
                subprocess.Popen(
                    [
                        str(Path(sys.executable).parent / "py-spy"),
                        "record",
                        "--pid",
                        str(pid),
                        "--duration",
                        str(run.duration),
                        "--rate",
                        "250",
                        "--format",
                        "raw",
                        "--output",
                        str(out / f"{Path(run.requests.path).stem}-c{run.connections}-{pid}.txt"),
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
    ticks, (busy0, total0) = cpu_ticks(pids), machine_busy()
    completed = subprocess.run(
        command, capture_output=True, text=True, timeout=run.duration + 60, check=False
    )
    busy1, total1 = machine_busy()
    for spy in spies:
        try:
            spy.wait(timeout=30)
        except subprocess.TimeoutExpired:
            spy.kill()
            spy.wait()
    user, system = cpu_ticks(pids)
    worker_ticks, system_ticks = user + system - sum(ticks), system - ticks[1]
    if completed.returncode != 0:
        raise RuntimeError(f"wrk failed ({completed.returncode}):\n{completed.stderr}")
    line = next(x for x in completed.stdout.splitlines() if x.startswith("WRK_JSON "))
    run.result = json.loads(line.removeprefix("WRK_JSON "))
    run.result["threads"] = threads
    hz = os.sysconf("SC_CLK_TCK")
    if run.result["requests"]:
        run.worker_ms = worker_ticks / hz * 1000 / run.result["requests"]
        run.worker_sys_ms = system_ticks / hz * 1000 / run.result["requests"]
    run.busy = (busy1 - busy0) / max(1, total1 - total0)


def settle(instance: Instance, prefix: str) -> int:
    """Wait until no more rows of this run arrive (requests in flight when wrk stopped)."""
    deadline = time.monotonic() + 15
    last = -1
    while True:
        with instance.engine.connect() as conn:
            count = conn.scalar(
                select(func.count())
                .select_from(InboundMessage)
                .where(InboundMessage.message_sid.like(prefix + "%"))
            )
        if count == last or time.monotonic() > deadline:
            return int(count or 0)
        last = int(count or 0)
        time.sleep(0.5)


def verify(instance: Instance, run: Run) -> None:
    """No lost writes, nothing extra, each row as expected, ledger rows for STOP, JOIN, YES."""
    prefix = f"SM{run.requests.number:04x}"
    settle(instance, prefix)
    file = run.requests
    issued = {file.sids[i]: file.kinds[i] for i in issued_lines(run)}
    with instance.engine.connect() as conn:
        selected = select(InboundMessage.message_sid, InboundMessage.intent).where(
            InboundMessage.message_sid.like(prefix + "%")
        )
        rows: dict[str, str] = dict(conn.execute(selected).all())
        ledger = Counter(
            action
            for (action,) in conn.execute(
                select(ConsentEvent.action).where(
                    ConsentEvent.provider_message_id.like(prefix + "%")
                )
            )
        )
    answered = int(run.result["requests"])
    stored = [sid for sid in rows if sid in issued]
    if len(stored) < answered:
        run.db_errors.append(f"{answered - len(stored)} answered requests have no inbound row")
    extra = [sid for sid in rows if sid not in issued]
    if extra:
        run.db_errors.append(f"{len(extra)} inbound rows for requests never sent")
    wrong = [sid for sid in stored if rows[sid] != EXPECTED_INTENT[issued[sid]]]
    if wrong:
        sample = ", ".join(f"{s}={rows[s]}" for s in wrong[:3])
        run.db_errors.append(f"{len(wrong)} rows with an unexpected intent ({sample})")
    run.intents = Counter(rows.values())
    kinds = Counter(issued[sid] for sid in stored)
    if ledger["opt_out"] != kinds["stop"]:
        run.db_errors.append(f"{kinds['stop']} STOPs stored but {ledger['opt_out']} opt_out rows")
    if ledger["opt_in_requested"] != kinds["join"]:
        run.db_errors.append(
            f"{kinds['join']} JOINs stored but {ledger['opt_in_requested']} ledger rows"
        )
    if ledger["opt_in"] != kinds["confirm"]:
        run.db_errors.append(f"{kinds['confirm']} YESes stored but {ledger['opt_in']} opt_in rows")


def verify_status(instance: Instance, run: Run) -> None:
    """Each callback stored once, none never sent, each delivery as its stored callbacks say.

    wrk counts a request as issued when it builds it; up to one per connection may never have
    been sent when the run stopped, so that many issued callbacks may be missing.
    """
    file = run.requests
    prefix = f"SM{file.number:04x}"
    issued = issued_lines(run)
    expected_events = {(file.sids[i], file.statuses[i]) for i in issued}
    deadline = time.monotonic() + 15
    stored: set[tuple[str, str]] = set()
    while True:  # requests in flight when wrk stopped
        with instance.engine.connect() as conn:
            now_stored = {
                (sid, status)
                for sid, status in conn.execute(
                    select(StatusEvent.provider_message_id, StatusEvent.status).where(
                        StatusEvent.provider_message_id.like(prefix + "%")
                    )
                )
            }
        if now_stored == stored or time.monotonic() > deadline:
            break
        stored = now_stored
        time.sleep(0.5)
    if stored - expected_events:
        run.db_errors.append(f"{len(stored - expected_events)} callbacks stored but never sent")
    if len(expected_events - stored) > run.connections:
        run.db_errors.append(f"{len(expected_events - stored)} issued callbacks not stored")
    expected: dict[str, str] = {}
    for sid, status in stored:
        if status in FINAL_STATE:
            expected[sid] = FINAL_STATE[status]
        else:
            expected.setdefault(sid, "sent")
    with instance.engine.connect() as conn:
        states = dict(
            conn.execute(
                select(Delivery.provider_message_id, Delivery.state).where(
                    Delivery.provider_message_id.in_(list(expected))
                )
            ).all()
        )
        failed = [sid for sid, state in expected.items() if state == "failed"]
        failed_numbers = set(
            conn.scalars(select(Delivery.address).where(Delivery.provider_message_id.in_(failed)))
        )
        suppressed = set(
            conn.scalars(
                select(Suppression.address).where(
                    Suppression.address.in_(failed_numbers), Suppression.reason == "twilio-30006"
                )
            )
        )
    wrong = [sid for sid, state in expected.items() if states.get(sid) != state]
    if wrong:
        sample = ", ".join(f"{s}={states.get(s)} not {expected[s]}" for s in wrong[:3])
        run.db_errors.append(f"{len(wrong)} deliveries in the wrong state ({sample})")
    if suppressed != failed_numbers:
        run.db_errors.append(
            f"{len(failed_numbers - suppressed)} numbers failed with 30006 but are not suppressed"
        )
    run.intents = Counter(file.kinds[i] for i in issued)


def issued_lines(run: Run) -> list[int]:
    """The request file's lines wrk sent (thread t sends lines t, t+T, ... in order)."""
    threads = run.result["threads"]
    lines: list[int] = []
    for t, sent in enumerate(run.result["issued"]):
        lines.extend(list(range(t, len(run.requests.sids), threads))[: int(sent)])
    return lines


# ------------------------------------------------------------------------------------------
# report
# ------------------------------------------------------------------------------------------


def report(
    runs: list[Run], args: argparse.Namespace, config: ServerConfig, kind: str, cores: int
) -> dict[str, Any]:
    measured = [r for r in runs if r.name != "warm-up"]
    print()
    print(
        f"{kind}, gunicorn {config}, {args.members:,} members, {cores} cores, "
        f"wrk {args.duration:g} s per run, load average {os.getloadavg()[0]:.1f}"
    )
    header = (
        f"{'endpoint':<22}{'conns':>6}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}"
        f"{'worker ms/req (sys)':>21}{'machine busy':>14}"
    )
    print(header)
    print("-" * len(header))
    for r in measured:
        lat = r.result["latency_us"]
        print(
            f"{r.path:<22}{r.connections:>6}{r.rps:>9,.0f}{lat['p50'] / 1000:>9.2f}"
            f"{lat['p99'] / 1000:>9.2f}{r.errors:>8}{r.worker_ms:>14.2f} ({r.worker_sys_ms:.2f})"
            f"{r.busy:>13.0%}"
        )
    summary: dict[str, Any] = {"database": kind, "server": str(config), "runs": [], "ratios": {}}
    print()
    checks: list[tuple[str, bool]] = []
    for conns in args.connections:
        full = next(r for r in measured if r.is_full and r.connections == conns)
        empty = next(r for r in measured if not r.is_full and r.connections == conns)
        ratio = full.rps / empty.rps if empty.rps else 0.0
        per_core = full.rps / cores
        p99 = full.result["latency_us"]["p99"] / 1000
        print(
            f"{conns:>3} connections: full/empty = {ratio:.2f}, "
            f"full handler {per_core:,.0f} req/s per core, p99 {p99:.1f} ms"
        )
        summary["ratios"][conns] = ratio
        if conns == 8:  # the target: PostgreSQL, gunicorn, 8 connections
            checks += [
                (">= 600 texts/s @8", full.rps >= 600),
                ("p99 <= 50 ms @8", p99 <= 50.0),
            ]
        checks.append((f"no errors @{conns}", full.errors == 0 and empty.errors == 0))
    print("targets: " + ", ".join(f"{name} {'ok' if ok else 'MISSED'}" for name, ok in checks))
    for r in runs:
        for message in r.db_errors:
            print(f"  {r.name} {r.path} c{r.connections}: {message}")
        if r.is_full and r.result.get("wrapped"):
            print(f"  {r.name} c{r.connections}: request file too small, raise --max-rate")
        errors = {k: v for k, v in r.result.get("errors", {}).items() if v}
        if errors:
            print(f"  {r.name} {r.path} c{r.connections}: wrk errors {errors}")
        summary["runs"].append(
            {
                "name": r.name,
                "path": r.path,
                "connections": r.connections,
                "rps": round(r.rps, 1),
                "latency_us": r.result["latency_us"],
                "errors": r.errors,
                "intents": dict(r.intents),
                "worker_ms_per_request": round(r.worker_ms, 3),
                "worker_system_ms_per_request": round(r.worker_sys_ms, 3),
            }
        )
    return summary


# ------------------------------------------------------------------------------------------
# main
# ------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--postgres", metavar="URL", help="use PostgreSQL (a schema of its own)")
    parser.add_argument(
        "--endpoint",
        choices=list(ENDPOINTS),
        default="sms",
        help="the full handler: inbound texts, or status callbacks for a campaign's deliveries",
    )
    parser.add_argument("--members", type=int, default=10_000)
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--warmup", type=int, default=3, help="seconds of warm-up per path")
    parser.add_argument("--connections", type=int, nargs="+", default=[8, 64])
    parser.add_argument(
        "--server",
        type=ServerConfig.parse,
        action="append",
        metavar="CONFIG",
        help="gunicorn workers: sync:N or gthread:NxT; repeat to compare "
        "(default: sync:2 on SQLite, gthread:2x4 on PostgreSQL)",
    )
    parser.add_argument("--wrk-threads", type=int, default=1)
    parser.add_argument(
        "--access-log",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="gunicorn access log, as the Procfile has it (to a file here)",
    )
    parser.add_argument(
        "--max-rate",
        type=int,
        default=5000,
        help="requests/s the request files are sized for (duration x rate per run)",
    )
    parser.add_argument(
        "--py-spy",
        metavar="DIR",
        help="sample the workers with py-spy during the full-handler runs (raw stacks into DIR)",
    )
    parser.add_argument("--seed", type=int, default=20261101)
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    parser.add_argument("--keep", action="store_true", help="keep the temp directory")
    return parser.parse_args(argv)


def plan(
    args: argparse.Namespace,
    generator: Generator,
    workdir: Path,
    instance: Instance,
    rng: random.Random,
) -> list[Run]:
    """A warm-up, then each connection count: the empty endpoint, then the full handler.

    Each pair gets its own request file (fresh MessageSids: the database keeps every run's rows).
    """
    runs: list[Run] = []
    steps = [("warm-up", args.warmup, 8)] + [
        ("measure", args.duration, c) for c in args.connections
    ]
    for name, duration, conns in steps:
        generator.files += 1
        number = generator.files
        size = math.ceil(duration * args.max_rate)
        path = workdir / f"requests-{number}.txt"
        if args.endpoint == "status":
            file = write_status_callbacks(instance, rng, path, number, size)
        else:
            file = generator.write(path, number, size)
        runs.append(Run(name, EMPTY_PATH, conns, duration, file))
        runs.append(Run(name, ENDPOINTS[args.endpoint], conns, duration, file))
    return runs


def compare(summaries: list[dict[str, Any]], cores: int) -> None:
    print()
    print("server configs compared (full handler):")
    for summary in summaries:
        full = [r for r in summary["runs"] if r["path"] != EMPTY_PATH and r["name"] != "warm-up"]
        figures = ", ".join(
            f"c{r['connections']} {r['rps']:,.0f} req/s ({r['rps'] / cores:,.0f}/core) "
            f"p99 {r['latency_us']['p99'] / 1000:.1f} ms "
            f"ratio {summary['ratios'][r['connections']]:.2f}"
            for r in full
        )
        print(f"  {summary['server']:<14} {figures}")


def _terminate(signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if shutil.which("wrk") is None:
        print("wrk is not installed (apt-get install wrk)", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _terminate)
    check_mix_classifies_as_expected()
    cores = os.cpu_count() or 1
    rng = random.Random(args.seed)
    workdir = Path(tempfile.mkdtemp(prefix="outreach-bench-"))
    instance: Instance | None = None
    redis: EmbeddedRedis | None = None
    server: Server | None = None
    started = time.monotonic()
    try:
        instance = create_instance(args, workdir, rng)
        print(
            f"{instance.kind}: seeded {len(instance.members):,} members "
            f"in {time.monotonic() - started:.1f} s; load average {os.getloadavg()[0]:.2f}"
        )
        generator = Generator(
            rng, instance.members, {*instance.members, *instance.pending, SENDER}, instance.pending
        )
        configs: list[ServerConfig] = args.server or [DEFAULT_SERVER[instance.kind]]
        redis = EmbeddedRedis(workdir / "redis.sock").start()
        summaries = []
        for config in configs:
            t0 = time.monotonic()
            runs = plan(args, generator, workdir, instance, rng)
            signed = sum(len(r.requests.sids) for r in runs if r.is_full)
            print(f"{config}: signed {signed:,} requests in {time.monotonic() - t0:.1f} s")
            server = start_server(args, config, instance, redis.url)
            wait_ready(server)
            for run in runs:
                run_wrk(args, server, run)
                if run.is_full:
                    (verify_status if args.endpoint == "status" else verify)(instance, run)
                lat = run.result["latency_us"]
                print(
                    f"  {config} {run.name:<8} {run.path:<22} c{run.connections:<3}"
                    f" {run.rps:>8,.0f} req/s  p50 {lat['p50'] / 1000:.2f} ms"
                    f"  p99 {lat['p99'] / 1000:.2f} ms  errors {run.errors}"
                )
            server.stop()
            server = None
            summaries.append(report(runs, args, config, instance.kind, cores))
        if len(summaries) > 1:
            compare(summaries, cores)
        if args.json:
            Path(args.json).write_text(json.dumps(summaries, indent=2))
        return 0
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # let the clean-up finish
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        if server is not None:
            server.stop()
        if redis is not None:
            redis.stop()
        if instance is not None:
            instance.close()
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
        print(f"done in {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    raise SystemExit(main())
