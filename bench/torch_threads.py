"""How many torch threads an image job should use: tiny image jobs at each intra-op thread count, on an idle
machine and under a competing load (one busy process per core, as other jobs or tenants would make).

Every round runs each thread count once, idle and loaded, the order alternating round by round (interleaved);
it prints min / median / max per cell. Inter-op threads are 1 throughout (torch can set them only once per
process; the pipelines do no inter-op parallel work). Used to choose ATELIER_TORCH_THREADS per profile.

    python bench/torch_threads.py [--runs 6] [--size 256] [--steps 8] [--threads 1 2]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from _server import ROOT, apply_threads, fmt, load_average, save, stats


def spin(stop: Any) -> None:
    """Busy work on one core until told to stop: the competing load."""
    x = 0
    while not stop.is_set():
        for _ in range(100_000):
            x += 1


class Load:
    """One busy process per core, while the context is open (or nothing, when off)."""

    def __init__(self, on: bool, processes: int) -> None:
        self.on, self.processes = on, processes
        self.stop = multiprocessing.Event()
        self.workers: list[multiprocessing.Process] = []

    def __enter__(self) -> Load:
        if self.on:
            self.workers = [multiprocessing.Process(target=spin, args=(self.stop,), daemon=True)
                            for _ in range(self.processes)]
            for worker in self.workers:
                worker.start()
            time.sleep(0.2)  # let them get going
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for worker in self.workers:
            worker.join(10)


def main() -> None:
    """Run the grid interleaved; print and save min / median / max per (load, threads)."""
    cores = os.cpu_count() or 1
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=6)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--threads", type=int, nargs="+", default=sorted({1, max(1, cores // 2), cores}))
    parser.add_argument("--load", type=int, default=cores, help="busy processes while loaded")
    args = parser.parse_args()
    apply_threads(args.threads[0], 1)
    import sys

    sys.path.insert(0, str(ROOT))
    import torch
    from diffusers import EulerAncestralDiscreteScheduler, StableDiffusionPipeline

    from pipelines.tiny import ensure_tiny_sd

    with tempfile.TemporaryDirectory(prefix="atelier-bench-") as tmp:
        pipe = StableDiffusionPipeline.from_pretrained(str(ensure_tiny_sd(Path(tmp) / "tiny-sd")))
        pipe.scheduler = EulerAncestralDiscreteScheduler.from_config(pipe.scheduler.config)
        pipe.set_progress_bar_config(disable=True)

        def job(threads: int) -> float:
            torch.set_num_threads(threads)
            t0 = time.perf_counter()
            pipe(prompt="a lighthouse at dusk", width=args.size, height=args.size, num_inference_steps=args.steps,
                 guidance_scale=7.0, generator=torch.Generator("cpu").manual_seed(42))
            return time.perf_counter() - t0

        for threads in args.threads:  # warm-up, each thread count
            job(threads)
        times: dict[tuple[bool, int], list[float]] = {(on, t): [] for on in (False, True) for t in args.threads}
        for i in range(args.runs):
            for on in ((False, True) if i % 2 == 0 else (True, False)):
                with Load(on, args.load):
                    order = args.threads if (i // 2) % 2 == 0 else list(reversed(args.threads))
                    for threads in order:
                        times[(on, threads)].append(job(threads))
    result: dict[str, Any] = {
        "what": f"tiny SD {args.size}x{args.size}, {args.steps} steps, Euler a, CFG 7, seed 42; raw diffusers call",
        "cpus": cores, "interleaved_runs": args.runs, "load_processes": args.load, "inter_op_threads": 1,
        "torch": torch.__version__, "load_average_after": load_average(),
        "ms": {f"{'loaded' if on else 'idle'}, {t} threads": stats(v, 1000) for (on, t), v in times.items()},
    }
    print(f"{result['what']}; {args.runs} interleaved rounds on {cores} CPUs; load: {args.load} busy processes")
    for name, row in result["ms"].items():
        print(f"  {name:<22} {fmt(row, 'ms')}")
    print(f"  saved to {save('torch_threads', result)}")


if __name__ == "__main__":
    main()
