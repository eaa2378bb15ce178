"""Helpers for the server processes the tests start: wait until one answers, stop one for good."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable

import httpx


def wait_until_answers(proc: subprocess.Popen[bytes], url: str, timeout_s: float, name: str,
                       log: Callable[[], str], every_s: float = 0.2) -> None:
    """Poll GET `url` until it answers 200; raise with `name` and the process's `log()` if the process exits or
    `timeout_s` passes first."""
    deadline = time.monotonic() + timeout_s
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited with {proc.returncode}:\n{log()}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{name} did not answer in {timeout_s:.0f} s:\n{log()}")
        time.sleep(every_s)


def stop_process(proc: subprocess.Popen[bytes], timeout_s: float = 10) -> None:
    """SIGTERM, then SIGKILL if it has not ended within `timeout_s`; reaped either way."""
    proc.terminate()
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=timeout_s)
