"""An Atelier replica in its own process (`python app.py`), as a deployment runs it, for the scale-out tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.live.processes import wait_until_answers
from tests.server import free_port

ROOT = Path(__file__).resolve().parents[2]


class Replica:
    """One `python app.py` process on a loopback port; killable mid-job like a crashed box."""

    def __init__(self, name: str, data_dir: Path, env: dict[str, str], args: list[str] | None = None) -> None:
        self.name = name
        self.data_dir = data_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, **env, "ATELIER_DATA_DIR": str(data_dir), "ATELIER_PORT": str(self.port),
                    "ATELIER_HOST": "127.0.0.1"}
        self.args = args or []
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = data_dir.parent / f"{name}.log"

    def start(self, timeout_s: float = 180) -> None:
        """Start the process and wait until /api/health answers."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child holds it; closed when we stop it
        self.proc = subprocess.Popen([sys.executable, "app.py", *self.args], cwd=ROOT, env=self.env, stdout=log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        wait_until_answers(self.proc, f"{self.url}/api/health", timeout_s, f"replica {self.name}", self.log,
                           every_s=0.3)

    def log(self) -> str:
        """The replica's output so far (the tail), for failure messages."""
        return self.log_path.read_text(errors="replace")[-6000:] if self.log_path.exists() else ""

    def kill(self) -> None:
        """SIGKILL, as a crashed machine: no graceful shutdown, no cleanup."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        """Terminate politely, then kill."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()


def run_cli(args: list[str], env: dict[str, str], data_dir: Path, stdin: str = "") -> subprocess.CompletedProcess[str]:
    """`python app.py ARGS` with the replicas' environment (accounts, migrations), checked."""
    full_env = {**os.environ, **env, "ATELIER_DATA_DIR": str(data_dir)}
    done = subprocess.run([sys.executable, "app.py", *args], cwd=ROOT, env=full_env, input=stdin, text=True,
                          capture_output=True, timeout=120)
    if done.returncode:
        raise RuntimeError(f"app.py {' '.join(args)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return done


@contextmanager
def replicas(names: list[str], root: Path, env: dict[str, str], args: list[str] | None = None,
             own: dict[str, dict[str, str]] | None = None) -> Iterator[list[Replica]]:
    """Start one replica per name (each with its own data dir under root, and `own[name]` added to the common
    environment), yield them, stop them all after."""
    started: list[Replica] = []
    try:
        for name in names:
            replica = Replica(name, root / name, {**env, **(own or {}).get(name, {})}, args)
            started.append(replica)
            replica.start()
        yield started
    finally:
        for replica in started:
            replica.stop()
