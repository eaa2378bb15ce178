"""The scale-out deployment files: HAProxy's shipped configs (compose's and the native one) really stick sessions,
check health and fail over, the compose profile and the systemd environment files only set settings that exist,
and the systemd units parse."""

from __future__ import annotations

import contextlib
import http.server
import json
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from api.request_id import VALID
from settings import Settings
from tests.live.haproxy import CONFIG, NATIVE_CONFIG, haproxy, haproxy_binary, render
from tests.live.prometheus import DASHBOARD
from tests.server import free_port

ROOT = Path(__file__).resolve().parents[1]
needs_haproxy = pytest.mark.skipif(haproxy_binary() is None, reason="haproxy is not installed (.ci/run installs it)")


class _Named(http.server.ThreadingHTTPServer):
    """A stand-in replica that answers its name; its /api/health answers 503 while `healthy` is off, and it keeps
    each request's path and X-Forwarded-For."""

    daemon_threads = True
    healthy = True
    seen: list[tuple[str, str | None]]


def _upstream(name: str) -> _Named:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            server = self.server
            assert isinstance(server, _Named)
            server.seen.append((self.path, self.headers.get("X-Forwarded-For")))
            ok = server.healthy or self.path != "/api/health/ready"
            body = name.encode() if ok else b"down"
            self.send_response(200 if ok else 503)
            self.send_header("X-Seen-Request-ID", self.headers.get("X-Request-ID", ""))
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            with contextlib.suppress(ConnectionError):  # HAProxy's health check hangs up once it has the status
                self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = _Named(("127.0.0.1", free_port()), Handler)
    server.seen = []
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


def _directives(config: str) -> list[str]:
    """The config's directives, comments and blank lines aside, without what differs between Docker and a native
    install: the bind, the servers, compose's DNS resolvers, the user HAProxy drops to."""
    kept = []
    for line in config.splitlines():
        words = line.split("#", 1)[0].split()
        if words and words[0] not in {"bind", "server", "server-template", "resolvers", "nameserver", "hold", "user",
                                      "group"}:
            kept.append(" ".join(words))
    return kept


def test_the_native_config_is_the_compose_one_but_for_addresses() -> None:
    native = NATIVE_CONFIG.read_text()
    assert _directives(native) == _directives(CONFIG.read_text())
    rendered = render(native, 4321, [("r1", 1001), ("r2", 1002)])
    assert "bind 127.0.0.1:4321" in rendered
    assert re.findall(r"(?m)^\s*server .*$", rendered) == ["    server r1 127.0.0.1:1001",
                                                           "    server r2 127.0.0.1:1002"]
    assert not re.search(r"(?m)^\s*(user|group|server-template|resolvers) ", rendered)
    # What a native install edits: fixed addresses, and a port of its own.
    assert re.search(r"(?m)^\s*server \S+ \d+\.\d+\.\d+\.\d+:7860$", native)
    assert re.search(r"(?m)^\s*bind :80$", native)


def _replica_of(client: httpx.Client, url: str) -> str:
    return client.get(f"{url}/x").text


def _wait_for(check: Callable[[], bool], timeout_s: float = 15) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "HAProxy did not react within the health checks' time"
        time.sleep(0.2)


@needs_haproxy
def test_the_native_proxy_balances_sticks_and_follows_health_checks(upstreams: dict[str, _Named]) -> None:
    replicas = [(name, server.server_address[1]) for name, server in upstreams.items()]
    with haproxy(replicas, config=NATIVE_CONFIG, ready_path="/x") as url:
        first, second = httpx.Client(), httpx.Client()
        mine = {_replica_of(first, url) for _ in range(8)}
        assert len(mine) == 1  # sticky: every request of one browser reaches one replica
        assert "ATELIER_REPLICA" in first.cookies
        theirs = {_replica_of(second, url) for _ in range(4)}
        assert len(theirs) == 1
        assert mine | theirs == {"a", "b"}  # both replicas serve
        (sticky,) = mine
        other = "b" if sticky == "a" else "a"
        for server in upstreams.values():
            _wait_for(lambda s=server: any(path == "/api/health/ready" for path, _ in s.seen))  # checks reach both
            forwarded = {xff for path, xff in server.seen if path == "/x"}
            assert forwarded <= {"127.0.0.1"}  # the client's address, for ATELIER_TRUSTED_PROXIES
        # The sticky replica still serves but fails its health checks: HAProxy takes it out, and the same browser,
        # cookie and all, goes to the other replica, as do new ones.
        upstreams[sticky].healthy = False
        _wait_for(lambda: _replica_of(first, url) == other)
        assert {_replica_of(httpx.Client(), url) for _ in range(4)} == {other}
        # Healthy again: it is taken back in, and new browsers reach it.
        upstreams[sticky].healthy = True
        _wait_for(lambda: _replica_of(httpx.Client(), url) == sticky)


SYSTEMD = ROOT / "deploy" / "systemd"


def _unit(path: Path) -> dict[str, list[tuple[str, str]]]:
    """A unit file's sections and their (key, value) lines in order (keys may repeat, as systemd allows)."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current = None
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], [])
            continue
        assert current is not None, f"{path.name}: {line!r} outside a section"
        key, sep, value = line.partition("=")
        assert sep, f"{path.name}: not a `Key=value` line: {line!r}"
        assert key.strip().isidentifier(), f"{path.name}: not a key: {line!r}"
        current.append((key.strip(), value.strip()))
    return sections


def _values(section: list[tuple[str, str]], key: str) -> list[str]:
    return [value for k, value in section if k == key]


def test_the_replica_unit_runs_the_app_with_its_port_and_own_caches() -> None:
    unit = _unit(SYSTEMD / "atelier@.service")
    assert set(unit) == {"Unit", "Service", "Install"}
    service = unit["Service"]
    (exec_start,) = _values(service, "ExecStart")
    assert exec_start.endswith(" app.py")
    assert (ROOT / "app.py").is_file()
    env = dict(item.split("=", 1) for line in _values(service, "Environment") for item in line.split())
    assert env["ATELIER_PORT"] == "%i"  # atelier@7860 serves on 7860
    for key in env:
        if key.startswith("ATELIER_"):
            assert key.removeprefix("ATELIER_").lower() in Settings.model_fields, f"{key} is not a setting"
    # Each replica's data/tmp is a folder of its own (Gradio's files, local copies of S3 images), as in compose.
    (bind,) = _values(service, "BindPaths")
    source, target = bind.split(":")
    assert target == f"{env['ATELIER_DATA_DIR']}/tmp"
    states = _values(service, "StateDirectory")[0].split()
    assert source.removeprefix("/var/lib/") in states
    assert "atelier/tmp" in states
    assert _values(service, "EnvironmentFile") == ["/etc/atelier/atelier.env", "-/etc/atelier/atelier-%i.env"]
    assert "PrivateDevices" not in dict(service)  # it would hide the GPU
    (target_name,) = _values(unit["Install"], "WantedBy")
    assert _values(unit["Unit"], "PartOf") == [target_name]
    assert (SYSTEMD / target_name).is_file()
    assert set(_unit(SYSTEMD / target_name)) == {"Unit", "Install"}


@pytest.mark.parametrize("name", ["atelier.env.example", "atelier-7861.env.example"])
def test_the_environment_files_set_real_settings_with_valid_values(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    path = SYSTEMD / name
    keys = [line.split("=", 1)[0] for line in path.read_text().splitlines() if line and not line.startswith("#")]
    assert keys
    for key in keys:
        assert re.fullmatch(r"[A-Z_][A-Z0-9_]*", key), f"{name}: {key!r}"
        if key.startswith("ATELIER_"):
            assert key.removeprefix("ATELIER_").lower() in Settings.model_fields, f"{name}: {key} is not a setting"
            monkeypatch.delenv(key, raising=False)
    settings = Settings(_env_file=path)  # the values parse (the JSON list, the URLs)
    if name == "atelier.env.example":
        assert settings.trusted_proxies == ["10.0.0.10"]
        assert settings.storage_url.startswith("s3://")


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_analyze_verifies_the_units(tmp_path: Path) -> None:
    # The unit as shipped, but for the interpreter: verify checks that ExecStart's program exists.
    for unit in ("atelier@.service", "atelier.target"):
        text = (SYSTEMD / unit).read_text().replace("/opt/atelier/.venv/bin/python", sys.executable)
        (tmp_path / unit).write_text(text)
    done = subprocess.run(["systemd-analyze", "verify", str(tmp_path / "atelier@7860.service"),
                           str(tmp_path / "atelier.target")], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout + done.stderr == ""  # an unknown key or a bad value is only a warning: none allowed


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

    dashboard = json.loads(DASHBOARD.read_text())
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


def test_the_dashboard_stats_set_their_own_colours() -> None:
    # Grafana's default thresholds turn a stat red from 80: a busy box's "Images / min" of 173 was painted as an alarm
    # (seen in bench/grafana_panels.py's picture). Throughput has no "too high", so each stat sets its own.
    dashboard = json.loads(DASHBOARD.read_text())
    stats = [p for p in dashboard["panels"] if p["type"] == "stat"]
    assert len(stats) >= 6
    for stat in stats:
        steps = stat["fieldConfig"]["defaults"]["thresholds"]["steps"]
        assert [step["color"] for step in steps] == ["green"], stat["title"]
