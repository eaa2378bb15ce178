"""What Atelier adds on top of diffusers: /generate_image through gradio_client vs the raw pipeline call.

Same tiny model, same parameters, same seed; the median of several runs each way, printed as a ratio,
plus the server's start-up time (process start → /api/health answers) and its resident memory idle,
before and after the model loaded.

    python bench/image_overhead.py [--runs 5] [--size 256] [--steps 8]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import psutil
from _server import start_server, wait_ready
from gradio_client import Client


def main() -> None:
    """Run both sides and print the figures."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=8)
    args = parser.parse_args()
    params = {"prompt": "a lighthouse at dusk", "negative_prompt": "", "width": args.size, "height": args.size,
              "steps": args.steps, "cfg_scale": 7.0, "seed": 42, "sampler": "Euler a", "batch_count": 1}

    with tempfile.TemporaryDirectory(prefix="atelier-bench-") as tmp:
        data_dir = Path(tmp)
        proc, url, startup_s = start_server(data_dir, "--no-warmup")
        try:
            rss_idle = psutil.Process(proc.pid).memory_info().rss
            client = Client(url, verbose=False, download_files=False)
            client.predict(**{**params, "steps": 1}, api_name="/generate_image")  # builds + loads the model
            wait_ready(url, "image")
            rss_loaded = psutil.Process(proc.pid).memory_info().rss
            api_times = []
            for _ in range(args.runs):
                t0 = time.perf_counter()
                client.predict(**params, api_name="/generate_image")
                api_times.append(time.perf_counter() - t0)
        finally:
            proc.terminate()
            proc.wait(timeout=30)

        # The raw library call on the very folder the app built and loaded.
        import torch
        from diffusers import EulerAncestralDiscreteScheduler, StableDiffusionPipeline

        pipe = StableDiffusionPipeline.from_pretrained(data_dir / "models" / "tiny-sd", dtype=torch.float32,
                                                       safety_checker=None, requires_safety_checker=False)
        pipe.scheduler = EulerAncestralDiscreteScheduler.from_config(pipe.scheduler.config)
        pipe.set_progress_bar_config(disable=True)

        def raw() -> None:
            pipe(prompt=params["prompt"], width=args.size, height=args.size, num_inference_steps=args.steps,
                 guidance_scale=7.0, generator=torch.Generator("cpu").manual_seed(42))

        raw()  # warm-up, as the app had its warm-up run
        raw_times = []
        for _ in range(args.runs):
            t0 = time.perf_counter()
            raw()
            raw_times.append(time.perf_counter() - t0)

    api, base = statistics.median(api_times), statistics.median(raw_times)
    print(f"tiny SD, {args.size}x{args.size}, {args.steps} steps, Euler a, median of {args.runs} runs, "
          f"torch {torch.__version__} on {'cuda' if torch.cuda.is_available() else 'cpu'}")
    print(f"  raw pipeline call        : {base * 1000:8.1f} ms")
    print(f"  /generate_image (client) : {api * 1000:8.1f} ms")
    print(f"  ratio api/raw            : {api / base:8.2f}x  (+{(api - base) * 1000:.0f} ms per job: queue, SSE, "
          "previews, PNG write, history row)")
    print(f"  start-up to /api/health  : {startup_s:8.1f} s")
    print(f"  server RSS idle          : {rss_idle / 2**20:8.0f} MiB (no model loaded)")
    print(f"  server RSS model loaded  : {rss_loaded / 2**20:8.0f} MiB")


if __name__ == "__main__":
    main()
