"""HAProxy on loopback, configured from deploy/haproxy.cfg (or haproxy-native.cfg), in front of replicas the test
started."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.live.processes import stop_process, wait_until_answers
from tests.server import free_port

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
CONFIG = DEPLOY / "haproxy.cfg"  # docker compose's: replicas through Docker's DNS
NATIVE_CONFIG = DEPLOY / "haproxy-native.cfg"  # without Docker: replicas at fixed addresses


def render(config: str, port: int, replicas: list[tuple[str, int]]) -> str:
    """A shipped HAProxy config with loopback addresses: the bind port, and one server line per (name, port) replica
    in place of compose's DNS template or of the native config's fixed `server` lines; every other line (stickiness,
    health checks, timeouts) stays as shipped. The native config's `user`/`group` go too: dropping privileges is
    the packaged service's business, and the tests need not run as root."""
    config, binds = re.subn(r"(?m)^(\s*)bind :\d+$", rf"\1bind 127.0.0.1:{port}", config)
    # The resolvers section is compose's DNS; loopback servers have fixed addresses.
    config = re.sub(r"(?ms)^resolvers docker\n.*?(?=^\S)", "", config)
    config = re.sub(r"(?m)^\s*(user|group) \S+\n", "", config)
    servers = "".join(f"    server {name} 127.0.0.1:{replica_port}\n" for name, replica_port in replicas)
    config, count = re.subn(r"(?m)^\s*(server-template .*|server \S+ \S+:\d+.*)\n(?:\s*server \S+ \S+:\d+.*\n)*",
                            servers, config)
    if count != 1 or binds != 1:
        raise ValueError("the HAProxy config no longer has the one `bind :PORT` line and the one block of `server` (or "
                         "`server-template`) lines this expects")
    return config


def haproxy_binary() -> str | None:
    """The haproxy executable, if installed (.ci/run installs Debian's package)."""
    return shutil.which("haproxy") or (str(p) if (p := Path("/usr/sbin/haproxy")).exists() else None)


@contextmanager
def haproxy(replicas: list[tuple[str, int]], timeout_s: float = 30, config: Path = CONFIG,
            ready_path: str = "/api/health") -> Iterator[str]:
    """Run HAProxy from the shipped `config` in the foreground in front of `replicas`; yield its base URL once
    `ready_path` answers 200 through it; stop it after."""
    binary = haproxy_binary()
    if binary is None:
        raise RuntimeError("haproxy is not installed (apt-get install haproxy)")
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="atelier-haproxy-") as tmp:
        cfg = Path(tmp) / "haproxy.cfg"
        cfg.write_text(render(config.read_text(), port, replicas))
        check = subprocess.run([binary, "-c", "-f", str(cfg)], capture_output=True, text=True)
        if check.returncode:
            raise RuntimeError(f"haproxy rejected the config:\n{check.stdout}{check.stderr}")
        log = open(Path(tmp) / "haproxy.log", "wb")  # noqa: SIM115 - closed below, after the process
        proc = subprocess.Popen([binary, "-db", "-f", str(cfg)], stdout=log, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        try:
            wait_until_answers(proc, f"{url}{ready_path}", timeout_s, "haproxy",
                               lambda: (Path(tmp) / "haproxy.log").read_text())
            yield url
        finally:
            stop_process(proc)
            log.close()
