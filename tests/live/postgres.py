"""A throwaway PostgreSQL 15 for tests: initdb + pg_ctl in a temp dir, on a free loopback port, stopped at the end.

As root (CI, containers) the server runs as the `postgres` user, which the server insists on, in a temp dir that
user owns.
"""

from __future__ import annotations

import itertools
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

PG_BIN = Path("/usr/lib/postgresql/15/bin")
# Durability is worth nothing in a database thrown away after the tests, and costs most of their time.
FAST = "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
# Every test opens its own pool and builds its own services: room for all of them in one session.
CONNECTIONS = "-c max_connections=400"
# A server whose own zone is far from UTC: Atelier's sessions must set theirs (storage/connections.py).
ZONE = "-c timezone=Pacific/Auckland"


def missing_reason() -> str | None:
    """Why no server can be started here, or None."""
    if not (PG_BIN / "initdb").is_file():
        return f"PostgreSQL 15 is not installed ({PG_BIN}/initdb is missing; apt-get install postgresql)"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PostgresServer:
    """One running cluster; `create_database()` hands out a fresh, empty database per caller."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="atelier-pg-"))
        self.as_postgres = os.geteuid() == 0
        if self.as_postgres:
            shutil.chown(self.root, "postgres", "postgres")
        self.data = self.root / "data"
        self.port = 0
        self._names = itertools.count(1)

    def _run(self, *args: str) -> None:
        cmd = [str(PG_BIN / args[0]), *args[1:]]
        if self.as_postgres:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            log = self.root / "log"
            tail = log.read_text()[-2000:] if log.is_file() else ""
            raise RuntimeError(f"{' '.join(args[:2])} failed: {done.stdout}{done.stderr}{tail}")

    def start(self) -> PostgresServer:
        """initdb, then start on a free port (retrying if another process took the port meanwhile)."""
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync")
        for attempt in range(3):
            self.port = _free_port()
            opts = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 {FAST} {CONNECTIONS} {ZONE}"
            try:
                self._run("pg_ctl", "-D", str(self.data), "-l", str(self.root / "log"), "-w", "-o", opts, "start")
                return self
            except RuntimeError:
                if attempt == 2:
                    raise
        return self

    def url(self, name: str = "postgres") -> str:
        """The URL of database `name` on this server."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/{name}"

    def create_database(self) -> str:
        """A new empty database; its URL."""
        import psycopg

        name = f"t{os.getpid()}_{next(self._names)}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        """Stop the server at once and remove its files."""
        try:
            if self.port:
                self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
