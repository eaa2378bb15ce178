"""A throwaway Redis for tests: `redis-server` on a free loopback port in a temp dir, nothing saved, stopped at
the end. `redis_url` is the pytest fixture (session scoped); `redis_db` empties the database before a test."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

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
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """One Redis for the session (skipped, saying why, where redis-server is not installed)."""
    if reason := missing_reason():
        pytest.skip(reason)
    with redis_server() as url:
        yield url


@pytest.fixture
def redis_db(redis_url: str) -> str:
    """The session's Redis, emptied first: each test starts from no limits, tickets or sessions."""
    import redis

    with redis.Redis.from_url(redis_url) as client:
        client.flushdb()
    return redis_url
