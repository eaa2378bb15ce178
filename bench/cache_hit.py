"""What the result cache saves: an identical /generate_image request (fixed seed) against a fresh one.

    python bench/cache_hit.py [--runs 7] [--size 256] [--steps 8]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from _server import start_server, wait_ready
from gradio_client import Client


def main() -> None:
    """Median latency of fresh generations (new seeds) and of cache hits (a repeated seed), as a ratio."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=8)
    args = parser.parse_args()
    params = {"prompt": "a lighthouse at dusk", "negative_prompt": "", "width": args.size, "height": args.size,
              "steps": args.steps, "cfg_scale": 7.0, "sampler": "Euler a", "batch_count": 1}
    os.environ["ATELIER_LIMIT_IMAGE_JOBS"] = "1000/minute"  # measure the cache, not the rate limit
    with tempfile.TemporaryDirectory(prefix="atelier-bench-") as tmp:
        proc, url, _ = start_server(Path(tmp), "--no-warmup")
        try:
            client = Client(url, verbose=False, download_files=False)
            client.predict(**params, seed=0, api_name="/generate_image")
            wait_ready(url, "image")

            def timed(seed: int) -> tuple[float, bool]:
                t0 = time.perf_counter()
                *_, info = client.predict(**params, seed=seed, api_name="/generate_image")
                return time.perf_counter() - t0, info["cached"]

            fresh = [timed(1000 + i) for i in range(args.runs)]
            hits = [timed(1000) for _ in range(args.runs)]
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    assert not any(cached for _, cached in fresh)
    assert all(cached for _, cached in hits)
    f, h = statistics.median(t for t, _ in fresh), statistics.median(t for t, _ in hits)
    print(f"tiny SD {args.size}x{args.size}, {args.steps} steps, through gradio_client, median of {args.runs}")
    print(f"  fresh generation : {f * 1000:8.1f} ms")
    print(f"  cache hit        : {h * 1000:8.1f} ms")
    print(f"  hit / fresh      : {h / f:8.2f}x")


if __name__ == "__main__":
    main()
