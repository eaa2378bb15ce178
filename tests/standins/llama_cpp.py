"""Start real llama.cpp servers on loopback for the tests: llama-cpp-python's ``llama_cpp.server`` (from
``pip install 'llama-cpp-python[server]'``) and, when one is installed, llama.cpp's own ``llama-server``."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from tests.server import free_port

MODEL_ALIAS = "atelier-tiny-r1"


def llama_cpp_python_available() -> bool:
    """Whether llama-cpp-python and its server extra are installed."""
    try:
        import llama_cpp.server  # noqa: F401
        import sse_starlette  # noqa: F401
    except ImportError:
        return False
    return True


def llama_server_binary() -> str | None:
    """llama.cpp's llama-server: $LLAMA_SERVER when set, else the one on PATH, else None."""
    explicit = os.environ.get("LLAMA_SERVER")
    if explicit and Path(explicit).is_file():
        return explicit
    return shutil.which("llama-server")


@contextlib.contextmanager
def _run(command: list[str], port: int, log_path: Path, ready_timeout_s: float = 60) -> Iterator[str]:
    """Run a server process, wait until /v1/models answers, yield its /v1 base URL, then stop that process."""
    base = f"http://127.0.0.1:{port}/v1"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + ready_timeout_s
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"{command[0]} exited with {proc.returncode}: {log_path.read_text()[-2000:]}")
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(f"{base}/models", timeout=1, trust_env=False).status_code == 200:
                        break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{command[0]} did not answer within {ready_timeout_s:g} s")
                time.sleep(0.2)
            yield base
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


@contextlib.contextmanager
def llama_cpp_python_server(model: Path, log_path: Path) -> Iterator[str]:
    """llama-cpp-python's OpenAI-compatible server for `model`; yields its /v1 base URL."""
    port = free_port()
    # One thread: ggml's worker threads spin while they wait, and two of them on a busy two-core machine
    # made a reply ten times slower; the tiny model needs no more.
    command = [sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--model_alias", MODEL_ALIAS,
               "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "512", "--n_threads", "1", "--verbose",
               "False"]
    with _run(command, port, log_path) as base:
        yield base


@contextlib.contextmanager
def llama_server(binary: str, model: Path, log_path: Path) -> Iterator[str]:
    """llama.cpp's llama-server for `model`, started as the README says; yields its /v1 base URL."""
    port = free_port()
    # One thread, as above; two slots so that a stopped reply and the next one never wait for each other.
    command = [binary, "-m", str(model), "--alias", MODEL_ALIAS, "--host", "127.0.0.1", "--port", str(port),
               "--jinja", "--reasoning-format", "deepseek", "-c", "1024", "-np", "2", "-t", "1", "--no-webui"]
    with _run(command, port, log_path) as base:
        yield base
