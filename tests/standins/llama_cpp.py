"""Start real llama.cpp servers on loopback for the tests: llama-cpp-python's ``llama_cpp.server`` and
llama.cpp's own ``llama-server``, both from one build by ``.ci/llama-cpp`` (or installed some other way)."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import httpx
import pytest

from tests.live.processes import stop_process
from tests.server import free_port

MODEL_ALIAS = "atelier-tiny-r1"

T = TypeVar("T")


class LlamaCppMissing(Exception):
    """A llama.cpp server that the tests cannot start; `required` when the environment asked for it."""

    def __init__(self, message: str, required: bool) -> None:
        super().__init__(message)
        self.required = required


def check_llama_cpp_python() -> None:
    """Raise LlamaCppMissing unless llama-cpp-python's server can be started here."""
    # .ci/llama-cpp installs the package without its own libraries and points LLAMA_CPP_LIB_PATH at its build:
    # with that set, a package that does not load is a broken build, not an optional extra.
    required = bool(os.environ.get("LLAMA_CPP_LIB_PATH"))
    try:
        import llama_cpp.server  # noqa: F401
        import sse_starlette  # noqa: F401
    except ImportError as err:
        raise LlamaCppMissing(f"llama-cpp-python[server] is not installed ({err}); run .ci/llama-cpp "
                              "or pip install -r requirements-llama.txt", required) from err
    except (OSError, RuntimeError) as err:  # the package is there, its libllama.so is not
        raise LlamaCppMissing(f"llama-cpp-python cannot load llama.cpp: {err}. Built by .ci/llama-cpp? Then "
                              "eval \"$(bash .ci/llama-cpp)\" sets LLAMA_CPP_LIB_PATH.", required=True) from err


def llama_server_binary() -> str:
    """llama.cpp's llama-server: $LLAMA_SERVER when set, else the one on PATH; LlamaCppMissing when neither."""
    explicit = os.environ.get("LLAMA_SERVER")
    if explicit:
        if not os.access(explicit, os.X_OK):
            raise LlamaCppMissing(f"LLAMA_SERVER={explicit} is not an executable file", required=True)
        return explicit
    found = shutil.which("llama-server")
    if found is None:
        raise LlamaCppMissing("llama.cpp's llama-server is not installed (run .ci/llama-cpp, set LLAMA_SERVER "
                              "or put it on PATH)", required=False)
    return found


def check_gguf() -> None:
    """Raise LlamaCppMissing unless the gguf package, which writes the tiny model for llama.cpp, is installed."""
    try:
        import gguf  # noqa: F401
    except ImportError as err:
        raise LlamaCppMissing("the gguf package writes the tiny model for llama.cpp: pip install -r "
                              "requirements-llama.txt",
                              required=bool(os.environ.get("LLAMA_CPP_LIB_PATH") or os.environ.get("LLAMA_SERVER"))
                              ) from err


def required_or_skip(check: Callable[[], T]) -> T:
    """`check()`; a missing server skips the test, or fails it where the environment asked for that server."""
    try:
        return check()
    except LlamaCppMissing as err:
        if err.required:
            pytest.fail(str(err))
        pytest.skip(str(err))


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
            stop_process(proc)


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
    # One thread, as above; two slots so that a stopped reply and the next one never wait for each other, with
    # 4096 tokens each so that a long reply runs for seconds (time to stop it) instead of filling its context.
    command = [binary, "-m", str(model), "--alias", MODEL_ALIAS, "--host", "127.0.0.1", "--port", str(port),
               "--jinja", "--reasoning-format", "deepseek", "-c", "8192", "-np", "2", "-t", "1", "--no-webui"]
    with _run(command, port, log_path) as base:
        yield base
