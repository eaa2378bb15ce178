"""The result cache: an identical request reuses the stored result (same bytes, no model call)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from contracts import TextLimits, TextOptions
from services.cache import ResultCache
from services.chat import ChatService
from services.container import Services, build_services
from services.model_slots import ModelSlot
from storage.db import open_database
from storage.models import ImageJob
from tests.services.conftest import tiny_settings
from tests.services.fakes import FakeTextBackend


@pytest.fixture(scope="module")
def services(tmp_path_factory: pytest.TempPathFactory, tiny_sd_dir: Path, module_database_url: str) -> Services:
    return build_services(tiny_settings(tmp_path_factory.mktemp("data"), tiny_sd_dir, cache_max_entries=2,
                                        database_url=module_database_url))


@pytest.fixture
def calls(services: Services, monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    backend = services.image_slot.ensure_loaded()
    seen: list[Any] = []
    real = backend.generate_batch  # the path the service takes (through services.batcher)

    def counting(*args: Any, **kwargs: Any) -> Any:
        seen.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(backend, "generate_batch", counting)
    return seen


def generate(services: Services, user: str = "", **params: Any):
    req = services.images.validate(**{"prompt": "cached fox", "width": 64, "height": 64, "steps": 2, **params})
    handle = services.images.start(req, user=user)
    return handle.wait_finished(60)


def test_an_identical_request_returns_identical_bytes_without_the_pipeline(services: Services,
                                                                             calls: list[Any]) -> None:
    first = generate(services, seed=7)
    second = generate(services, seed=7)
    assert len(calls) == 1
    assert first.info["cached"] is False
    assert second.info["cached"] is True
    assert second.job_id != first.job_id
    assert second.files[0] != first.files[0]
    assert second.files[0].read_bytes() == first.files[0].read_bytes()
    row = services.history.get_job(second.job_id)
    assert row["cached"] is True
    assert row["status"] == "done"
    # Deleting the original leaves the copy whole.
    services.history.delete_job(first.job_id)
    assert second.files[0].is_file()


def test_random_seeds_and_other_settings_are_computed(services: Services, calls: list[Any]) -> None:
    generate(services, seed=-1)
    generate(services, seed=-1)
    generate(services, seed=8)
    generate(services, seed=8, steps=3)
    assert len(calls) == 4


def test_the_cache_is_per_user(services: Services, calls: list[Any]) -> None:
    generate(services, user="alice", seed=9)
    generate(services, user="bob", seed=9)
    assert len(calls) == 2
    assert generate(services, user="bob", seed=9).info["cached"] is True


def test_entries_are_bounded_per_user(services: Services, calls: list[Any]) -> None:
    for seed in (21, 22, 23):
        generate(services, user="carol", seed=seed)
    keyed = ImageJob.select().where((ImageJob.user == "carol") & ImageJob.cache_key.is_null(False)).count()
    assert keyed == 2  # cache_max_entries
    generate(services, user="carol", seed=21)  # the oldest was forgotten: computed again
    assert len(calls) == 4


def test_switched_off_or_expired_means_computed(services: Services, calls: list[Any]) -> None:
    services.images.cache.enabled = False
    try:
        generate(services, user="dan", seed=5)
        generate(services, user="dan", seed=5)
    finally:
        services.images.cache.enabled = True
    services.images.cache.max_age_s = 0
    try:
        generate(services, user="dan", seed=5)
    finally:
        services.images.cache.max_age_s = 7 * 86400
    assert len(calls) == 3


def test_a_greedy_chat_request_is_answered_from_the_cache(db_location: Path | str) -> None:
    open_database(db_location)
    backend = FakeTextBackend()
    slot = ModelSlot("text", backend, lambda b, report: b.load(report), model="fake", backend_name="fake")
    chat = ChatService(slot, TextLimits(), TextOptions(max_new_tokens=64), ResultCache())
    greedy = chat.options(temperature=0)
    a = chat.start(chat.validate("same question", options=greedy)).wait_finished(30)
    b = chat.start(chat.validate("same question", options=greedy)).wait_finished(30)
    assert len(backend.calls) == 1
    assert (b.reasoning, b.answer, b.cached) == (a.reasoning, a.answer, True)
    stored = chat.get_conversation(b.conversation_id)["messages"][-1]
    assert stored["cached"] is True
    assert stored["content"] == a.answer
    chat.start(chat.validate("same question", temperature=0.6)).wait_finished(30)
    assert len(backend.calls) == 2  # sampled replies are never reused
