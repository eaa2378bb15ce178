"""One reply of the in-process text backend, whichever way it runs: by its own generate() in a worker thread feeding a
TextIteratorStreamer, or by the continuous-batching engine (pipelines/text_batching.py) beside other replies. A
stopping criterion watches the stop event (so the model stops within one token), counts tokens and follows the
reasoning; a logits processor forces ``</think>`` once the thinking budget is spent; the worker is always joined,
also when the caller abandons the stream."""

from __future__ import annotations

import logging
import queue
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from typing import Any

import torch
from transformers import LogitsProcessor, StoppingCriteria, TextIteratorStreamer, TextStreamer

from contracts import TextOptions
from pipelines.reasoning import Chunk, ReasoningSplitter
from pipelines.text_base import ChunkStream, FinishReason, TextUsage
from pipelines.text_batching import ERROR, TOKEN, BatchEngine, DecodeRequest

log = logging.getLogger(__name__)

# How often a waiting consumer checks that the worker is still alive; a real wait for a token is longer
# than this only when the model is slow, and then the consumer just waits again.
POLL_S = 0.25
WORKER_NAME = "atelier-text-generate"
# After the consumer has taken text, it lets this long pass (less when generation ends) and then takes everything the
# model wrote meanwhile at once: one wake-up of its thread, one feed of the splitter and one update of the reply per
# few tokens instead of per word, each of which took the GIL from the model's thread (a small model writes a token
# a millisecond). Watchers look at most every 20 ms (the UI's poll, the API's coalescing), so nobody sees the
# difference; the first visible text still goes out at once.
COALESCE_S = 0.005


class ReplyProgress(StoppingCriteria):
    """Called after every generated token: counts tokens, follows the reasoning, and stops on request."""

    def __init__(
        self,
        prompt_len: int,
        usage: TextUsage,
        should_stop: Callable[[], bool],
        starts_in_reasoning: bool,
        open_id: int | None,
        close_id: int | None,
        eos_ids: set[int],
    ) -> None:
        self.prompt_len = prompt_len
        self.usage = usage
        self.should_stop = should_stop
        self.in_reasoning = starts_in_reasoning
        self.open_id = open_id
        self.close_id = close_id
        self.eos_ids = eos_ids
        self.last_token: int | None = None
        self.cancelled = False

    def __call__(
        self, input_ids: torch.LongTensor, scores: torch.FloatTensor | None, **kwargs: Any
    ) -> torch.BoolTensor:
        """Record the newest token; return True (stop) once the stop signal is set."""
        generated = input_ids.shape[1] - self.prompt_len
        token = int(input_ids[0, -1])
        self.usage.completion_tokens = generated
        self.last_token = token
        if generated == 1 and not self.in_reasoning and token == self.open_id:
            # A model whose template does not open the reasoning may open it itself, first thing.
            self.in_reasoning = True
        elif self.in_reasoning:
            if token == self.close_id:
                self.in_reasoning = False
            elif token not in self.eos_ids:
                self.usage.reasoning_tokens += 1
        stop = self.should_stop()
        if stop:
            self.cancelled = True
        return torch.full((input_ids.shape[0],), stop, dtype=torch.bool, device=input_ids.device)


class ThinkingBudget(LogitsProcessor):
    """Forces ``</think>`` as the next token once the reasoning has used up its budget."""

    def __init__(self, progress: ReplyProgress, budget: int, close_id: int) -> None:
        self.progress = progress
        self.budget = budget
        self.close_id = close_id

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        """Leave the scores alone, or allow only the closing tag once the budget is spent."""
        # Runs before each token; ReplyProgress has seen every token generated so far, so its count is current.
        if self.progress.in_reasoning and self.progress.usage.reasoning_tokens >= self.budget:
            forced = torch.full_like(scores, float("-inf"))
            forced[:, self.close_id] = 0.0
            return forced
        return scores


class SuppressRows(LogitsProcessor):
    """Never samples the given vocabulary rows: what generate()'s ``suppress_tokens`` does, for a fraction of its cost.

    transformers' processor rebuilds a vocabulary-wide mask with isin() on every token (about 30 µs on a CPU, 3 % of a
    small model's token); here the rows' index is built once per device and filled in one index_fill."""

    def __init__(self, token_ids: list[int]) -> None:
        self.token_ids = torch.tensor(sorted(set(token_ids)), dtype=torch.long)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        """The scores with the rows at -inf (a new tensor, as transformers' own processors return)."""
        if self.token_ids.device != scores.device:
            self.token_ids = self.token_ids.to(scores.device)
        return scores.index_fill(-1, self.token_ids, float("-inf"))


class Reply(ABC):
    """What one reply keeps whichever way it runs: usage, progress, thinking budget, splitter and the end.

    Shared by the thread that generates and the chunk generator, never by the stream object, so that dropping
    the stream frees it and its generator's cleanup stops the generation."""

    def __init__(
        self,
        inputs: dict[str, torch.Tensor],
        generation_config: Any,
        options: TextOptions,
        stop: threading.Event,
        starts_in_reasoning: bool,
        think_ids: tuple[int | None, int | None],
        on_done: Callable[[], None],
        suppress: list[int] | None = None,
    ) -> None:
        self.inputs = inputs
        self.generation_config = generation_config
        self.seed = options.seed
        self.stop = stop
        self.on_done = on_done
        prompt_len = int(inputs["input_ids"].shape[1])
        self.usage = TextUsage(prompt_tokens=prompt_len)
        self.token_ids: list[int] = []
        # Set when the consumer goes away, so the worker stops even though the caller's event is not set.
        self.abandoned = threading.Event()
        self.error: BaseException | None = None
        eos = generation_config.eos_token_id
        eos_ids = set(eos if isinstance(eos, list) else [] if eos is None else [eos])
        open_id, close_id = think_ids
        self.progress = ReplyProgress(
            prompt_len, self.usage, self.should_stop, starts_in_reasoning, open_id, close_id, eos_ids
        )
        # Run after generate()'s own processors and before its sampling warpers, where suppress_tokens would run.
        self.processors: list[LogitsProcessor] = [SuppressRows(suppress)] if suppress else []
        if options.thinking_budget is not None and close_id is not None:
            self.processors.append(ThinkingBudget(self.progress, options.thinking_budget, close_id))
        self.splitter = ReasoningSplitter(starts_in_reasoning=starts_in_reasoning)
        self.finished = False

    def should_stop(self) -> bool:
        return self.stop.is_set() or self.abandoned.is_set()

    @abstractmethod
    def ran(self) -> bool:
        """Whether the model was started on this reply at all."""

    def release(self) -> None:
        """Let go of what the reply's runner holds once it has ended."""
        self.inputs = {}

    def finish(self) -> None:
        """Settle the usage report once the reply has ended (or never started); release memory once."""
        if self.finished:
            return
        self.finished = True
        self.usage.finish_reason = self.finish_reason()
        # Let go of the prompt tensors and the model now, not whenever the caller drops the stream: a caller
        # that keeps a finished stream must not keep an unloaded model alive.
        self.release()
        self.on_done()

    def finish_reason(self) -> FinishReason:
        progress = self.progress
        if progress.cancelled or not self.ran():
            return "cancelled"  # stopped by the caller, abandoned, or never started
        if progress.last_token is not None and progress.last_token in progress.eos_ids:
            return "stop"
        if self.usage.completion_tokens >= (self.generation_config.max_new_tokens or 0):
            return "length"
        return "stop"


class DrainingStreamer(TextIteratorStreamer):
    """A TextIteratorStreamer whose consumer can also take, without waiting, all the text already written."""

    def ready(self) -> tuple[list[str], bool]:
        """The texts queued now, and whether the end of the stream came among them."""
        texts: list[str] = []
        while True:
            try:
                text = self.text_queue.get_nowait()
            except queue.Empty:
                return texts, False
            if text is self.stop_signal:
                return texts, True
            texts.append(text)


class GenerateReply(Reply):
    """One reply run by generate() in a worker thread of its own."""

    def __init__(self, model: Any, tokenizer: Any, **reply: Any) -> None:
        super().__init__(**reply)
        self.model = model
        # skip_special_tokens drops eos and the chat markers; <think>/</think> are ordinary tokens in R1, so
        # they reach the splitter. The timeout only bounds each wait, see chunks().
        self.streamer = DrainingStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True, timeout=POLL_S)
        self.thread = threading.Thread(target=self.work, name=WORKER_NAME, daemon=True)
        self.generated = threading.Event()  # set when generate() has returned (or failed): no more text comes

    def ran(self) -> bool:
        return bool(self.thread.ident)

    def release(self) -> None:
        super().release()
        self.model = None

    def work(self) -> None:
        """Worker thread: run generate(); any error is kept for the consumer, who re-raises it."""
        try:
            if self.seed is not None:
                # Sampling draws from torch's global generator; generate() takes no generator of its own.
                torch.manual_seed(self.seed)
            with torch.inference_mode():
                output = self.model.generate(
                    **self.inputs,
                    generation_config=self.generation_config,
                    streamer=self.streamer,
                    stopping_criteria=[self.progress],
                    logits_processor=self.processors,
                )
            self.token_ids = output[0, self.usage.prompt_tokens :].tolist()
            del output
        except BaseException as err:  # handed to the consumer thread, which raises it
            self.error = err
            try:
                self.streamer.end()  # wake the consumer now instead of after its next poll
            except Exception:  # the consumer notices the dead worker on its next poll anyway
                log.debug("streamer.end() failed after a generation error", exc_info=True)
        finally:
            self.generated.set()

    def chunks(self) -> Iterator[Chunk]:
        """Reasoning/answer chunks as the worker produces them; the finally block always joins the worker."""
        if self.stop.is_set():
            # Stopped before it began: no token is generated at all.
            self.finish()
            return
        self.thread.start()
        try:
            while True:
                try:
                    text = next(self.streamer)
                except StopIteration:
                    break
                except queue.Empty:
                    if self.thread.is_alive():
                        continue
                    break  # the worker died without ending the stream: its error is raised below
                more, ended = self.streamer.ready()
                chunks = self.splitter.feed("".join([text, *more]))
                yield from chunks
                if ended:
                    break
                if any(chunk.text.strip() for chunk in chunks):
                    # Let a few tokens gather (see COALESCE_S); not before the first visible text has gone out.
                    self.generated.wait(COALESCE_S)
            self.thread.join()
            self.finish()
            yield from self.splitter.finish()
        finally:
            # Reached at the end, on close(), when the stream is garbage-collected mid-way, or on error.
            self.abandoned.set()
            self.thread.join()
            self.finish()
        if self.error is not None:
            raise self.error


class Detokenizer(TextStreamer):
    """Turns token ids into text exactly as the generate() path's TextIteratorStreamer does, word by word."""

    def __init__(self, tokenizer: Any) -> None:
        super().__init__(tokenizer, skip_prompt=False, skip_special_tokens=True)
        self.pending: list[str] = []

    def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
        """Keep the text for the consumer instead of printing it."""
        if text:
            self.pending.append(text)

    def take(self) -> list[str]:
        """The text finalized since the last call."""
        pending, self.pending = self.pending, []
        return pending


class BatchedReply(Reply):
    """One reply run by the continuous-batching engine, next to other replies in the same forward passes."""

    def __init__(self, engine: BatchEngine, tokenizer: Any, **reply: Any) -> None:
        super().__init__(**reply)
        self.engine: BatchEngine | None = engine
        # Decoded here, in the consumer's thread, so the engine thread only runs the model.
        self.detokenizer = Detokenizer(tokenizer)
        self.request = DecodeRequest(
            self.inputs["input_ids"], self.generation_config, self.progress, self.processors, self.should_stop,
            self.seed,
        )

    def ran(self) -> bool:
        return self.request.admitted

    def release(self) -> None:
        super().release()
        self.engine = None
        self.request.input_ids = torch.empty(0)

    def chunks(self) -> Iterator[Chunk]:
        """Reasoning/answer chunks as the engine produces tokens; the finally block waits until the engine has
        let go of the request, so a closed stream's row is free when close() returns."""
        engine = self.engine
        if self.stop.is_set() or engine is None:
            self.finish()  # stopped before it began: no token is generated at all
            return
        try:
            engine.submit(self.request)  # EngineClosed when the model was unloaded since this stream was made
            while True:
                try:
                    kind, value = self.request.events.get(timeout=POLL_S)
                except queue.Empty:
                    if self.should_stop():
                        engine.withdraw(self.request)  # still waiting for a row: it ends now, not when one frees
                    if self._engine_lost(engine):
                        raise RuntimeError("the text batching engine stopped without ending this reply") from None
                    continue
                if kind == TOKEN:
                    self.detokenizer.put(torch.tensor([value]))
                    for text in self.detokenizer.take():
                        yield from self.splitter.feed(text)
                    continue
                if kind == ERROR:
                    self.error = value
                break
            self.detokenizer.end()
            for text in self.detokenizer.take():
                yield from self.splitter.feed(text)
            self.token_ids = list(self.request.token_ids)
            if self.error is None:
                self.finish()
                yield from self.splitter.finish()
        finally:
            # Reached at the end, on close(), when the stream is garbage-collected mid-way, or on error.
            self.abandoned.set()
            engine.withdraw(self.request)
            # A stream in a reference cycle may be collected by the engine's own thread, which must not wait for
            # itself: there the row just leaves at the end of the step, as Stop makes it.
            while (threading.current_thread() is not engine.thread and not self.request.done.wait(POLL_S)
                   and not self._engine_lost(engine)):
                pass
            if not self.request.done.is_set():
                self.progress.cancelled = True  # it leaves at the end of the step, abandoned
            self.token_ids = list(self.request.token_ids)
            self.finish()
        if self.error is not None:
            raise self.error

    def _engine_lost(self, engine: BatchEngine) -> bool:
        """The engine thread is gone while this request is still open (it never leaves one open on purpose)."""
        return not self.request.done.is_set() and engine.thread is None


class TransformersTextStream(ChunkStream):
    """One reply: iterate it for reasoning/answer chunks; ``usage`` counts grow live and are final at the end.

    Generation starts with the first next(). Setting the stop event ends the iteration normally with
    finish_reason "cancelled"; close(), leaving a ``with`` block or dropping the stream stops it too.
    """

    def __init__(self, generation: Reply) -> None:
        self._generation = generation
        super().__init__(generation.usage, generation.chunks())

    @property
    def token_ids(self) -> list[int]:
        """The generated ids (prompt excluded), once the reply has ended: for diagnostics and tests."""
        return self._generation.token_ids

    def close(self) -> None:
        """Stop generating, join the worker and release memory; safe to call more than once."""
        super().close()
        # A generator closed before its first next() never ran, so its finally block did not either.
        self._generation.finish()
