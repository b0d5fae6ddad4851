"""``outreach run``: the whole service on one machine, stopped cleanly by Ctrl-C.

Starts the embedded Redis (unless ``REDIS_URL`` is set), applies migrations, then runs the web app
under gunicorn and one worker (which reconnects to Redis by itself) as child processes.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from types import FrameType

import click

from outreach.app import migrate
from outreach.app.db import make_engine
from outreach.app.embedded_redis import EmbeddedRedis
from outreach.app.settings import Settings


def run_all(settings: Settings, *, host: str, port: int, web_processes: int) -> int:
    settings.instance_path.mkdir(parents=True, exist_ok=True)
    redis_server: EmbeddedRedis | None = None
    env = dict(os.environ)
    if settings.redis_url is None:
        redis_server = EmbeddedRedis(settings.instance_path / "redis.sock").start()
        env["REDIS_URL"] = redis_server.url
        click.echo(f"redis:    embedded, {redis_server.url}")
    else:
        click.echo("redis:    REDIS_URL")
    env.setdefault("PUBLIC_BASE_URL", f"http://{host}:{port}")
    env["DATABASE_URL"] = settings.database_url
    engine = make_engine(settings.database_url)
    migrate.upgrade(engine)
    engine.dispose()
    click.echo(f"database: {_describe(settings.database_url)} (migrated)")
    click.echo(f"sms:      {settings.sms_backend}; email: {settings.email_backend}")

    children: list[subprocess.Popen[bytes]] = []
    stopping = False

    def stop(_signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        children.append(
            subprocess.Popen(  # noqa: S603 - our own interpreter and fixed arguments
                [
                    sys.executable,
                    "-m",
                    "gunicorn",
                    "--bind",
                    f"{host}:{port}",
                    "--workers",
                    str(web_processes),
                    "--access-logfile",
                    "-",
                    "--graceful-timeout",
                    "10",
                    "web:create_app()",
                ],
                env=env,
                start_new_session=True,  # Ctrl-C reaches us; we stop the children in order
            )
        )
        children.append(
            subprocess.Popen(
                [sys.executable, "-m", "cli", "worker"], env=env, start_new_session=True
            )
        )
        click.echo(f"web:      http://{host}:{port}/  (health: /healthz)")
        click.echo("Ctrl-C stops everything.")
        while not stopping:
            for child in children:
                if child.poll() is not None:
                    click.echo(
                        f"a child process exited with {child.returncode}; stopping", err=True
                    )
                    stopping = True
            time.sleep(0.2)
    finally:
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 15
        for child in children:
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(timeout=max(0.1, deadline - time.monotonic()))
            if child.poll() is None:
                child.kill()
                child.wait()
        if redis_server is not None:
            redis_server.stop()
        click.echo("stopped")
    return 0


def _describe(url: str) -> str:
    return url if url.startswith("sqlite") else url.rsplit("@", maxsplit=1)[-1]
