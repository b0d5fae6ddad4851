"""How fast the Twilio spool drains once the database is back (``outreach.sms.spool``).

    .venv/bin/python bench/spool_replay.py                       # SQLite, 20,000 texts
    .venv/bin/python bench/spool_replay.py --texts 50000 --postgres postgresql://postgres@127.0.0.1:5432/test

The same instance and mix as bench/inbound_webhook.py (a huddle with ``--members`` members;
83% replies, 5% HELP, 6% JOIN, 3% STOP, 3% YES), but the texts are spooled, as the webhook
spools them while the database is away, and then applied by one ``replay`` run in this process
with the sandbox SMS transport answering (each answer is an outbox row, as with a real provider
it would be an API call). Prints texts/s applied and answers/s sent, and checks afterwards that
every text has its row and the spool is empty. Everything is in a temp directory (or a schema of
its own), removed at the end.
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import parse_qs

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import inbound_webhook as bench
from sqlalchemy import func, select

from outreach.app.embedded_redis import EmbeddedRedis
from outreach.app.services import Services
from outreach.app.settings import Settings
from outreach.models import InboundMessage
from outreach.providers.sandbox.sms import SandboxSmsTransport
from outreach.sms import spool
from outreach.sms.inbound import InboundSms


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--postgres", metavar="URL")
    parser.add_argument("--members", type=int, default=10_000)
    parser.add_argument("--texts", type=int, default=20_000)
    args = parser.parse_args()
    rng = random.Random(7)
    workdir = Path(tempfile.mkdtemp(prefix="outreach-spool-"))
    instance = bench.create_instance(
        argparse.Namespace(postgres=args.postgres, members=args.members), workdir, rng
    )
    redis_server = EmbeddedRedis(workdir / "redis.sock").start()
    services = None
    try:
        settings = Settings.from_env(
            {
                "DATABASE_URL": instance.database_url,
                "REDIS_URL": redis_server.url,
                "OUTREACH_INSTANCE_PATH": str(workdir / "instance"),
                "SMS_BACKEND": "sandbox",
            },
            dotenv=False,
        )
        services = Services.build(settings)
        generator = bench.Generator(
            rng,
            instance.members,
            {*instance.members, *instance.pending, bench.SENDER},
            instance.pending,
        )
        requests = generator.write(workdir / "texts.txt", 1, args.texts)
        logging.disable(logging.WARNING)  # a warning per spooled text: not what is measured
        for line in requests.path.read_text().splitlines():
            form = parse_qs(line.split("\t", 1)[1], keep_blank_values=True)
            sms = InboundSms(form["MessageSid"][0], form["From"][0], form["To"][0], form["Body"][0])
            spool.spool_text(services.redis, sms)
        replayer = spool.Replayer(services.engine, SandboxSmsTransport(settings, services.sessions))
        wall, cpu = time.perf_counter(), time.process_time()
        outcome = spool.replay(services.redis, replayer, limit=args.texts)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        with services.sessions() as session:
            stored = session.scalar(select(func.count(InboundMessage.id))) or 0
        print(
            f"{instance.kind}: {args.texts:,} spooled texts, {args.members:,} members, "
            f"load average {os.getloadavg()[0]:.1f}"
        )
        print(
            f"  applied {outcome.applied:,} in {wall:.1f} s: {outcome.applied / wall:,.0f} texts/s,"
            f" {cpu / max(outcome.applied, 1) * 1000:.2f} ms CPU each;"
            f" {outcome.answered:,} answers sent ({outcome.answered / wall:,.0f}/s)"
        )
        errors = []
        if outcome.applied != args.texts or stored != args.texts:
            errors.append(f"{outcome.applied:,} applied, {stored:,} rows for {args.texts:,} texts")
        if outcome.waiting or outcome.dead:
            errors.append(f"{outcome.waiting} still waiting, {outcome.dead} set aside")
        print("  check: " + ("; ".join(errors) if errors else "every text stored, spool empty"))
        return 1 if errors else 0
    finally:
        if services is not None:
            services.close()
        redis_server.stop()
        instance.close()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
