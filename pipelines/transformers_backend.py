"""The in-process text backend: causal LMs through transformers, GPTQ 4-bit checkpoints through gptqmodel.

Loading is pipelines/transformers_loading.py; a reply is pipelines/transformers_replies.py. This module runs replies
on the loaded model: each by its own ``generate()`` in a worker thread, or, with ``max_batch`` above 1, in the
continuous-batching engine (pipelines/text_batching.py), where replies share every decode forward pass, each with
its own stopping criterion, budget, sampling and seed.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable
from typing import Any

from transformers import CompileConfig

from contracts import TextOptions
from pipelines.devices import release_memory
from pipelines.text_base import history_for_model, register_text_backend
from pipelines.text_batching import BatchEngine, supports
from pipelines.transformers_loading import THINK_OPEN, TextCache, TransformersModel
from pipelines.transformers_replies import BatchedReply, GenerateReply, TransformersTextStream

# A static KV cache is allocated for a whole reply at once, and each new length is a recompile of the compiled
# decode step: its length is rounded up to a power of two, with room for this many prompt tokens.
STATIC_PROMPT_ROOM = 2048
STATIC_MIN_TOKENS = 1024


class PromptTooLong(ValueError):
    """The conversation does not fit into the model's context window."""


def _static_cache_len(max_new_tokens: int, context: int | None) -> int:
    """Static KV cache length for a reply: a power of two with room for the prompt, within the context."""
    need = max(STATIC_MIN_TOKENS, max_new_tokens + STATIC_PROMPT_ROOM)
    length = 1 << (need - 1).bit_length()
    return min(length, context) if context else length


@register_text_backend("transformers")
class TransformersTextBackend:
    """Causal LMs (DeepSeek-R1-Distill and its GPTQ 4-bit copies) through transformers, in this process."""

    name = "transformers"
    remote = False

    def __init__(self, model: str, display_name: str | None = None, device: str | None = None,
                 max_batch: int = 1, gptq_backend: str = "auto", cache: TextCache = "dynamic",
                 compile: bool = False, compile_backend: str = "inductor") -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch}")
        # Replies that may share forward passes (continuous batching); 1 runs each reply in its own generate().
        self.max_batch = max_batch
        self._engine: BatchEngine | None = None
        self._engine_lock = threading.Lock()
        self.loaded = TransformersModel(model, display_name, device, gptq_backend, cache, compile, compile_backend,
                                        on_release=self._stop_engine)

    @property
    def model_name(self) -> str:
        """The model as shown in the UI and stored in history."""
        return self.loaded.model_name

    @property
    def revision(self) -> str:
        """Which files are loaded: a hub snapshot hash or a local folder's fingerprint."""
        return self.loaded.revision

    @property
    def lm(self) -> Any:
        """The loaded causal LM (None until load(), and while a GPTQ model is offloaded)."""
        return self.loaded.lm

    @property
    def tokenizer(self) -> Any:
        """The loaded tokenizer, with the model's chat template."""
        return self.loaded.tokenizer

    def load(self, report: Callable[[str], None]) -> None:
        """Download if needed, then load tokenizer and weights onto the chosen device; once loaded, only move
        offloaded weights back."""
        self.loaded.load(report)

    def offload(self) -> None:
        """Free the GPU while idle (the batching engine ends first); the next load() brings the model back."""
        self.loaded.offload()

    def unload(self) -> None:
        """Drop the model and tokenizer (the batching engine ends first) and give their memory back."""
        self.loaded.unload()

    def describe(self) -> dict[str, Any]:
        """Device, dtype, quantization, kernel (and why that one), decode cache and notes for the health page."""
        loaded = self.loaded
        return {
            **loaded.describe(),
            # Replies that share forward passes; above 1 they run in the batching engine's dynamic cache, and the
            # cache/compile settings apply only where a model cannot be batched.
            "max_batch": self.max_batch,
            "cache": loaded.cache,
            "compile": loaded.compile and loaded.cache == "static",
            "offloaded": loaded.offloaded,
            "notes": list(loaded.notes),
        }

    # Replies ---------------------------------------------------------------------------------------
    def prompt_text(self, messages: list[dict[str, str]]) -> str:
        """The exact prompt the model gets for ``messages`` (earlier reasoning removed), as text."""
        if self.tokenizer is None:
            raise RuntimeError("the text model is not loaded: call load() first")
        return str(
            self.tokenizer.apply_chat_template(
                history_for_model(messages), add_generation_prompt=True, tokenize=False
            )
        )

    def stream(
        self, messages: list[dict[str, str]], options: TextOptions, stop: threading.Event
    ) -> TransformersTextStream:
        """Start a reply; iterate the result for chunks. Generation begins with the first next()."""
        self._require_loaded()
        history = history_for_model(messages)
        prompt = self.tokenizer.apply_chat_template(history, add_generation_prompt=True, tokenize=False)
        # The template renders bos and the chat markers itself, so no special tokens are added again.
        encoded = self.tokenizer(prompt, add_special_tokens=False, return_tensors="pt")
        prompt_len = int(encoded["input_ids"].shape[1])
        context = getattr(self.lm.config, "max_position_embeddings", None)
        if context is not None and prompt_len >= context:
            raise PromptTooLong(
                f"the conversation is {prompt_len} tokens and the model reads at most {context}: "
                "start a new chat or shorten the messages."
            )
        max_new = options.max_new_tokens if context is None else min(options.max_new_tokens, context - prompt_len)
        device = self.lm.device
        inputs = {key: value.to(device) for key, value in encoded.items() if key in ("input_ids", "attention_mask")}
        engine = self._batch_engine()
        reply: dict[str, Any] = {
            "inputs": inputs,
            "generation_config": self._generation_config(options, max_new, batched=engine is not None),
            "options": options,
            "stop": stop,
            # R1's template ends the prompt with "<think>\n": the reply starts inside the reasoning.
            "starts_in_reasoning": prompt.rstrip().endswith(THINK_OPEN),
            "think_ids": self.loaded.think_ids,
            "on_done": self._after_reply,
            # Rows past the tokenizer are never sampled: by a processor of ours, not the config's suppress_tokens,
            # whose processor costs a small model a few percent of its decode speed (SuppressRows).
            "suppress": self.loaded.suppress,
        }
        if engine is not None:
            return TransformersTextStream(BatchedReply(engine=engine, tokenizer=self.tokenizer, **reply))
        return TransformersTextStream(GenerateReply(model=self.lm, tokenizer=self.tokenizer, **reply))

    def _batch_engine(self) -> BatchEngine | None:
        """The continuous-batching engine for the loaded model, or None where replies run one generate() each."""
        if self.max_batch == 1:
            return None
        with self._engine_lock:
            if self._engine is None or self._engine.model is not self.lm:
                if not supports(self.lm):
                    note = "this model's cache is not plain full attention: replies run one at a time"
                    if note not in self.loaded.notes:
                        self.loaded.notes.append(note)
                    return None
                self._engine = BatchEngine(self.lm, self.max_batch)
            return self._engine

    def _stop_engine(self) -> None:
        """End the engine before the model goes (replies still in it end with an error), so nothing holds it."""
        with self._engine_lock:
            engine, self._engine = self._engine, None
        if engine is not None:
            engine.close()

    def _generation_config(self, options: TextOptions, max_new_tokens: int, batched: bool = False) -> Any:
        """The model's generation config with this reply's sampling settings (and, for a reply run by its own
        generate(), the static cache and compiled decode; the batching engine keeps its own dynamic cache)."""
        config = copy.deepcopy(self.lm.generation_config)
        config.max_new_tokens = max_new_tokens
        config.max_length = None
        if options.temperature > 0:
            config.do_sample = True
            config.temperature = options.temperature
            config.top_p = options.top_p
        else:
            # Temperature 0 means greedy. generate() fills unset (None) knobs from the model's own config
            # (R1: 0.6/0.95) and then warns that they do nothing; their neutral values keep it quiet.
            config.do_sample = False
            config.temperature = 1.0
            config.top_p = 1.0
        config.suppress_tokens = None  # the reply's SuppressRows does it (and the model's own list never applied)
        if config.pad_token_id is None:
            config.pad_token_id = self.tokenizer.pad_token_id or self.tokenizer.eos_token_id
        if self.loaded.cache == "static" and not batched:
            config.cache_implementation = "static"
            config.max_cache_len = _static_cache_len(max_new_tokens, getattr(self.lm.config, "max_position_embeddings",
                                                                             None))
            if self.loaded.compile:
                # reduce-overhead replays the decode step as a CUDA graph: at batch 1 a 4-bit model's step is hundreds
                # of small kernel launches, whose overhead the GPU would otherwise wait on.
                mode = "reduce-overhead" if self.loaded.device.startswith("cuda") else "default"
                config.compile_config = CompileConfig(backend=self.loaded.compile_backend, mode=mode, fullgraph=False)
        return config

    def _after_reply(self) -> None:
        # On a shared GPU the image model may need the memory this reply's activations and cache held; while the
        # engine still runs other replies, the memory is in use and its next step would only ask for it again.
        engine = self._engine
        if self.loaded.device.startswith("cuda") and (engine is None or engine.thread is None):
            release_memory()

    def _require_loaded(self) -> None:
        if self.lm is None or self.loaded.offloaded:
            raise RuntimeError("the text model is not loaded (or is offloaded): call load() first")
