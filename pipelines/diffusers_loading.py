"""Loading a diffusers pipeline: the checkpoint (a hub id, a folder or a single file), its VAE, the device and dtype,
the memory mode, attention, torch.compile; offloading and unloading it. What runs jobs on it is
pipelines/diffusers_running.py; pipelines/diffusers_backend.py puts the two together."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from pipelines import checkpoints
from pipelines.compile import CompileOptions, CompileStatus, apply_compile, compile_blocker, warm_up, warmup_runs
from pipelines.devices import Placement, pick_placement, release_memory, xformers_usable
from pipelines.loading import (
    IMAGE_MODEL,
    ModelUnavailable,
    download_progress,
    exclusive_load,
    explain_load_error,
    model_revision,
)

log = logging.getLogger(__name__)

MEMORY_MODES = ("none", "model-offload", "sequential-offload")


class DiffusersModel:
    """One diffusers pipeline as loaded: which files, where, how (memory mode, attention, compile), and what changed
    since (offloaded, another checkpoint or VAE chosen)."""

    def __init__(self, model: str, display_name: str | None = None, device: str | None = None,
                 memory_mode: str = "none", attention_slicing: bool = False, vae_slicing: bool = False,
                 vae_tiling: bool = False, compile: CompileOptions | None = None,
                 compile_warmup: tuple[int, int, float] = (512, 512, 7.0), vae: str = "",
                 vae_dir: Path | None = None) -> None:
        if memory_mode not in MEMORY_MODES:
            raise ValueError(f"memory_mode must be one of {', '.join(MEMORY_MODES)}, got {memory_mode!r}")
        self.model = model
        self._display_name = display_name
        self.placement: Placement = pick_placement(device)
        self.memory_mode = memory_mode
        self.attention_slicing = attention_slicing
        self.vae_slicing = vae_slicing
        self.vae_tiling = vae_tiling
        self.pipe: Any = None
        self._offloaded = False
        self.revision = ""  # which files were loaded: a hub snapshot hash or a local folder's fingerprint
        self.scheduler_config: Any = None  # the checkpoint's own scheduler settings, which each sampler starts from
        self.notes: list[str] = []
        self.compile_options = compile or CompileOptions()
        # Width, height and guidance of the warm-up runs: the profile's defaults, so jobs find their graphs.
        self.compile_warmup = compile_warmup
        self.compile_status = CompileStatus(self.compile_options)
        # img2img and inpaint pipelines made from self.pipe (from_pipe shares its modules), rebuilt when it changes.
        self._task_pipes: dict[str, Any] = {}
        self._task_pipes_of: Any = None
        self.vae = vae  # a VAE file or folder replacing the checkpoint's own; "" keeps it
        self.vae_dir = vae_dir  # where an fp16-fix VAE for SDXL may be (pipelines/vae_precision.py)
        self.model_hash = ""  # A1111's "Model hash" of a single-file checkpoint (pipelines/checkpoints.py)

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
        single_file = checkpoints.is_checkpoint_file(source)
        if not single_file and not Path(source).expanduser().is_dir():
            source = self._download(DiffusionPipeline, report)
        self.revision = self._checkpoint_revision(source, report) if single_file else model_revision(source)
        phase = f"loading {self.model_name} ({self.placement.dtype_name} on {self.placement.device})"
        try:
            kwargs: dict[str, Any] = {"dtype": self.placement.dtype}
            config = {} if single_file else DiffusionPipeline.load_config(source)
            if "safety_checker" in config:
                # Like AUTOMATIC1111: no NSFW classifier (it costs ~1 GB and blacks out images).
                kwargs.update(safety_checker=None, requires_safety_checker=False)
            if "XL" in str(config.get("_class_name", "")):
                # No invisible watermark, like AUTOMATIC1111 (diffusers adds one whenever the package is installed).
                kwargs["add_watermarker"] = False
            # One load at a time in the process: diffusers patches torch process-wide while it builds the
            # pipeline (see pipelines.loading.exclusive_load); jobs of the other model keep running.
            with exclusive_load(self.model_name, report, phase):
                pipe = (checkpoints.load_checkpoint(source, self.placement.dtype) if single_file
                        else AutoPipelineForText2Image.from_pretrained(source, **kwargs))
                self._swap_vae(pipe, source if single_file else None)
                self._vae_precision(pipe, source if single_file else None)
        except ModelUnavailable:  # already says what is wrong and what to do (pipelines/checkpoints.py)
            raise
        except Exception as err:  # every loader error becomes one actionable message
            raise ModelUnavailable(explain_load_error(self.model, err, IMAGE_MODEL)) from err
        self._configure(pipe)
        self.scheduler_config = pipe.scheduler.config
        warm_up(pipe, self.compile_status, warmup_runs(*self.compile_warmup), report)
        self.pipe = pipe

    def use_checkpoint(self, model: str, display_name: str | None, vae: str = "") -> None:
        """Point the (idle) backend at another checkpoint file or folder and VAE; the next load() loads them."""
        self.unload()
        self.model, self._display_name, self.vae = model, display_name, vae
        self.revision, self.model_hash = "", ""

    def _checkpoint_revision(self, source: str, report: Callable[[str], None]) -> str:
        """Hash a single-file checkpoint once per file version: its identity for the cache and A1111's Model hash."""
        report(f"hashing {Path(source).name} (A1111's Model hash)")
        self.model_hash = checkpoints.model_hash(source)
        return checkpoints.file_revision(source)

    def _swap_vae(self, pipe: Any, checkpoint: str | None) -> None:
        """Replace the pipeline's VAE by the chosen one (configured like the checkpoint's, for a VAE file)."""
        if self.vae:
            config = checkpoints.config_for(checkpoint) if checkpoint else None
            pipe.vae = checkpoints.load_vae(self.vae, self.placement.dtype, config)
            vae_id = model_revision(self.vae) if Path(self.vae).is_dir() else checkpoints.file_revision(self.vae)
            self.revision += "+vae:" + vae_id  # another VAE, other pixels: the cache must not mix them up

    def _vae_precision(self, pipe: Any, checkpoint: str | None) -> None:
        """SDXL in float16: the fp16-fix VAE from the VAE folder, else a VAE that decodes in float32 (its
        activations overflow float16: black pictures); the choice is in the health page's notes."""
        from pipelines.sdxl import is_sdxl
        from pipelines.vae_precision import apply_vae_precision, plan_vae_precision

        plan = plan_vae_precision(is_sdxl(pipe), self.placement.dtype, self.vae, self.vae_dir)
        config = checkpoints.config_for(checkpoint) if checkpoint and plan.action == "fp16-fix" else None
        apply_vae_precision(pipe, plan, self.placement.dtype, config)
        if plan.action != "none":
            self.notes.append(f"VAE: {plan.reason}")
        if plan.vae_path is not None:  # another VAE, other pixels: the cache must not mix them up
            path = plan.vae_path
            self.revision += "+vae:" + (model_revision(str(path)) if path.is_dir() else checkpoints.file_revision(path))

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

    def memory_mode_in_effect(self) -> str:
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
        mode = self.memory_mode_in_effect()
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

    def family(self) -> str:
        """The loaded model's family: "sdxl", "sd2" or "sd15" ("" before load)."""
        from pipelines.sdxl import pipeline_family

        return pipeline_family(self.pipe) if self.pipe is not None else ""

    def inpainting_unet(self) -> bool:
        """True for a dedicated inpainting checkpoint: its UNet also takes the mask and the masked picture."""
        return int(getattr(self.pipe.unet.config, "in_channels", 4)) == 9

    def task_pipe(self, task: str) -> Any:
        """The img2img or inpaint pipeline over the loaded one's modules (from_pipe: no second copy of weights)."""
        if self._task_pipes_of is not self.pipe:
            self._task_pipes, self._task_pipes_of = {}, self.pipe
        pipe = self._task_pipes.get(task)
        if pipe is None:
            from diffusers import AutoPipelineForImage2Image, AutoPipelineForInpainting

            auto = AutoPipelineForInpainting if task == "inpaint" else AutoPipelineForImage2Image
            # The AutoPipeline's from_pipe hands over the same module objects and leaves their dtype and device
            # alone (DiffusionPipeline.from_pipe would cast them to float32); offload hooks live on the modules.
            pipe = self._task_pipes[task] = auto.from_pipe(self.pipe)
            pipe.set_progress_bar_config(disable=True)
        pipe.scheduler = self.pipe.scheduler  # the sampler this job asked for
        return pipe

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
        self._task_pipes, self._task_pipes_of = {}, None
        self._offloaded = False
        self.compile_status = CompileStatus(self.compile_options)
        release_memory()

    def describe(self) -> dict[str, Any]:
        """Device, dtype and memory settings for the health page."""
        return {
            "device": self.placement.device,
            "dtype": self.placement.dtype_name,
            "memory_mode": self.memory_mode,
            "family": self.family(),
            "notes": list(self.notes),
            "compile": self.compile_status.as_dict(),
        }
