"""Continuous batching on the tiny GPTQ R1 (pipelines/text_batching.py through TransformersTextBackend(max_batch>1)):
concurrent replies share forward passes and each gets exactly the tokens it gets alone; Stop, budgets, seeds, joins
and leaves between steps, abandoned streams, errors and unloading."""

from __future__ import annotations

import gc
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from contracts import TextOptions
from pipelines.reasoning import Chunk
from pipelines.text_batching import ENGINE_NAME, EngineClosed
from pipelines.tiny import THINK_CLOSE
from pipelines.transformers_backend import TransformersTextBackend
from pipelines.transformers_replies import TransformersTextStream

# Different lengths, so the rows are padded against each other in the shared cache.
PROMPTS = ["What is two plus two?", "hello", "Explain why the sky is blue, in many words and with examples.",
           "a poem about the sea"]
GREEDY = {"temperature": 0.0}
MAX_BATCH = 4
WAIT_S = 60  # a bound on waiting for the engine, never a measure of speed


def chat(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def alone(backend: TransformersTextBackend, text: str, **options: Any) -> tuple[TransformersTextStream, list[Chunk]]:
    """One reply on its own, read to the end."""
    stream = backend.stream(chat(text), TextOptions(**options), threading.Event())
    return stream, list(stream)


def texts(chunks: list[Chunk]) -> tuple[str, str]:
    """The reasoning and the answer: where chunks break differs between the engine (a chunk per word) and a reply's
    own generate() (the words of a few milliseconds at once, pipelines/transformers_replies.COALESCE_S)."""
    return ("".join(c.text for c in chunks if c.kind == "reasoning"),
            "".join(c.text for c in chunks if c.kind == "answer"))


def engine_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == ENGINE_NAME]


def wait_until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail("the engine never reached the expected state")
        time.sleep(0.005)


class Consumer:
    """Reads one stream to its end in a thread of its own, as ChatService does; keeps the chunks or the error."""

    def __init__(self, stream: TransformersTextStream, label: str = "") -> None:
        self.stream = stream
        self.label = label
        self.chunks: list[Chunk] = []
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        try:
            for chunk in self.stream:
                self.chunks.append(chunk)
        except BaseException as err:
            self.error = err

    def join(self) -> None:
        self.thread.join(WAIT_S)
        assert not self.thread.is_alive()


class Passes:
    """A forward pre-hook on the model: the (batch, tokens) shape of every forward pass, and actions run before
    chosen passes (numbered from 1), so that replies join at exactly the steps a test picks."""

    def __init__(self, lm: Any) -> None:
        self.shapes: list[tuple[int, int]] = []
        self.before: dict[int, Callable[[], None]] = {}
        self.fail_when: Callable[[tuple[int, int]], bool] | None = None
        self._handle = lm.register_forward_pre_hook(self._hook, with_kwargs=True)

    def _hook(self, module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        ids = kwargs["input_ids"] if "input_ids" in kwargs else args[0]
        shape = (int(ids.shape[0]), int(ids.shape[1]))
        if self.fail_when is not None and self.fail_when(shape):
            raise RuntimeError("CUDA out of memory (simulated)")
        self.shapes.append(shape)
        if action := self.before.pop(len(self.shapes), None):
            action()

    def decode_batches(self) -> list[int]:
        """The batch size of each decode pass (one new token per row), runs of equal sizes collapsed."""
        runs: list[int] = []
        for batch, tokens in self.shapes:
            if tokens == 1 and (not runs or runs[-1] != batch):
                runs.append(batch)
        return runs

    def remove(self) -> None:
        self._handle.remove()


@pytest.fixture(scope="module")
def batched(tiny_r1_gptq_dir: Path) -> Iterator[TransformersTextBackend]:
    """The tiny GPTQ model loaded a second time, with continuous batching of up to MAX_BATCH replies."""
    backend = TransformersTextBackend(str(tiny_r1_gptq_dir), device="cpu", max_batch=MAX_BATCH)
    backend.load(lambda phase: None)
    yield backend
    backend.unload()


@pytest.fixture
def passes(batched: TransformersTextBackend) -> Iterator[Passes]:
    watcher = Passes(batched.lm)
    yield watcher
    watcher.remove()
    wait_until(lambda: not engine_threads())  # the engine always winds down between tests


def start_when_queued(batched: TransformersTextBackend, consumers: list[Consumer], text: str,
                      **options: Any) -> Callable[[], None]:
    """An action for Passes.before: start a reply and wait until it waits for a row, so it joins at the next
    step for certain (the engine thread runs the action, so the reply cannot slip in any later)."""

    def action() -> None:
        engine = batched._engine
        assert engine is not None
        queued = engine.waiting
        consumers.append(Consumer(batched.stream(chat(text), TextOptions(**options), threading.Event()), text))
        wait_until(lambda: engine.waiting > queued)

    return action


# --- the same tokens as alone --------------------------------------------------------------------------


def test_concurrent_greedy_chats_match_each_run_alone_and_join_and_leave_between_steps(
    tiny_text_backend: TransformersTextBackend, batched: TransformersTextBackend, passes: Passes
) -> None:
    lengths = [60, 50, 40, 30]  # each later reply is shorter, so they leave in the reverse order they joined
    expected = {text: alone(tiny_text_backend, text, max_new_tokens=n, **GREEDY)
                for text, n in zip(PROMPTS, lengths, strict=True)}
    consumers: list[Consumer] = []
    # The first reply starts alone; the others join at three different later steps.
    for at, text, n in zip((5, 12, 20), PROMPTS[1:], lengths[1:], strict=True):
        passes.before[at] = start_when_queued(batched, consumers, text, max_new_tokens=n, **GREEDY)
    first = batched.stream(chat(PROMPTS[0]), TextOptions(max_new_tokens=lengths[0], **GREEDY), threading.Event())
    consumers.append(Consumer(first, PROMPTS[0]))
    wait_until(lambda: len(consumers) == 4)
    for consumer in consumers:
        consumer.join()
    for consumer in consumers:
        reference, reference_chunks = expected[consumer.label]
        assert consumer.error is None
        assert consumer.stream.token_ids == reference.token_ids
        assert texts(consumer.chunks) == texts(reference_chunks)
        assert consumer.stream.usage == reference.usage
    assert {c.label for c in consumers} == set(PROMPTS)
    # Rows joined between steps (1 → 4) and left as they finished (4 → 1): the forward passes really were shared.
    assert passes.decode_batches() == [1, 2, 3, 4, 3, 2, 1]
    prefills = [shape for shape in passes.shapes if shape[1] > 1]
    assert [batch for batch, _ in prefills] == [1, 1, 1, 1]  # each prompt ran alone, once
    assert not batched._engine.holds_tensors()


def run_together(batched: TransformersTextBackend, requests: list[tuple[str, dict[str, Any]]]) -> list[Consumer]:
    """Start every reply at once (each in its own consumer thread) and read them all to the end."""
    consumers = [Consumer(batched.stream(chat(text), TextOptions(**options), threading.Event()), text)
                 for text, options in requests]
    for consumer in consumers:
        consumer.join()
        assert consumer.error is None
    return consumers


def test_budgets_and_token_limits_are_per_reply(tiny_text_backend: TransformersTextBackend,
                                                batched: TransformersTextBackend, passes: Passes) -> None:
    close_id = tiny_text_backend.tokenizer.convert_tokens_to_ids(THINK_CLOSE)
    requests = [(PROMPTS[0], {"thinking_budget": 3, "max_new_tokens": 24, **GREEDY}),
                (PROMPTS[1], {"thinking_budget": 7, "max_new_tokens": 30, **GREEDY}),
                (PROMPTS[2], {"max_new_tokens": 12, **GREEDY}),
                (PROMPTS[3], {"thinking_budget": 5, "max_new_tokens": 40, "temperature": 1.5, "seed": 3})]
    together = run_together(batched, requests)
    assert max(batch for batch, _ in passes.shapes) == 4  # they did share forward passes
    for consumer, (text, options) in zip(together, requests, strict=True):
        reference, chunks = alone(tiny_text_backend, text, **options)
        stream = consumer.stream
        assert stream.token_ids == reference.token_ids
        assert texts(consumer.chunks) == texts(chunks)
        assert stream.usage == reference.usage
        assert stream.usage.completion_tokens == len(stream.token_ids) <= options["max_new_tokens"]
        if "thinking_budget" in options:
            assert stream.usage.reasoning_tokens <= options["thinking_budget"]
            assert close_id in stream.token_ids
        else:
            assert close_id not in stream.token_ids  # left alone, this greedy reply never stops thinking
    first = together[0].stream
    assert first.token_ids[3] == close_id
    assert first.usage.reasoning_tokens == 3
    assert together[2].stream.usage.finish_reason == "length"


def test_a_seeded_reply_samples_the_same_tokens_batched_as_alone(batched: TransformersTextBackend,
                                                                passes: Passes) -> None:
    requests = [(PROMPTS[0], {"seed": 11, "temperature": 1.0, "max_new_tokens": 40}),
                (PROMPTS[1], {"seed": 12, "temperature": 0.6, "top_p": 0.9, "max_new_tokens": 35}),
                (PROMPTS[2], {"max_new_tokens": 30, **GREEDY}),
                (PROMPTS[0], {"seed": 11, "temperature": 1.0, "max_new_tokens": 40})]
    together = run_together(batched, requests)
    assert max(batch for batch, _ in passes.shapes) == 4
    for consumer, (text, options) in zip(together, requests, strict=True):
        reference, chunks = alone(batched, text, **options)  # through the engine too, as its only row
        assert consumer.stream.token_ids == reference.token_ids
        assert consumer.chunks == chunks
    # The same seed in two rows of one batch: each row has its own generator, so both draw the same tokens.
    assert together[0].stream.token_ids == together[3].stream.token_ids
    other, _ = alone(batched, PROMPTS[0], seed=13, temperature=1.0, max_new_tokens=40)
    assert other.token_ids != together[0].stream.token_ids


def test_unseeded_replies_differ(batched: TransformersTextBackend, passes: Passes) -> None:
    requests = [(PROMPTS[0], {"temperature": 1.5, "top_p": 1.0, "max_new_tokens": 30})] * 2
    first, second = run_together(batched, requests)
    assert first.stream.token_ids != second.stream.token_ids


# --- Stop, abandoned streams, errors --------------------------------------------------------------------


def test_stop_on_one_reply_leaves_the_others_running(tiny_text_backend: TransformersTextBackend,
                                                     batched: TransformersTextBackend, passes: Passes) -> None:
    expected = {text: alone(tiny_text_backend, text, max_new_tokens=80, **GREEDY)[0] for text in PROMPTS[:3]}
    stop = threading.Event()
    options = TextOptions(max_new_tokens=80, **GREEDY)
    stopped = batched.stream(chat(PROMPTS[1]), options, stop)
    others = [Consumer(batched.stream(chat(text), options, threading.Event()), text) for text in (PROMPTS[0],
                                                                                               PROMPTS[2])]
    first = next(stopped)
    # The three replies join the batch as their threads get to it (on a busy machine a pass or two apart): stop
    # the one only once all three decode together.
    wait_until(lambda: batched._engine is not None and batched._engine.rows == 3)
    stop.set()
    at_stop = stopped.usage.completion_tokens
    rest = list(stopped)  # ends normally, keeping the partial text
    assert first.kind == "reasoning"
    assert all(c.text for c in rest)
    assert stopped.usage.finish_reason == "cancelled"
    assert stopped.usage.completion_tokens <= at_stop + 2  # within a token (one more may be in flight)
    assert stopped.token_ids == expected[PROMPTS[1]].token_ids[: len(stopped.token_ids)]
    assert len(stopped.token_ids) < 80
    for consumer in others:
        consumer.join()
        assert consumer.error is None
        assert consumer.stream.token_ids == expected[consumer.label].token_ids
        assert consumer.stream.usage.finish_reason == "length"
    batches = passes.decode_batches()
    assert 3 in batches, batches
    assert batches[batches.index(3) + 1] == 2, batches  # the stopped row left; the other two went on together


@pytest.mark.parametrize("how", ["close", "drop"])
def test_an_abandoned_stream_frees_its_row(batched: TransformersTextBackend, passes: Passes, how: str) -> None:
    keeper = Consumer(batched.stream(chat(PROMPTS[0]), TextOptions(max_new_tokens=120, **GREEDY),
                                     threading.Event()))
    abandoned = batched.stream(chat(PROMPTS[1]), TextOptions(max_new_tokens=120, **GREEDY), threading.Event())
    usage = abandoned.usage
    next(abandoned)
    wait_until(lambda: batched._engine is not None and batched._engine.rows == 2)
    if how == "close":
        abandoned.close()
    else:
        del abandoned  # the generator's finally block runs when the last reference goes
    assert batched._engine.rows == 1  # gone before close() returned
    assert usage.finish_reason == "cancelled"
    assert usage.completion_tokens < 120
    seen = len(passes.shapes)
    keeper.join()
    assert keeper.stream.usage.completion_tokens == 120
    assert {batch for batch, _ in passes.shapes[seen:]} == {1}  # the rest ran as a batch of one


def test_a_stream_the_engine_thread_collects_does_not_stall_it(batched: TransformersTextBackend,
                                                                passes: Passes) -> None:
    stream = batched.stream(chat(PROMPTS[0]), TextOptions(max_new_tokens=200, **GREEDY), threading.Event())
    stream.cycle = stream  # type: ignore[attr-defined]  # only the cyclic collector can free it
    usage = stream.usage
    collected_in: list[str] = []
    weakref.finalize(stream, lambda: collected_in.append(threading.current_thread().name))
    gc.disable()  # so that the collection happens where the test puts it: in the engine thread
    try:
        next(stream)
        passes.before[len(passes.shapes) + 2] = gc.collect
        del stream
        wait_until(lambda: not engine_threads())
    finally:
        gc.enable()
    assert collected_in == [ENGINE_NAME]
    assert usage.finish_reason == "cancelled"
    assert usage.completion_tokens < 200


def test_a_reply_waiting_for_a_row_stops_without_one(tiny_r1_gptq_dir: Path) -> None:
    backend = TransformersTextBackend(str(tiny_r1_gptq_dir), device="cpu", max_batch=2)
    backend.load(lambda phase: None)
    try:
        options = TextOptions(max_new_tokens=2000, **GREEDY)
        running_stops = [threading.Event(), threading.Event()]
        running = [Consumer(backend.stream(chat(text), options, stop))
                   for text, stop in zip(PROMPTS[:2], running_stops, strict=True)]
        wait_until(lambda: backend._engine is not None and backend._engine.rows == 2)
        queued_stop = threading.Event()
        queued = [Consumer(backend.stream(chat(text), options, queued_stop)) for text in PROMPTS[2:]]
        wait_until(lambda: backend._engine.waiting == 2)
        queued_stop.set()
        for consumer in queued:
            consumer.join()  # ended without a row: both rows are still busy with 2000-token replies
            assert consumer.error is None
            assert consumer.stream.usage.finish_reason == "cancelled"
            assert consumer.stream.usage.completion_tokens == 0
            assert consumer.stream.token_ids == []
            assert consumer.chunks == []
        assert backend._engine.rows == 2
        assert all(consumer.thread.is_alive() for consumer in running)
        for stop in running_stops:
            stop.set()
        for consumer in running:
            consumer.join()
            assert consumer.stream.usage.finish_reason == "cancelled"
    finally:
        backend.unload()


def test_stop_set_before_the_reply_generates_nothing(batched: TransformersTextBackend) -> None:
    stop = threading.Event()
    stop.set()
    stream = batched.stream(chat(PROMPTS[0]), TextOptions(), stop)
    assert list(stream) == []
    assert stream.usage.completion_tokens == 0
    assert stream.usage.finish_reason == "cancelled"
    assert not engine_threads()


def test_an_error_in_the_forward_pass_reaches_every_consumer(batched: TransformersTextBackend,
                                                             passes: Passes) -> None:
    passes.fail_when = lambda shape: shape[0] > 1  # the shared decode pass fails, the prefills work
    consumers = [Consumer(batched.stream(chat(text), TextOptions(max_new_tokens=50, **GREEDY), threading.Event()))
                 for text in PROMPTS]
    for consumer in consumers:
        consumer.join()
        assert isinstance(consumer.error, RuntimeError)
        assert "simulated" in str(consumer.error)
    wait_until(lambda: not engine_threads())
    assert not batched._engine.holds_tensors()
    passes.fail_when = None
    stream, _ = alone(batched, PROMPTS[0], max_new_tokens=5, **GREEDY)  # the engine serves the next reply
    assert stream.usage.completion_tokens == 5


def test_unload_ends_the_engine_and_its_replies(tiny_r1_gptq_dir: Path) -> None:
    backend = TransformersTextBackend(str(tiny_r1_gptq_dir), device="cpu", max_batch=2)
    backend.load(lambda phase: None)
    consumer = Consumer(backend.stream(chat(PROMPTS[0]), TextOptions(max_new_tokens=2000, **GREEDY),
                                      threading.Event()))
    wait_until(lambda: backend._engine is not None and backend._engine.rows == 1)
    backend.unload()
    consumer.join()
    assert isinstance(consumer.error, EngineClosed)
    assert not engine_threads()
    assert backend._engine is None
    backend.load(lambda phase: None)  # a new model gets a new engine
    stream, _ = alone(backend, PROMPTS[0], max_new_tokens=3, **GREEDY)
    assert stream.usage.completion_tokens == 3
    backend.unload()


def test_max_batch_must_be_positive(tiny_r1_gptq_dir: Path) -> None:
    with pytest.raises(ValueError, match="max_batch must be at least 1"):
        TransformersTextBackend(str(tiny_r1_gptq_dir), max_batch=0)
