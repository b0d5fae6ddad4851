"""Fault runs: a campaign through the service as production runs it, hit by one fault at a time.

    .venv/bin/python bench/fault_run.py                      # SQLite and PostgreSQL, every fault
    .venv/bin/python bench/fault_run.py --database sqlite --faults sigkill-only,redis-restart
    .venv/bin/python bench/fault_run.py --members 108 --rate 100 --logs /tmp/fault-logs

Each run builds its own stack in a temp directory and removes it at the end (also on failure,
Ctrl-C or SIGTERM):

- Redis: ``EmbeddedRedis`` on a unix socket, persistence off (a restart comes back empty);
- the database: a SQLite file, or a PostgreSQL cluster of its own (``initdb`` and ``pg_ctl`` as
  the ``postgres`` user, on a free loopback port) so that it can be restarted;
- FakeTwilio in this process (``tests/fakes``), timing every create it answers;
- the Procfile's commands with ``OUTREACH_ENV=production`` and the default
  ``WORKER_LEASE_TIMEOUT`` (15 s): ``outreach db upgrade`` (release), gunicorn
  (``web:create_app()``, two processes) and ``outreach worker`` processes.

It seeds a huddle and ``--members`` members (in a zone where it is daytime now, so quiet hours
let them be texted whatever the hour here), drafts and launches the campaign at ``--rate``
segments/s with the CLI (``outreach campaign create`` / ``launch``), and when the fake has
created ``--fault-at`` texts the fault strikes (from inside that create's answer, so the worker
is mid-group whatever the rate):

=====================  ====================================================  =====================
fault                  what happens                                          clock starts
=====================  ====================================================  =====================
sigkill-only           SIGKILL the only worker; a new one 2 s later          new worker started
sigkill-one-of-two     SIGKILL the worker holding the campaign of two        the kill (survivor)
sigterm                slow provider (2 s), SIGTERM during the next group;   new worker started
                       a new worker once the old one has exited
redis-restart          stop Redis; start it again, empty, 3 s later          Redis up again
postgres-restart       ``pg_ctl restart -m fast`` (PostgreSQL only)          restart returned
provider-429           the fake answers 429 (20429) to the next 30 creates   the 30th 429 answered
provider-500-lists     SIGKILL the worker, the next 30 message-list lookups  new worker started
                       answer 500; a new worker 2 s later
provider-slow          the fake answers after 2 s for 10 s                   latency back to 0
=====================  ====================================================  =====================

Right after the fault, a member who has not been texted yet texts STOP through gunicorn's real
Twilio webhook (``POST /webhooks/twilio/sms``, signed over PUBLIC_BASE_URL with the SDK's
``RequestValidator``). Measured, from the clock start: **resume s** (the first campaign text the
fake creates after it, not counting the group that was in flight when the fault struck; "–"
when nothing was left to send), **complete s** (the campaign is ``completed`` in the database;
0 if it completed before). Counted, over campaign texts (a reply to a STOP that was spooled goes
out through the API too; it is listed, not counted): **duplicates** (texts to one number beyond
the first), **opt-out violations** (texts to the STOP member created after the webhook
answered), **unknown** deliveries in the ledger. The JSON line adds the ledger's states, the
STOP's HTTP status, the stalest lease of a live worker seen after the clock, and the longest
pause between two texts once sending resumed.

Targets (the issue): resume within 30 s and complete within 60 s; no duplicates and no opt-out
violations in any run. The process exits with 1 if any run misses one (or fails to run).
A Markdown table and one JSON line per run are printed; ``--logs DIR`` keeps every run's logs.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import itertools
import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    PYTHON,
    child_env,
    install_signal_handlers,
    print_table,
)
from sqlalchemy import Engine, create_engine, text
from twilio.request_validator import RequestValidator

from outreach.app.clock import utcnow
from outreach.app.embedded_redis import EmbeddedRedis
from outreach.app.services import Services
from outreach.app.settings import Settings
from tests.fakes.twilio_server import FakeTwilio, RecordedRequest, Reply
from tests.workers.campaign_helpers import SENDER, add_members, make_huddle

FAULTS = (
    "sigkill-only",
    "sigkill-one-of-two",
    "sigterm",
    "redis-restart",
    "postgres-restart",
    "provider-429",
    "provider-500-lists",
    "provider-slow",
)
RESUME_TARGET = 30.0  # seconds
COMPLETE_TARGET = 60.0
BODY = "Rally Saturday, {{ first_name }}!"
CAMPAIGN_PREFIX = "Rally Saturday, "  # what every campaign text starts with, and no reply
SLOW_LATENCY = 2.0  # seconds per provider answer, for sigterm and provider-slow
SLOW_FOR = 10.0
NEW_WORKER_AFTER = 2.0  # seconds after a kill
REDIS_DOWN_FOR = 3.0
FAILURES = 30  # 429s to creates, 500s to message lists
WEBHOOK = "/webhooks/twilio/sms"


# --------------------------------------------------------------------------------------------
# The fake provider, timed
# --------------------------------------------------------------------------------------------


class TimedTwilio(FakeTwilio):
    """FakeTwilio that notes when it created each campaign text and can act at the n-th.

    An action runs inside the n-th create's answer, before it is written: the worker waits for
    that answer, so whatever the rate it is mid-group when the fault strikes. Other texts (the
    replies to texts that were spooled, sent through the API when replayed) are kept apart.
    """

    def __init__(self) -> None:
        super().__init__(ACCOUNT_SID, AUTH_TOKEN)
        self.texts: list[tuple[float, str]] = []  # (monotonic time, to) of campaign texts
        self.other_texts: list[tuple[float, str, str]] = []  # (time, to, body)
        self.create_errors: list[tuple[float, int]] = []  # (time, HTTP status) of failed creates
        self.list_errors: list[float] = []
        self.action_errors: list[BaseException] = []
        self._actions: dict[int, tuple[Callable[[], None], threading.Event]] = {}
        self._timing = threading.Lock()

    def at_text(self, count: int, action: Callable[[], None]) -> threading.Event:
        """Run ``action`` when the ``count``-th text is created; the event is set once it ran."""
        done = threading.Event()
        with self._timing:
            self._actions[count] = (action, done)
        return done

    def handle(self, request: RecordedRequest) -> Reply:
        reply = super().handle(request)
        if not request.path.endswith("/Messages.json"):
            return reply
        now = time.monotonic()
        due = None
        with self._timing:
            if request.method == "POST" and reply.status == 201:
                to, body = request.form["To"][0], request.form.get("Body", [""])[0]
                if body.startswith(CAMPAIGN_PREFIX):
                    self.texts.append((now, to))
                    due = self._actions.pop(len(self.texts), None)
                else:
                    self.other_texts.append((now, to, body))
            elif request.method == "POST":
                self.create_errors.append((now, reply.status))
            elif reply.status >= 500:
                self.list_errors.append(now)
        if due is not None:
            action, done = due
            try:
                action()
            except Exception as exc:  # noqa: BLE001 - reported by the run, not as a fake 500
                self.action_errors.append(exc)
            finally:
                done.set()
        return reply

    def texted(self) -> set[str]:
        with self._timing:
            return {to for _, to in self.texts}


# --------------------------------------------------------------------------------------------
# Processes and the stack
# --------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def stop_group(process: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    """SIGTERM the process group (each child has its own), then SIGKILL what is left."""
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 10.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        try:
            process.wait(timeout=wait)
            break
        except subprocess.TimeoutExpired:
            continue
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)  # a grandchild that outlived its parent


class Postgres:
    """A PostgreSQL cluster of our own, run as the ``postgres`` user (we may be root)."""

    def __init__(self, root: Path) -> None:
        self.dir = root / "pg"
        self.dir.mkdir()
        user = pwd.getpwnam("postgres")
        os.chown(self.dir, user.pw_uid, user.pw_gid)
        self.data = self.dir / "data"
        self.port = free_port()
        self.log = self.dir / "server.log"
        self.started = False
        self._run(_pg_bin("initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres", "-N")

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        command = ["runuser", "-u", "postgres", "--", *args]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{args[0]} failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")

    def ctl(self, *action: str) -> None:
        self._run(
            _pg_bin("pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self.log),
            "-w",
            "-t",
            "60",
            "-o",
            f"-p {self.port} -k {self.dir}",
            *action,
        )

    def start(self) -> None:
        self.ctl("start")
        self.started = True

    def restart(self) -> None:
        self.ctl("-m", "fast", "restart")

    def stop(self) -> None:
        if self.started:
            self.ctl("-m", "immediate", "stop")
            self.started = False


def _pg_bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if not found:
        raise RuntimeError(f"no /usr/lib/postgresql/*/bin/{name}")
    return found[-1]


class Stack:
    """Redis, the database, the fake, migrations, gunicorn and workers of one run."""

    def __init__(self, database: str, logs: Path | None, label: str) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="of-"))  # short: unix socket paths are limited
        self.tmp.chmod(0o711)  # the postgres user must reach its own folder inside
        self.keep_logs = logs / label if logs else None
        self.database = database
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.started_at: dict[str, float] = {}
        self.redis = EmbeddedRedis(self.tmp / "redis.sock")
        self.postgres: Postgres | None = None
        self.fake = TimedTwilio()
        self.engine: Engine | None = None
        self.web_port = free_port()
        self.env: dict[str, str] = {}
        self.campaign_id = 0
        self.phones: list[str] = []

    # -- set-up ------------------------------------------------------------------------------

    def start(self, members: int) -> None:
        self.redis.start()
        if self.database == "postgres":
            self.postgres = Postgres(self.tmp)
            self.postgres.start()
            database_url = self.postgres.url
        else:
            database_url = f"sqlite:///{self.tmp / 'outreach.db'}"
        self.fake.start()
        self.env = child_env(
            {
                "OUTREACH_ENV": "production",
                "DATABASE_URL": database_url,
                "REDIS_URL": self.redis.url,
                "SECRET_KEY": secrets.token_hex(32),
                "PUBLIC_BASE_URL": self.base_url,
                "SMS_BACKEND": "twilio",
                "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
                "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
                "TWILIO_API_BASE_URL": self.fake.base_url,
                "EMAIL_BACKEND": "sandbox",
                "OUTREACH_INSTANCE_PATH": str(self.tmp / "instance"),
                "PYTHONUNBUFFERED": "1",
            }
        )
        settings = Settings.from_env(self.env, dotenv=False)
        connect_args = {"check_same_thread": False} if self.database == "sqlite" else {}
        # Plain SQLAlchemy (no BEGIN IMMEDIATE): polling must not take SQLite's write lock.
        self.engine = create_engine(
            settings.database_url, pool_pre_ping=True, connect_args=connect_args
        )
        self.cli("db", "upgrade")  # the Procfile's release step
        self.seed(settings, members)
        self.start_process(
            "web",
            [
                PYTHON,
                "-m",
                "gunicorn",
                "--bind",
                f"127.0.0.1:{self.web_port}",
                "--workers",
                "2",
                "--graceful-timeout",
                "20",
                "--access-logfile",
                "-",
                "web:create_app()",
            ],
        )
        self.wait_web()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    def seed(self, settings: Settings, members: int) -> None:
        """A huddle and its members, in a zone where it is about 1 pm (quiet hours are kept)."""
        svc = Services.build(settings)
        try:
            with svc.sessions.begin() as session:
                huddle = make_huddle(session)
                zone = daytime_zone(utcnow())
                made = add_members(session, huddle, members)
                for member in made:
                    member.timezone = zone
                self.phones = [str(member.phone) for member in made]
        finally:
            svc.close()

    def cli(self, *args: str) -> str:
        done = subprocess.run(
            [PYTHON, "-m", "cli", *args],
            env=self.env,
            cwd=self.tmp,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"outreach {' '.join(args)} failed:\n{done.stderr[-3000:]}")
        return done.stdout

    def start_process(self, name: str, args: list[str]) -> subprocess.Popen[bytes]:
        with (self.tmp / f"{name}.log").open("ab") as log:
            process = subprocess.Popen(
                args,
                env=self.env,
                cwd=self.tmp,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own group: stop_group() reaches its children
            )
        self.processes[name] = process
        self.started_at[name] = time.monotonic()
        return process

    def start_worker(self, name: str) -> float:
        self.start_process(name, [PYTHON, "-m", "cli", "worker"])  # the Procfile's worker
        return self.started_at[name]

    def wait_web(self) -> None:
        deadline = time.monotonic() + 60
        while True:
            with (
                contextlib.suppress(OSError),
                urllib.request.urlopen(f"{self.base_url}/healthz", timeout=2) as answer,
            ):
                if answer.status == 200:
                    return
            if self.processes["web"].poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"gunicorn not up:\n{self.log_tail('web')}")
            time.sleep(0.1)

    def wait_leases(self, count: int) -> None:
        """Until ``count`` workers hold a lease: they are up and take jobs."""
        wait_for(
            f"{count} worker leases",
            lambda: self.scalar("SELECT count(*) FROM worker_leases") == count,
            timeout=60,
        )

    def launch(self, rate: float) -> None:
        """Draft and launch the campaign as a user would, with the CLI."""
        out = self.cli(
            "campaign", "create", "--huddle", "logan", "--body", BODY, "--rate", f"{rate:g}"
        )
        self.campaign_id = int(out.split()[-1])
        self.cli("campaign", "launch", str(self.campaign_id))

    # -- the database ------------------------------------------------------------------------

    def scalar(self, sql: str, **params: object) -> Any:
        assert self.engine is not None
        with self.engine.connect() as conn:
            return conn.execute(text(sql), params).scalar()

    def rows(self, sql: str, **params: object) -> list[Any]:
        assert self.engine is not None
        with self.engine.connect() as conn:
            return list(conn.execute(text(sql), params).all())

    def campaign_state(self) -> str | None:
        try:
            state = self.scalar("SELECT state FROM campaigns WHERE id = :id", id=self.campaign_id)
        except Exception:  # noqa: BLE001 - the database may be restarting
            return None
        return str(state) if state else None

    def claimed_numbers(self) -> set[str]:
        rows = self.rows(
            "SELECT address FROM deliveries WHERE campaign_id = :id AND state = 'claimed'",
            id=self.campaign_id,
        )
        return {str(address) for (address,) in rows}

    def lease_ages(self) -> dict[int, float]:
        """Seconds since each live worker process (by pid) renewed its lease."""
        alive = {p.pid for name, p in self.processes.items() if name != "web" and p.poll() is None}
        now = utcnow()
        ages = {}
        for worker_id, beat_at in self.rows("SELECT worker_id, beat_at FROM worker_leases"):
            pid = int(str(worker_id).rsplit("-", 2)[1])
            beat = datetime.fromisoformat(beat_at) if isinstance(beat_at, str) else beat_at
            if pid in alive:
                ages[pid] = (now - beat.replace(tzinfo=beat.tzinfo or UTC)).total_seconds()
        return ages

    def holder_pid(self) -> int:
        """The pid of the worker whose lease holds the campaign's send job."""
        holder = self.scalar(
            "SELECT worker_id FROM worker_leases WHERE holding LIKE :token",
            token=f"%:{self.campaign_id}:%",
        )
        if holder is None:
            raise RuntimeError("no worker holds the campaign")
        return int(str(holder).rsplit("-", 2)[1])  # <host>-<pid>-<hex>

    # -- the STOP ----------------------------------------------------------------------------

    def text_stop(self, phone: str) -> int:
        """A STOP from ``phone``, as Twilio posts it; the webhook's HTTP status."""
        params = {
            "MessageSid": "SM" + secrets.token_hex(16),
            "AccountSid": ACCOUNT_SID,
            "From": phone,
            "To": SENDER,
            "Body": "STOP",
            "NumMedia": "0",
        }
        url = self.base_url + WEBHOOK
        signature = RequestValidator(AUTH_TOKEN).compute_signature(url, params)
        request = urllib.request.Request(
            url,
            data=urllib.parse.urlencode(params).encode(),
            headers={"X-Twilio-Signature": signature},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as answer:
                return int(answer.status)
        except urllib.error.HTTPError as err:
            return int(err.code)

    # -- tear-down ---------------------------------------------------------------------------

    def log_tail(self, name: str, lines: int = 40) -> str:
        path = self.tmp / f"{name}.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def close(self) -> None:
        for process in self.processes.values():
            with contextlib.suppress(Exception):
                stop_group(process)
        with contextlib.suppress(Exception):
            self.fake.stop()
        if self.engine is not None:
            with contextlib.suppress(Exception):
                self.engine.dispose()
        with contextlib.suppress(Exception):
            self.redis.stop()
        if self.postgres is not None:
            try:
                self.postgres.stop()
            except Exception:  # noqa: BLE001 - last resort: the postmaster by its pid file
                with contextlib.suppress(Exception):
                    pid = int((self.postgres.data / "postmaster.pid").read_text().split()[0])
                    os.kill(pid, signal.SIGKILL)
        if self.keep_logs is not None:
            self.keep_logs.mkdir(parents=True, exist_ok=True)
            logs = [*self.tmp.glob("*.log"), *self.tmp.glob("pg/*.log")]
            for log in logs:
                with contextlib.suppress(OSError):
                    shutil.copy(log, self.keep_logs / log.name)
        shutil.rmtree(self.tmp, ignore_errors=True)


def daytime_zone(now: datetime) -> str:
    """A fixed-offset zone where it is now about 1 pm (as tests/workers/test_worker_processes)."""
    offset = (13 - now.hour + 12) % 24 - 12  # -12..+11 hours from UTC
    return f"Etc/GMT{-offset:+d}" if offset else "Etc/UTC"  # Etc/GMT+5 is UTC-5


def wait_for(what: str, condition: Callable[[], bool], *, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(Exception):
            if condition():
                return
        if time.monotonic() > deadline:
            raise RuntimeError(f"not within {timeout:.0f} s: {what}")
        time.sleep(0.05)


def wait_event(what: str, event: threading.Event, timeout: float = 60) -> None:
    if not event.wait(timeout):
        raise RuntimeError(f"not within {timeout:.0f} s: {what}")


# --------------------------------------------------------------------------------------------
# Faults: each starts the workers, launches, strikes, and returns when the clock starts
# --------------------------------------------------------------------------------------------


@dataclass
class Fault:
    stack: Stack
    args: argparse.Namespace
    notes: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    stop_phone: str = ""
    stop_status: int = 0
    stop_answered: float = 0.0
    in_flight: set[str] = field(default_factory=set)  # numbers claimed when the fault struck
    max_lease_age: float = 0.0  # seconds, the stalest lease of a live worker after the clock

    @property
    def fake(self) -> TimedTwilio:
        return self.stack.fake

    def strike(self, count: int, action: Callable[[], None]) -> threading.Event:
        """At the ``count``-th text, note what is claimed (its texts may still arrive after the
        fault: they do not count as resuming), then run the fault's ``action``."""

        def note_then_act() -> None:
            self.in_flight = self.stack.claimed_numbers()
            action()

        return self.fake.at_text(count, note_then_act)

    def begin(self, workers: int) -> None:
        for number in range(1, workers + 1):
            self.stack.start_worker(f"worker-{number}")
        self.stack.wait_leases(workers)

    def launch(self) -> None:
        self.stack.launch(self.args.rate)

    def text_stop(self) -> None:
        """STOP from the last member not texted yet (sends go out in member order)."""
        left = sorted(set(self.stack.phones) - self.fake.texted())
        if not left:
            self.failures.append("nobody left to text STOP")
            return
        self.stop_phone = left[-1]
        self.stop_status = self.stack.text_stop(self.stop_phone)
        self.stop_answered = time.monotonic()
        if self.stop_status != 200:
            self.notes.append(f"STOP answered {self.stop_status}")

    def kill_at(self, count: int, name: str = "worker-1") -> threading.Event:
        process = self.stack.processes[name]
        return self.strike(count, lambda: os.kill(process.pid, signal.SIGKILL))

    def replace_worker(self, since: float) -> float:
        time.sleep(max(0.0, since + NEW_WORKER_AFTER - time.monotonic()))
        return self.stack.start_worker("worker-new")


def sigkill_only(f: Fault) -> float:
    f.begin(1)
    killed = f.kill_at(f.args.fault_at)
    f.launch()
    wait_event("the kill", killed)
    at = time.monotonic()
    f.text_stop()
    return f.replace_worker(at)


def sigkill_one_of_two(f: Fault) -> float:
    f.begin(2)
    killed: dict[str, float] = {}
    by_pid = {p.pid: name for name, p in f.stack.processes.items() if name.startswith("worker")}

    def kill_holder() -> None:
        pid = f.stack.holder_pid()
        os.kill(pid, signal.SIGKILL)
        killed[by_pid.get(pid, str(pid))] = time.monotonic()

    done = f.strike(f.args.fault_at, kill_holder)
    f.launch()
    wait_event("the kill", done)
    if not killed:
        raise RuntimeError("the holder was not killed")
    name, at = next(iter(killed.items()))
    f.notes.append(f"killed {name}")
    f.text_stop()
    return at


def sigterm(f: Fault) -> float:
    f.begin(1)
    worker = f.stack.processes["worker-1"]

    def slow_down() -> None:
        f.fake.latency = SLOW_LATENCY

    f.fake.at_text(f.args.fault_at, slow_down)
    # The next group's creates arrive together; the 6th after the slow-down is in the middle.
    termed = f.strike(f.args.fault_at + 6, lambda: worker.send_signal(signal.SIGTERM))
    f.launch()
    wait_event("the SIGTERM", termed)
    f.text_stop()
    code = worker.wait(timeout=120)
    if code != 0:
        f.failures.append(f"SIGTERM exit code {code}")
    f.fake.latency = 0.0
    return f.stack.start_worker("worker-new")


def redis_restart(f: Fault) -> float:
    f.begin(1)
    stopped = f.strike(f.args.fault_at, f.stack.redis.stop)
    f.launch()
    wait_event("Redis stopped", stopped)
    at = time.monotonic()
    f.text_stop()
    time.sleep(max(0.0, at + REDIS_DOWN_FOR - time.monotonic()))
    f.stack.redis.start()
    return time.monotonic()


def postgres_restart(f: Fault) -> float:
    postgres = f.stack.postgres
    if postgres is None:
        raise RuntimeError("postgres-restart needs --database postgres")
    f.begin(1)
    restarting = threading.Event()
    restarted: list[float] = []

    def restart() -> None:
        restarting.set()  # the STOP goes out meanwhile
        postgres.restart()
        restarted.append(time.monotonic())

    done = f.strike(f.args.fault_at, restart)
    f.launch()
    wait_event("the restart to begin", restarting)
    f.text_stop()
    wait_event("the restart", done, timeout=120)
    if not restarted:
        raise RuntimeError("pg_ctl restart failed")
    return restarted[0]


def provider_429(f: Fault) -> float:
    f.begin(1)
    armed = f.strike(f.args.fault_at, lambda: f.fake.fail_next(FAILURES, status=429, code=20429))
    f.launch()
    wait_event("the 429s armed", armed)
    f.text_stop()
    wait_for("30 answers 429", lambda: len(f.fake.create_errors) >= FAILURES, timeout=60)
    return f.fake.create_errors[FAILURES - 1][0]


def provider_500_lists(f: Fault) -> float:
    f.begin(1)
    worker = f.stack.processes["worker-1"]

    def kill_and_break_lists() -> None:
        os.kill(worker.pid, signal.SIGKILL)
        f.fake.fail_lists(FAILURES, status=500)

    killed = f.strike(f.args.fault_at, kill_and_break_lists)
    f.launch()
    wait_event("the kill", killed)
    at = time.monotonic()
    f.text_stop()
    return f.replace_worker(at)


def provider_slow(f: Fault) -> float:
    f.begin(1)
    started: list[float] = []

    def slow_down() -> None:
        f.fake.latency = SLOW_LATENCY
        started.append(time.monotonic())

    slow = f.strike(f.args.fault_at, slow_down)
    f.launch()
    wait_event("the slow-down", slow)
    f.text_stop()
    time.sleep(max(0.0, started[0] + SLOW_FOR - time.monotonic()))
    f.fake.latency = 0.0
    return time.monotonic()


RUNNERS: dict[str, Callable[[Fault], float]] = {
    "sigkill-only": sigkill_only,
    "sigkill-one-of-two": sigkill_one_of_two,
    "sigterm": sigterm,
    "redis-restart": redis_restart,
    "postgres-restart": postgres_restart,
    "provider-429": provider_429,
    "provider-500-lists": provider_500_lists,
    "provider-slow": provider_slow,
}


# --------------------------------------------------------------------------------------------
# One run
# --------------------------------------------------------------------------------------------


def run_one(database: str, fault: str, args: argparse.Namespace) -> dict[str, Any]:
    label = f"{database}-{fault}"
    stack = Stack(database, args.logs, label)
    f = Fault(stack, args)
    result: dict[str, Any] = {"database": database, "fault": fault, "members": args.members}
    try:
        stack.start(args.members)
        clock = RUNNERS[fault](f)
        completed_at = wait_complete(stack, f, clock + args.timeout)
        time.sleep(1.0)  # anything sent late (a duplicate) arrives now or never
        result.update(measure(stack, f, clock, completed_at))
        if fault == "redis-restart" and stack.processes["worker-1"].poll() is not None:
            f.failures.append("the worker exited instead of reconnecting")
        for error in stack.fake.action_errors:
            f.failures.append(f"fault action failed: {error!r}")
    except Exception as exc:  # noqa: BLE001 - one failed run must not hide the others
        f.failures.append(f"{type(exc).__name__}: {exc}")
        for name in [n for n in stack.processes if n.startswith("worker")]:
            print(f"--- {label} {name} log tail:\n{stack.log_tail(name)}", file=sys.stderr)
    finally:
        stack.close()
    result["notes"] = f.notes
    result["failures"] = f.failures + misses(result)
    result["ok"] = not result["failures"]
    return result


def wait_complete(stack: Stack, f: Fault, deadline: float) -> float | None:
    """Poll the campaign's state; meanwhile note how stale the live workers' leases get."""
    next_look = 0.0
    while time.monotonic() < deadline:
        if stack.campaign_state() == "completed":
            return time.monotonic()
        if time.monotonic() >= next_look:
            next_look = time.monotonic() + 0.5
            with contextlib.suppress(Exception):  # the database may be restarting
                ages = stack.lease_ages().values()
                f.max_lease_age = max([f.max_lease_age, *ages])
        time.sleep(0.05)
    return None


def measure(stack: Stack, f: Fault, clock: float, completed_at: float | None) -> dict[str, Any]:
    texts = list(stack.fake.texts)
    per_number = Counter(to for _, to in texts)
    # Resuming is a text the fault's in-flight group did not already have on its way.
    after = [t for t, to in texts if t > clock and to not in f.in_flight]
    after = after or [t for t, _ in texts if t > clock]
    texted_by_clock = {to for t, to in texts if t <= clock}
    times = sorted(t for t, _ in texts if after and t >= min(after))
    longest_pause = max((b - a for a, b in itertools.pairwise(times)), default=0.0)
    nothing_left = not set(stack.phones) - texted_by_clock - {f.stop_phone}
    states = dict(
        stack.rows(
            "SELECT state, count(*) FROM deliveries WHERE campaign_id = :id GROUP BY state",
            id=stack.campaign_id,
        )
    )
    stop_state = stack.scalar(
        "SELECT s.state FROM subscriptions s JOIN members m ON m.id = s.member_id"
        " WHERE m.phone = :phone AND s.channel = 'sms'",
        phone=f.stop_phone,
    )
    if f.stop_phone and stop_state != "opted_out":
        f.failures.append(f"the STOP was lost (subscription {stop_state})")
    if states.get("sent", 0) != len(per_number):
        f.notes.append(f"ledger sent {states.get('sent', 0)} != {len(per_number)} numbers texted")
    missing = set(stack.phones) - set(per_number) - {f.stop_phone}
    if missing:
        f.notes.append(f"{len(missing)} members never texted")
    return {
        "resume_s": round(min(after) - clock, 2) if after else None,
        "complete_s": None if completed_at is None else round(max(0.0, completed_at - clock), 2),
        "nothing_left_at_clock": nothing_left,
        "duplicates": sum(n - 1 for n in per_number.values()),
        "optout_violations": sum(
            1 for t, to in texts if to == f.stop_phone and t > f.stop_answered
        ),
        "unknown": int(states.get("unknown", 0)),
        "texts": len(texts),
        "other_texts": [f"{to}: {body}" for _, to, body in stack.fake.other_texts],
        "by_state": states,
        "stop_status": f.stop_status,
        "create_errors": len(stack.fake.create_errors),
        "list_errors": len(stack.fake.list_errors),
        "max_lease_age_s": round(f.max_lease_age, 1),
        "longest_pause_after_resume_s": round(longest_pause, 1),
    }


def misses(result: dict[str, Any]) -> list[str]:
    if "complete_s" not in result:
        return []  # the run failed before measuring: already a failure
    found = []
    if result["complete_s"] is None:
        found.append("not completed")
    elif result["complete_s"] > COMPLETE_TARGET:
        found.append(f"completed after {result['complete_s']:.1f} s")
    resume = result["resume_s"]
    if resume is None and not result["nothing_left_at_clock"]:
        found.append("no text after the fault")
    elif resume is not None and resume > RESUME_TARGET:
        found.append(f"resumed after {resume:.1f} s")
    if result["duplicates"]:
        found.append(f"{result['duplicates']} duplicates")
    if result["optout_violations"]:
        found.append(f"{result['optout_violations']} opt-out violations")
    return found


# --------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------


def seconds(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--database", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument(
        "--faults",
        type=lambda s: [x.strip() for x in s.split(",") if x.strip()],
        default=list(FAULTS),
        help=f"comma-separated, default all: {','.join(FAULTS)}",
    )
    parser.add_argument("--members", type=int, default=108)
    parser.add_argument("--rate", type=float, default=100.0, help="segments/s of the campaign")
    parser.add_argument("--fault-at", type=int, default=24, help="texts before the fault")
    parser.add_argument("--timeout", type=float, default=120.0, help="completion wait, s")
    parser.add_argument("--logs", type=Path, help="keep each run's logs under this folder")
    args = parser.parse_args()
    unknown = set(args.faults) - set(FAULTS)
    if unknown:
        parser.error(f"unknown faults: {', '.join(sorted(unknown))}")
    if not 0 < args.fault_at < args.members - 1:
        parser.error("--fault-at must leave texts to send after the fault")
    install_signal_handlers()
    databases = ["sqlite", "postgres"] if args.database == "both" else [args.database]
    results = []
    for database in databases:
        for fault in args.faults:
            if fault == "postgres-restart" and database != "postgres":
                continue
            print(f"== {database} {fault}", flush=True)
            result = run_one(database, fault, args)
            print(json.dumps(result), flush=True)
            results.append(result)
    print(
        f"\n{args.members} members at {args.rate:g} segments/s, fault after {args.fault_at} texts,"
        f" WORKER_LEASE_TIMEOUT default; {os.cpu_count()} cores, {time.strftime('%Y-%m-%d')}\n"
    )
    print_table(
        [
            "database",
            "fault",
            "resume s",
            "complete s",
            "duplicates",
            "opt-out violations",
            "unknown",
            "texts",
            "result",
        ],
        [
            [
                "SQLite" if r["database"] == "sqlite" else "PostgreSQL",
                r["fault"],
                seconds(r.get("resume_s")),
                seconds(r.get("complete_s")),
                r.get("duplicates", "?"),
                r.get("optout_violations", "?"),
                r.get("unknown", "?"),
                r.get("texts", "?"),
                "; ".join(["ok" if r["ok"] else "MISSED", *r["failures"], *r["notes"]]),
            ]
            for r in results
        ],
    )
    print(
        f"\nTargets: resume ≤ {RESUME_TARGET:.0f} s, complete ≤ {COMPLETE_TARGET:.0f} s,"
        " no duplicates, no opt-out violations."
    )
    sys.exit(0 if results and all(r["ok"] for r in results) else 1)


if __name__ == "__main__":
    main()
