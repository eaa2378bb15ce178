"""N concurrent clients × M jobs through the app: batched against unbatched against serial, same seeds.

Two app processes on the tiny profile (cache off, so every job computes): one batches
(ATELIER_MAX_BATCH_IMAGES=--max-batch), one does not (=1). Each run measures three sides, in a rotating order:
"batched" and "unbatched" (all clients at once against that server) and "serial" (the same jobs one after
another from one client, on the unbatched server). Reports images/s (min/median/max over runs), p50/p95 job
latency, the largest pixel difference of each side against unbatched for the same seeds, and each server's
peak RSS.

    python bench/image_throughput.py [--clients 4] [--jobs 4] [--runs 3] [--max-batch 4] [--save]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from _server import ROOT, start_server, wait_ready
from gradio_client import Client
from PIL import Image

SIDES = ("batched", "unbatched", "serial")


def peak_rss_mib(pid: int) -> float:
    """The process's peak resident set size (VmHWM), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def pixels(images_dir: Path, info: dict[str, Any]) -> np.ndarray:
    """The job's stored PNG as an int array."""
    with Image.open(images_dir / info["files"][0]) as image:
        return np.asarray(image.convert("RGB"), dtype=np.int16)


def run_side(url: str, images_dir: Path, params: dict[str, Any], seeds: list[list[int]], concurrent: bool
             ) -> tuple[float, list[float], dict[int, np.ndarray]]:
    """All jobs of all clients (at once, or one after another); wall seconds, latencies and pixels per seed."""
    clients = [Client(url, verbose=False, download_files=False) for _ in seeds]

    def client_jobs(i: int) -> list[tuple[int, float, np.ndarray]]:
        out = []
        for seed in seeds[i]:
            start = time.perf_counter()
            *_, info = clients[i].predict(**params, seed=seed, api_name="/generate_image")
            out.append((seed, time.perf_counter() - start, pixels(images_dir, info)))
        return out

    t0 = time.perf_counter()
    if concurrent:
        with ThreadPoolExecutor(len(seeds)) as pool:
            done = [r for rs in pool.map(client_jobs, range(len(seeds))) for r in rs]
    else:
        done = [r for i in range(len(seeds)) for r in client_jobs(i)]
    wall = time.perf_counter() - t0
    for client in clients:
        client.close()
    return wall, [t for _, t, _ in done], {seed: p for seed, _, p in done}


def main() -> None:
    """Start both servers, warm them, then interleave the three sides run by run."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--jobs", type=int, default=4, help="jobs per client")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--max-batch", type=int, default=4)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--save", action="store_true", help="write bench/results/image_throughput.json")
    args = parser.parse_args()
    params = {"prompt": "a lighthouse at dusk", "negative_prompt": "", "width": args.size, "height": args.size,
              "steps": args.steps, "cfg_scale": 7.0, "sampler": "Euler a", "batch_count": 1}
    seeds = [[1000 + c * args.jobs + j for j in range(args.jobs)] for c in range(args.clients)]
    os.environ.update(ATELIER_CACHE_ENABLED="false", ATELIER_LIMIT_IMAGE_JOBS="10000/minute")
    servers: dict[str, tuple[Any, str, Path]] = {}
    with tempfile.TemporaryDirectory(prefix="atelier-bench-") as tmp:
        try:
            for name, batch in (("batched", args.max_batch), ("unbatched", 1)):
                os.environ["ATELIER_MAX_BATCH_IMAGES"] = str(batch)
                data = Path(tmp) / name
                proc, url, _ = start_server(data, "--no-warmup")
                servers[name] = (proc, url, data / "images")
                Client(url, verbose=False, download_files=False).predict(**params, seed=1,
                                                                        api_name="/generate_image")
                wait_ready(url, "image")
            walls: dict[str, list[float]] = {side: [] for side in SIDES}
            latencies: dict[str, list[float]] = {side: [] for side in SIDES}
            images: dict[str, dict[int, np.ndarray]] = {side: {} for side in SIDES}
            for run in range(args.runs):
                order = SIDES[run % 3:] + SIDES[:run % 3]  # rotate, so no side always runs first
                for side in order:
                    _, url, images_dir = servers["batched" if side == "batched" else "unbatched"]
                    wall, lat, pix = run_side(url, images_dir, params, seeds, concurrent=side != "serial")
                    walls[side].append(wall)
                    latencies[side].extend(lat)
                    images[side].update(pix)
                    print(f"run {run + 1} {side:9s}: {len(lat) / wall:6.2f} images/s", flush=True)
            peak = {name: peak_rss_mib(proc.pid) for name, (proc, _, _) in servers.items()}
        finally:
            for proc, _, _ in servers.values():
                proc.terminate()
                proc.wait(timeout=30)
    total = args.clients * args.jobs
    report: dict[str, Any] = {
        "setup": {**vars(args), "profile": "tiny", "device": "cpu", "cpu_count": os.cpu_count()},
        "peak_rss_mib": peak, "sides": {},
    }
    print(f"\n{args.clients} clients x {args.jobs} jobs, tiny SD {args.size}x{args.size}, {args.steps} steps, "
          f"max batch {args.max_batch}, {args.runs} interleaved runs")
    for side in SIDES:
        rates = sorted(total / w for w in walls[side])
        lat = sorted(latencies[side])
        diff = max(int(np.abs(images[side][s] - images["unbatched"][s]).max()) for s in images["unbatched"])
        report["sides"][side] = {
            "images_per_s": {"min": rates[0], "median": statistics.median(rates), "max": rates[-1]},
            "latency_s": {"p50": float(np.percentile(lat, 50)), "p95": float(np.percentile(lat, 95))},
            "max_pixel_diff_vs_unbatched": diff,
        }
        print(f"  {side:9s}: images/s min {rates[0]:5.2f} median {statistics.median(rates):5.2f} max {rates[-1]:5.2f}"
              f" · latency p50 {np.percentile(lat, 50):5.2f} s p95 {np.percentile(lat, 95):5.2f} s"
              f" · max pixel diff vs unbatched {diff}")
    med = {side: report["sides"][side]["images_per_s"]["median"] for side in SIDES}
    # The machine's load can change between runs: the ratio within each run is the fairer figure.
    per_run = {other: sorted(walls[other][r] / walls["batched"][r] for r in range(args.runs))
               for other in ("serial", "unbatched")}
    report["ratios"] = {"batched_vs_serial": med["batched"] / med["serial"],
                        "batched_vs_unbatched": med["batched"] / med["unbatched"],
                        "per_run_batched_vs_serial": per_run["serial"],
                        "per_run_batched_vs_unbatched": per_run["unbatched"]}
    for other, ratios in per_run.items():
        print(f"  batched / {other} within each run: min {ratios[0]:.2f}x median {statistics.median(ratios):.2f}x "
              f"max {ratios[-1]:.2f}x")
    print(f"  medians: batched / serial {report['ratios']['batched_vs_serial']:.2f}x · batched / unbatched "
          f"{report['ratios']['batched_vs_unbatched']:.2f}x · peak RSS " +
          ", ".join(f"{k} {v:.0f} MiB" for k, v in peak.items()))
    if args.save:
        out = ROOT / "bench" / "results" / "image_throughput.json"
        out.write_text(json.dumps(report, indent=2) + "\n")
        print(f"  written to {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
