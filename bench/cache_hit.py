"""What the result cache saves: an identical /generate_image request (fixed seed) against a fresh one, through
gradio_client, interleaved run by run (the order alternates), with the floor beside them: a plain Gradio app's
queued echo (bench/_vanilla_gradio.py), what any queued call costs through Gradio and gradio_client with no app.

    python bench/cache_hit.py [--runs 7] [--size 256] [--steps 8]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from _server import fmt, load_average, save, start_server, stats, wait_ready
from gradio_client import Client
from image_overhead import start_vanilla_gradio


def main() -> None:
    """Fresh generations (new seeds) and cache hits (a repeated seed) in alternation; their ratio per round."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--out", default=None, help="results file name in bench/results/ (none: printed only)")
    args = parser.parse_args()
    params = {"prompt": "a lighthouse at dusk", "negative_prompt": "", "width": args.size, "height": args.size,
              "steps": args.steps, "cfg_scale": 7.0, "sampler": "Euler a", "batch_count": 1}
    os.environ["ATELIER_LIMIT_IMAGE_JOBS"] = "1000/minute"  # measure the cache, not the rate limit
    fresh: list[float] = []
    hits: list[float] = []
    floor: list[float] = []
    with tempfile.TemporaryDirectory(prefix="atelier-bench-") as tmp:
        proc, url, _ = start_server(Path(tmp), "--no-warmup")
        echo, echo_url = start_vanilla_gradio()
        try:
            client = Client(url, verbose=False, download_files=False)
            echo_client = Client(echo_url, verbose=False, download_files=False)
            client.predict(**params, seed=0, api_name="/generate_image")
            wait_ready(url, "image")
            client.predict(**params, seed=1000, api_name="/generate_image")  # the entry the hits reuse

            def timed(seed: int) -> float:
                t0 = time.perf_counter()
                *_, info = client.predict(**params, seed=seed, api_name="/generate_image")
                elapsed = time.perf_counter() - t0
                assert info["cached"] == (seed == 1000), info  # a hit is a hit, a fresh job computes
                return elapsed

            def echoed() -> float:
                t0 = time.perf_counter()
                echo_client.predict("x", api_name="/echo")
                return time.perf_counter() - t0

            for i in range(args.runs):
                sides = [lambda i=i: fresh.append(timed(2000 + i)), lambda: hits.append(timed(1000)),
                         lambda: floor.append(echoed())]
                for side in sides if i % 2 == 0 else sides[::-1]:
                    side()
        finally:
            proc.terminate()
            proc.wait(timeout=30)
            echo.terminate()
            echo.wait(timeout=30)
    result = {"what": f"tiny SD {args.size}x{args.size}, {args.steps} steps, through gradio_client",
              "interleaved_runs": args.runs, "load_average_after": load_average(), "cpus": os.cpu_count(),
              "fresh_ms": stats(fresh, 1000), "hit_ms": stats(hits, 1000), "plain_gradio_echo_ms": stats(floor, 1000),
              "hit_over_fresh": stats([h / f for h, f in zip(hits, fresh, strict=True)], 1, 3),
              "hit_over_fresh_of_medians": round(statistics.median(hits) / statistics.median(fresh), 3),
              "echo_over_fresh_of_medians": round(statistics.median(floor) / statistics.median(fresh), 3)}
    print(f"{result['what']}, {args.runs} interleaved rounds; load average {result['load_average_after']}")
    print(f"  fresh generation : {fmt(result['fresh_ms'], 'ms')}")
    print(f"  cache hit        : {fmt(result['hit_ms'], 'ms')}")
    print(f"  plain Gradio echo: {fmt(result['plain_gradio_echo_ms'], 'ms')}  (the floor of any queued call)")
    ratio = result["hit_over_fresh"]
    print(f"  hit / fresh      : {ratio['median']:8.2f}x per round (min {ratio['min']:.2f}, max {ratio['max']:.2f}); "
          f"the echo alone is {result['echo_over_fresh_of_medians']:.2f}x a fresh job")
    if args.out:
        print(f"  saved to {save(args.out, result)}")


if __name__ == "__main__":
    main()
