"""Prometheus metrics (issue 26), with the official `prometheus-client`: the instruments the services call, the live
values read at scrape time, and the exposition that /metrics serves (api/metrics_endpoint.py).

One registry per process, not the library's multiprocess mode: each replica is one process (uvicorn runs a
single worker, app.py), scraped on its own address, and Prometheus tells replicas apart by their `instance`
label. Multiprocess mode is for several worker processes behind one port, which Atelier never runs.

Label values are bounded: kinds and statuses are fixed lists, a model label is a configured or catalogued model,
and users never become labels (usage per user lives in the request log, services/usage.py).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TypeVar

from prometheus_client import (
    CollectorRegistry,
    Counter,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)
T = TypeVar("T")

# No `_created` series beside each counter and histogram: they double the series Prometheus stores, and nothing here
# reads them (rate() and increase() work from the counters themselves).
disable_created_metrics()
REGISTRY = CollectorRegistry(auto_describe=True)
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)
GCCollector(registry=REGISTRY)

KINDS = ("image", "chat", "read", "login", "upload", "admin")
JOB_KINDS = ("image", "chat")
STATUSES = ("done", "failed", "refused", "cancelled")
# What a refusal was for: a rate limit per kind, the per-user queue quota, a full queue, or a Redis out of reach.
LIMITS = ("image", "chat", "upload", "login", "read", "quota", "busy", "unavailable")
# Seconds: from a cache hit (milliseconds) to a long SDXL job or an R1 reply that thinks for minutes.
DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)
WAIT_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
TTFT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60)
SPEED_BUCKETS = (1, 2, 5, 10, 20, 30, 50, 75, 100, 150, 200, 400, 1000)
BATCH_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64)
LOAD_BUCKETS = (0.1, 0.5, 1, 5, 10, 30, 60, 120, 300, 600)

REQUESTS = Counter("atelier_requests", "Requests answered, by kind and how they ended", ["kind", "status"],
                   registry=REGISTRY)
JOBS = Counter("atelier_jobs", "Image jobs and chat replies, by kind, status and model", ["kind", "status", "model"],
               registry=REGISTRY)
JOB_SECONDS = Histogram("atelier_job_duration_seconds", "A job's time from its start to its end, waits included",
                        ["kind"], buckets=DURATION_BUCKETS, registry=REGISTRY)
QUEUE_WAIT = Histogram("atelier_queue_wait_seconds", "A job's wait for the model and for its first batch",
                       ["kind"], buckets=WAIT_BUCKETS, registry=REGISTRY)
GPU_SECONDS = Counter("atelier_gpu_seconds", "Seconds jobs ran on the model's device (a batch's time split by image)",
                      ["kind", "model"], registry=REGISTRY)
IMAGES = Counter("atelier_images", "Images produced", ["model"], registry=REGISTRY)
TOKENS = Counter("atelier_tokens", "Tokens read (prompt) and written (completion, of which reasoning)",
                 ["model", "type"], registry=REGISTRY)
TTFT = Histogram("atelier_time_to_first_token_seconds", "From a reply's start to its first token",
                 ["model"], buckets=TTFT_BUCKETS, registry=REGISTRY)
TOKEN_SPEED = Histogram("atelier_tokens_per_second", "A reply's tokens per second after its first token",
                        ["model"], buckets=SPEED_BUCKETS, registry=REGISTRY)
CACHE = Counter("atelier_cache_lookups", "Result-cache lookups, by kind and result (hit or miss)", ["kind", "result"],
                registry=REGISTRY)
REFUSALS = Counter("atelier_refusals", "Requests refused by a limit: a rate limit per kind, the queue quota, a full "
                   "queue (busy), shared state out of reach (unavailable)", ["limit"], registry=REGISTRY)
MODEL_EVENTS = Counter("atelier_model_events", "Model loads, failed loads, offloads, unloads and switches",
                       ["kind", "event"], registry=REGISTRY)
MODEL_LOAD = Histogram("atelier_model_load_seconds", "Time to load (or move back from CPU memory) a model", ["kind"],
                       buckets=LOAD_BUCKETS, registry=REGISTRY)
BATCH_SIZE = Histogram("atelier_batch_size", "Jobs' images run together in one pipeline call", ["kind"],
                       buckets=BATCH_BUCKETS, registry=REGISTRY)
LOG_ROWS = Counter("atelier_request_log_rows", "Request log rows: written, dropped (memory bound reached while the "
                   "database was slow) or failed (the database refused the batch)", ["outcome"], registry=REGISTRY)

# Every series whose labels are known at start exists from the first scrape at 0: a series that appears with its
# first value shows rate() and increase() no increase, so the first load or job after a start would not be seen
# (tests/test_prometheus.py: the dashboard's load-time quantile was empty for want of this).
SLOT_KINDS = ("image", "text")
MODEL_EVENT_NAMES = ("load", "load_failed", "offload", "unload", "switch")
for _kind in SLOT_KINDS:
    MODEL_LOAD.labels(_kind)
    for _event in MODEL_EVENT_NAMES:
        MODEL_EVENTS.labels(_kind, _event)
BATCH_SIZE.labels("image")
for _kind in KINDS:
    for _status in STATUSES:
        REQUESTS.labels(_kind, _status)
for _limit in LIMITS:
    REFUSALS.labels(_limit)
for _outcome in ("written", "dropped", "failed"):
    LOG_ROWS.labels(_outcome)
for _kind in JOB_KINDS:
    JOB_SECONDS.labels(_kind)
    QUEUE_WAIT.labels(_kind)
    for _result in ("hit", "miss"):
        CACHE.labels(_kind, _result)


def request_done(kind: str, status: str) -> None:
    """Count one answered request (a job is counted by job_done instead)."""
    REQUESTS.labels(kind, status).inc()


def job_done(kind: str, status: str, model: str, duration_s: float | None, queue_wait_s: float | None,
             gpu_s: float = 0.0) -> None:
    """Count one finished job, with its duration, queue wait and device time."""
    REQUESTS.labels(kind, status).inc()
    JOBS.labels(kind, status, model).inc()
    if duration_s is not None:
        JOB_SECONDS.labels(kind).observe(duration_s)
    if queue_wait_s is not None:
        QUEUE_WAIT.labels(kind).observe(queue_wait_s)
    if gpu_s:
        GPU_SECONDS.labels(kind, model).inc(gpu_s)


def produced_images(model: str, count: int) -> None:
    """Count images produced."""
    if count:
        IMAGES.labels(model).inc(count)


def produced_tokens(model: str, prompt: int, completion: int, reasoning: int = 0) -> None:
    """Count a reply's tokens: the prompt read, the completion written (reasoning included) and its reasoning."""
    for kind, count in (("prompt", prompt), ("completion", completion), ("reasoning", reasoning)):
        if count:
            TOKENS.labels(model, kind).inc(count)


def first_token(model: str, seconds: float) -> None:
    """Observe a reply's time to its first token."""
    TTFT.labels(model).observe(seconds)


def decode_speed(model: str, tokens: int, seconds: float) -> None:
    """Observe a reply's tokens per second after its first token (nothing for a reply of one token)."""
    if tokens > 1 and seconds > 0:
        TOKEN_SPEED.labels(model).observe((tokens - 1) / seconds)


def cache_lookup(kind: str, hit: bool) -> None:
    """Count one result-cache lookup."""
    CACHE.labels(kind, "hit" if hit else "miss").inc()


def refused(limit: str) -> None:
    """Count one request refused by `limit` (one of LIMITS)."""
    REFUSALS.labels(limit).inc()


def model_event(kind: str, event: str, seconds: float | None = None) -> None:
    """Count a model event (load, load_failed, offload, unload, switch); a load's seconds go to its histogram."""
    MODEL_EVENTS.labels(kind, event).inc()
    if event == "load" and seconds is not None:
        MODEL_LOAD.labels(kind).observe(seconds)


def batch_ran(kind: str, size: int) -> None:
    """Observe the number of images (or replies) that ran in one call."""
    BATCH_SIZE.labels(kind).observe(size)


def log_rows(outcome: str, count: int) -> None:
    """Count request log rows written, dropped or failed."""
    if count:
        LOG_ROWS.labels(outcome).inc(count)


@dataclass(frozen=True)
class LiveJobs:
    """Jobs of one kind and model right now: waiting (queued) and running."""

    kind: str
    model: str
    queued: int
    running: int


@dataclass(frozen=True)
class LiveModel:
    """A model slot's state right now (services/model_slots.py's ModelState values)."""

    kind: str
    model: str
    state: str


MODEL_STATES = ("not loaded", "loading", "ready", "offloaded", "failed")


class _Live(Collector):
    """Gauges read when scraped, from sources registered by name (a second app in one process replaces the first's
    sources of the same name rather than adding to them)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.jobs: dict[str, Callable[[], Iterable[LiveJobs]]] = {}
        self.models: dict[str, Callable[[], Iterable[LiveModel]]] = {}
        self.gauges: dict[str, tuple[str, Callable[[], float]]] = {}
        self.gpu_memory: Callable[[], dict[str, int] | None] | None = None

    def collect(self) -> Iterator[Metric]:
        queued = GaugeMetricFamily("atelier_queue_depth", "Jobs waiting, by kind and model", labels=["kind", "model"])
        running = GaugeMetricFamily("atelier_running_jobs", "Jobs running, by kind and model",
                                    labels=["kind", "model"])
        state = GaugeMetricFamily("atelier_model_state", "1 for each model's current state", labels=["kind", "model",
                                                                                                   "state"])
        with self._lock:
            jobs, models, gauges = list(self.jobs.values()), list(self.models.values()), dict(self.gauges)
            gpu = self.gpu_memory
        for source in jobs:
            for item in _safe(lambda source=source: list(source())) or []:
                queued.add_metric([item.kind, item.model], item.queued)
                running.add_metric([item.kind, item.model], item.running)
        for source in models:
            for item in _safe(lambda source=source: list(source())) or []:
                for name in MODEL_STATES:
                    state.add_metric([item.kind, item.model, name], 1.0 if name == item.state else 0.0)
        yield from (queued, running, state)
        for name, (doc, read) in gauges.items():
            if (value := _safe(read)) is not None:
                yield GaugeMetricFamily(name, doc, value=float(value))
        if gpu is not None and (memory := _safe(gpu)):
            family = GaugeMetricFamily("atelier_gpu_memory_bytes", "CUDA memory of this process's device",
                                       labels=["type"])
            for kind, value in memory.items():
                family.add_metric([kind], value)
            yield family


def _safe(source: Callable[[], T]) -> T | None:
    """A source's value, or None when it fails: a failing source costs its own lines, never the whole scrape."""
    try:
        return source()
    except Exception:
        log.warning("a metrics source failed", exc_info=True)
        return None


LIVE = _Live()
REGISTRY.register(LIVE)


def watch_jobs(name: str, source: Callable[[], Iterable[LiveJobs]]) -> None:
    """Read queued and running jobs from `source` at each scrape (replacing an earlier source of this name)."""
    with LIVE._lock:
        LIVE.jobs[name] = source


def watch_models(name: str, source: Callable[[], Iterable[LiveModel]]) -> None:
    """Read model states from `source` at each scrape (replacing an earlier source of this name)."""
    with LIVE._lock:
        LIVE.models[name] = source


def watch_gauge(name: str, documentation: str, read: Callable[[], float]) -> None:
    """Expose `read()` at each scrape as the gauge `name` (replacing an earlier one of this name)."""
    with LIVE._lock:
        LIVE.gauges[name] = (documentation, read)


def watch_gpu_memory(read: Callable[[], dict[str, int] | None]) -> None:
    """Expose `read()` ({type: bytes}, None without CUDA) as atelier_gpu_memory_bytes at each scrape."""
    with LIVE._lock:
        LIVE.gpu_memory = read


def exposition(accept: str = "") -> tuple[bytes, str]:
    """The registry in the text format the scraper's Accept header asks for (Prometheus' text format by default,
    OpenMetrics when asked), and its content type."""
    encoder, content_type = choose_encoder(accept)
    return encoder(REGISTRY), content_type
