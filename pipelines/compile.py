"""torch.compile for a diffusers pipeline: regional or whole-UNet compile, channels_last, fused QKV, and a
guard that falls back to eager when a compiled call fails, so a compiler bug never fails a job."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import torch

# torch is imported where it is used: services/container imports this module for CompileOptions, and the
# server's start-up must not wait seconds for torch.

log = logging.getLogger(__name__)

CompileScope = Literal["regional", "full"]


@dataclass(frozen=True)
class CompileOptions:
    """What to compile and how; `backend` is a torch.compile backend name (tests use "eager"/"aot_eager")."""

    enabled: bool = False
    mode: str = "default"
    scope: CompileScope = "regional"
    backend: str | Callable[..., Any] = "inductor"
    # One graph for every size and batch: a new size must not stall a user for a full recompile.
    dynamic: bool = True


@dataclass
class CompileStatus:
    """Where compilation stands, for describe() and /api/health."""

    options: CompileOptions
    state: str = "off"  # off | skipped | compiling | ready | failed
    seconds: float | None = None
    reason: str = ""
    compiled: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        backend = self.options.backend
        return {"mode": self.options.mode, "scope": self.options.scope, "dynamic": self.options.dynamic,
                "backend": backend if isinstance(backend, str) else getattr(backend, "__name__", "custom"),
                "state": self.state, "seconds": self.seconds, "reason": self.reason or None,
                "compiled": list(self.compiled)}


def compile_blocker(memory_mode: str) -> str | None:
    """Why compile cannot run with this memory mode (as in effect on the device), or None when it can."""
    if memory_mode == "sequential-offload":
        # Its hooks move every layer's weights onto the GPU inside each call: dynamo breaks the graph at
        # each of them, so there is nothing to fuse and the compile only costs time.
        return "sequential-offload moves each layer's weights on every call, which torch.compile cannot fuse"
    return None


class _Guarded:
    """Calls the compiled function; on its first failure warns once and runs eager from then on."""

    def __init__(self, compiled: Callable[..., Any], eager: Callable[..., Any], status: CompileStatus,
                 name: str, lock: threading.Lock) -> None:
        import torch

        self.compiled, self.eager, self.status, self.name, self._lock = compiled, eager, status, name, lock
        self._out_of_memory = torch.OutOfMemoryError

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.status.state == "failed":
            return self.eager(*args, **kwargs)
        try:
            return self.compiled(*args, **kwargs)
        except self._out_of_memory:
            raise  # eager would run out of memory too; the job reports it as it does today
        except Exception as err:
            with self._lock:
                if self.status.state != "failed":
                    self.status.state = "failed"
                    self.status.reason = f"{self.name}: {type(err).__name__}: {err}"[:500]
                    log.warning("torch.compile failed in %s; running eager from now on: %s", self.name, err,
                                exc_info=True)
            return self.eager(*args, **kwargs)


def _allow_unequal_sizes() -> None:
    # Dynamo's "duck sizing" ties dimensions that happen to be equal at the first call into one symbol
    # (width and height of a square image, or a batch of 4 and a 4-row latent): the next wide image then
    # recompiles everything. Its own guard message names this switch; it only affects dynamic-shape graphs.
    import torch.fx.experimental._config as fx_config

    fx_config.use_duck_shape = False


def _wrap_forward(module: torch.nn.Module, options: CompileOptions, status: CompileStatus, name: str,
                  lock: threading.Lock) -> None:
    import torch

    # The instance's forward is replaced (not Module.compile()) so that a failure can fall back to the
    # original method; accelerate's offload hooks installed later wrap this forward from the outside.
    eager = module.forward
    compiled = torch.compile(eager, mode=None if options.mode == "default" else options.mode,
                             backend=options.backend, dynamic=options.dynamic)
    module.forward = _Guarded(compiled, eager, status, name, lock)  # type: ignore[method-assign]


def apply_compile(pipe: Any, options: CompileOptions, status: CompileStatus, notes: list[str],
                  fuse_qkv: bool = True) -> None:
    """Prepare (channels_last, fused QKV) and wrap the UNet and VAE decoder; compiling happens on the first call."""
    import torch

    lock = threading.Lock()
    if options.dynamic:
        _allow_unequal_sizes()
    unet = getattr(pipe, "unet", None)
    vae = getattr(pipe, "vae", None)
    if unet is None:
        status.state, status.reason = "skipped", f"{type(pipe).__name__} has no UNet"
        return
    # channels_last suits convolutions on GPU (diffusers' "Accelerate inference" guide); harmless elsewhere.
    unet.to(memory_format=torch.channels_last)
    if vae is not None:
        vae.to(memory_format=torch.channels_last)
    if fuse_qkv and hasattr(unet, "fuse_qkv_projections"):
        # One matmul for Q, K and V instead of three; must come before any attention-processor change.
        unet.fuse_qkv_projections()
        notes.append("attention: fused QKV projections")
    repeated = getattr(unet, "_repeated_blocks", None) or []
    if options.scope == "regional" and repeated:
        # Regional compilation (diffusers' compile_repeated_blocks): the repeated transformer blocks share
        # one compiled graph, so compiling takes seconds instead of minutes, for most of the speed-up.
        blocks = [m for m in unet.modules() if type(m).__name__ in repeated]
        for index, block in enumerate(blocks):
            _wrap_forward(block, options, status, f"UNet {type(block).__name__} {index}", lock)
        status.compiled.append(f"UNet: {len(blocks)} × {'/'.join(repeated)} (regional)")
    else:
        _wrap_forward(unet, options, status, "UNet", lock)
        status.compiled.append("UNet (whole model)")
    decoder = getattr(vae, "decoder", None)
    if decoder is not None:
        # The decoder module, not vae.decode: decode carries accelerate's offload hook, which must stay eager.
        _wrap_forward(decoder, options, status, "VAE decoder", lock)
        status.compiled.append("VAE decoder")
    status.state = "compiling"


def warmup_runs(width: int, height: int, guidance_scale: float) -> list[dict[str, Any]]:
    """The warm-up calls that leave one graph for every later size and batch, so no job waits for a compile."""
    # Dynamo specialises a dimension of size 1: two images with guidance (UNet batch 4, VAE batch 2) give
    # the general graph, one image without guidance the batch-1 graph (sd-turbo's cfg 0 runs that one).
    size = {"width": width, "height": height}
    return [{**size, "guidance_scale": max(guidance_scale, 2.0), "num_images_per_prompt": 2},
            {**size, "guidance_scale": 0.0, "num_images_per_prompt": 1}]


def warm_up(pipe: Any, status: CompileStatus, runs: list[dict[str, Any]], report: Callable[[str], None]) -> None:
    """Run short generations so that compiling happens now, at load, rather than in a user's job."""
    import torch

    if status.state != "compiling":
        return
    start = time.perf_counter()
    try:
        for index, run in enumerate(runs, 1):
            report(f"compiling the UNet and VAE decoder (first run {index} of {len(runs)}; jobs wait for it)")
            pipe(prompt="warm-up", num_inference_steps=2, generator=torch.Generator("cpu").manual_seed(0),
                 output_type="pil", **run)
    except Exception as err:  # e.g. out of memory at the warm-up's batch: the model itself still loads
        status.state, status.reason = "failed", f"warm-up: {type(err).__name__}: {err}"[:500]
        log.warning("the compile warm-up failed; running eager from now on: %s", err, exc_info=True)
    finally:
        status.seconds = round(time.perf_counter() - start, 2)
    if status.state == "compiling":  # a failure inside already switched to eager and said why
        status.state = "ready"
        log.info("compiled %s in %.1f s", ", ".join(status.compiled), status.seconds)
