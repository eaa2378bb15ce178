"""GPU-only checks of the diffusers backend on a full-size Stable Diffusion 1.5 architecture (random weights).

Runs Atelier's DiffusersBackend (the same from_pretrained code as a real checkpoint) in fp16 with SDPA on
CUDA, then the memory modes, idle offload and Stop; reports it/s next to the raw diffusers call and peak
VRAM of each. Then compile off against on (Atelier's --compile) at batch 1/2/4/8, the pipeline called
directly with one generator per image, interleaved run by run: it/s, images/s and peak VRAM as
min/median/max, the compile warm-up time, the first job after it and the first job at a new size.
`--only sdxl` and `--only controlnet` run bench/sdxl_controlnet.py's checks instead (SDXL against plain diffusers,
at `--size 1024 --steps 30` for the issue's figures; ControlNet's cost per step with one and two units).
Needs a CUDA GPU; `--tiny` runs the same script on the tiny model on any device.

    python bench/gpu_check.py [--tiny] [--only backend|compile|sdxl|controlnet] [--steps 20] [--runs 5] [--out r.json]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import torch

from contracts import ImageRequest
from pipelines.compile import CompileOptions
from pipelines.diffusers_backend import DiffusersBackend
from pipelines.image_base import JobCancelled, StepUpdate
from pipelines.tiny import _tiny_clip_tokenizer, ensure_tiny_sd, ensure_tiny_sdxl


def build_sd15_random(out: Path) -> None:
    """Stable Diffusion 1.5's architecture (UNet 860M, VAE, 12-layer CLIP-L) with random fp16 weights."""
    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    tokenizer = _tiny_clip_tokenizer(out / "tokenizer")
    with torch.device("cuda"):
        torch.manual_seed(0)
        unet = UNet2DConditionModel(sample_size=64, cross_attention_dim=768, attention_head_dim=8)
        vae = AutoencoderKL(block_out_channels=(128, 256, 512, 512), layers_per_block=2, latent_channels=4,
                            down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                            sample_size=512, scaling_factor=0.18215)
        text = CLIPTextModel(CLIPTextConfig(hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                                            num_attention_heads=12, projection_dim=768, vocab_size=49408,
                                            max_position_embeddings=77, hidden_act="quick_gelu"))
    scheduler = PNDMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                              num_train_timesteps=1000, steps_offset=1, skip_prk_steps=True, set_alpha_to_one=False)
    pipe = StableDiffusionPipeline(vae=vae.half(), text_encoder=text.half(), tokenizer=tokenizer, unet=unet.half(),
                                   scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    pipe.save_pretrained(out, safe_serialization=True)
    del pipe, unet, vae, text
    torch.cuda.empty_cache()


def vram() -> dict[str, float]:
    """Peak and current allocated GPU memory in MiB since the last reset."""
    if not torch.cuda.is_available():
        return {}
    torch.cuda.synchronize()
    return {"peak_mib": round(torch.cuda.max_memory_allocated() / 2**20),
            "now_mib": round(torch.cuda.memory_allocated() / 2**20)}


def reset_peak() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()


def timed_generate(backend: DiffusersBackend, req: ImageRequest, seed: int = 42) -> tuple[float, Any]:
    updates: list[StepUpdate] = []
    t0 = time.perf_counter()
    (image,) = backend.generate(req, [seed], updates.append, threading.Event())
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - t0, (image, updates)


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def pipe_call(pipe: Any, req: ImageRequest, batch: int, width: int, height: int) -> tuple[float, Any]:
    """One pipeline call for `batch` images, one CPU generator per image (as the batcher gives each job its seed)."""
    generators = [torch.Generator("cpu").manual_seed(42 + i) for i in range(batch)]
    sync()
    t0 = time.perf_counter()
    out = pipe(prompt=req.prompt, negative_prompt=req.negative_prompt, width=width, height=height,
               num_inference_steps=req.steps, guidance_scale=req.cfg_scale, generator=generators,
               num_images_per_prompt=batch, output_type="np")
    sync()
    return time.perf_counter() - t0, out.images


def spread(values: list[float], digits: int = 3) -> dict[str, float]:
    """min/median/max of a list."""
    return {"min": round(min(values), digits), "median": round(statistics.median(values), digits),
            "max": round(max(values), digits)}


def compile_and_batch(model: Path, req: ImageRequest, args: argparse.Namespace) -> dict[str, Any]:
    """Compile off against on, batch 1/2/4/8, interleaved run by run (both pipelines resident at once)."""
    size = args.size
    options = CompileOptions(enabled=True, mode=args.compile_mode, scope=args.compile_scope,
                             backend=args.compile_backend)
    variants = {"eager": DiffusersBackend(str(model)),
                "compiled": DiffusersBackend(str(model), compile=options, compile_warmup=(size, size, req.cfg_scale))}
    out: dict[str, Any] = {"batches": args.batches, "runs": args.runs, "size": size, "steps": req.steps}
    for name, backend in variants.items():
        t0 = time.perf_counter()
        backend.load(lambda phase: None)
        out[name] = {"load_s": round(time.perf_counter() - t0, 2), "compile": backend.describe()["compile"],
                     "notes": backend.describe()["notes"]}
    for name, backend in variants.items():
        # After the warm-up: the first job at the warm-up's size, then at a size it never saw.
        out[name]["first_job_s"] = round(pipe_call(backend.pipe, req, 1, size, size)[0], 3)
        out[name]["new_size_first_job_s"] = round(pipe_call(backend.pipe, req, 1, size + 256, size)[0], 3)
        out[name]["new_size_second_job_s"] = round(pipe_call(backend.pipe, req, 1, size + 256, size)[0], 3)
    _, eager_images = pipe_call(variants["eager"].pipe, req, 1, size, size)
    _, compiled_images = pipe_call(variants["compiled"].pipe, req, 1, size, size)
    diff = np.abs(eager_images.astype(np.float64) - compiled_images.astype(np.float64)).max() * 255
    out["max_pixel_difference_compiled_vs_eager"] = round(float(diff), 2)
    samples: dict[tuple[str, int], list[float]] = {(n, b): [] for n in variants for b in args.batches}
    peaks: dict[tuple[str, int], list[float]] = {key: [] for key in samples}
    for batch in args.batches:  # the first call at each batch size: a recompile would show here
        for name, backend in variants.items():
            seconds, _ = pipe_call(backend.pipe, req, batch, size, size)
            out[name].setdefault("first_call_s", {})[batch] = round(seconds, 3)
    names = list(variants)
    for run in range(args.runs):
        for batch in args.batches:
            for name in names if run % 2 == 0 else names[::-1]:  # alternate who goes first
                reset_peak()
                seconds, _ = pipe_call(variants[name].pipe, req, batch, size, size)
                samples[(name, batch)].append(seconds)
                peaks[(name, batch)].append(vram().get("peak_mib", 0))
        print(f"run {run + 1}/{args.runs} done", flush=True)
    table: dict[str, Any] = {}
    for (name, batch), values in samples.items():
        median = statistics.median(values)
        table.setdefault(name, {})[batch] = {
            "s": spread(values), "it_s": spread([req.steps / v for v in values], 2),
            "images_s": spread([batch / v for v in values], 2), "peak_mib": max(peaks[(name, batch)]),
            "median_images_s": round(batch / median, 2)}
    out["table"] = table
    out["compiled_over_eager_images_s"] = {
        b: round(table["compiled"][b]["median_images_s"] / table["eager"][b]["median_images_s"], 3)
        for b in args.batches}
    out["batch_over_batch1_images_s"] = {
        name: {b: round(table[name][b]["median_images_s"] / table[name][args.batches[0]]["median_images_s"], 3)
               for b in args.batches} for name in variants}
    for name, backend in variants.items():
        print(f"{name:9s} " + "  ".join(
            f"b{b}: {table[name][b]['it_s']['median']:.2f} it/s {table[name][b]['images_s']['median']:.2f} img/s "
            f"[{table[name][b]['s']['min']:.3f}/{table[name][b]['s']['median']:.3f}/{table[name][b]['s']['max']:.3f} s]"
            for b in args.batches))
        backend.unload()
    return out


def backend_checks(model: Path, req: ImageRequest, args: argparse.Namespace, results: dict[str, Any]) -> None:
    """The backend against the raw call, Stop, idle offload and the memory modes."""
    # 1. fp16 + SDPA, everything on the GPU (memory mode none).
    reset_peak()
    backend = DiffusersBackend(str(model))
    t0 = time.perf_counter()
    backend.load(lambda phase: None)
    results["load_s"] = round(time.perf_counter() - t0, 1)
    results["placement"] = backend.describe()
    results["unet_attention"] = sorted({type(p).__name__ for p in backend.pipe.unet.attn_processors.values()})
    timed_generate(backend, req)  # warm-up
    seconds, (first, updates) = timed_generate(backend, req)
    _, (second, _) = timed_generate(backend, req)
    results["none"] = {"s": round(seconds, 3), "it_s": round(args.steps / seconds, 2), **vram(),
                       "previews": sum(u.preview is not None for u in updates),
                       "same_seed_same_pixels": bool(np.array_equal(np.asarray(first.image),
                                                                    np.asarray(second.image)))}

    # 2. The raw diffusers call on the very same pipeline object, for the ratio.
    pipe = backend.pipe
    gen = torch.Generator("cpu")
    pipe(prompt=req.prompt, negative_prompt=req.negative_prompt, width=args.size, height=args.size,
         num_inference_steps=args.steps, guidance_scale=7.0, generator=gen.manual_seed(42))
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    pipe(prompt=req.prompt, negative_prompt=req.negative_prompt, width=args.size, height=args.size,
         num_inference_steps=args.steps, guidance_scale=7.0, generator=gen.manual_seed(42))
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    raw = time.perf_counter() - t0
    results["raw"] = {"s": round(raw, 3), "it_s": round(args.steps / raw, 2),
                      "backend_over_raw": round(seconds / raw, 3)}

    # 3. Stop within one step, on the GPU.
    stop = threading.Event()
    steps_seen: list[int] = []

    def on_step(update: StepUpdate) -> None:
        steps_seen.append(update.step)
        if update.step == 3:
            stop.set()

    try:
        backend.generate(req.model_copy(update={"steps": 400}), [1], on_step, stop)
        results["stop"] = "not stopped"
    except JobCancelled:
        results["stop"] = {"stopped_after_steps": max(steps_seen), "of": 400}

    # 4. Idle offload: weights to CPU RAM, then back on the next load().
    reset_peak()
    backend.offload()
    results["offload"] = {"after_offload": vram()}
    t0 = time.perf_counter()
    backend.load(lambda phase: None)
    results["offload"]["restore_s"] = round(time.perf_counter() - t0, 2)
    seconds, _ = timed_generate(backend, req)
    results["offload"]["after_restore_s"] = round(seconds, 3)
    backend.unload()
    del pipe
    torch.cuda.empty_cache() if torch.cuda.is_available() else None

    # 5. The memory modes (A1111's medvram / lowvram).
    for mode, steps in (("model-offload", args.steps), ("sequential-offload", 4)):
        reset_peak()
        b = DiffusersBackend(str(model), memory_mode=mode)
        b.load(lambda phase: None)
        r = req.model_copy(update={"steps": steps})
        timed_generate(b, r)
        seconds, _ = timed_generate(b, r)
        results[mode] = {"steps": steps, "s": round(seconds, 3), "it_s": round(steps / seconds, 2), **vram(),
                         "notes": b.describe()["notes"]}
        b.unload()
        del b
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def main() -> None:
    """Run every check and print one table; write the numbers as JSON too."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--out", type=Path, default=None, help="default: bench/results/gpu_check[_tiny].json")
    parser.add_argument("--only", choices=["all", "backend", "compile", "sdxl", "controlnet"], default="all")
    parser.add_argument("--batches", type=lambda text: [int(b) for b in text.split(",")], default=[1, 2, 4, 8])
    parser.add_argument("--runs", type=int, default=5, help="interleaved timed runs per compile/batch pair")
    parser.add_argument("--compile-mode", default="default")
    parser.add_argument("--compile-scope", choices=["regional", "full"], default="regional")
    parser.add_argument("--compile-backend", default="inductor", help="eager/aot_eager: a quick smoke run on CPU")
    args = parser.parse_args()
    if not args.tiny and not torch.cuda.is_available():
        # The full-size model in fp16 is built on the GPU: on a CPU it would take many minutes and mean nothing.
        sys.exit("bench/gpu_check.py needs a CUDA GPU and torch found none; "
                 "run `python bench/gpu_check.py --tiny` to try the script on the tiny model on this machine.")
    name = "gpu_check_tiny.json" if args.tiny else "gpu_check.json"
    out_path = args.out or Path(__file__).parent / "results" / name
    results: dict[str, Any] = {"torch": torch.__version__,
                               "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else "none"}
    work = Path(tempfile.mkdtemp(prefix="atelier-gpu-"))
    if args.only in ("sdxl", "controlnet"):
        results[args.only] = sdxl_and_controlnet(args, work)
        write(results, out_path, work)
        return
    model = work / "sd"
    t0 = time.perf_counter()
    if args.tiny:
        ensure_tiny_sd(model)
    else:
        build_sd15_random(model)
    results["build_s"] = round(time.perf_counter() - t0, 1)
    req = ImageRequest(prompt="a lighthouse at dusk", negative_prompt="blurry", width=args.size, height=args.size,
                       steps=args.steps, cfg_scale=7.0, sampler="Euler a")

    if args.only in ("all", "backend"):
        backend_checks(model, req, args, results)
    if args.only in ("all", "compile"):
        results["compile_batch"] = compile_and_batch(model, req, args)

    write(results, out_path, work)


def write(results: dict[str, Any], out_path: Path, work: Path) -> None:
    """Print the results and write them as JSON; drop the work folder."""
    shutil.rmtree(work, ignore_errors=True)
    text = json.dumps(results, indent=1)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(text)
    print(text)
    print(f"written to {out_path}")


def sdxl_and_controlnet(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """bench/sdxl_controlnet.py's SDXL or ControlNet check at --size and --steps (the issue's figures: SDXL at
    `--size 1024 --steps 30`, ControlNet at 512², 20 steps, as bench/device/gpu_checks.sh sdxl runs them)."""
    from bench.sdxl_controlnet import build_sdxl_random, controlnet_check, sdxl_check

    if args.only == "sdxl":
        model = work / "sdxl"
        ensure_tiny_sdxl(model) if args.tiny else build_sdxl_random(model)
        return sdxl_check(model, 2 if args.tiny else args.steps, 64 if args.tiny else args.size, args.runs)
    model = work / "sd"
    ensure_tiny_sd(model) if args.tiny else build_sd15_random(model)
    return controlnet_check(model, work / "controlnet", 2 if args.tiny else args.steps, 64 if args.tiny else args.size,
                            args.runs)


if __name__ == "__main__":
    main()
