"""A throwaway Redis for tests: `redis-server` on a free loopback port in a temp dir, nothing saved, stopped at
the end. tests/conftest.py serves it as the fixtures `redis_url` (one server a session) and `redis_db` (emptied
before each test)."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.live.processes import stop_process
from tests.server import free_port

READY_TIMEOUT_S = 30.0


def missing_reason() -> str | None:
    """Why no server can be started here, or None."""
    if shutil.which("redis-server") is None:
        return "redis-server is not installed (apt-get install redis-server; .ci/run installs it)"
    return None


def _ping(url: str) -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1).ping())
    except redis.exceptions.RedisError:
        return False


@contextmanager
def redis_server() -> Iterator[str]:
    """Run redis-server until the block ends; yield its `redis://` URL (retrying when the port was taken)."""
    root = Path(tempfile.mkdtemp(prefix="atelier-redis-"))
    try:
        for attempt in range(3):
            port = free_port()
            url = f"redis://127.0.0.1:{port}/0"
            log = root / "redis.log"
            proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                     "--appendonly", "no", "--dir", str(root), "--logfile", str(log)],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
            try:
                deadline = time.monotonic() + READY_TIMEOUT_S
                while proc.poll() is None and not _ping(url) and time.monotonic() < deadline:
                    time.sleep(0.05)
                if proc.poll() is None and _ping(url):
                    yield url
                    return
                if attempt == 2:
                    tail = log.read_text()[-2000:] if log.is_file() else ""
                    raise RuntimeError(f"redis-server did not start on port {port}: {tail}")
            finally:
                stop_process(proc)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def empty(url: str) -> str:
    """Empty the database at `url` (limits, tickets, sessions of earlier tests); the URL."""
    import redis

    with redis.Redis.from_url(url) as client:
        client.flushdb()
    return url
