"""The scale-out deployment files: HAProxy's shipped config really sticks sessions and fails over, and the compose
profile only sets settings that exist."""

from __future__ import annotations

import http.server
import json
import re
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from api.request_id import VALID
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
            self.send_header("X-Seen-Request-ID", self.headers.get("X-Request-ID", ""))
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
    for line in ("cookie ATELIER_REPLICA insert", "option redispatch", "option httpchk GET /api/health/ready\n",
                 "timeout tunnel 1h", "http-request set-header X-Request-ID %[unique-id]"):
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


@needs_haproxy
def test_the_proxy_gives_each_request_an_id_and_keeps_metrics_inside(upstreams: dict[str, _Named]) -> None:
    replicas = [(name, server.server_address[1]) for name, server in upstreams.items()]
    with haproxy(replicas) as url:
        seen = [httpx.get(f"{url}/x", headers={"X-Request-ID": "forged"}).headers["x-seen-request-id"]
                for _ in range(3)]
        assert len(set(seen)) == 3
        assert "forged" not in seen
        assert all(VALID.match(request_id) for request_id in seen)  # what the replicas keep from a trusted proxy
        for path in ("/metrics", "/%6Detrics", "/metrics/", "/metrics?x=1"):
            assert httpx.get(f"{url}{path}").status_code == 403, path
        assert httpx.get(f"{url}/metricsfoo").status_code == 200


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


def test_compose_scale_profile_scrapes_every_replica_and_checks_readiness() -> None:
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    assert {"prometheus", "grafana"} <= {name for name, svc in services.items() if "scale" in svc.get("profiles", [])}
    for name in ("atelier", "atelier-replica"):
        assert "/api/health/ready" in services[name]["healthcheck"]["test"][-1]
    assert services["atelier-replica"]["environment"]["ATELIER_METRICS_ACCESS"] == "open"  # behind HAProxy's deny
    for name in ("prometheus", "grafana"):
        for volume in services[name]["volumes"]:
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), f"{name} mounts {source}, which is not in the repository"
    config = yaml.safe_load((ROOT / "deploy" / "prometheus.yml").read_text())
    (job,) = config["scrape_configs"]
    assert job["metrics_path"] == "/metrics"
    (discovery,) = job["dns_sd_configs"]
    assert discovery["names"] == ["atelier-replica"]
    assert str(discovery["port"]) in services["atelier-replica"]["expose"]
    source = yaml.safe_load((ROOT / "deploy" / "grafana" / "provisioning" / "datasources" / "prometheus.yml")
                            .read_text())["datasources"][0]
    assert source["url"] == "http://prometheus:9090"


def test_the_dashboard_reads_only_metrics_atelier_exports() -> None:
    from services import metrics

    dashboard = json.loads((ROOT / "deploy" / "grafana" / "dashboards" / "atelier.json").read_text())
    panels = dashboard["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    exported = set()
    for family in metrics.REGISTRY.collect():
        suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"]}.get(family.type, [""])
        exported |= {family.name + suffix for suffix in suffixes}
    exported |= {"atelier_gpu_memory_bytes", "atelier_request_log_pending"}  # read at scrape time, when present
    used = {name for p in panels for t in p.get("targets", [])
            for name in re.findall(r"\b((?:atelier|process)_[a-z_]+)\b", t["expr"])}
    assert len(used) > 20
    assert used <= exported, used - exported
