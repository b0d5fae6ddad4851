"""The README's first command: ``outreach run`` starts everything and Ctrl-C stops everything."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def test_run_starts_web_worker_and_embedded_redis_then_stops_cleanly(tmp_path: Path) -> None:
    port = free_port()
    instance = tmp_path / "instance"
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DATABASE_URL")}
    env.update(OUTREACH_INSTANCE_PATH=str(instance), PORT=str(port), OUTREACH_ENV="development")
    process = subprocess.Popen(
        [sys.executable, "-m", "cli", "run"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # a terminal of its own: Ctrl-C reaches its whole process group
    )
    try:
        body = None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and process.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                    body = json.load(r)
                break
            except OSError:
                time.sleep(0.2)
        assert body["status"] == "ok"
        assert body["checks"] == {"database": "ok", "redis": "ok"}
        assert (instance / "outreach.db").exists()
        assert (instance / "redis.sock").exists()
        # The worker registers itself in Redis once it is up.
        import redis

        client = redis.Redis(unix_socket_path=str(instance / "redis.sock"))
        deadline = time.monotonic() + 30
        while not client.smembers("rq:workers") and time.monotonic() < deadline:
            time.sleep(0.2)
        assert client.smembers("rq:workers"), "no RQ worker registered"
        client.close()
    finally:
        os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C does: every process in the group
        output, _ = process.communicate(timeout=40)
    assert process.returncode == 0, output
    assert "stopped" in output
    # Redis is stopped last, after the worker's warm shutdown, not by the Ctrl-C itself.
    assert "could not connect to Redis" not in output, output
    assert not (instance / "redis.sock").exists()
