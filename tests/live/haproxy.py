"""HAProxy on loopback, configured from deploy/haproxy.cfg, in front of replicas the test started."""

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

CONFIG = Path(__file__).resolve().parents[2] / "deploy" / "haproxy.cfg"


def render(config: str, port: int, replicas: list[tuple[str, int]]) -> str:
    """deploy/haproxy.cfg with loopback addresses: the bind port, and one server line per (name, port) replica in
    place of the compose DNS template; every other line (stickiness, health checks, timeouts) stays as shipped."""
    config = re.sub(r"(?m)^(\s*)bind :8080$", rf"\1bind 127.0.0.1:{port}", config)
    # The resolvers section is compose's DNS; loopback servers have fixed addresses.
    config = re.sub(r"(?ms)^resolvers docker\n.*?(?=^\S)", "", config)
    servers = "".join(f"    server {name} 127.0.0.1:{replica_port}\n" for name, replica_port in replicas)
    config, count = re.subn(r"(?m)^\s*server-template .*\n", servers, config)
    if count != 1 or f"bind 127.0.0.1:{port}" not in config:
        raise ValueError("deploy/haproxy.cfg no longer has the `bind :8080` and `server-template` lines this expects")
    return config


def haproxy_binary() -> str | None:
    """The haproxy executable, if installed (.ci/run installs Debian's package)."""
    return shutil.which("haproxy") or (str(p) if (p := Path("/usr/sbin/haproxy")).exists() else None)


@contextmanager
def haproxy(replicas: list[tuple[str, int]], timeout_s: float = 30) -> Iterator[str]:
    """Run HAProxy in the foreground in front of `replicas`; yield its base URL; stop it after."""
    binary = haproxy_binary()
    if binary is None:
        raise RuntimeError("haproxy is not installed (apt-get install haproxy)")
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="atelier-haproxy-") as tmp:
        cfg = Path(tmp) / "haproxy.cfg"
        cfg.write_text(render(CONFIG.read_text(), port, replicas))
        check = subprocess.run([binary, "-c", "-f", str(cfg)], capture_output=True, text=True)
        if check.returncode:
            raise RuntimeError(f"haproxy rejected the config:\n{check.stdout}{check.stderr}")
        log = open(Path(tmp) / "haproxy.log", "wb")  # noqa: SIM115 - closed below, after the process
        proc = subprocess.Popen([binary, "-db", "-f", str(cfg)], stdout=log, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        try:
            wait_until_answers(proc, f"{url}/api/health", timeout_s, "haproxy",
                               lambda: (Path(tmp) / "haproxy.log").read_text())
            yield url
        finally:
            stop_process(proc)
            log.close()
