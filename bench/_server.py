"""Start `python app.py` as a real subprocess for benchmarks and wait until /api/health answers."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def health(url: str) -> dict:
    """GET /api/health as JSON."""
    with urllib.request.urlopen(url + "api/health", timeout=5) as response:
        return json.loads(response.read())


def start_server(data_dir: Path, *flags: str) -> tuple[subprocess.Popen, str, float]:
    """Launch the app; return the process, its URL and the seconds until /api/health answered."""
    port = free_port()
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1"}
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "app.py"), "--profile", "tiny", "--port", str(port), "--data-dir", str(data_dir),
         *flags],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/"
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"app.py exited with {proc.returncode}")
        try:
            health(url)
            return proc, url, time.perf_counter() - started
        except OSError:
            time.sleep(0.05)


def wait_ready(url: str, kind: str, timeout: float = 300) -> None:
    """Wait until a model slot is ready."""
    deadline = time.monotonic() + timeout
    while (state := health(url)["models"][kind]["state"]) != "ready":
        if state == "failed" or time.monotonic() > deadline:
            raise RuntimeError(f"{kind} model: {health(url)['models'][kind]}")
        time.sleep(0.2)
