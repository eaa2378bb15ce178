"""The transformers backend's GPTQ kernel choice (reported in describe(), forced kernels, the one fallback warning)
and its static KV cache / compiled decode step, on the tiny GPTQ R1 on the CPU."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import pytest

from contracts import TextOptions
from pipelines import gptq_kernels, transformers_loading, transformers_replies
from pipelines import transformers_backend as tb
from pipelines.gptq_kernels import Host
from pipelines.loading import ModelUnavailable
from pipelines.transformers_backend import TransformersTextBackend
from services.container import _text_slot
from settings import Settings

QUESTION = [{"role": "user", "content": "What is two plus two?"}]


def greedy_ids(backend: TransformersTextBackend, max_new_tokens: int = 24) -> list[int]:
    stream = backend.stream(QUESTION, TextOptions(temperature=0.0, max_new_tokens=max_new_tokens), threading.Event())
    list(stream)
    return stream.token_ids


def test_health_reports_the_cpu_kernel_and_why(tiny_text_backend: TransformersTextBackend) -> None:
    from gptqmodel.nn_modules.qlinear import BaseQuantLinear

    info = tiny_text_backend.describe()
    modules = {type(m).__name__ for m in tiny_text_backend.lm.modules() if isinstance(m, BaseQuantLinear)}
    assert info["kernel"] == "TorchAtenLinear" == ", ".join(modules)  # gptqmodel's CPU int4 kernel
    assert info["kernel_choice"] == {"requested": "auto", "chosen": None, "skipped": {}, "warning": None,
                                     "reason": "on cpu gptqmodel picks its own kernel"}
    assert (info["cache"], info["compile"]) == ("dynamic", False)


@pytest.mark.parametrize("forced", ["marlin", "machete"])
def test_a_forced_kernel_that_cannot_run_is_refused_clearly(tiny_r1_gptq_dir: Path, forced: str) -> None:
    backend = TransformersTextBackend(str(tiny_r1_gptq_dir), device="cpu", gptq_backend=forced)
    with pytest.raises(ModelUnavailable, match=rf"ATELIER_GPTQ_BACKEND={forced}: .*runs only on NVIDIA GPUs.*"
                                               "set ATELIER_GPTQ_BACKEND=auto"):
        backend.load(lambda phase: None)
    assert backend.lm is None
    assert backend.describe()["kernel_choice"] is None


def test_a_gpu_without_nvcc_falls_back_with_one_warning_and_says_so_in_health(
        tiny_r1_gptq_dir: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    # The decision sees an A100 without nvcc; the weights still go to the CPU, where the kernel it falls back to
    # (gptqmodel's torch kernel, which runs anywhere) loads for real: the choice reaches gptqmodel.
    monkeypatch.setattr(transformers_loading, "probe_host", lambda device: Host("cuda", (8, 0), "NVIDIA A100",
                                                                    torch_cuda="13.0"))
    monkeypatch.setattr(gptq_kernels, "_warned", set())
    infos: list[dict[str, Any]] = []
    with caplog.at_level(logging.WARNING, logger="pipelines.gptq_kernels"):
        for _ in range(2):
            backend = TransformersTextBackend(str(tiny_r1_gptq_dir), device="cpu")
            backend.load(lambda phase: None)
            infos.append(backend.describe())
            backend.unload()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "instead of Marlin" in warnings[0]
    assert "several times slower" in warnings[0]
    assert "nvcc" in warnings[0]
    for info in infos:
        assert info["kernel"] == "TorchLinear"
        assert info["kernel_choice"]["chosen"] == "torch"
        assert info["kernel_choice"]["warning"] == warnings[0]
        assert "nvcc" in info["kernel_choice"]["skipped"]["marlin"]
        assert warnings[0] in info["notes"]


def test_static_cache_and_compiled_decode_reach_generate_and_give_the_same_greedy_tokens(
        tiny_text_backend: TransformersTextBackend, tiny_r1_gptq_dir: Path) -> None:
    dynamic = greedy_ids(tiny_text_backend)
    static = TransformersTextBackend(str(tiny_r1_gptq_dir), device="cpu", cache="static")
    static.load(lambda phase: None)
    config = static._generation_config(TextOptions(temperature=0.0), 24)
    assert (config.cache_implementation, config.max_cache_len, config.compile_config) == ("static", 2048, None)
    assert greedy_ids(static) == dynamic
    assert static.lm._previous_max_cache_length == 2048  # generate() built a StaticCache of that length
    assert not hasattr(static.lm, "_compiled_call")
    static.unload()
    # The eager backend runs torch.compile's whole path (dynamo tracing of gptqmodel's modules) fast on a CPU.
    compiled = TransformersTextBackend(str(tiny_r1_gptq_dir), device="cpu", cache="static", compile=True,
                                       compile_backend="eager")
    compiled.load(lambda phase: None)
    assert compiled.describe()["compile"] is True
    assert greedy_ids(compiled) == dynamic
    assert compiled.lm._last_compile_config.backend == "eager"  # generate() decoded through the compiled call
    compiled.unload()


def test_compile_without_the_static_cache_is_a_note_not_an_error(tiny_r1_gptq_dir: Path) -> None:
    backend = TransformersTextBackend(str(tiny_r1_gptq_dir), device="cpu", compile=True, compile_backend="eager")
    backend.load(lambda phase: None)
    assert backend.describe()["compile"] is False
    assert any("ATELIER_TEXT_CACHE=static" in note for note in backend.describe()["notes"])
    assert backend._generation_config(TextOptions(), 8).compile_config is None
    backend.unload()


def test_static_cache_length_is_a_power_of_two_within_the_context() -> None:
    assert tb._static_cache_len(24, 2048) == 2048
    assert tb._static_cache_len(4096, 131072) == 8192
    assert tb._static_cache_len(8000, 131072) == 16384
    assert tb._static_cache_len(8000, 4096) == 4096
    assert tb._static_cache_len(10, None) == 4096


def test_settings_reach_the_text_backend(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    defaults = _text_slot(Settings(profile="tiny", data_dir=tmp_path)).backend
    assert (defaults.loaded.gptq_backend, defaults.loaded.cache, defaults.loaded.compile) == ("auto", "dynamic", False)
    monkeypatch.setenv("ATELIER_GPTQ_BACKEND", "marlin")
    monkeypatch.setenv("ATELIER_TEXT_CACHE", "static")
    monkeypatch.setenv("ATELIER_TEXT_COMPILE", "1")
    backend = _text_slot(Settings(profile="tiny", data_dir=tmp_path)).backend
    assert (backend.loaded.gptq_backend, backend.loaded.cache, backend.loaded.compile) == ("marlin", "static", True)
    with pytest.raises(ValueError, match="gptq_backend"):
        Settings(gptq_backend="exllama")
    with pytest.raises(ValueError, match="text_cache"):
        Settings(text_cache="paged")


def test_batched_replies_keep_the_engines_dynamic_cache(tiny_r1_gptq_dir: Path) -> None:
    backend = TransformersTextBackend(str(tiny_r1_gptq_dir), device="cpu", cache="static", max_batch=2)
    backend.load(lambda phase: None)
    assert backend.describe()["max_batch"] == 2
    assert backend._generation_config(TextOptions(), 8, batched=False).cache_implementation == "static"
    assert backend._generation_config(TextOptions(), 8, batched=True).cache_implementation != "static"
    stream = backend.stream([{"role": "user", "content": "hi"}], TextOptions(temperature=0.0, max_new_tokens=6),
                            threading.Event())
    assert isinstance(stream._generation, transformers_replies.BatchedReply)
    assert stream._generation.generation_config.cache_implementation != "static"
    list(stream)
    assert stream.usage.completion_tokens == 6
    backend.unload()
