"""The in-process image backend: diffusers pipelines from a hub id or a local folder."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from pipelines.compile import CompileOptions, CompileStatus, apply_compile, compile_blocker, warm_up, warmup_runs
from pipelines.devices import Placement, pick_placement, release_memory, xformers_usable
from pipelines.image_base import (
    GeneratedImage,
    ImageRequest,
    JobCancelled,
    ProgressFn,
    StepUpdate,
    register_image_backend,
)
from pipelines.loading import (
    IMAGE_MODEL,
    ModelUnavailable,
    download_progress,
    exclusive_load,
    explain_load_error,
    hub_cache_bytes,
    model_revision,
)
from pipelines.preview import latents_to_preview

log = logging.getLogger(__name__)

MEMORY_MODES = ("none", "model-offload", "sequential-offload")

# Defined in pipelines.loading (shared with the text backend); still importable from here.
__all__ = ["MEMORY_MODES", "DiffusersBackend", "ModelUnavailable", "explain_load_error", "hub_cache_bytes"]


@register_image_backend("diffusers")
class DiffusersBackend:
    """Stable Diffusion (and other text-to-image families) through diffusers, in this process."""

    name = "diffusers"

    def __init__(
        self,
        model: str,
        display_name: str | None = None,
        device: str | None = None,
        memory_mode: str = "none",
        attention_slicing: bool = False,
        vae_slicing: bool = False,
        vae_tiling: bool = False,
        preview_every: int = 2,
        compile: CompileOptions | None = None,
        compile_warmup: tuple[int, int, float] = (512, 512, 7.0),
    ) -> None:
        if memory_mode not in MEMORY_MODES:
            raise ValueError(f"memory_mode must be one of {', '.join(MEMORY_MODES)}, got {memory_mode!r}")
        self.model = model
        self._display_name = display_name
        self.placement: Placement = pick_placement(device)
        self.memory_mode = memory_mode
        self.attention_slicing = attention_slicing
        self.vae_slicing = vae_slicing
        self.vae_tiling = vae_tiling
        self.preview_every = max(1, preview_every)
        self.pipe: Any = None
        self._offloaded = False
        self.revision = ""  # which files were loaded: a hub snapshot hash or a local folder's fingerprint
        self._base_scheduler_config: Any = None
        self.notes: list[str] = []
        self.compile_options = compile or CompileOptions()
        # Width, height and guidance of the warm-up runs: the profile's defaults, so jobs find their graphs.
        self.compile_warmup = compile_warmup
        self.compile_status = CompileStatus(self.compile_options)

    @property
    def model_name(self) -> str:
        """The model as written into PNG metadata and history."""
        return self._display_name or self.model

    # 1. Load --------------------------------------------------------------------------------------
    def load(self, report: Callable[[str], None]) -> None:
        """Download if needed, then load onto the chosen device with the memory mode applied."""
        from diffusers import AutoPipelineForText2Image, DiffusionPipeline

        if self.pipe is not None:
            if self._offloaded:  # parked in CPU RAM by offload(): move back instead of reloading
                report(f"moving {self.model_name} back to {self.placement.device}")
                self.pipe.to(self.placement.device)
                self._offloaded = False
            return
        source = self.model
        if not Path(source).expanduser().is_dir():
            source = self._download(DiffusionPipeline, report)
        self.revision = model_revision(source)
        phase = f"loading {self.model_name} ({self.placement.dtype_name} on {self.placement.device})"
        try:
            kwargs: dict[str, Any] = {"dtype": self.placement.dtype}
            config = DiffusionPipeline.load_config(source)
            if "safety_checker" in config:
                # Like AUTOMATIC1111: no NSFW classifier (it costs ~1 GB and blacks out images).
                kwargs.update(safety_checker=None, requires_safety_checker=False)
            # One load at a time in the process: diffusers patches torch process-wide while it builds the
            # pipeline (see pipelines.loading.exclusive_load); jobs of the other model keep running.
            with exclusive_load(self.model_name, report, phase):
                pipe = AutoPipelineForText2Image.from_pretrained(source, **kwargs)
        except Exception as err:  # every loader error becomes one actionable message
            raise ModelUnavailable(explain_load_error(self.model, err, IMAGE_MODEL)) from err
        self._configure(pipe)
        self._base_scheduler_config = pipe.scheduler.config
        warm_up(pipe, self.compile_status, warmup_runs(*self.compile_warmup), report)
        self.pipe = pipe

    def _download(self, pipeline_cls: Any, report: Callable[[str], None]) -> str:
        try:
            with download_progress(self.model, report):
                variant = "fp16" if self.placement.dtype == torch.float16 else None
                try:
                    return str(pipeline_cls.download(self.model, variant=variant, use_safetensors=True))
                except Exception:
                    if variant is None:
                        raise
                    # Not every repo ships an fp16 variant; the full-precision files are cast on load.
                    return str(pipeline_cls.download(self.model, use_safetensors=True))
        except Exception as err:
            raise ModelUnavailable(explain_load_error(self.model, err, IMAGE_MODEL)) from err

    def _memory_mode_in_effect(self) -> str:
        """The memory mode as applied: offloading only exists on a CUDA GPU."""
        return self.memory_mode if self.placement.device.startswith("cuda") else "none"

    def _apply_memory_mode(self, pipe: Any, mode: str) -> None:
        if mode == "model-offload":
            pipe.enable_model_cpu_offload()
        elif mode == "sequential-offload":
            pipe.enable_sequential_cpu_offload()
        else:
            pipe.to(self.placement.device)

    def _configure(self, pipe: Any) -> None:
        device = self.placement.device
        mode = self._memory_mode_in_effect()
        if self.memory_mode != mode:
            # Offloading moves weights between CPU and GPU; without a GPU there is nothing to save.
            self.notes.append(f"memory mode {self.memory_mode!r} ignored: it only applies on a CUDA GPU")
        compiling = self._prepare_compile(pipe, mode)
        # Compile wrappers go on first: the offload hooks then wrap the compiled forward from the outside.
        self._apply_memory_mode(pipe, mode)
        if xformers_usable(device) and not compiling:
            # With compile, SDPA stays: dynamo traces it, while xformers' kernels would break the graph.
            pipe.enable_xformers_memory_efficient_attention()
            self.notes.append("attention: xformers")
        else:
            self.notes.append("attention: PyTorch SDPA")
        if self.attention_slicing:
            pipe.enable_attention_slicing()
        vae = getattr(pipe, "vae", None)
        if vae is not None and self.vae_slicing:
            vae.enable_slicing()
        if vae is not None and self.vae_tiling:
            vae.enable_tiling()
        pipe.set_progress_bar_config(disable=True)

    def _prepare_compile(self, pipe: Any, mode: str) -> bool:
        """Wrap the UNet and VAE decoder for torch.compile unless it is off or the memory mode rules it out."""
        status = self.compile_status = CompileStatus(self.compile_options)
        if not self.compile_options.enabled:
            return False
        blocker = compile_blocker(mode)
        if blocker:
            status.state, status.reason = "skipped", blocker
            log.warning("torch.compile is off for %s: %s; running eager", self.model_name, blocker)
            self.notes.append(f"compile skipped: {blocker}")
            return False
        try:
            # Attention slicing replaces the attention processors, so fused QKV would go unused.
            apply_compile(pipe, self.compile_options, status, self.notes, fuse_qkv=not self.attention_slicing)
        except Exception as err:  # a torch without dynamo support, a bad backend name: eager still works
            status.state, status.reason = "failed", f"{type(err).__name__}: {err}"
            log.warning("torch.compile could not be set up for %s; running eager: %s", self.model_name, err)
            return False
        return True

    # 2. Generate ----------------------------------------------------------------------------------
    def generate(
        self, req: ImageRequest, seeds: list[int], on_step: ProgressFn, stop: threading.Event
    ) -> list[GeneratedImage]:
        """Run one job image by image; each step reports progress and checks the stop signal."""
        if self.pipe is None:
            raise RuntimeError("the image model is not loaded")
        pipe = self.pipe
        # Imported here: diffusers' scheduler package takes seconds to import, and start-up must not wait.
        from pipelines.samplers import make_scheduler

        pipe.scheduler = make_scheduler(req.sampler, self._base_scheduler_config)
        family = "sdxl" if "XL" in type(pipe).__name__ else "sd15"
        results: list[GeneratedImage] = []
        for index, seed in enumerate(seeds):
            if stop.is_set():
                raise JobCancelled()
            callback = self._step_callback(index, len(seeds), family, on_step, stop)
            # A CPU generator makes a seed give the same picture on every device, as in A1111's default.
            generator = torch.Generator("cpu").manual_seed(seed)
            output = pipe(
                prompt=req.prompt,
                negative_prompt=req.negative_prompt or None,
                width=req.width,
                height=req.height,
                num_inference_steps=req.steps,
                guidance_scale=req.cfg_scale,
                generator=generator,
                callback_on_step_end=callback,
                callback_on_step_end_tensor_inputs=["latents"],
                output_type="pil",
            )
            results.append(GeneratedImage(image=output.images[0], seed=seed))
        # The VAE decode of the last image is not interruptible: re-check so a late Stop still wins.
        if stop.is_set():
            raise JobCancelled()
        return results

    def _step_callback(
        self, index: int, count: int, family: str, on_step: ProgressFn, stop: threading.Event
    ) -> Callable[[Any, int, Any, dict[str, Any]], dict[str, Any]]:
        every = self.preview_every

        def callback(pipe: Any, step: int, timestep: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
            if stop.is_set():
                # Raising leaves the denoising loop at once: no more UNet calls, no VAE decode.
                raise JobCancelled()
            per_image = int(getattr(pipe, "num_timesteps", 0) or step + 1)
            done = step + 1
            preview = None
            if done % every == 0 or done == per_image:
                preview = latents_to_preview(kwargs["latents"], family)
            on_step(StepUpdate(step=index * per_image + done, total=per_image * count, image_index=index,
                               preview=preview))
            if stop.is_set():  # a Stop that arrived while this step was reported
                raise JobCancelled()
            return kwargs

        return callback

    # 3. Unload ------------------------------------------------------------------------------------
    def offload(self) -> None:
        """Park the weights in CPU RAM to free GPU memory while idle (no-op on CPU or with an offload mode)."""
        if self.pipe is None or not self.placement.device.startswith("cuda") or self.memory_mode != "none":
            return  # on CPU there is nothing to free; offload modes already keep weights on the CPU
        self.pipe.to("cpu")
        self._offloaded = True
        release_memory()

    def unload(self) -> None:
        """Drop the pipeline and give its memory back."""
        self.pipe = None
        self._offloaded = False
        self.compile_status = CompileStatus(self.compile_options)
        release_memory()

    def describe(self) -> dict[str, Any]:
        """Device, dtype and memory settings for the health page."""
        return {
            "device": self.placement.device,
            "dtype": self.placement.dtype_name,
            "memory_mode": self.memory_mode,
            "notes": list(self.notes),
            "compile": self.compile_status.as_dict(),
        }
