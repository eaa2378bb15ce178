"""A throwaway Prometheus for tests: Debian's `prometheus` on a free loopback port, scraping one Atelier with the
shipped scrape config (deploy/prometheus.yml) adapted to it, its data in a temp dir, stopped at the end; and the
shipped Grafana dashboard's PromQL, as Grafana would send it."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.live.processes import stop_process, wait_until_answers
from tests.server import free_port

ROOT = Path(__file__).resolve().parents[2]
SCRAPE_CONFIG = ROOT / "deploy" / "prometheus.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "atelier.json"
READY_TIMEOUT_S = 60.0
# Grafana's $__rate_interval is at least four scrape intervals (more over a long time range): 5 minutes holds the
# whole test's run, each figure's first sample before its work and its last after.
RATE_INTERVAL = "5m"


def missing_reason() -> str | None:
    """Why no Prometheus can be started here, or None."""
    if shutil.which("prometheus") is None or shutil.which("promtool") is None:
        return "prometheus is not installed (apt-get install prometheus, which brings promtool; .ci/run installs it)"
    return None


def check_config(path: Path) -> subprocess.CompletedProcess[str]:
    """`promtool check config` on a scrape config: its verdict and words."""
    return subprocess.run(["promtool", "check", "config", str(path)], capture_output=True, text=True, timeout=60)


def adapted_config(target: str, scrape_s: float = 1.0) -> dict[str, Any]:
    """The shipped scrape config with its job's targets replaced by `target` (host:port; the compose file finds the
    replicas through Docker's DNS instead) and scraped every `scrape_s` seconds; everything else as shipped."""
    config = yaml.safe_load(SCRAPE_CONFIG.read_text())
    config["global"]["scrape_interval"] = config["global"]["evaluation_interval"] = f"{scrape_s:g}s"
    (job,) = config["scrape_configs"]
    job.pop("dns_sd_configs")
    job["static_configs"] = [{"targets": [target]}]
    return config


@dataclass(frozen=True)
class Prometheus:
    """A running Prometheus: its base URL."""

    url: str

    def query(self, promql: str) -> dict[str, Any]:
        """An instant query through the HTTP API (/api/v1/query): its JSON answer, whatever its status."""
        return httpx.get(f"{self.url}/api/v1/query", params={"query": promql}, timeout=30).json()  # type: ignore[no-any-return]


@contextmanager
def prometheus_server(config: dict[str, Any]) -> Iterator[Prometheus]:
    """Run Prometheus with `config` until the block ends (its config checked by promtool first)."""
    root = Path(tempfile.mkdtemp(prefix="atelier-prometheus-"))
    try:
        path = root / "prometheus.yml"
        path.write_text(yaml.safe_dump(config))
        checked = check_config(path)
        if checked.returncode != 0:
            raise RuntimeError(f"promtool refused the adapted config:\n{checked.stdout}{checked.stderr}")
        url = f"http://127.0.0.1:{free_port()}"
        log = root / "prometheus.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(["prometheus", f"--config.file={path}", f"--storage.tsdb.path={root / 'data'}",
                                     f"--web.listen-address={url.removeprefix('http://')}"],
                                    stdout=out, stderr=subprocess.STDOUT)
        try:
            wait_until_answers(proc, f"{url}/-/ready", READY_TIMEOUT_S, "prometheus", lambda: log.read_text()[-3000:])
            yield Prometheus(url)
        finally:
            stop_process(proc)
    finally:
        shutil.rmtree(root, ignore_errors=True)


@dataclass(frozen=True)
class Query:
    """One PromQL expression of the dashboard: its panel, its legend and the expression as Grafana sends it."""

    panel: str
    legend: str
    expr: str
    key: str  # "<panel id>/<refId>": which panel and target it is


def dashboard_queries(instance: str = ".*", rate_interval: str = RATE_INTERVAL) -> list[Query]:
    """Every target expression of the shipped dashboard (panels in rows too), its variables filled as Grafana fills
    them: `$instance` (All: a regex) and `$__rate_interval`."""
    board = json.loads(DASHBOARD.read_text())
    panels = [p for top in board["panels"] for p in (top, *top.get("panels", []))]
    return [Query(p.get("title", ""), t.get("legendFormat", ""),
                  t["expr"].replace("$__rate_interval", rate_interval).replace("$instance", instance),
                  f"{p.get('id')}/{t.get('refId')}")
            for p in panels for t in p.get("targets", []) if t.get("expr")]


def small_load(root: str, auth: dict[str, str], first: bool) -> None:
    """A small benchmark load: image jobs (the second round's first one again: a cache hit), chat replies, and reads
    past the read limit (4/minute)."""
    with httpx.Client(base_url=root, headers=auth, timeout=300) as http:
        for seed in (1, 2) if first else (1, 3):
            job = {"prompt": "a lighthouse", "width": 64, "height": 64, "steps": 2, "seed": seed, "batch_size": 2}
            answer = http.post("/sdapi/v1/txt2img", json=job)
            assert answer.status_code == 200, answer.text
        for question in ("hello", "and then?") if first else ("and after that?",):
            answer = http.post("/v1/chat/completions", json={"model": "tiny-gptq", "max_tokens": 16, "messages": [
                {"role": "user", "content": question}]})
            assert answer.status_code == 200, answer.text
        statuses = [http.get("/api/history").status_code for _ in range(3)]
        assert (429 in statuses) is not first, statuses  # the second round's go over the read limit


def wait_for_scrapes(prometheus: Prometheus, count: int, timeout_s: float = 60) -> None:
    """Until Prometheus has scraped Atelier `count` more times (every scrape adds one sample of `up`)."""
    def scrapes() -> int:
        found = prometheus.query("count_over_time(up[5m])")["data"]["result"]
        return int(found[0]["value"][1]) if found else 0

    start, deadline = scrapes(), time.monotonic() + timeout_s
    while scrapes() < start + count:
        assert time.monotonic() < deadline, "Prometheus did not scrape Atelier"
        time.sleep(0.5)
