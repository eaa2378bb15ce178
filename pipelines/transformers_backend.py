"""The in-process text backend: causal LMs through transformers, GPTQ 4-bit checkpoints through gptqmodel.

One reply runs ``generate()`` in a worker thread that feeds a ``TextIteratorStreamer``; the caller iterates
reasoning/answer chunks. A stopping criterion watches the stop event (so the model stops within one token),
counts tokens and tracks the reasoning; a logits processor forces ``</think>`` once the thinking budget is
spent. The worker is always joined, also when the caller abandons the stream.

With ``max_batch`` above 1, replies instead join the continuous-batching engine (pipelines/text_batching.py):
they share every decode forward pass, each with the same stopping criterion, budget, sampling and seed.
"""

from __future__ import annotations

import copy
import logging
import queue
import threading
import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

import torch
from transformers import (
    CompileConfig,
    GPTQConfig,
    LogitsProcessor,
    StaticCache,
    StoppingCriteria,
    TextIteratorStreamer,
    TextStreamer,
)

from contracts import TextOptions
from pipelines.devices import release_memory
from pipelines.gptq_kernels import (
    KernelChoice,
    KernelUnavailable,
    build_extension,
    choose_kernel,
    probe_host,
    warn_once,
)
from pipelines.loading import (
    TEXT_MODEL,
    ModelUnavailable,
    download_progress,
    exclusive_load,
    explain_load_error,
    model_revision,
)
from pipelines.reasoning import Chunk, ReasoningSplitter
from pipelines.text_base import FinishReason, TextUsage, history_for_model, register_text_backend
from pipelines.text_batching import ERROR, TOKEN, BatchEngine, DecodeRequest, supports

log = logging.getLogger(__name__)

THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"
# How often a waiting consumer checks that the worker is still alive; a real wait for a token is longer
# than this only when the model is slow, and then the consumer just waits again.
POLL_S = 0.25
WORKER_NAME = "atelier-text-generate"
# Files a text model needs from the hub: weights, configs, tokenizer and chat template (no .bin/.pth/.gguf).
HUB_PATTERNS = ["*.json", "*.safetensors", "*.jinja", "*.txt", "*.model", "*.tiktoken"]
TextCache = Literal["dynamic", "static"]
# A static KV cache is allocated for a whole reply at once, and each new length is a recompile of the compiled
# decode step: its length is rounded up to a power of two, with room for this many prompt tokens.
STATIC_PROMPT_ROOM = 2048
STATIC_MIN_TOKENS = 1024


class PromptTooLong(ValueError):
    """The conversation does not fit into the model's context window."""


def _is_gptq(config: Any) -> bool:
    """Whether a model config describes a GPTQ-quantized checkpoint."""
    qconfig = getattr(config, "quantization_config", None)
    if qconfig is None:
        return False
    method = qconfig.get("quant_method") if isinstance(qconfig, dict) else getattr(qconfig, "quant_method", None)
    return str(getattr(method, "value", method)).lower() == "gptq"


def _device_map_target(device: str) -> str:
    """A device string accelerate accepts in a device_map: an explicit index for CUDA."""
    return "cuda:0" if device == "cuda" else device


def _pick_dtype(device: str, gptq: bool) -> torch.dtype:
    """fp16 for GPTQ on a GPU (its kernels are written for it), bf16 for plain weights on GPUs that have it,
    fp32 on the CPU (CPU half precision is slow, and gptqmodel's CPU kernel runs fp32 fastest)."""
    if device.startswith("cuda"):
        if not gptq and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float16
    if device == "mps":
        return torch.float16
    return torch.float32


def _kernel_override(config: Any, choice: KernelChoice | None) -> dict[str, Any]:
    """from_pretrained's quantization_config carrying the chosen kernel (transformers merges its backend into the
    checkpoint's own GPTQ config and optimum hands it to gptqmodel); nothing when gptqmodel is left to choose."""
    if choice is None or choice.backend == "auto":
        return {}
    qconfig = config.quantization_config
    bits = qconfig.get("bits") if isinstance(qconfig, dict) else getattr(qconfig, "bits", None)
    return {"quantization_config": GPTQConfig(bits=bits or 4, backend=choice.backend)}


def _static_cache_len(max_new_tokens: int, context: int | None) -> int:
    """Static KV cache length for a reply: a power of two with room for the prompt, within the context."""
    need = max(STATIC_MIN_TOKENS, max_new_tokens + STATIC_PROMPT_ROOM)
    length = 1 << (need - 1).bit_length()
    return min(length, context) if context else length


def _compile_static_decode(model_kwargs: dict[str, Any], generation_config: Any) -> bool:
    """generate()'s decode step is compiled when this reply asks for it and its KV cache is static."""
    cache = model_kwargs.get("past_key_values")
    return generation_config.compile_config is not None and isinstance(cache, StaticCache)


class _Progress(StoppingCriteria):
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


class _ThinkingBudget(LogitsProcessor):
    """Forces ``</think>`` as the next token once the reasoning has used up its budget."""

    def __init__(self, progress: _Progress, budget: int, close_id: int) -> None:
        self.progress = progress
        self.budget = budget
        self.close_id = close_id

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        """Leave the scores alone, or allow only the closing tag once the budget is spent."""
        # Runs before each token; _Progress has seen every token generated so far, so its count is current.
        if self.progress.in_reasoning and self.progress.usage.reasoning_tokens >= self.budget:
            forced = torch.full_like(scores, float("-inf"))
            forced[:, self.close_id] = 0.0
            return forced
        return scores


class _Reply(ABC):
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
        self.progress = _Progress(
            prompt_len, self.usage, self.should_stop, starts_in_reasoning, open_id, close_id, eos_ids
        )
        self.processors: list[LogitsProcessor] = []
        if options.thinking_budget is not None and close_id is not None:
            self.processors.append(_ThinkingBudget(self.progress, options.thinking_budget, close_id))
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


class _Generation(_Reply):
    """One reply run by generate() in a worker thread of its own."""

    def __init__(self, model: Any, tokenizer: Any, **reply: Any) -> None:
        super().__init__(**reply)
        self.model = model
        # skip_special_tokens drops eos and the chat markers; <think>/</think> are ordinary tokens in R1, so
        # they reach the splitter. The timeout only bounds each wait, see chunks().
        self.streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True, timeout=POLL_S)
        self.thread = threading.Thread(target=self.work, name=WORKER_NAME, daemon=True)

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
                yield from self.splitter.feed(text)
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


class _Detokenizer(TextStreamer):
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


class _BatchedReply(_Reply):
    """One reply run by the continuous-batching engine, next to other replies in the same forward passes."""

    def __init__(self, engine: BatchEngine, tokenizer: Any, **reply: Any) -> None:
        super().__init__(**reply)
        self.engine: BatchEngine | None = engine
        # Decoded here, in the consumer's thread, so the engine thread only runs the model.
        self.detokenizer = _Detokenizer(tokenizer)
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


class TransformersTextStream:
    """One reply: iterate it for reasoning/answer chunks; ``usage`` counts grow live and are final at the end.

    Generation starts with the first next(). Setting the stop event ends the iteration normally with
    finish_reason "cancelled"; close(), leaving a ``with`` block or dropping the stream stops it too.
    """

    def __init__(self, generation: _Generation) -> None:
        self._generation = generation
        self.usage = generation.usage
        self._chunks = generation.chunks()

    @property
    def token_ids(self) -> list[int]:
        """The generated ids (prompt excluded), once the reply has ended: for diagnostics and tests."""
        return self._generation.token_ids

    def __iter__(self) -> Iterator[Chunk]:
        """The stream itself."""
        return self

    def __next__(self) -> Chunk:
        """The next piece of reasoning or answer."""
        return next(self._chunks)

    def __enter__(self) -> TransformersTextStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop generating, join the worker and release memory; safe to call more than once."""
        self._chunks.close()
        # A generator closed before its first next() never ran, so its finally block did not either.
        self._generation.finish()


@register_text_backend("transformers")
class TransformersTextBackend:
    """Causal LMs (DeepSeek-R1-Distill and its GPTQ 4-bit copies) through transformers, in this process."""

    name = "transformers"

    def __init__(self, model: str, display_name: str | None = None, device: str | None = None,
                 max_batch: int = 1, gptq_backend: str = "auto", cache: TextCache = "dynamic",
                 compile: bool = False, compile_backend: str = "inductor") -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch}")
        self.model = model
        # Replies that may share forward passes (continuous batching); 1 runs each reply in its own generate().
        self.max_batch = max_batch
        self._engine: BatchEngine | None = None
        self._engine_lock = threading.Lock()
        self._display_name = display_name
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.gptq_backend = gptq_backend  # ATELIER_GPTQ_BACKEND: auto or one gptqmodel kernel
        self.cache = cache  # the KV cache of a single reply's generate(): dynamic or static
        self.compile = compile  # torch.compile the decode step (with the static cache only)
        self.compile_backend = compile_backend  # inductor on GPUs; eager/aot_eager test the path on a CPU
        self.kernel_choice: KernelChoice | None = None
        self.lm: Any = None
        self.tokenizer: Any = None
        self.dtype: torch.dtype | None = None
        self.quantization: str | None = None
        self.kernel: str | None = None
        self.offloaded = False
        self.notes: list[str] = []
        self._think_ids: tuple[int | None, int | None] = (None, None)
        self._suppress: list[int] = []
        self.revision = ""  # which files were loaded: a hub snapshot hash or a local folder's fingerprint

    @property
    def model_name(self) -> str:
        """The model as shown in the UI and stored in history."""
        return self._display_name or self.model

    # 1. Load --------------------------------------------------------------------------------------
    def load(self, report: Callable[[str], None]) -> None:
        """Download if needed, then load tokenizer and weights onto the chosen device; once loaded, only
        move offloaded weights back."""
        from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

        if self.lm is not None:
            if self.offloaded:
                report(f"moving {self.model_name} back to {self.device}")
                self._restore()
            return
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise ModelUnavailable(
                f"The text model should run on {self.device}, but PyTorch {torch.__version__} sees no CUDA GPU. "
                "Install a CUDA build of PyTorch, or start with --profile cpu (or --profile tiny)."
            )
        source = self._local_source(report)
        self.revision = model_revision(source)
        try:
            config = AutoConfig.from_pretrained(source)
            gptq = _is_gptq(config)
            dtype = _pick_dtype(self.device, gptq)
            what = "GPTQ 4-bit" if gptq else "weights"
            phase = f"loading {self.model_name} ({what}, {str(dtype).removeprefix('torch.')} on {self.device})"
            tokenizer = AutoTokenizer.from_pretrained(source)
        except Exception as err:  # every loader error becomes one actionable message
            raise ModelUnavailable(explain_load_error(self.model, err, TEXT_MODEL)) from err
        choice = self._choose_kernel(report) if gptq else None
        try:
            # One load at a time in the process: a model built while another loader patches torch
            # process-wide gets broken weights (see pipelines.loading.exclusive_load). An explicit device_map:
            # without one a GPTQ model lands on the CPU whatever the device, and accelerate places the weights
            # directly instead of loading to CPU first and copying.
            with exclusive_load(self.model_name, report, phase), warnings.catch_warnings():
                # Passing the kernel is what transformers means by overriding a loading attribute; it says so.
                warnings.filterwarnings("ignore", message="You passed `quantization_config`")
                lm = AutoModelForCausalLM.from_pretrained(
                    source, dtype=dtype, device_map={"": _device_map_target(self.device)},
                    **_kernel_override(config, choice),
                )
        except Exception as err:  # every loader error becomes one actionable message
            raise ModelUnavailable(explain_load_error(self.model, err, TEXT_MODEL)) from err
        lm.eval()
        self.tokenizer, self.lm, self.dtype = tokenizer, lm, dtype
        self.offloaded = False
        self.notes = []
        self.kernel_choice = choice
        self.quantization = self._describe_quantization(lm) if gptq else None
        if choice is not None:
            log.info("GPTQ kernel for %s: %s (%s; requested %s; modules: %s)", self.model_name,
                     choice.chosen or "gptqmodel's choice", choice.reason, choice.requested, self.kernel)
            if choice.warning:
                warn_once(choice.warning)
                self.notes.append(choice.warning)
        if self.compile:
            if self.cache != "static":
                self.notes.append("ATELIER_TEXT_COMPILE needs ATELIER_TEXT_CACHE=static: decode is not compiled")
            else:
                # transformers compiles generate()'s decode step only for models whose quantizer says it may, and its
                # GPTQ quantizer never does; Atelier decides for itself: a reply that asks, with a static cache (the
                # model sits on one device, so none of transformers' offload exceptions apply).
                lm._valid_auto_compile_criteria = _compile_static_decode
        self._think_ids = (self._single_token_id(THINK_OPEN), self._single_token_id(THINK_CLOSE))
        if self._think_ids[1] is None:
            self.notes.append(f"{THINK_CLOSE} is not one token in this tokenizer: thinking_budget is ignored")
        # Checkpoints pad the embedding matrix past the tokenizer (R1-Distill-Qwen: 152064 rows, 151665
        # tokens); a trained model never picks those rows, a random or damaged one might, and they decode
        # to nothing, so they are never sampled.
        vocab_rows = int(lm.get_output_embeddings().weight.shape[0]) if lm.get_output_embeddings() else 0
        self._suppress = list(range(len(tokenizer), vocab_rows))

    def _local_source(self, report: Callable[[str], None]) -> str:
        """The model's folder: as given when it is one, else its snapshot in the Hugging Face cache."""
        folder = Path(self.model).expanduser()
        if folder.is_dir():
            return str(folder)
        if self.model.startswith((".", "/", "~")):
            err = FileNotFoundError(f"no such folder: {folder}")
            raise ModelUnavailable(explain_load_error(self.model, err, TEXT_MODEL))
        from huggingface_hub import snapshot_download

        try:
            with download_progress(self.model, report):
                return str(snapshot_download(self.model, allow_patterns=HUB_PATTERNS))
        except Exception as err:
            raise ModelUnavailable(explain_load_error(self.model, err, TEXT_MODEL)) from err

    def _choose_kernel(self, report: Callable[[str], None]) -> KernelChoice:
        """The gptqmodel kernel for this device (compiling it first when it needs nvcc), or ModelUnavailable."""
        try:
            return choose_kernel(self.gptq_backend, probe_host(self.device),
                                 lambda kernel: build_extension(kernel, report))
        except KernelUnavailable as err:
            raise ModelUnavailable(str(err)) from err

    def _describe_quantization(self, lm: Any) -> str:
        """A short label such as 'GPTQ 4-bit, group 128', and the gptqmodel kernel that runs it."""
        qconfig = lm.config.quantization_config
        get = qconfig.get if isinstance(qconfig, dict) else lambda key: getattr(qconfig, key, None)
        try:
            from gptqmodel.nn_modules.qlinear import BaseQuantLinear

            kernels = {type(m).__name__ for m in lm.modules() if isinstance(m, BaseQuantLinear)}
        except ImportError:  # pragma: no cover - transformers refuses GPTQ without gptqmodel already
            kernels = set()
        self.kernel = ", ".join(sorted(kernels)) or None
        return f"GPTQ {get('bits')}-bit, group {get('group_size')}"

    def _single_token_id(self, text: str) -> int | None:
        """The id of ``text`` when the tokenizer has it as one token, else None."""
        ids = self.tokenizer.encode(text, add_special_tokens=False)
        return int(ids[0]) if len(ids) == 1 else None

    # 2. Stream ------------------------------------------------------------------------------------
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
            "think_ids": self._think_ids,
            "on_done": self._after_reply,
        }
        if engine is not None:
            return TransformersTextStream(_BatchedReply(engine=engine, tokenizer=self.tokenizer, **reply))
        return TransformersTextStream(_Generation(model=self.lm, tokenizer=self.tokenizer, **reply))

    def _batch_engine(self) -> BatchEngine | None:
        """The continuous-batching engine for the loaded model, or None where replies run one generate() each."""
        if self.max_batch == 1:
            return None
        with self._engine_lock:
            if self._engine is None or self._engine.model is not self.lm:
                if not supports(self.lm):
                    note = "this model's cache is not plain full attention: replies run one at a time"
                    if note not in self.notes:
                        self.notes.append(note)
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
        config.suppress_tokens = self._suppress or None
        if config.pad_token_id is None:
            config.pad_token_id = self.tokenizer.pad_token_id or self.tokenizer.eos_token_id
        if self.cache == "static" and not batched:
            config.cache_implementation = "static"
            config.max_cache_len = _static_cache_len(max_new_tokens, getattr(self.lm.config, "max_position_embeddings",
                                                                             None))
            if self.compile:
                # reduce-overhead replays the decode step as a CUDA graph: at batch 1 a 4-bit model's step is hundreds
                # of small kernel launches, whose overhead the GPU would otherwise wait on.
                mode = "reduce-overhead" if self.device.startswith("cuda") else "default"
                config.compile_config = CompileConfig(backend=self.compile_backend, mode=mode, fullgraph=False)
        return config

    def _after_reply(self) -> None:
        # On a shared GPU the image model may need the memory this reply's activations and cache held; while the
        # engine still runs other replies, the memory is in use and its next step would only ask for it again.
        engine = self._engine
        if self.device.startswith("cuda") and (engine is None or engine.thread is None):
            release_memory()

    def _require_loaded(self) -> None:
        if self.lm is None or self.offloaded:
            raise RuntimeError("the text model is not loaded (or is offloaded): call load() first")

    # 3. Memory ------------------------------------------------------------------------------------
    def offload(self) -> None:
        """Free the GPU while idle; the next load() brings the model back. Plain weights are parked in CPU
        RAM; GPTQ weights are dropped and reloaded from disk (a no-op on the CPU)."""
        if self.lm is None or not self.device.startswith("cuda") or self.offloaded:
            return
        self._stop_engine()
        if self.quantization is not None:
            # gptqmodel's CUDA kernels repack weights for the GPU and some (ExLlamaV2) keep raw device
            # pointers, so a CPU round trip of the module is not safe; the files are in the page cache.
            self.lm = None
        else:
            self.lm.to("cpu")
        self.offloaded = True
        release_memory()

    def _restore(self) -> None:
        self.lm.to(_device_map_target(self.device))
        self.offloaded = False

    def unload(self) -> None:
        """Drop the model and tokenizer and give their memory back."""
        self._stop_engine()
        self.lm = None
        self.tokenizer = None
        self.offloaded = False
        release_memory()

    def describe(self) -> dict[str, Any]:
        """Device, dtype, quantization, kernel (and why that one), decode cache and notes for the health page."""
        return {
            "device": self.device,
            "dtype": str(self.dtype).removeprefix("torch.") if self.dtype is not None else None,
            "quantization": self.quantization,
            "kernel": self.kernel,
            "kernel_choice": self.kernel_choice.as_dict() if self.kernel_choice is not None else None,
            # Replies that share forward passes; above 1 they run in the batching engine's dynamic cache, and the
            # cache/compile settings apply only where a model cannot be batched.
            "max_batch": self.max_batch,
            "cache": self.cache,
            "compile": self.compile and self.cache == "static",
            "offloaded": self.offloaded,
            "notes": list(self.notes),
        }
