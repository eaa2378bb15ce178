"""Loading a causal LM for the in-process text backend: the checkpoint (a hub id or a folder; GPTQ 4-bit ones through
gptqmodel, with the kernel chosen for this GPU), the dtype and device, the tokenizer and R1's <think> tokens, the
decode step's compile criteria; offloading and unloading it. Replies run on it in pipelines/transformers_backend.py."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import torch
from transformers import GPTQConfig, StaticCache

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

log = logging.getLogger(__name__)

THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"
# Files a text model needs from the hub: weights, configs, tokenizer and chat template (no .bin/.pth/.gguf).
HUB_PATTERNS = ["*.json", "*.safetensors", "*.jinja", "*.txt", "*.model", "*.tiktoken"]
TextCache = Literal["dynamic", "static"]


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


def _compile_static_decode(model_kwargs: dict[str, Any], generation_config: Any) -> bool:
    """generate()'s decode step is compiled when this reply asks for it and its KV cache is static."""
    cache = model_kwargs.get("past_key_values")
    return generation_config.compile_config is not None and isinstance(cache, StaticCache)


class TransformersModel:
    """A causal LM and its tokenizer as loaded: which files, where, in which dtype, with which GPTQ kernel; and what
    changed since (offloaded). `on_release` runs before the model lets go of its weights (offload, unload), so that
    nothing that runs replies on them (the batching engine) outlives them."""

    def __init__(self, model: str, display_name: str | None = None, device: str | None = None,
                 gptq_backend: str = "auto", cache: TextCache = "dynamic", compile: bool = False,
                 compile_backend: str = "inductor", on_release: Callable[[], None] = lambda: None) -> None:
        self.model = model
        self._display_name = display_name
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.gptq_backend = gptq_backend  # ATELIER_GPTQ_BACKEND: auto or one gptqmodel kernel
        self.cache = cache  # the KV cache of a single reply's generate(): dynamic or static
        self.compile = compile  # torch.compile the decode step (with the static cache only)
        self.compile_backend = compile_backend  # inductor on GPUs; eager/aot_eager test the path on a CPU
        self.on_release = on_release
        self.kernel_choice: KernelChoice | None = None
        self.lm: Any = None
        self.tokenizer: Any = None
        self.dtype: torch.dtype | None = None
        self.quantization: str | None = None
        self.kernel: str | None = None
        self.offloaded = False
        self.notes: list[str] = []
        self.think_ids: tuple[int | None, int | None] = (None, None)  # <think> and </think>, when single tokens
        self.suppress: list[int] = []  # vocabulary rows past the tokenizer: never sampled
        self.revision = ""  # which files were loaded: a hub snapshot hash or a local folder's fingerprint

    @property
    def model_name(self) -> str:
        """The model as shown in the UI and stored in history."""
        return self._display_name or self.model

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
        self._settle(lm, tokenizer, dtype, choice, gptq)

    def _settle(self, lm: Any, tokenizer: Any, dtype: torch.dtype, choice: KernelChoice | None, gptq: bool) -> None:
        """Keep a freshly built model: its kernel and quantization, the decode step's compile criteria, R1's think
        tokens, and the vocabulary rows that must never be sampled."""
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
        self.think_ids = (self._single_token_id(THINK_OPEN), self._single_token_id(THINK_CLOSE))
        if self.think_ids[1] is None:
            self.notes.append(f"{THINK_CLOSE} is not one token in this tokenizer: thinking_budget is ignored")
        # Checkpoints pad the embedding matrix past the tokenizer (R1-Distill-Qwen: 152064 rows, 151665
        # tokens); a trained model never picks those rows, a random or damaged one might, and they decode
        # to nothing, so they are never sampled.
        vocab_rows = int(lm.get_output_embeddings().weight.shape[0]) if lm.get_output_embeddings() else 0
        self.suppress = list(range(len(tokenizer), vocab_rows))

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

    def offload(self) -> None:
        """Free the GPU while idle; the next load() brings the model back. Plain weights are parked in CPU
        RAM; GPTQ weights are dropped and reloaded from disk (a no-op on the CPU)."""
        if self.lm is None or not self.device.startswith("cuda") or self.offloaded:
            return
        self.on_release()
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
        self.on_release()
        self.lm = None
        self.tokenizer = None
        self.offloaded = False
        release_memory()

    def describe(self) -> dict[str, Any]:
        """Device, dtype, quantization and kernel (and why that one) for the health page."""
        return {
            "device": self.device,
            "dtype": str(self.dtype).removeprefix("torch.") if self.dtype is not None else None,
            "quantization": self.quantization,
            "kernel": self.kernel,
            "kernel_choice": self.kernel_choice.as_dict() if self.kernel_choice is not None else None,
        }
