"""The shipped monitoring against a real Prometheus: `promtool check config` accepts deploy/prometheus.yml; then a
tiny Atelier does a little of everything (image jobs through the AUTOMATIC1111 API, one of them twice for a cache
hit, chat replies through the OpenAI-compatible API, reads over the read limit), a Prometheus scrapes it with the
shipped config adapted to its port, and every PromQL expression of the shipped Grafana dashboard
(deploy/grafana/dashboards/atelier.json) evaluates without error through Prometheus' HTTP API and returns data, but
GPU memory where there is no CUDA. Skipped only where prometheus is not installed (.ci/run installs it)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pipelines.devices import gpu_memory
from services.accounts import AccountService
from storage.db import open_database
from tests.live.prometheus import (
    SCRAPE_CONFIG,
    Prometheus,
    adapted_config,
    check_config,
    dashboard_queries,
    missing_reason,
    prometheus_server,
    small_load,
    wait_for_scrapes,
)
from tests.server import serve
from tests.services.conftest import tiny_settings

pytestmark = pytest.mark.skipif(missing_reason() is not None, reason=missing_reason() or "")

PASSWORD = "correct horse battery"
# Series that exist only with CUDA (GPU memory): empty here, by design, where there is none.
CUDA_ONLY = ("atelier_gpu_memory_bytes",)
SCRAPES_AFTER_LOAD = 3


def test_the_shipped_scrape_config_is_valid() -> None:
    checked = check_config(SCRAPE_CONFIG)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS" in checked.stdout + checked.stderr


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory, tiny_sd_dir: Path,
           tiny_r1_gptq_dir: Path) -> Iterator[tuple[Prometheus, str]]:
    """A tiny Atelier scraped by a real Prometheus, after a little of every kind of work."""
    data = tmp_path_factory.mktemp("data")
    settings = tiny_settings(data, tiny_sd_dir, tiny_r1_gptq_dir, limit_reads="4/minute",
                             limit_image_jobs="100/minute", limit_chat_messages="100/minute")
    settings.ensure_dirs()
    open_database(settings.database_location)
    AccountService().add("alice", PASSWORD)
    apps: list[Any] = []
    with serve(settings, apps) as url:
        key, _ = apps[0].state.services.api_keys.create("alice", "bench")
        target = url.removeprefix("http://").rstrip("/")
        with prometheus_server(adapted_config(target)) as prometheus:
            wait_for_scrapes(prometheus, 2)  # it has seen the server idle (every series at its start)
            for first in (True, False):  # two rounds, scraped in between, as a real load spreads over scrapes
                small_load(url.rstrip("/"), {"Authorization": f"Bearer {key}"}, first)
                wait_for_scrapes(prometheus, SCRAPES_AFTER_LOAD)
            yield prometheus, target


def test_prometheus_scrapes_atelier_with_the_shipped_config(loaded: tuple[Prometheus, str]) -> None:
    prometheus, target = loaded
    (up,) = prometheus.query('up{job="atelier"}')["data"]["result"]
    assert up["metric"]["instance"] == target
    assert up["value"][1] == "1"


def test_every_dashboard_query_evaluates_and_returns_data(loaded: tuple[Prometheus, str]) -> None:
    prometheus, _ = loaded
    queries = dashboard_queries()
    assert len(queries) >= 30
    empty, broken = [], []
    for query in queries:
        answer = prometheus.query(query.expr)
        if answer["status"] != "success":
            broken.append(f"{query.panel} ({query.legend}): {answer.get('error')}")
            continue
        values = [float(r["value"][1]) for r in answer["data"]["result"]]
        if not values or all(math.isnan(v) for v in values):
            empty.append(f"{query.panel} ({query.legend}): {query.expr}")
    assert not broken, "\n".join(broken)
    cuda_only = [e for e in empty if any(name in e for name in CUDA_ONLY)]
    assert not [e for e in empty if e not in cuda_only], "\n".join(e for e in empty if e not in cuda_only)
    assert bool(cuda_only) == (gpu_memory() is None), cuda_only  # GPU memory: data exactly where CUDA is
