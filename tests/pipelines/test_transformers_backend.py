"""The transformers text backend on the tiny GPTQ R1: real quantized loading, streaming, Stop, thinking
budget, history without reasoning, usage, load errors."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest

from contracts import TextOptions
from pipelines.loading import ModelUnavailable
from pipelines.reasoning import Chunk, split_reasoning
from pipelines.text_base import create_text_backend
from pipelines.tiny import THINK_CLOSE
from pipelines.transformers_backend import PromptTooLong, TransformersTextBackend
from pipelines.transformers_replies import WORKER_NAME, TransformersTextStream

QUESTION = [{"role": "user", "content": "What is two plus two?"}]
GREEDY = {"temperature": 0.0}


def run(backend: TransformersTextBackend, messages: list[dict[str, str]], stop: threading.Event | None = None,
        **options: Any) -> tuple[TransformersTextStream, list[Chunk]]:
    stream = backend.stream(messages, TextOptions(**options), stop or threading.Event())
    return stream, list(stream)


def joined(chunks: list[Chunk], kind: str) -> str:
    return "".join(c.text for c in chunks if c.kind == kind)


def workers_alive() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == WORKER_NAME]


@pytest.fixture
def close_id(tiny_text_backend: TransformersTextBackend) -> int:
    return tiny_text_backend.tokenizer.convert_tokens_to_ids(THINK_CLOSE)


# --- loading ----------------------------------------------------------------------------------------


def test_created_by_name_from_the_registry(tiny_r1_gptq_dir: Path) -> None:
    backend = create_text_backend("transformers", model=str(tiny_r1_gptq_dir), display_name="tiny R1")
    assert isinstance(backend, TransformersTextBackend)
    assert backend.name == "transformers"
    assert backend.model_name == "tiny R1"
    assert TransformersTextBackend(str(tiny_r1_gptq_dir)).model_name == str(tiny_r1_gptq_dir)


def test_gptq_checkpoint_runs_on_gptqmodel_kernels(tiny_text_backend: TransformersTextBackend) -> None:
    from gptqmodel.nn_modules.qlinear import BaseQuantLinear
    from torch import nn
    from transformers.quantizers.quantizer_gptq import GptqHfQuantizer

    lm = tiny_text_backend.lm
    assert isinstance(lm.hf_quantizer, GptqHfQuantizer)
    assert lm.config.quantization_config.bits == 4
    layers = lm.model.layers
    quantized = [m for m in layers.modules() if isinstance(m, BaseQuantLinear)]
    assert len(quantized) == 2 * 7  # q, k, v, o, gate, up, down in each of the two layers
    assert not [m for m in layers.modules() if isinstance(m, nn.Linear)]  # nothing left in full precision
    info = tiny_text_backend.describe()
    assert info["quantization"] == "GPTQ 4-bit, group 32"
    assert info["kernel"] == type(quantized[0]).__name__
    assert (info["device"], info["dtype"], info["offloaded"]) == ("cpu", "float32", False)


def test_load_reports_what_it_loads(tiny_r1_gptq_dir: Path) -> None:
    phases: list[str] = []
    backend = TransformersTextBackend(str(tiny_r1_gptq_dir), device="cpu")
    backend.load(phases.append)
    assert phases == [f"loading {tiny_r1_gptq_dir} (GPTQ 4-bit, float32 on cpu)"]
    backend.offload()  # nothing to free on the CPU
    assert backend.describe()["offloaded"] is False
    backend.unload()
    assert backend.lm is None
    with pytest.raises(RuntimeError, match="not loaded"):
        backend.stream(QUESTION, TextOptions(), threading.Event())


def test_load_again_is_a_no_op(tiny_text_backend: TransformersTextBackend) -> None:
    lm = tiny_text_backend.lm
    phases: list[str] = []
    tiny_text_backend.load(phases.append)
    assert tiny_text_backend.lm is lm
    assert phases == []


class FakeModule:
    """Stands in for a model on a GPU: records where it is moved."""

    def __init__(self) -> None:
        self.moves: list[str] = []

    def to(self, device: str) -> FakeModule:
        self.moves.append(device)
        return self


def test_offload_parks_plain_weights_in_cpu_ram_until_load(tiny_r1_dir: Path) -> None:
    backend = TransformersTextBackend(str(tiny_r1_dir), device="cuda")
    backend.loaded.lm = module = FakeModule()  # a loaded model on a GPU this machine does not have
    backend.loaded.tokenizer = object()
    backend.offload()
    assert module.moves == ["cpu"]
    assert backend.describe()["offloaded"] is True
    with pytest.raises(RuntimeError, match="offloaded"):
        backend.stream(QUESTION, TextOptions(), threading.Event())
    backend.offload()  # already off the GPU
    phases: list[str] = []
    backend.load(phases.append)
    assert module.moves == ["cpu", "cuda:0"]
    assert backend.lm is module  # moved back, not reloaded
    assert phases == [f"moving {tiny_r1_dir} back to cuda"]
    assert backend.describe()["offloaded"] is False


def test_offload_drops_gptq_weights_and_load_reloads_them(tiny_r1_gptq_dir: Path) -> None:
    backend = TransformersTextBackend(str(tiny_r1_gptq_dir), device="cpu")
    backend.load(lambda phase: None)
    backend.offload()
    assert backend.lm is not None  # on the CPU there is no GPU memory to free
    backend.loaded.device = "cuda"  # pretend it had been loaded on a GPU
    backend.offload()
    assert backend.lm is None
    assert backend.describe()["offloaded"] is True
    backend.loaded.device = "cpu"
    backend.load(lambda phase: None)  # a full reload: GPTQ modules are not moved between devices
    assert backend.lm is not None
    assert backend.describe()["offloaded"] is False
    stream, _ = run(backend, QUESTION, max_new_tokens=3)
    assert stream.usage.completion_tokens == 3


def test_a_bad_folder_says_how_to_fix_it(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "qwen2"}), encoding="utf-8")
    backend = TransformersTextBackend(str(tmp_path), device="cpu")
    expected = r"text model folder .* could not be loaded .*--text-model.*--profile tiny"
    with pytest.raises(ModelUnavailable, match=expected):
        backend.load(lambda phase: None)


def test_a_missing_folder_says_how_to_fix_it(tmp_path: Path) -> None:
    backend = TransformersTextBackend(str(tmp_path / "nowhere"), device="cpu")
    with pytest.raises(ModelUnavailable, match=r"no such folder.*--text-model.*--profile tiny"):
        backend.load(lambda phase: None)


def test_an_uncached_hub_model_offline_says_how_to_fix_it() -> None:
    phases: list[str] = []
    backend = TransformersTextBackend("atelier-test/not-a-model", device="cpu")
    with pytest.raises(ModelUnavailable, match=r"is not on this machine.*hf download.*--text-model.*--profile tiny"):
        backend.load(phases.append)
    assert phases[0].startswith("downloading atelier-test/not-a-model")


# --- streaming --------------------------------------------------------------------------------------


def test_stream_splits_the_decoded_output_and_counts_tokens(tiny_text_backend: TransformersTextBackend) -> None:
    stream, chunks = run(tiny_text_backend, QUESTION, thinking_budget=4, max_new_tokens=24, **GREEDY)
    assert chunks
    assert all(isinstance(c, Chunk) and c.text for c in chunks)
    kinds = [c.kind for c in chunks]
    assert kinds[0] == "reasoning"
    assert "reasoning" not in kinds[kinds.index("answer"):]
    # The chunks are exactly what the generated ids decode to, split as R1 output (the prompt opened <think>).
    text = tiny_text_backend.tokenizer.decode(stream.token_ids, skip_special_tokens=True)
    assert (joined(chunks, "reasoning"), joined(chunks, "answer")) == split_reasoning(text)
    prompt_ids = tiny_text_backend.tokenizer(tiny_text_backend.prompt_text(QUESTION), add_special_tokens=False)
    assert stream.usage.prompt_tokens == len(prompt_ids["input_ids"])
    assert stream.usage.completion_tokens == len(stream.token_ids) == 24
    assert stream.usage.reasoning_tokens == 4
    assert stream.usage.finish_reason == "length"
    assert not workers_alive()


def test_eos_ends_the_reply_with_finish_reason_stop(tiny_text_backend: TransformersTextBackend) -> None:
    eos = tiny_text_backend.tokenizer.eos_token_id
    # Random weights: find a question the greedy model answers with an end-of-sentence token.
    for word in ("hi there", "hello", "why", "the sea", "a poem", "What is two plus two?"):
        stream, _ = run(tiny_text_backend, [{"role": "user", "content": word}], max_new_tokens=64, **GREEDY)
        if stream.token_ids[-1] == eos:
            break
    else:
        pytest.fail("no question made the tiny model emit eos within 64 tokens")
    assert len(stream.token_ids) < 64
    assert stream.usage.finish_reason == "stop"
    assert stream.usage.completion_tokens == len(stream.token_ids)


def test_thinking_budget_forces_the_closing_tag(tiny_text_backend: TransformersTextBackend, close_id: int) -> None:
    free, _ = run(tiny_text_backend, QUESTION, max_new_tokens=24, **GREEDY)
    assert close_id not in free.token_ids  # left alone, this greedy reply never stops thinking
    assert free.usage.reasoning_tokens == 24
    stream, chunks = run(tiny_text_backend, QUESTION, max_new_tokens=24, thinking_budget=3, **GREEDY)
    assert stream.token_ids[:3] == free.token_ids[:3]
    assert stream.token_ids[3] == close_id
    assert stream.usage.reasoning_tokens == 3
    assert stream.token_ids.count(close_id) == 1  # forced once; then the model is free again
    assert joined(chunks, "answer")  # and goes on to answer


def test_thinking_budget_under_sampling(tiny_text_backend: TransformersTextBackend, close_id: int) -> None:
    stream, _ = run(tiny_text_backend, QUESTION, max_new_tokens=40, thinking_budget=5, seed=3, temperature=1.5)
    reasoning = stream.token_ids[: stream.token_ids.index(close_id)]
    assert len(reasoning) <= 5
    assert stream.usage.reasoning_tokens == len(reasoning)


def test_same_seed_same_reply(tiny_text_backend: TransformersTextBackend) -> None:
    first, first_chunks = run(tiny_text_backend, QUESTION, max_new_tokens=30, seed=11)
    second, second_chunks = run(tiny_text_backend, QUESTION, max_new_tokens=30, seed=11)
    other, _ = run(tiny_text_backend, QUESTION, max_new_tokens=30, seed=12)
    assert first.token_ids == second.token_ids
    # The same text; where the chunks break depends on how much the consumer takes at once (COALESCE_S).
    for kind in ("reasoning", "answer"):
        assert joined(first_chunks, kind) == joined(second_chunks, kind)
    assert other.token_ids != first.token_ids


def test_padding_rows_of_the_vocabulary_are_never_sampled(tiny_text_backend: TransformersTextBackend) -> None:
    tokenizer = tiny_text_backend.tokenizer
    rows = tiny_text_backend.lm.get_output_embeddings().weight.shape[0]
    assert rows > len(tokenizer)  # the tiny model pads its 883 tokens to 896 rows, like real checkpoints
    # Hot sampling over the whole distribution picks one of 13 padding rows in 200 draws almost surely.
    stream, _ = run(tiny_text_backend, QUESTION, max_new_tokens=200, seed=5, temperature=2.0, top_p=1.0)
    assert len(stream.token_ids) > 50
    assert max(stream.token_ids) < len(tokenizer)


def test_suppressed_rows_sample_exactly_as_generates_suppress_tokens(
        tiny_text_backend: TransformersTextBackend) -> None:
    import torch

    from pipelines.transformers_replies import SuppressRows

    lm, tokenizer = tiny_text_backend.lm, tiny_text_backend.tokenizer
    rows = list(range(len(tokenizer), lm.get_output_embeddings().weight.shape[0]))
    prompt = tokenizer.apply_chat_template(QUESTION, add_generation_prompt=True, return_tensors="pt",
                                           return_dict=True)

    def sample(**how: Any) -> list[int]:
        torch.manual_seed(5)
        with torch.inference_mode():
            out = lm.generate(**prompt, max_new_tokens=60, do_sample=True, temperature=2.0, top_p=1.0, top_k=0, **how)
        return out[0, prompt["input_ids"].shape[1]:].tolist()

    ours = sample(logits_processor=[SuppressRows(rows)])
    assert ours == sample(suppress_tokens=rows)
    assert ours != sample()  # hot sampling does reach the rows when nothing suppresses them: the check means something


def test_a_reply_never_runs_transformers_own_suppress_processor(tiny_text_backend: TransformersTextBackend,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    # Its isin() over the whole vocabulary on every token cost the tiny model ~3 % of its decode speed.
    from transformers.generation import logits_process

    from pipelines.transformers_replies import SuppressRows

    calls = {"theirs": 0, "ours": 0}
    theirs, ours = logits_process.SuppressTokensLogitsProcessor.__call__, SuppressRows.__call__

    def count(name: str, original: Any) -> Any:
        def counted(self: Any, *args: Any) -> Any:
            calls[name] += 1
            return original(self, *args)
        return counted

    monkeypatch.setattr(logits_process.SuppressTokensLogitsProcessor, "__call__", count("theirs", theirs))
    monkeypatch.setattr(SuppressRows, "__call__", count("ours", ours))
    stream, _ = run(tiny_text_backend, QUESTION, max_new_tokens=20, seed=3, temperature=0.6)
    assert calls == {"theirs": 0, "ours": stream.usage.completion_tokens}


def test_text_written_while_the_consumer_was_away_is_taken_in_one_feed(
        tiny_text_backend: TransformersTextBackend) -> None:
    # One wake-up of the consumer per word took the GIL from the model's thread on every token (COALESCE_S).
    import torch

    stream = tiny_text_backend.stream(QUESTION, TextOptions(max_new_tokens=8), threading.Event())
    reply = stream._generation
    prompt = reply.inputs["input_ids"]

    class Written:  # generate() has already written all of its text when the consumer first looks
        def generate(self, **kwargs: Any) -> torch.Tensor:
            return torch.cat([prompt, torch.ones((1, 8), dtype=prompt.dtype)], dim=1)

    words = ["Two ", "and ", "two ", "</think>", "make ", "four."]
    for word in words:
        reply.streamer.text_queue.put(word)
    reply.streamer.text_queue.put(reply.streamer.stop_signal)
    reply.model = Written()
    feeds: list[str] = []
    feed = reply.splitter.feed
    reply.splitter.feed = lambda text: feeds.append(text) or feed(text)  # type: ignore[method-assign]
    chunks = list(stream)
    assert feeds == ["".join(words)]
    assert (joined(chunks, "reasoning"), joined(chunks, "answer")) == ("Two and two ", "make four.")


def test_the_consumer_lets_tokens_gather_only_once_visible_text_went_out(
        tiny_text_backend: TransformersTextBackend) -> None:
    # A reply often opens with a blank text (" "): waiting after it would hold back the first visible token.
    import torch

    stream = tiny_text_backend.stream(QUESTION, TextOptions(max_new_tokens=8), threading.Event())
    reply = stream._generation
    prompt = reply.inputs["input_ids"]
    feeds: list[str] = []
    waits_before: dict[str, int] = {}
    waits: list[float] = []

    class Recorded:  # the consumer's wait for tokens to gather, recorded (and not waited)
        def wait(self, timeout: float | None = None) -> bool:
            waits.append(timeout or 0.0)
            return False

        def set(self) -> None:
            pass

    class Writing:  # writes a blank text, then (once the consumer took it) a word, then a second word
        def generate(self, streamer: Any, **kwargs: Any) -> torch.Tensor:
            for text in (" ", "Two ", "more "):
                streamer.text_queue.put(text)
                while not any(text in fed for fed in feeds):
                    threading.Event().wait(0.001)
            streamer.end()
            return torch.cat([prompt, torch.ones((1, 3), dtype=prompt.dtype)], dim=1)

    reply.model, reply.generated = Writing(), Recorded()
    feed = reply.splitter.feed

    def noted(text: str) -> Any:
        waits_before[text] = len(waits)
        feeds.append(text)
        return feed(text)

    reply.splitter.feed = noted  # type: ignore[method-assign]
    list(stream)
    assert feeds[:2] == [" ", "Two "]
    assert waits_before["Two "] == 0  # the blank text went out without a wait after it
    assert waits  # after the visible one, the consumer let tokens gather


# --- stopping ---------------------------------------------------------------------------------------


def test_stop_ends_generation_within_a_token(tiny_text_backend: TransformersTextBackend) -> None:
    free, _ = run(tiny_text_backend, QUESTION, max_new_tokens=200, **GREEDY)
    assert free.usage.completion_tokens == 200  # unstopped, this reply runs to the limit
    stop = threading.Event()
    stream = tiny_text_backend.stream(QUESTION, TextOptions(max_new_tokens=200, **GREEDY), stop)
    first = next(stream)
    stop.set()
    at_stop = stream.usage.completion_tokens
    rest = list(stream)  # ends normally: no exception, the partial text stays with the caller
    assert stream.usage.finish_reason == "cancelled"
    assert stream.usage.completion_tokens <= at_stop + 2
    assert stream.usage.completion_tokens == len(stream.token_ids) < 200
    assert stream.token_ids == free.token_ids[: len(stream.token_ids)]
    assert first.kind == "reasoning"
    assert all(c.text for c in rest)
    assert not workers_alive()


def test_stop_set_before_the_reply_generates_nothing(tiny_text_backend: TransformersTextBackend) -> None:
    stop = threading.Event()
    stop.set()
    stream, chunks = run(tiny_text_backend, QUESTION, stop=stop)
    assert chunks == []
    assert stream.usage.completion_tokens == 0
    assert stream.usage.finish_reason == "cancelled"


@pytest.mark.parametrize("how", ["close", "context", "drop"])
def test_an_abandoned_stream_stops_and_joins_its_worker(tiny_text_backend: TransformersTextBackend,
                                                        how: str) -> None:
    stream = tiny_text_backend.stream(QUESTION, TextOptions(max_new_tokens=200, **GREEDY), threading.Event())
    usage = stream.usage
    if how == "context":
        with stream:
            next(stream)
    else:
        next(stream)
        if how == "close":
            stream.close()
        else:
            del stream  # the generator's finally block runs when the last reference goes
    assert not workers_alive()
    assert usage.finish_reason == "cancelled"
    assert usage.completion_tokens < 200


def test_a_stream_closed_before_it_started_generates_nothing(tiny_text_backend: TransformersTextBackend) -> None:
    stream = tiny_text_backend.stream(QUESTION, TextOptions(), threading.Event())
    stream.close()
    stream.close()
    assert stream.usage.finish_reason == "cancelled"
    assert stream.usage.completion_tokens == 0
    assert list(stream) == []


def test_a_model_error_reaches_the_caller_and_the_worker_is_joined(
    tiny_text_backend: TransformersTextBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken_generate(**kwargs: Any) -> None:
        raise RuntimeError("CUDA out of memory (simulated)")

    monkeypatch.setattr(tiny_text_backend.lm, "generate", broken_generate)
    stream = tiny_text_backend.stream(QUESTION, TextOptions(), threading.Event())
    with pytest.raises(RuntimeError, match="simulated"):
        list(stream)
    assert not workers_alive()


# --- prompts ----------------------------------------------------------------------------------------


def test_earlier_reasoning_never_reaches_the_model(
    tiny_text_backend: TransformersTextBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    messages = [
        {"role": "user", "content": "First question"},
        {"role": "assistant", "content": "SECRET-ONE plan\n</think>\n\nFirst answer"},
        {"role": "user", "content": "Second question"},
        # A reply stopped while thinking: the R1 template alone would send all of it back.
        {"role": "assistant", "content": "<think>\nSECRET-TWO half a thought"},
        {"role": "user", "content": "Third question"},
    ]
    seen: list[str] = []
    real_generate = tiny_text_backend.lm.generate

    def spy(**kwargs: Any) -> Any:
        seen.append(tiny_text_backend.tokenizer.decode(kwargs["input_ids"][0]))
        return real_generate(**kwargs)

    monkeypatch.setattr(tiny_text_backend.lm, "generate", spy)
    run(tiny_text_backend, messages, max_new_tokens=2)
    (prompt,) = seen
    assert prompt == tiny_text_backend.prompt_text(messages)
    assert "SECRET" not in prompt
    assert "First answer" in prompt
    assert "Third question" in prompt
    assert prompt.endswith("<｜Assistant｜><think>\n")


def test_a_conversation_longer_than_the_context_is_refused(tiny_text_backend: TransformersTextBackend) -> None:
    long_message = [{"role": "user", "content": "Monday " * 2100}]  # the tiny model reads 2048 tokens
    with pytest.raises(PromptTooLong, match="start a new chat"):
        tiny_text_backend.stream(long_message, TextOptions(), threading.Event())


def test_max_new_tokens_is_clamped_to_the_context(tiny_text_backend: TransformersTextBackend) -> None:
    tokenizer = tiny_text_backend.tokenizer

    def prompt_len(words: int) -> int:
        text = tiny_text_backend.prompt_text([{"role": "user", "content": "Monday " * words}])
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    per_word = (prompt_len(101) - prompt_len(1)) / 100
    words = int((2048 - 40 - prompt_len(1)) / per_word)  # leave about 40 tokens of the 2048 context
    room = 2048 - prompt_len(words)
    assert 0 < room < 100
    messages = [{"role": "user", "content": "Monday " * words}]
    stream, _ = run(tiny_text_backend, messages, max_new_tokens=500, temperature=2.0, top_p=1.0, seed=1)
    assert stream.usage.completion_tokens == room
    assert stream.usage.finish_reason == "length"
