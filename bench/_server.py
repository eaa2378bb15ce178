"""Start `python app.py` as a real subprocess for benchmarks and wait until /api/health answers."""

from __future__ import annotations

import json
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results"
OFFLINE_ENV = {"GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1"}


def thread_env(threads: int) -> dict[str, str]:
    """The environment both sides of a comparison start with: the same OpenMP / MKL pool sizes, and the app's own
    thread setting (which it applies at start, over the pool sizes) to match."""
    return {**OFFLINE_ENV, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
            "ATELIER_TORCH_THREADS": str(threads)}


def apply_threads(threads: int, interop: int) -> None:
    """Give torch in this process the same intra-op and inter-op thread counts as the other side."""
    import torch

    torch.set_num_threads(threads)
    torch.set_num_interop_threads(interop)  # only possible before any parallel work: call it first


def stats(values: Iterable[float], scale: float = 1.0, digits: int = 1) -> dict[str, float]:
    """min / median / max (and n) of `values`, multiplied by `scale`."""
    ordered = sorted(v * scale for v in values)
    return {"min": round(ordered[0], digits), "median": round(statistics.median(ordered), digits),
            "max": round(ordered[-1], digits), "n": len(ordered)}


def fmt(row: dict[str, float], unit: str) -> str:
    """'median (min … max) unit' for a stats() row."""
    return f"{row['median']:8.1f} {unit} (min {row['min']:.1f}, max {row['max']:.1f})"


def save(name: str, result: dict[str, Any]) -> Path:
    """Write bench/results/<name>.json (a name given with its .json keeps it once); return its path."""
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name.removesuffix('.json')}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    return path


def load_average() -> list[float]:
    """The 1, 5 and 15 minute load averages: how busy the machine was while we measured."""
    return [round(x, 2) for x in os.getloadavg()]


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def health(url: str) -> dict:
    """GET /api/health as JSON."""
    with urllib.request.urlopen(url + "api/health", timeout=5) as response:
        return json.loads(response.read())


def start_server(data_dir: Path, *flags: str, threads: tuple[int, int] | None = None,
                 env: dict[str, str] | None = None, probes: Path | None = None, raw: str | None = None,
                 raw_port_file: Path | None = None, root: Path = ROOT) -> tuple[subprocess.Popen, str, float]:
    """Launch the app; return the process, its URL and the seconds until /api/health answered.

    `threads` (intra-op, inter-op) are applied to torch before the app starts, as the raw side applies them;
    `probes` names a JSON-lines file that bench/_probes.py fills with the app's phase timings; `raw` ("module:fn"
    in bench/) is served in the server process for RawSide, its port written to `raw_port_file`; `root` is the
    checkout whose app.py runs (another revision's tree, for a before/after comparison).
    """
    port = free_port()
    app_args = [str(root / "app.py"), "--profile", "tiny", "--port", str(port), "--data-dir", str(data_dir), *flags]
    if threads is None and probes is None and raw is None:
        command = [sys.executable, *app_args]
    else:
        boot = [f"import sys; sys.path.insert(0, {str(BENCH)!r})"]
        if threads is not None:
            boot.append(f"import _server; _server.apply_threads({threads[0]}, {threads[1]})")
        if probes is not None or raw is not None:
            boot.append(f"import _probes; _probes.install({str(probes) if probes else None!r}, {raw!r}, "
                        f"{str(raw_port_file) if raw_port_file else None!r})")
        boot.append(f"import runpy; sys.argv = {app_args!r}; runpy.run_path(sys.argv[0], run_name='__main__')")
        command = [sys.executable, "-c", "\n".join(boot)]
    started = time.perf_counter()
    # The app applies its own thread settings at start: the same counts as the bootstrap's.
    app_threads = {} if threads is None else {"ATELIER_TORCH_THREADS": str(threads[0]),
                                              "ATELIER_TORCH_INTEROP_THREADS": str(threads[1])}
    # The checkout's own modules: `python -c` puts the working directory first on sys.path (after bench/).
    proc = subprocess.Popen(command, cwd=root, env={**os.environ, **OFFLINE_ENV, **app_threads, **(env or {})},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/"
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"app.py exited with {proc.returncode}")
        try:
            health(url)
            return proc, url, time.perf_counter() - started
        except OSError:
            time.sleep(0.05)


def checkout(root: Path) -> dict[str, str]:
    """Which commit a checkout is at (and whether it has changes), for the results of a comparison."""
    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=False)
        return done.stdout.strip()

    return {"path": str(root), "commit": git("rev-parse", "--short", "HEAD") or "unknown",
            "changes": "yes" if git("status", "--porcelain", "--untracked-files=no") else "no"}


def add_users(root: Path, data_dir: Path, names: Iterable[str], password: str) -> None:
    """Create accounts in a data dir with the checkout's own `app.py users add`."""
    for name in names:
        subprocess.run([sys.executable, str(root / "app.py"), "users", "add", name, "--data-dir", str(data_dir)],
                       input=f"{password}\n{password}\n", text=True, check=True, capture_output=True, cwd=root)


def wait_ready(url: str, kind: str, timeout: float = 300) -> None:
    """Wait until a model slot is ready."""
    deadline = time.monotonic() + timeout
    while (state := health(url)["models"][kind]["state"]) != "ready":
        if state == "failed" or time.monotonic() > deadline:
            raise RuntimeError(f"{kind} model: {health(url)['models'][kind]}")
        time.sleep(0.2)


class RawSide:
    """The raw side of a comparison, run inside the server process itself (bench/_probes.py serves it) on the
    very model object the app loaded: the same process, threads, memory and background activity as the app's
    jobs, so the only difference left between the sides is what the app adds. One JSON line per call."""

    def __init__(self, port_file: Path, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not port_file.exists() or not port_file.read_text().strip():
            if time.monotonic() > deadline:
                raise RuntimeError("the server never opened its raw-call port")
            time.sleep(0.05)
        self.sock = socket.create_connection(("127.0.0.1", int(port_file.read_text())))
        self.stream = self.sock.makefile("rw")

    def call(self, request: dict[str, Any]) -> dict[str, Any]:
        """Send one request; wait for its answer (the raw call's own timing, measured in the server)."""
        self.stream.write(json.dumps(request) + "\n")
        self.stream.flush()
        line = self.stream.readline()
        if not line:
            raise RuntimeError("the server closed the raw-call connection")
        answer = json.loads(line)
        if "error" in answer:
            raise RuntimeError(f"raw call failed in the server: {answer['error']}")
        return answer

    def close(self) -> None:
        """Close the connection."""
        self.stream.close()
        self.sock.close()
