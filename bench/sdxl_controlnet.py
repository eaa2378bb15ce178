"""bench/gpu_check.py's SDXL and ControlNet checks (issue 24), on random weights of the real architectures.

- `sdxl`: SDXL base (UNet 2.6B, CLIP-L + OpenCLIP-G, VAE; the shipped configs) in float16 at 1024², 30 steps:
  Atelier's backend against the plain diffusers pipeline on the same folder, interleaved run by run: s, it/s and
  peak VRAM as min/median/max, and whether fp16 gave a finite, non-black picture (the VAE plan's job).
- `controlnet`: SD 1.5 at 512², 20 steps, with no unit, one and two units (a ControlNet made from the UNet), through
  Atelier's backend and diffusers' StableDiffusionControlNetPipeline: seconds per step and the cost of each unit.

`--tiny` runs the same code on the tiny models (any device), to try the script; its figures mean nothing.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from contracts import ImageRequest
from pipelines.control_units import make_unit
from pipelines.controlnet import available_controlnets
from pipelines.diffusers_backend import DiffusersBackend

CONFIGS = Path(__file__).resolve().parent.parent / "pipelines" / "configs"


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _peak_mib() -> int | None:
    return round(torch.cuda.max_memory_allocated() / 2**20) if torch.cuda.is_available() else None


def _reset() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()


def build_sdxl_random(out: Path) -> None:
    """SDXL base's architecture from the shipped configs with random float16 weights, saved as a diffusers folder."""
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from pipelines.checkpoints import clip_tokenizer

    cfg = CONFIGS / "sdxl"
    with torch.device("cuda"):
        torch.manual_seed(0)
        unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(cfg / "unet")).half()
        vae = AutoencoderKL.from_config(AutoencoderKL.load_config(cfg / "vae")).half()
        text = CLIPTextModel(CLIPTextConfig.from_pretrained(cfg / "text_encoder")).half()
        text_2 = CLIPTextModelWithProjection(CLIPTextConfig.from_pretrained(cfg / "text_encoder_2")).half()
    scheduler = EulerDiscreteScheduler.from_config(EulerDiscreteScheduler.load_config(cfg / "scheduler"))
    pipe = StableDiffusionXLPipeline(vae=vae, text_encoder=text, text_encoder_2=text_2, tokenizer=clip_tokenizer(),
                                     tokenizer_2=clip_tokenizer("!"), unet=unet, scheduler=scheduler,
                                     add_watermarker=False)
    pipe.save_pretrained(out, safe_serialization=True)
    del pipe, unet, vae, text, text_2
    torch.cuda.empty_cache()


def _spread(values: list[float], digits: int = 3) -> dict[str, float]:
    ordered = sorted(values)
    return {"min": round(ordered[0], digits), "median": round(ordered[len(ordered) // 2], digits),
            "max": round(ordered[-1], digits)}


def _backend_run(backend: DiffusersBackend, req: ImageRequest) -> tuple[float, np.ndarray]:
    _sync()
    t0 = time.perf_counter()
    (image,) = backend.generate(req, [42], lambda update: None, threading.Event())
    _sync()
    return time.perf_counter() - t0, np.asarray(image.image)


def _sane(pixels: np.ndarray) -> bool:
    """A finite picture that is not all black (a float16 VAE overflow gives NaN, stored as black)."""
    return bool(np.isfinite(pixels).all() and pixels.max() > 0)


def sdxl_check(model: Path, steps: int, size: int, runs: int) -> dict[str, Any]:
    """Atelier's backend and plain diffusers on the same SDXL folder, interleaved run by run."""
    from diffusers import StableDiffusionXLPipeline

    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.float16 if device == "cuda" else torch.float32
    req = ImageRequest(prompt="a lighthouse at dusk", negative_prompt="blurry", width=size, height=size,
                       steps=steps, cfg_scale=7.0, sampler="Euler")
    backend = DiffusersBackend(str(model), display_name="sdxl-random")
    backend.load(lambda phase: None)
    plain = StableDiffusionXLPipeline.from_pretrained(str(model), torch_dtype=dtype, add_watermarker=False)
    plain = plain.to(device)
    plain.set_progress_bar_config(disable=True)
    timings: dict[str, list[float]] = {"atelier": [], "diffusers": []}
    peaks: dict[str, list[int | None]] = {"atelier": [], "diffusers": []}
    sane = {"atelier": True, "diffusers": True}
    for i in range(runs + 1):  # the first round warms up and is not counted
        _reset()
        seconds, pixels = _backend_run(backend, req)
        if i:
            timings["atelier"].append(seconds)
            peaks["atelier"].append(_peak_mib())
        sane["atelier"] &= _sane(pixels)
        _reset()
        t0 = time.perf_counter()
        out = plain(prompt=req.prompt, negative_prompt=req.negative_prompt, width=size, height=size,
                    num_inference_steps=steps, guidance_scale=7.0, output_type="np",
                    generator=torch.Generator("cpu").manual_seed(42))
        _sync()
        if i:
            timings["diffusers"].append(time.perf_counter() - t0)
            peaks["diffusers"].append(_peak_mib())
        sane["diffusers"] &= bool(np.isfinite(out.images).all() and out.images.max() > 0)
    result = {"size": size, "steps": steps, "runs": runs, "notes": backend.describe()["notes"]}
    for name, values in timings.items():
        result[name] = {"s": _spread(values), "it_s": _spread([steps / v for v in values], 2),
                        "peak_mib": max((p for p in peaks[name] if p is not None), default=None),
                        "finite_not_black": sane[name]}
    backend.unload()
    del plain
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return result


def _control_picture(size: int) -> Image.Image:
    picture = Image.new("RGB", (size, size), (30, 30, 30))
    picture.paste((240, 240, 240), (size // 4, size // 4, 3 * size // 4, 3 * size // 4))
    return picture


def controlnet_check(model: Path, controlnet_dir: Path, steps: int, size: int, runs: int) -> dict[str, Any]:
    """Seconds per step with 0, 1 and 2 units, Atelier's backend against diffusers' ControlNet pipeline."""
    from diffusers import ControlNetModel, StableDiffusionControlNetPipeline

    from pipelines.tiny import ensure_tiny_controlnet

    net_dir = ensure_tiny_controlnet(controlnet_dir / "cn", model)  # ControlNetModel.from_unet: the real shape
    names = list(available_controlnets(controlnet_dir))
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.float16 if device == "cuda" else torch.float32
    backend = DiffusersBackend(str(model), display_name="sd15-random", controlnet_dir=controlnet_dir)
    backend.load(lambda phase: None)
    net = ControlNetModel.from_pretrained(str(net_dir), torch_dtype=dtype).to(device)
    theirs = StableDiffusionControlNetPipeline.from_pretrained(str(model), controlnet=net, torch_dtype=dtype,
                                                               safety_checker=None).to(device)
    theirs.set_progress_bar_config(disable=True)
    picture = _control_picture(size)
    unit = make_unit({"module": "none", "model": names[0], "image": picture}, models=names)
    timings: dict[str, list[float]] = {}
    for i in range(runs + 1):
        for units in (0, 1, 2):
            req = ImageRequest(prompt="a lighthouse", width=size, height=size, steps=steps, sampler="Euler",
                               controlnet=[unit] * units)
            seconds, _ = _backend_run(backend, req)
            if i:
                timings.setdefault(f"atelier_{units}", []).append(seconds / steps)
            if units:
                theirs.controlnet = net if units == 1 else _multi([net, net])
                image = picture if units == 1 else [picture, picture]
                _sync()
                t0 = time.perf_counter()
                theirs(prompt="a lighthouse", image=image, width=size, height=size, num_inference_steps=steps,
                       guidance_scale=7.0, output_type="np", generator=torch.Generator("cpu").manual_seed(42))
                _sync()
                if i:
                    timings.setdefault(f"diffusers_{units}", []).append((time.perf_counter() - t0) / steps)
    result: dict[str, Any] = {"size": size, "steps": steps, "runs": runs,
                              "s_per_step": {k: _spread(v, 4) for k, v in timings.items()}}
    base = sorted(timings["atelier_0"])[len(timings["atelier_0"]) // 2]
    result["unit_cost_per_step_s"] = {
        f"atelier_{n}": round(sorted(timings[f"atelier_{n}"])[runs // 2] - base, 4) for n in (1, 2)}
    backend.unload()
    return result


def _multi(nets: list[Any]) -> Any:
    from diffusers.models.controlnets.multicontrolnet import MultiControlNetModel

    return MultiControlNetModel(nets)
