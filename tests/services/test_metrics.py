"""The metrics the services keep, scraped as Prometheus would (its text format, read back with the official
parser): counters and histograms move with the work done, live gauges show the models and jobs, and every job
leaves its request log row with the same figures."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from contracts import ImageLimits, TextLimits, TextOptions
from pipelines.devices import gpu_memory
from services import metrics
from services.cache import ResultCache
from services.chat import ChatService
from services.container import watch_metrics
from services.images import ImageService
from services.model_slots import ModelSlot
from services.request_log import RequestLog
from storage.db import open_database
from storage.models import RequestLog as Row
from tests.services.fakes import FakeImageBackend, FakeTextBackend

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape() -> Samples:
    body, content_type = metrics.exposition()
    assert content_type.startswith("text/plain; version=0.0.4")
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(body.decode()) for s in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def moved(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


@pytest.fixture
def work(tmp_path: Path) -> Any:
    open_database(tmp_path / "atelier.db")
    log = RequestLog(flush_every_s=0.01)
    log.start()
    image_slot = ModelSlot("image", FakeImageBackend(), lambda b, report: b.load(report), model="fake-sd",
                           backend_name="fake")
    text_slot = ModelSlot("text", FakeTextBackend(), lambda b, report: b.load(report), model="fake-r1",
                          backend_name="fake")
    images = ImageService(image_slot, tmp_path / "images", ImageLimits(), cache=ResultCache(enabled=True),
                          max_batch_images=4, request_log=log, replica="r1")
    chat = ChatService(text_slot, TextLimits(max_new_tokens=64, max_message_chars=100),
                       TextOptions(max_new_tokens=32, temperature=0), ResultCache(enabled=True), request_log=log)
    watch_metrics(images, [image_slot, text_slot], log)
    yield images, chat, log
    log.stop()


def test_counters_move_with_the_work_done(work: Any) -> None:
    images, chat, log = work
    before = scrape()
    req = images.validate(prompt="a fox", width=64, height=64, steps=2, seed=5, batch_count=3)
    assert images.start(req, user="alice").wait_finished(30).status == "done"
    assert images.start(req, user="alice").wait_finished(30).info["cached"]  # the same again: from the cache
    assert chat.start(chat.validate("hello"), user="bob").wait_finished(30).status == "done"
    after = scrape()

    assert moved(before, after, "atelier_jobs_total", kind="image", status="done", model="fake-sd") == 2
    assert moved(before, after, "atelier_requests_total", kind="image", status="done") == 2
    assert moved(before, after, "atelier_images_total", model="fake-sd") == 3  # the cached ones were not made
    assert moved(before, after, "atelier_batch_size_count", kind="image") == 1
    assert moved(before, after, "atelier_batch_size_sum", kind="image") == 3
    assert moved(before, after, "atelier_cache_lookups_total", kind="image", result="miss") == 1
    assert moved(before, after, "atelier_cache_lookups_total", kind="image", result="hit") == 1
    assert moved(before, after, "atelier_job_duration_seconds_count", kind="image") == 2
    assert moved(before, after, "atelier_queue_wait_seconds_count", kind="image") == 2
    assert moved(before, after, "atelier_model_events_total", kind="image", event="load") == 1
    assert moved(before, after, "atelier_model_load_seconds_count", kind="image") == 1
    # FakeTextBackend: 3 prompt tokens, 2 reasoning and 2 answer chunks of one token each.
    assert moved(before, after, "atelier_jobs_total", kind="chat", status="done", model="fake-r1") == 1
    assert moved(before, after, "atelier_tokens_total", model="fake-r1", type="prompt") == 3
    assert moved(before, after, "atelier_tokens_total", model="fake-r1", type="completion") == 4
    assert moved(before, after, "atelier_tokens_total", model="fake-r1", type="reasoning") == 2
    assert moved(before, after, "atelier_time_to_first_token_seconds_count", model="fake-r1") == 1
    assert moved(before, after, "atelier_tokens_per_second_count", model="fake-r1") == 1
    assert moved(before, after, "atelier_cache_lookups_total", kind="chat", result="miss") == 1
    assert moved(before, after, "atelier_gpu_seconds_total", kind="image", model="fake-sd") > 0

    assert images.slot.release("offload")
    assert moved(after, scrape(), "atelier_model_events_total", kind="image", event="offload") == 1
    assert moved(before, scrape(), "atelier_refusals_total", limit="quota") == 0
    metrics.refused("quota")
    assert moved(before, scrape(), "atelier_refusals_total", limit="quota") == 1

    assert log.flush(30)
    assert moved(before, scrape(), "atelier_request_log_rows_total", outcome="written") == 3
    jobs = list(Row.select().order_by(Row.id))
    assert [(r.kind, r.status, r.user, r.images, r.model, r.replica) for r in jobs] == [
        ("image", "done", "alice", 3, "fake-sd", "r1"), ("image", "done", "alice", 3, "fake-sd", "r1"),
        ("chat", "done", "bob", 0, "fake-r1", "")]
    assert jobs[0].gpu_s > 0
    assert jobs[1].gpu_s == 0
    assert all(r.queue_wait_s is not None and r.duration_s >= r.queue_wait_s for r in jobs)
    assert jobs[0].job_id is not None
    assert jobs[2].job_id is not None
    assert (jobs[2].prompt_tokens, jobs[2].completion_tokens) == (3, 4)


def test_live_gauges_show_models_and_jobs(work: Any) -> None:
    images, _, _ = work
    images.slot.ensure_loaded()
    samples = scrape()
    assert value(samples, "atelier_model_state", kind="image", model="fake-sd", state="ready") == 1
    assert value(samples, "atelier_model_state", kind="image", model="fake-sd", state="loading") == 0
    assert value(samples, "atelier_model_state", kind="text", model="fake-r1", state="not loaded") == 1
    assert ("atelier_running_jobs", (("kind", "image"), ("model", "fake-sd"))) in samples
    assert ("atelier_queue_depth", (("kind", "text"), ("model", "fake-r1"))) in samples
    assert ("atelier_request_log_pending", ()) in samples
    # GPU memory: none without CUDA (this machine), the device's figures with it.
    try:
        metrics.watch_gpu_memory(lambda: None)
        assert not any(name == "atelier_gpu_memory_bytes" for name, _ in scrape())
        metrics.watch_gpu_memory(lambda: {"allocated": 2**30, "reserved": 2**31})
        assert value(scrape(), "atelier_gpu_memory_bytes", type="reserved") == 2**31
    finally:
        metrics.watch_gpu_memory(gpu_memory)


def test_a_failing_source_costs_its_own_lines_only(work: Any) -> None:
    def broken() -> list[metrics.LiveJobs]:
        raise RuntimeError("gone")

    metrics.watch_jobs("broken", broken)
    try:
        samples = scrape()
    finally:
        metrics.LIVE.jobs.pop("broken")
    assert ("atelier_model_state", (("kind", "image"), ("model", "fake-sd"), ("state", "not loaded"))) in samples
