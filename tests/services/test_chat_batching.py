"""Chat replies that run at once in process share the model's forward passes (continuous batching), and each is
stored exactly as it would be alone."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from pipelines.transformers_backend import TransformersTextBackend
from services.container import build_services
from settings import DEFAULT_GPU_TEXT_CONCURRENCY, REMOTE_TEXT_CONCURRENCY, Settings
from storage.models import Message
from tests.services.conftest import tiny_settings

MESSAGES = ["What is two plus two?", "hello", "Explain why the sky is blue, in many words.", "a poem about the sea"]


def test_in_process_replies_share_forward_passes_on_a_gpu_by_default(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    import settings as settings_module

    assert Settings(profile="tiny", data_dir=tmp_path).resolved_text_concurrency == 1  # this CPU
    monkeypatch.setattr(settings_module, "cuda_available", lambda: True)
    assert Settings(profile="tiny", data_dir=tmp_path).resolved_text_concurrency == DEFAULT_GPU_TEXT_CONCURRENCY > 1
    assert Settings(profile="tiny", data_dir=tmp_path, text_concurrency=3).resolved_text_concurrency == 3
    assert Settings(profile="tiny", data_dir=tmp_path,
                    text_backend="openai").resolved_text_concurrency == REMOTE_TEXT_CONCURRENCY


def test_concurrent_chats_are_batched_and_stored_as_each_alone(tmp_path: Path, tiny_sd_dir: Path,
                                                              tiny_r1_gptq_dir: Path) -> None:
    services = build_services(tiny_settings(tmp_path / "data", tiny_sd_dir, tiny_r1_gptq_dir, text_concurrency=4))
    backend = services.text_slot.ensure_loaded()
    assert isinstance(backend, TransformersTextBackend)
    assert backend.max_batch == services.chat.concurrency == 4
    batches: list[int] = []

    def record(module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        batches.append(int(kwargs["input_ids"].shape[0]))

    hook = backend.lm.register_forward_pre_hook(record, with_kwargs=True)
    try:
        options = services.chat.options(temperature=0.0)
        handles = [services.chat.start(services.chat.validate(message, options=options)) for message in MESSAGES]
        snaps = [handle.wait_finished(120) for handle in handles]
    finally:
        hook.remove()
    assert max(batches) > 1  # replies rode together in forward passes
    backend.max_batch = 1  # now each reply alone, through generate()
    for message, snap in zip(MESSAGES, snaps, strict=True):
        assert snap.status == "done"
        alone = backend.stream([{"role": "user", "content": message}], options, threading.Event())
        chunks = list(alone)
        stored = Message.get_by_id(snap.message_id)
        assert stored.reasoning == "".join(c.text for c in chunks if c.kind == "reasoning")
        assert stored.content == "".join(c.text for c in chunks if c.kind == "answer")
        assert (stored.completion_tokens, stored.reasoning_tokens) == (alone.usage.completion_tokens,
                                                                       alone.usage.reasoning_tokens)
