"""Continuous batching for one loaded causal LM: concurrent replies share every decode forward pass.

One background thread runs the loop. A reply is submitted as a ``DecodeRequest``; between two decode steps the
thread takes waiting requests (up to ``max_batch`` rows), prefills each alone (so its first token is exactly what
``generate()`` would pick), and merges its KV rows into the running batch: a left-padded ``DynamicCache`` with an
attention mask and per-row position ids. Each step then runs one forward pass for all rows; every row picks its
token with its own logits processors (the very list ``generate()`` builds from the reply's generation config:
suppressed tokens, temperature, top-k, top-p, plus the caller's own processors such as a thinking budget) and its
own ``torch.Generator`` (seeded from the reply's seed, else random), then its own stopping criterion decides
whether it goes on. Rows that end (eos, max_new_tokens, Stop, an abandoned consumer) leave the batch at once
(``batch_select_indices``), and padding no row needs any more is cut off the left. With no request left the
thread exits, and the engine holds no tensor.

Why not transformers' ``ContinuousBatchingManager`` (5.23, ``generation/continuous_batching/``), which was read
for this: it cannot carry what a reply here needs.

- Seeds: it samples with ``torch.multinomial`` from the process-wide generator, seeded once when the manager
  starts; there is no per-request generator, so a seeded reply could not reproduce.
- Greedy next to sampled: ``do_sample`` is one flag for the whole manager, so a temperature-0 reply and a
  sampled one cannot share a batch.
- Thinking budget: logits processors are one list for all requests; only temperature, top-k and top-p have
  per-request versions (``cb_logits_processors.py``). A processor that reads one reply's own reasoning count
  (``_ThinkingBudget``) has no place, and no per-request stopping criterion either (the reasoning and token
  counts ``_Progress`` keeps live).
- It switches the shared model to paged attention and sizes a paged KV cache from free memory up front; with
  gptqmodel's kernels and the CPU that path is untested, while the loop below only calls the model's ordinary
  forward with a ``DynamicCache``.

What it costs: prefill is one request at a time (a long prompt holds the batch for its prefill), and a joining
row pads the cache to the longest row. Models whose cache is not a plain ``DynamicCache`` (sliding-window or
linear-attention layers) are refused by ``supports()``; the backend then keeps one reply per ``generate()``.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

import torch
from transformers import DynamicCache, LogitsProcessor, LogitsProcessorList, StoppingCriteria
from transformers.cache_utils import DynamicLayer

log = logging.getLogger(__name__)

ENGINE_NAME = "atelier-text-batch"
TOKEN, END, ERROR = "token", "end", "error"


class EngineClosed(RuntimeError):
    """The engine was stopped (the model was unloaded or offloaded) before the reply could finish."""


def supports(model: Any) -> bool:
    """Whether the model's KV cache is one full-attention ``DynamicLayer`` per layer, which the loop batches."""
    config = model.config
    if getattr(config, "use_sliding_window", False) and getattr(config, "sliding_window", None):
        return False
    return all(kind == "full_attention" for kind in getattr(config, "layer_types", None) or ["full_attention"])


class DecodeRequest:
    """One reply for the engine; the consumer reads ``events``: (TOKEN, id) per token, then (END, None) or
    (ERROR, exception). ``done`` is set once the engine has let go of the request."""

    def __init__(
        self,
        input_ids: torch.Tensor,
        generation_config: Any,
        stopping: StoppingCriteria,
        logits_processors: list[LogitsProcessor],
        should_stop: Callable[[], bool],
        seed: int | None,
    ) -> None:
        self.input_ids = input_ids  # [1, prompt_len] on the model's device
        self.generation_config = generation_config
        self.stopping = stopping  # called after every token, as generate() calls its stopping criteria
        self.logits_processors = logits_processors
        self.should_stop = should_stop  # checked before the prefill, for a request stopped while it waited
        self.seed = seed
        self.events: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
        self.token_ids: list[int] = []
        self.done = threading.Event()
        self.admitted = False  # prefilled: it took part in at least one forward pass

    def end(self, error: BaseException | None = None) -> None:
        """Tell the consumer the reply is over (with the error that ended it, if any); only the first call counts."""
        if self.done.is_set():
            return
        self.events.put((ERROR, error) if error is not None else (END, None))
        self.done.set()


class _Row:
    """A request in the running batch: its ids so far, processors, generator and where it stands."""

    def __init__(self, request: DecodeRequest, model: Any) -> None:
        self.request = request
        self.ids = request.input_ids
        device = self.ids.device
        # The processors generate() itself would use for this config (the same warpers, in the same order, with
        # generate()'s defaults filled in), so a batched reply samples from exactly the distribution it would alone.
        config, _ = model._prepare_generation_config(request.generation_config)
        model._prepare_special_tokens(config, None, device=device)
        self.processors: LogitsProcessorList = model._get_logits_processor(
            generation_config=config, input_ids_seq_length=self.ids.shape[1], encoder_input_ids=self.ids,
            logits_processor=LogitsProcessorList(request.logits_processors), device=device,
        )
        self.do_sample = bool(config.do_sample)
        eos = config.eos_token_id
        self.eos_ids = set(eos if isinstance(eos, list) else [] if eos is None else [eos])
        self.max_new_tokens = int(config.max_new_tokens)
        self.generator = torch.Generator(device=device)
        if request.seed is None:
            self.generator.seed()
        else:
            self.generator.manual_seed(request.seed)
        self.position = int(self.ids.shape[1])  # the position id of the next token fed to the model
        self.last: int | None = None  # the newest token, not yet in the cache

    def choose(self, logits: torch.Tensor) -> torch.Tensor:
        """This row's next token from its [1, vocab] logits, as generate() picks it (a 0-dim tensor)."""
        scores = self.processors(self.ids, logits)
        if self.do_sample:
            probs = torch.nn.functional.softmax(scores, dim=-1)
            token = torch.multinomial(probs, num_samples=1, generator=self.generator)[0, 0]
        else:
            token = torch.argmax(scores, dim=-1)[0]
        self.ids = torch.cat([self.ids, token.view(1, 1)], dim=-1)
        return token

    def record(self, token: int) -> bool:
        """Hand the token to the consumer; return whether the row goes on."""
        request = self.request
        request.token_ids.append(token)
        self.last = token
        stop = bool(request.stopping(self.ids, None).any())  # counts tokens and reasoning, notices Stop
        request.events.put((TOKEN, token))
        return not (stop or token in self.eos_ids or len(request.token_ids) >= self.max_new_tokens)


class BatchEngine:
    """Continuous batching for one model: ``submit()`` replies from any thread; they share forward passes."""

    def __init__(self, model: Any, max_batch: int) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch}")
        self.model = model
        self.max_batch = max_batch
        self._lock = threading.Lock()
        self._waiting: deque[DecodeRequest] = deque()
        self._thread: threading.Thread | None = None
        self._closed = False
        # The running batch; touched only by the engine thread.
        self._rows: list[_Row] = []
        self._cache: DynamicCache | None = None
        self._mask: torch.Tensor | None = None

    @property
    def thread(self) -> threading.Thread | None:
        """The loop's thread while it runs (None when idle)."""
        return self._thread

    @property
    def waiting(self) -> int:
        """Replies submitted that have no row yet."""
        with self._lock:
            return len(self._waiting)

    @property
    def rows(self) -> int:
        """Replies in the running batch."""
        return len(self._rows)

    def holds_tensors(self) -> bool:
        """Whether the engine keeps a KV cache or a mask (never while it is idle)."""
        return self._cache is not None or self._mask is not None

    def submit(self, request: DecodeRequest) -> None:
        """Queue a reply; it joins the batch between two steps. EngineClosed once close() was called."""
        with self._lock:
            if self._closed:
                raise EngineClosed("the text model was unloaded: load it again to reply")
            self._waiting.append(request)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=ENGINE_NAME, daemon=True)
                self._thread.start()

    def withdraw(self, request: DecodeRequest) -> None:
        """Drop a reply that still waits for a row (a running one leaves after the current step on its own)."""
        with self._lock:
            if request in self._waiting:
                self._waiting.remove(request)
                request.end()

    def close(self) -> None:
        """Refuse new replies, end every waiting and running one with EngineClosed, and join the thread."""
        with self._lock:
            self._closed = True
            waiting, self._waiting = list(self._waiting), deque()
            thread = self._thread
        for request in waiting:
            request.end(EngineClosed("the text model was unloaded before this reply started"))
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    # The loop ---------------------------------------------------------------------------------------
    def _run(self) -> None:
        """The engine thread: admit, step, repeat; exit when nothing is left to do."""
        try:
            with torch.inference_mode():
                while True:
                    self._admit()
                    if self._closed and self._rows:
                        self._fail_rows(EngineClosed("the text model was unloaded while this reply was generated"))
                    if not self._rows:
                        with self._lock:
                            if self._closed or not self._waiting:
                                self._thread = None
                                return
                        continue
                    try:
                        self._step()
                    except Exception as err:  # every reply in the batch shares the failed forward pass
                        log.exception("a batched decode step failed")
                        self._fail_rows(err)
        except BaseException as err:  # a bug in the loop itself: nobody may wait forever
            log.exception("the text batching loop died")
            self._fail_rows(err)
            with self._lock:
                waiting, self._waiting, self._thread = list(self._waiting), deque(), None
            for request in waiting:
                request.end(err)

    def _admit(self) -> None:
        """Prefill waiting requests into free rows."""
        while len(self._rows) < self.max_batch:
            with self._lock:
                if self._closed or not self._waiting:
                    return
                request = self._waiting.popleft()
            if request.should_stop():
                request.end()  # stopped or abandoned while it waited: no token at all
                continue
            try:
                self._prefill(request)
            except Exception as err:  # this request's own forward pass failed; the batch goes on
                log.exception("a prefill failed")
                request.end(err)

    def _prefill(self, request: DecodeRequest) -> None:
        """Run the prompt alone, pick the first token, and merge the row into the batch if it goes on."""
        row = _Row(request, self.model)
        cache = DynamicCache(config=self.model.config)
        ids = request.input_ids
        request.admitted = True
        out = self.model(input_ids=ids, attention_mask=torch.ones_like(ids), past_key_values=cache, use_cache=True)
        logits = out.logits[:, -1].to(copy=True, dtype=torch.float32)
        del out
        token = int(row.choose(logits))
        if not row.record(token):
            request.end()
            return
        self._merge(row, cache)

    def _merge(self, row: _Row, cache: DynamicCache) -> None:
        """Add a prefilled row to the batch, left-padding whichever side is shorter."""
        layers = cache.layers
        if any(type(layer) is not DynamicLayer for layer in layers):
            raise NotImplementedError("continuous batching needs a plain DynamicCache (full attention only)")
        length = int(row.ids.shape[1]) - 1  # the cache holds the prompt; the first token is fed next step
        mask = torch.ones(1, length, dtype=torch.long, device=row.ids.device)
        if self._cache is None or self._mask is None:
            self._cache, self._mask, self._rows = cache, mask, [row]
            return
        current = int(self._mask.shape[1])
        width = max(current, length)

        def left_pad(x: torch.Tensor, by: int, dim: int) -> torch.Tensor:
            if by == 0:
                return x
            shape = list(x.shape)
            shape[dim] = by
            return torch.cat([x.new_zeros(shape), x], dim=dim)

        for batch_layer, new_layer in zip(self._cache.layers, layers, strict=True):
            batch_layer.keys = torch.cat([left_pad(batch_layer.keys, width - current, 2),
                                          left_pad(new_layer.keys, width - length, 2)])
            batch_layer.values = torch.cat([left_pad(batch_layer.values, width - current, 2),
                                            left_pad(new_layer.values, width - length, 2)])
        self._mask = torch.cat([left_pad(self._mask, width - current, 1), left_pad(mask, width - length, 1)])
        self._rows.append(row)

    def _step(self) -> None:
        """One forward pass for every row; each picks its token; rows that end leave the batch."""
        assert self._cache is not None
        assert self._mask is not None
        rows = self._rows
        device = self._mask.device
        tokens = torch.tensor([[row.last] for row in rows], dtype=torch.long, device=device)
        self._mask = torch.cat([self._mask, self._mask.new_ones(len(rows), 1)], dim=1)
        positions = torch.tensor([[row.position] for row in rows], dtype=torch.long, device=device)
        out = self.model(input_ids=tokens, attention_mask=self._mask, position_ids=positions,
                         past_key_values=self._cache, use_cache=True)
        logits = out.logits[:, -1].to(copy=True, dtype=torch.float32)
        del out
        chosen = torch.stack([row.choose(logits[i : i + 1]) for i, row in enumerate(rows)]).tolist()  # one sync
        keep: list[int] = []
        for i, (row, token) in enumerate(zip(rows, chosen, strict=True)):
            row.position += 1
            if row.record(int(token)):
                keep.append(i)
        if len(keep) < len(rows):
            self._keep(keep)
            # Told only now, so that a consumer who sees its reply end finds its row gone already.
            for row in set(rows) - set(self._rows):
                row.request.end()

    def _keep(self, keep: list[int]) -> None:
        """Leave only the rows at ``keep`` in the batch, and cut padding that no row needs any more."""
        if not keep:
            self._rows, self._cache, self._mask = [], None, None
            return
        assert self._cache is not None
        assert self._mask is not None
        index = torch.tensor(keep, dtype=torch.long, device=self._mask.device)
        self._rows = [self._rows[i] for i in keep]
        self._cache.batch_select_indices(index)
        mask = self._mask[index]
        lead = int(mask.argmax(dim=1).min())  # every row has a real token; columns before all of them are padding
        if lead:
            mask = mask[:, lead:]
            for layer in self._cache.layers:
                layer.keys = layer.keys[:, :, lead:]
                layer.values = layer.values[:, :, lead:]
        self._mask = mask

    def _fail_rows(self, error: BaseException) -> None:
        """End every running row with ``error`` and drop the batch's tensors."""
        rows, self._rows, self._cache, self._mask = self._rows, [], None, None
        for row in rows:
            row.request.end(error)
