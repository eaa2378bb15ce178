"""The scale-out deployment files: HAProxy's shipped config really sticks sessions and fails over, and the compose
profile only sets settings that exist."""

from __future__ import annotations

import http.server
import re
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from settings import Settings
from tests.live.haproxy import CONFIG, haproxy, haproxy_binary, render
from tests.server import free_port

ROOT = Path(__file__).resolve().parents[1]
needs_haproxy = pytest.mark.skipif(haproxy_binary() is None, reason="haproxy is not installed (.ci/run installs it)")


class _Named(http.server.ThreadingHTTPServer):
    daemon_threads = True


def _upstream(name: str) -> _Named:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = name.encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = _Named(("127.0.0.1", free_port()), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def upstreams() -> Iterator[dict[str, _Named]]:
    servers = {"a": _upstream("a"), "b": _upstream("b")}
    yield servers
    for server in servers.values():
        server.shutdown()
        server.server_close()


def test_render_keeps_everything_but_addresses() -> None:
    shipped = CONFIG.read_text()
    rendered = render(shipped, 4321, [("r1", 1001), ("r2", 1002)])
    assert "bind 127.0.0.1:4321" in rendered
    assert "server r1 127.0.0.1:1001" in rendered
    assert "server r2 127.0.0.1:1002" in rendered
    assert not re.search(r"(?m)^\s*(server-template|resolvers) ", rendered)
    for line in ("cookie ATELIER_REPLICA insert", "option redispatch", "option httpchk GET /api/health",
                 "timeout tunnel 1h"):
        assert line in shipped
        assert line in rendered


@needs_haproxy
def test_sessions_stick_to_one_replica_and_fail_over(upstreams: dict[str, _Named]) -> None:
    replicas = [(name, server.server_address[1]) for name, server in upstreams.items()]
    with haproxy(replicas) as url:
        first, second = httpx.Client(), httpx.Client()
        mine = {first.get(f"{url}/x").text for _ in range(8)}
        assert len(mine) == 1
        assert "ATELIER_REPLICA" in first.cookies
        # A second browser is balanced onto the other replica (least connections, both idle: round robin).
        theirs = {second.get(f"{url}/x").text for _ in range(4)}
        assert len(theirs) == 1
        # The sticky replica dies: the same browser, cookie and all, is served by the other one at once.
        (dead,) = mine
        upstreams[dead].shutdown()
        upstreams[dead].server_close()
        after = {first.get(f"{url}/x").text for _ in range(4)}
        assert after == {"b" if dead == "a" else "a"}


def test_compose_scale_profile_sets_only_real_settings() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    scale = {name for name, svc in services.items() if "scale" in svc.get("profiles", [])}
    assert {"atelier-replica", "haproxy", "postgres", "redis", "minio"} <= scale
    fields = set(Settings.model_fields)
    for name in ("atelier", "atelier-replica"):
        for key in services[name]["environment"]:
            if key.startswith("ATELIER_"):
                assert key.removeprefix("ATELIER_").lower() in fields, f"{name}: {key} is not a setting"
    mounted = services["haproxy"]["volumes"][0].split(":")[0]
    assert (ROOT / mounted).resolve() == CONFIG
    published = services["haproxy"]["ports"][0].rsplit(":", 1)[1]
    assert re.search(rf"(?m)^\s*bind :{published}$", CONFIG.read_text())
