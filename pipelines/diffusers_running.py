"""Running jobs on a loaded diffusers pipeline: batches of one compute shape as one call (a generator per image, rows
leaving at a Stop), the modes (txt2img, hires fix, img2img, inpaint), LoRAs, A1111 prompt syntax (over SDXL's two
text encoders too) and SDXL's size conditioning, ControlNet units (pipelines/control_apply.py), progress, previews and
Stop at every step. The pipeline itself is loaded by pipelines/diffusers_loading.py."""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from contracts import ImageRequest
from pipelines import control_apply, image_ops, loras, sdxl
from pipelines import prompts as prompt_syntax
from pipelines.controlnet import control_image
from pipelines.devices import release_memory
from pipelines.diffusers_loading import DiffusersModel
from pipelines.image_base import BatchItem, BatchOutcome, GeneratedImage, JobCancelled, ProgressFn
from pipelines.preview import latent_family, latents_to_preview
from pipelines.refiner import Refiners
from pipelines.vae_precision import nan_fallback

_clock = time.monotonic  # the preview throttle's clock (a test drives its own)

# Callback tensors with one row per image (or two with CFG) that must shrink when a job leaves a batch.
BATCH_TENSORS = ("latents", "prompt_embeds", "negative_prompt_embeds", "add_text_embeds", "add_time_ids",
                 "negative_pooled_prompt_embeds", "negative_add_time_ids")
# Scheduler attributes that carry per-image state between steps (DPM++/UniPC, LMS, Heun).
SCHEDULER_STATE = ("model_outputs", "last_sample", "derivatives", "prev_derivative", "sample")


class DiffusersRunner:
    """Runs image jobs on `model`'s pipeline, one batched call at a time (the batcher in services/ decides who rides
    together)."""

    def __init__(self, model: DiffusersModel, preview_every: int = 2, preview_interval_s: float = 0.0,
                 lora_dir: str | None = None, upscalers_dir: Path | None = None, controlnet_dir: Path | None = None,
                 annotators_dir: Path | None = None, resolve_refiner: Callable[[str], str] | None = None) -> None:
        self.model = model
        self.preview_every = max(1, preview_every)
        # At most one intermediate preview per this many seconds (the last step's always): each one copies the
        # latents to the CPU, which on a GPU waits for the queued steps, and the UI shows no more than one per
        # stream interval anyway.
        self.preview_interval_s = max(0.0, preview_interval_s)
        self.upscalers_dir = upscalers_dir  # hires fix upscaler models (spandrel), by file stem
        self.loras = loras.LoraLoader(Path(lora_dir) if lora_dir else None)
        self.controlnets = control_apply.ControlNetCache(controlnet_dir)
        self.annotators_dir = annotators_dir  # preprocessors' annotator weights (HED…)
        self.refiners = Refiners(model, resolve_refiner)  # the SDXL refiner kept beside the base

    def generate(
        self, req: ImageRequest, seeds: list[int], on_step: ProgressFn, stop: threading.Event
    ) -> list[GeneratedImage]:
        """Run one job image by image; each step reports progress and checks the stop signal."""
        results: list[GeneratedImage] = []
        for index, seed in enumerate(seeds):
            (outcome,) = self.generate_batch([BatchItem(req, [seed], on_step, stop, done_before=index,
                                                        job_images=len(seeds))])
            if outcome is None:
                raise JobCancelled()
            results.extend(outcome)
        return results

    def generate_batch(self, items: list[BatchItem]) -> list[BatchOutcome]:
        """Run jobs of one compute shape as one pipeline call, a generator per image, so each seed gives the
        picture it gives alone; a stopped item leaves the batch at the next step and gets None."""
        if self.model.pipe is None:
            raise RuntimeError("the image model is not loaded")
        if all(item.stop.is_set() for item in items):
            raise JobCancelled()
        if (apart := self._split_apart(items)) is not None:
            return apart
        pipe = self.model.pipe
        # Imported here: diffusers' scheduler package takes seconds to import, and start-up must not wait.
        from pipelines.samplers import make_scheduler

        req = items[0].req  # the shape (size, steps, sampler, CFG, mode settings, units) is the same for every item
        pipe.scheduler = make_scheduler(req.sampler, self.model.scheduler_config)
        # Every item asks for the same LoRAs (_split_apart).
        self.loras.apply(pipe, loras.parse_loras(req.prompt)[1], sdxl.pipeline_family(pipe))
        nets = self._controlnets(req)
        live = [not item.stop.is_set() for item in items]
        rows = [(i, seed) for i, item in enumerate(items) if live[i] for seed in item.seeds]
        # A CPU generator makes a seed give the same picture on every device, as in A1111's default. The list is
        # handed to the pipeline and shrunk in place when a job leaves, so the scheduler's noise stays per row.
        generators = [torch.Generator("cpu").manual_seed(seed) for _, seed in rows]
        control = control_apply.ControlState(cfg=_uses_cfg(pipe, req.cfg_scale)) if nets else None
        run = _Run(items, live, rows, generators, control=control, nets=nets)
        with self._running(pipe, run):
            images = self._run_mode(run, req)
        outcomes: list[BatchOutcome] = [[] if live[i] else None for i in range(len(items))]
        for (i, seed), image in zip(rows, images, strict=True):
            outcome = outcomes[i]
            if outcome is not None:
                outcome.append(GeneratedImage(image=image, seed=seed))
        # The VAE decode is not interruptible: re-check so a late Stop still wins.
        return [None if item.stop.is_set() else outcome for item, outcome in zip(items, outcomes, strict=True)]

    def _run_mode(self, run: _Run, req: ImageRequest) -> list[Any]:
        """The job's mode: one or two pipeline calls over the rows of `run`."""
        if req.refiner_checkpoint:
            return self._refined(run, req)
        if req.mode == "inpaint":
            return self._inpaint(run, req)
        if req.mode == "img2img":
            inputs = image_ops.prepare_inputs(req)
            steps, strength = _img2img_schedule(req.steps, req.denoising_strength, fixed=False)
            return self._img2img(run, [inputs.image] * len(run.rows), strength, steps)
        if req.enable_hr:
            return self._hires(run, req)
        return self._txt2img(run, req.width, req.height, "pil")

    @contextlib.contextmanager
    def _running(self, pipe: Any, run: _Run) -> Iterator[None]:
        """What wraps a batch's pipeline calls, outermost first: the ControlNet hook on the UNet (so the CPU split
        below splits its work too), the ControlNets on the GPU (model offload), the CPU row-by-row split, and the
        VAE decode redone in float32 if it gives NaN."""
        with contextlib.ExitStack() as stack:
            if run.control is not None:
                stack.enter_context(control_apply.controlled_unet(pipe.unet, run.control))
                stack.enter_context(self._nets_on_device(run.nets))
            stack.enter_context(row_by_row(pipe, run.rows, self._rowwise(run.rows)))
            stack.enter_context(nan_fallback(pipe.vae))
            yield

    # Modes: each runs one or two pipeline calls over the rows of `run` -----------------------------
    def _txt2img(self, run: _Run, width: int, height: int, output_type: str, extra_steps: int = 0) -> Any:
        """The txt2img pass (also hires fix's first); a 9-channel inpainting model paints a fully masked blank."""
        req = run.items[0].req
        if self.model.inpainting_unet():
            # As A1111 does for inpainting checkpoints: the whole picture is masked, the masked picture is empty.
            blank = Image.new("RGB", (width, height), (127, 127, 127))
            return self._inpaint_call(run, blank, Image.new("L", (width, height), 255), 1.0, req.steps,
                                      output_type=output_type, extra_steps=extra_steps)
        return self._call(self.model.pipe, run, (width, height), width=width, height=height,
                          num_inference_steps=req.steps, output_type=output_type, extra_steps=extra_steps)

    def _img2img(self, run: _Run, images: Any, strength: float, steps: int, offset: int = 0) -> Any:
        """An img2img pass from pictures or latents (one per row); on a 9-channel model, inpaint with a full mask."""
        first = images if isinstance(images, torch.Tensor) else images[0]
        height, width = ((first.shape[-2] * 8, first.shape[-1] * 8) if isinstance(first, torch.Tensor)
                         else (first.height, first.width))
        if self.model.inpainting_unet():
            return self._inpaint_call(run, images, Image.new("L", (width, height), 255), strength, steps,
                                      offset=offset)
        return self._call(self.model.task_pipe("img2img"), run, (width, height), image=images, strength=strength,
                          num_inference_steps=steps, output_type="pil", offset=offset)

    def _hires(self, run: _Run, req: ImageRequest) -> list[Any]:
        """Hires fix in one job: the base pass, an upscale (latent or picture), an img2img pass at the final size;
        progress counts both passes and a Stop ends either."""
        width, height = req.hr_size()
        steps, strength = _img2img_schedule(req.hr_second_pass_steps or req.steps, req.denoising_strength,
                                            fixed=True)
        planned = min(int(steps * strength), steps)
        latent = image_ops.is_latent_upscaler(req.hr_upscaler)
        base = self._txt2img(run, req.width, req.height, "latent" if latent else "pil", extra_steps=planned)
        offset, run.hires = run.steps_done, True
        if latent:
            upscaled = image_ops.upscale_latents(base, req.hr_upscaler, width, height)
        else:
            upscaled = [image_ops.upscale_image(image, req.hr_upscaler, width, height, self.upscalers_dir,
                                                self.model.placement.device) for image in base]
        return self._img2img(run, upscaled, strength, steps, offset=offset)

    def _refined(self, run: _Run, req: ImageRequest) -> list[Any]:
        """txt2img or img2img with A1111's refiner: the base denoises up to the switch, the refiner from there on the
        same latents (diffusers' denoising_end / denoising_start hand-off); ControlNet units and LoRAs apply to the
        base's part only."""
        refiner = self.refiners.get(req.refiner_checkpoint)
        from pipelines.samplers import make_scheduler

        width, height = req.width, req.height
        if req.mode == "img2img":
            steps, strength = _img2img_schedule(req.steps, req.denoising_strength, fixed=False)
            # A1111 switches after that fraction of the steps that run; diffusers' fractions are of the schedule.
            switch = 1 - strength + strength * req.refiner_switch_at
            inputs = image_ops.prepare_inputs(req)
            run_steps = min(int(steps * strength), steps)
            latents = self._call(self.model.task_pipe("img2img"), run, (width, height), image=[inputs.image] *
                                 len(run.rows), strength=strength, num_inference_steps=steps, output_type="latent",
                                 denoising_end=switch, extra_steps=run_steps - int(run_steps * req.refiner_switch_at))
        else:
            steps, switch = req.steps, req.refiner_switch_at
            latents = self._call(self.model.pipe, run, (width, height), width=width, height=height,
                                 num_inference_steps=steps, output_type="latent", denoising_end=switch,
                                 extra_steps=steps - round(steps * switch))
        pipe = refiner.task_pipe("img2img")
        pipe.scheduler = make_scheduler(req.sampler, refiner.scheduler_config)
        offset, control, run.control = run.steps_done, run.control, None  # units hook the base's UNet only
        try:
            with row_by_row(pipe, run.rows, self._rowwise(run.rows)), nan_fallback(pipe.vae):
                return self._call(pipe, run, (width, height), image=latents, num_inference_steps=steps,
                                  denoising_start=switch, output_type="pil", offset=offset)
        finally:
            run.control = control

    def _inpaint(self, run: _Run, req: ImageRequest) -> list[Any]:
        """Inpaint as A1111 does: prepare the picture and mask (crop for "only masked"), repaint, paste back."""
        inputs = image_ops.prepare_inputs(req)
        assert inputs.mask is not None
        steps, strength = _img2img_schedule(req.steps, req.denoising_strength, fixed=False)
        run.crop = inputs.paste_box  # "only masked": control pictures are cropped as the init image is
        images = self._inpaint_call(run, inputs.image, inputs.mask, strength, steps, fill=req.inpainting_fill)
        return [image_ops.paste_back(image, inputs) for image in images]

    def _inpaint_call(self, run: _Run, image: Any, mask: Image.Image, strength: float, steps: int, fill: int = 1,
                      output_type: str = "pil", offset: int = 0, extra_steps: int = 0) -> Any:
        """One call of the inpaint pipeline (4- or 9-channel UNet) with latents encoded per row from each row's
        own generator, so a seed gives the same picture in a batch as alone; `fill` 2 and 3 are A1111's latent
        noise and latent nothing."""
        pipe = self.model.task_pipe("inpaint")
        width, height = mask.size
        device, dtype = pipe._execution_device, pipe.vae.dtype
        binary = pipe.mask_processor.preprocess(mask, height=height, width=width).to(device)
        n = len(run.rows)
        if isinstance(image, torch.Tensor):  # latents from hires fix's latent upscale: nothing is kept
            latents = image.to(device, dtype)
            masked = torch.zeros(n, 3, height, width, device=device, dtype=dtype)
        else:
            images = image if isinstance(image, list) else [image] * n
            pixels = pipe.image_processor.preprocess(images, height=height, width=width).to(device, dtype)
            scale = pipe.vae.config.scaling_factor
            latents = torch.cat([_vae_encode(pipe.vae, pixels[r:r + 1], generator)
                                 for r, generator in enumerate(run.generators)]) * scale
            masked = pixels * (binary < 0.5)
        if fill in (2, 3):
            cells = torch.nn.functional.interpolate(binary, size=latents.shape[-2:], mode="bilinear").round()
            if fill == 2:  # the seed's own noise where the mask is, as A1111 draws it
                shape = (1, *latents.shape[1:])
                noise = torch.cat([torch.randn(shape, generator=torch.Generator("cpu").manual_seed(seed))
                                   for _, seed in run.rows]).to(device, dtype)
                latents = latents * (1 - cells) + noise * cells
            else:
                latents = latents * (1 - cells)
        return self._call(pipe, run, (width, height), image=latents, mask_image=mask, masked_image_latents=masked,
                          strength=strength, width=width, height=height, num_inference_steps=steps,
                          output_type=output_type, offset=offset, extra_steps=extra_steps)

    def _call(self, pipe: Any, run: _Run, size: tuple[int, int], offset: int = 0, extra_steps: int = 0,
              **kwargs: Any) -> Any:
        """One pipeline call over the rows at `size` (width, height): prompts per row, a generator per row, SDXL's
        size conditioning, this pass's ControlNet units, progress and Stop every step."""
        req = run.items[0].req
        names = [n for n in BATCH_TENSORS if n in getattr(pipe, "_callback_tensor_inputs", ("latents",))]
        # The inpaint loops keep per-row tensors of their own (image latents, noise) that a callback cannot cut, so
        # there a stopped job stays in the call until it ends; the others lose its rows at once.
        cut = "Inpaint" not in type(pipe).__name__
        callback = self._batch_callback(run, names, cut, offset, extra_steps)
        # A1111's size conditioning: original and target size are the size being made (hires: the upscaled size).
        extra = sdxl.size_conditioning(*size, pipe=pipe) if sdxl.is_sdxl(pipe) else {}
        if run.control is not None:
            run.control.start_pass(self._applied_units(run, size), pipe)
        output = pipe(**self._prompts(pipe, run, req.cfg_scale), guidance_scale=req.cfg_scale,
                      generator=run.generators, callback_on_step_end=callback,
                      callback_on_step_end_tensor_inputs=names, **kwargs, **extra)
        return output.images

    def _prompts(self, pipe: Any, run: _Run, cfg_scale: float) -> dict[str, Any]:
        """The rows' prompts (A1111 syntax applied, LoRA tags out), or their embeddings encoded one by one where a
        batch must keep CPU pixels exact."""
        reqs = [run.items[i].req for i, _ in run.rows]
        if sdxl.is_sdxl(pipe):
            # Always A1111's encoding, syntax or not: diffusers encodes an empty negative prompt where A1111 zeroes
            # it. It encodes one prompt at a time, so a batch keeps each row's embeddings exact.
            return sdxl.encode_prompts(pipe, [loras.strip_loras(r.prompt) for r in reqs],
                                       [loras.strip_loras(r.negative_prompt) for r in reqs], _uses_cfg(pipe, cfg_scale))
        prompts = prompt_inputs(pipe, cfg_scale, reqs)
        if "prompt" in prompts and self._rowwise(run.rows) and prompt_syntax.supports_weighting(pipe):
            prompts = encode_row_by_row(pipe, cfg_scale, prompts)
        return prompts

    # ControlNet ------------------------------------------------------------------------------------
    def _controlnets(self, req: ImageRequest) -> list[Any]:
        """The loaded ControlNets of the job's enabled units (none without units); a unit whose model is gone or of
        another family than the checkpoint's fails the job with the message naming it."""
        if not req.active_units():
            return []
        placement = self.model.placement
        return self.controlnets.nets_for(req.controlnet, sdxl.pipeline_family(self.model.pipe), placement.dtype,
                                         self._place_net)

    def _place_net(self, net: Any) -> Any:
        """Where a newly loaded ControlNet waits: the GPU, or the CPU under the offload memory modes (sequential
        offload: accelerate's hooks bring each layer over as it runs; model offload: _nets_on_device)."""
        mode, device = self.model.memory_mode_in_effect(), self.model.placement.device
        if mode == "sequential-offload":
            from accelerate import cpu_offload

            cpu_offload(net, device)
            return net
        return net.to("cpu" if mode == "model-offload" else device).eval()

    @contextlib.contextmanager
    def _nets_on_device(self, nets: list[Any]) -> Iterator[None]:
        """Under model offload, the batch's ControlNets sit on the GPU while it runs, and go back after."""
        if self.model.memory_mode_in_effect() != "model-offload":
            yield
            return
        for net in nets:
            net.to(self.model.placement.device)
        try:
            yield
        finally:
            for net in nets:
                net.to("cpu")
            release_memory()

    def _applied_units(self, run: _Run, size: tuple[int, int]) -> list[control_apply.AppliedUnit]:
        """The units as this pass applies them, their maps made at the pass's size (once per size)."""
        req = run.items[0].req
        maps = []
        for i, unit in enumerate(req.active_units()):
            key = (i, size)
            if key not in run.maps:
                run.maps[key] = control_image(self._cropped(unit, req, run.crop), *size, self.annotators_dir,
                                              fallback=req.init_image)
            maps.append(run.maps[key])
        return control_apply.applied_units(req.active_units(), run.nets, maps, hires=run.hires)

    @staticmethod
    def _cropped(unit: Any, req: ImageRequest, crop: image_ops.Box | None) -> Any:
        """With "only masked", the unit's picture (else the init image) brought to the init image's size and cut to
        the crop the init image is cut to, as sd-webui-controlnet does."""
        picture = unit.image if unit.image is not None else req.init_image
        if crop is None or picture is None or req.init_image is None:
            return unit
        return unit.model_copy(update={"image": picture.convert("RGB").resize(req.init_image.size).crop(crop)})

    def _split_apart(self, items: list[BatchItem]) -> list[BatchOutcome] | None:
        """Jobs asking for different LoRAs (adapters are set on the pipeline) or with prompts of different 77-token
        chunk counts (padding would change a short prompt's pixels) cannot share a call: run each group as its own
        call; None when they all can."""
        groups: dict[Any, list[int]] = {}
        for i, item in enumerate(items):
            key = (loras.lora_key(item.req.prompt), prompt_syntax.chunk_count(self.model.pipe, item.req.prompt),
                   prompt_syntax.chunk_count(self.model.pipe, item.req.negative_prompt))
            groups.setdefault(key, []).append(i)
        if len(groups) < 2:
            return None
        outcomes: list[BatchOutcome] = [None] * len(items)
        for members in groups.values():
            with contextlib.suppress(JobCancelled):  # every job of this set stopped: theirs stay None
                for i, outcome in zip(members, self.generate_batch([items[i] for i in members]), strict=True):
                    outcomes[i] = outcome
        return outcomes


    def _rowwise(self, rows: list[tuple[int, int]]) -> bool:
        """True when a batch must run image by image inside its call to keep CPU pixels exact."""
        return not self.model.placement.device.startswith("cuda") and len(rows) > 1



    def _batch_callback(self, run: _Run, names: list[str], cut: bool, offset: int = 0,
                        extra_steps: int = 0) -> Callable[[Any, int, Any, dict[str, Any]], dict[str, Any]]:
        """Progress, previews and Stop at every step; `offset` steps were done by an earlier pass of the job and
        `extra_steps` are still to come in a later one (hires fix)."""
        every, interval = self.preview_every, self.preview_interval_s
        family = latent_family(self.model.pipe)
        items, live, rows = run.items, run.live, run.rows
        last_preview = -math.inf  # this pass's first preview is never held back

        def leave(pipe: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
            """Drop stopped jobs (and, where the pipeline allows, their rows); raise when no job is left."""
            stopped = {i for i, item in enumerate(items) if live[i] and item.stop.is_set()}
            if stopped:
                if cut:
                    kwargs = drop_rows(pipe, kwargs, rows, run.generators, stopped)
                for i in stopped:
                    live[i] = False
            if not any(live[i] for i, _ in rows):
                # Raising leaves the denoising loop at once: no more UNet calls, no VAE decode.
                raise JobCancelled()
            return kwargs

        def callback(pipe: Any, step: int, timestep: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
            kwargs = leave(pipe, kwargs)
            if run.control is not None:
                run.control.step = step + 1  # the ControlNet hook's guidance window reads it
            this_pass = int(getattr(pipe, "num_timesteps", 0) or step + 1)
            per_image = offset + this_pass + extra_steps
            done = offset + step + 1
            run.steps_done = done
            nonlocal last_preview
            now = _clock()
            show = ((step + 1) % every == 0 and now - last_preview >= interval) or step + 1 == this_pass
            if show:
                last_preview = now
            first_row: dict[int, int] = {}
            for row, (i, _) in enumerate(rows):
                first_row.setdefault(i, row)
            for i, row in first_row.items():
                if not live[i]:
                    continue
                preview = latents_to_preview(kwargs["latents"][row:row + 1], family) if show else None
                items[i].on_step(items[i].step_update(per_image, done, preview))
            return leave(pipe, kwargs)  # a Stop that arrived while this step was reported leaves before the next

        return callback



@dataclass
class _Run:
    """The jobs of one generate_batch call and their rows (job index, seed), which shrink when a job stops."""

    items: list[BatchItem]
    live: list[bool]
    rows: list[tuple[int, int]]
    generators: list[Any]
    steps_done: int = 0  # per image, over the passes so far (hires fix runs two)
    control: control_apply.ControlState | None = None  # the ControlNet hook's state; None without units
    nets: list[Any] = field(default_factory=list)  # the loaded ControlNet of each enabled unit
    maps: dict[tuple[int, tuple[int, int]], Image.Image] = field(default_factory=dict)  # (unit, size) -> map
    hires: bool = False  # in a hires fix's second pass
    crop: image_ops.Box | None = None  # inpaint "only masked": the init image's crop


def prompt_inputs(pipe: Any, cfg_scale: float, reqs: list[ImageRequest]) -> dict[str, Any]:
    """The prompts without their <lora:…> tags; with A1111 weighting or past 75 tokens, as embeddings built by
    pipelines/prompts.py (a plain prompt gives the same embeddings either way)."""
    texts = [loras.strip_loras(r.prompt) for r in reqs]
    negatives = [loras.strip_loras(r.negative_prompt) for r in reqs]
    if not prompt_syntax.supports_weighting(pipe):  # SDXL and others: the words, without the syntax
        return {"prompt": [prompt_syntax.plain_text(t) for t in texts],
                "negative_prompt": [prompt_syntax.plain_text(n) for n in negatives]}
    if any(prompt_syntax.needs_own_encoding(pipe.tokenizer, t) for t in texts + negatives):
        return prompt_syntax.encode_prompts(pipe, texts, negatives, _uses_cfg(pipe, cfg_scale))
    return {"prompt": texts, "negative_prompt": negatives}


def encode_row_by_row(pipe: Any, cfg_scale: float, prompts: dict[str, Any]) -> dict[str, Any]:
    """Prompt embeddings encoded one prompt at a time, as the pipeline encodes a lone job's (see row_by_row)."""
    cfg = _uses_cfg(pipe, cfg_scale)
    pairs = [pipe.encode_prompt(p, pipe._execution_device, 1, cfg, n or None)
             for p, n in zip(prompts["prompt"], prompts["negative_prompt"], strict=True)]
    embeds = {"prompt_embeds": torch.cat([pos for pos, _ in pairs])}
    if cfg:
        embeds["negative_prompt_embeds"] = torch.cat([neg for _, neg in pairs])
    return embeds


@contextlib.contextmanager
def row_by_row(pipe: Any, rows: list[tuple[int, int]], rowwise: bool) -> Iterator[None]:
    """On CPU, run the UNet and the VAE decode one image at a time inside the batched call.

    CPU matrix kernels round differently for different batch sizes (the time-embedding Linear is the first
    to differ, by ~1e-6), so a true batch would change pixels; row by row each image sees exactly the shapes
    it sees alone, and the batch still shares the text encoder, the scheduler and the per-step Python work.
    On a GPU the batch runs whole: the differences stay within fp16 tolerance (bench/gpu_check.py).
    """
    if not rowwise:
        yield
        return
    unet, vae = pipe.unet, pipe.vae
    # The methods in place now (the class's, or a wrapper such as the ControlNet hook), restored afterwards.
    saved = [(module, name, name in vars(module), getattr(module, name)) for module, name in
             ((unet, "forward"), (vae, "decode"))]
    unet_forward, vae_decode = unet.forward, vae.decode

    def split_unet(sample: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        n = len(rows)
        # With CFG the UNet sees [negatives; positives]: image r is rows r and n + r, as it is alone.
        groups = [[r, n + r] for r in range(n)] if sample.shape[0] == 2 * n else [[r] for r in range(n)]
        parts = []
        for group in groups:
            cut_args, cut_kwargs = _take((sample, *args), kwargs, group, sample.shape[0])
            parts.append(unet_forward(*cut_args, **cut_kwargs))
        order = [g for group in groups for g in group]
        stacked = torch.cat([p[0] if isinstance(p, tuple) else p.sample for p in parts])
        merged = stacked[torch.tensor(sorted(range(len(order)), key=order.__getitem__))]
        return (merged,)

    def split_decode(z: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        kwargs.pop("generator", None)  # SD's VAE decode draws no noise; the list would not match one row
        parts = [vae_decode(z[r:r + 1], *args, **{**kwargs, "return_dict": False})[0] for r in range(z.shape[0])]
        return (torch.cat(parts),)

    unet.forward, vae.decode = split_unet, split_decode
    try:
        yield
    finally:
        for module, name, own, method in saved:
            if own:
                setattr(module, name, method)
            else:
                delattr(module, name)  # back to the class's method


def drop_rows(pipe: Any, kwargs: dict[str, Any], rows: list[tuple[int, int]], generators: list[Any],
               stopped: set[int]) -> dict[str, Any]:
    """Take the stopped items' rows out of the running batch: latents, embeddings, scheduler state, noise."""
    n = len(rows)
    keep = [r for r, (i, _) in enumerate(rows) if i not in stopped]
    # With CFG the pipeline concatenates [negative; positive] embeddings: 2n rows, the same cut in each half.
    keep_cfg = keep + [n + r for r in keep]

    def cut(value: Any) -> Any:
        if isinstance(value, torch.Tensor) and value.dim() and value.shape[0] in (n, 2 * n):
            index = keep if value.shape[0] == n else keep_cfg
            return value[torch.tensor(index, dtype=torch.long, device=value.device)]
        if isinstance(value, list):
            return [cut(v) for v in value]
        return value

    out = {name: cut(value) for name, value in kwargs.items()}
    if keep:
        for attr in SCHEDULER_STATE:  # multistep samplers remember earlier outputs, one row per image
            if getattr(pipe.scheduler, attr, None) is not None:
                setattr(pipe.scheduler, attr, cut(getattr(pipe.scheduler, attr)))
    rows[:] = [rows[r] for r in keep]
    generators[:] = [generators[r] for r in keep]
    return out


def _img2img_schedule(steps: int, strength: float, fixed: bool) -> tuple[int, float]:
    """(num_inference_steps, strength) for a diffusers img2img pass. A1111 runs int(steps x strength) steps of a
    `steps` schedule for img2img, and exactly `steps` steps for hires fix's pass (`fixed`); at least one step."""
    if fixed and strength > 0:
        total = max(steps, math.ceil(steps / min(strength, 0.999)))
        while min(int(total * strength), total) < steps:  # float rounding: make sure `steps` steps run
            total += 1
        return total, strength
    return steps, max(strength, 1.0 / steps)


def _vae_encode(vae: Any, pixels: Any, generator: Any) -> Any:
    """A picture's latent sample; a float16 VAE that must upcast (SDXL's, whose activations overflow float16)
    encodes in float32, as diffusers' SDXL pipelines do, and hands back float16 latents."""
    if vae.dtype != torch.float16 or not getattr(vae.config, "force_upcast", False):
        return vae.encode(pixels).latent_dist.sample(generator)
    vae.to(torch.float32)
    try:
        return vae.encode(pixels.float()).latent_dist.sample(generator).half()
    finally:
        vae.to(torch.float16)


def _uses_cfg(pipe: Any, cfg_scale: float) -> bool:
    """Whether the pipeline runs classifier-free guidance (and so needs negative embeddings) at this scale."""
    return cfg_scale > 1 and getattr(pipe.unet.config, "time_cond_proj_dim", None) is None


def _take(args: tuple[Any, ...], kwargs: dict[str, Any], rows: list[int],
          batch: int) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """(args, kwargs) cut to `rows` of the batch dimension: every tensor (also inside dicts) of `batch` rows."""
    index = torch.tensor(rows, dtype=torch.long)

    def cut(value: Any) -> Any:
        if isinstance(value, torch.Tensor) and value.dim() and value.shape[0] == batch:
            return value[index.to(value.device)]
        if isinstance(value, dict):
            return {k: cut(v) for k, v in value.items()}
        return value

    return (*[cut(a) for a in args],), {k: cut(v) for k, v in kwargs.items()}
