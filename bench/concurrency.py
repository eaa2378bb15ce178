"""32 clients at once on the tiny profile: errors, throughput against the same jobs run serially, and
fairness between users (each user's mean latency). The two sides are interleaved round by round (the order
alternates), on one server, and each figure is printed as min / median / max over the rounds.

    python bench/concurrency.py [--rounds 3] [--clients 32] [--users 4] [--steps 4] [--max-batch-images N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from _server import ROOT, fmt, load_average, save, start_server, stats, wait_ready
from gradio_client import Client

PASSWORD = "bench-password-1"


def main() -> None:
    """Rounds of: the jobs one after another from one client, and all clients at once (each user with several)."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--users", type=int, default=4)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--max-batch-images", type=int, default=None,
                        help="ATELIER_MAX_BATCH_IMAGES for the server (default: the profile's)")
    args = parser.parse_args()
    params = {"prompt": "a crowd", "negative_prompt": "", "width": args.size, "height": args.size,
              "steps": args.steps, "cfg_scale": 7.0, "sampler": "Euler a", "batch_count": 1}
    per_user = -(-args.clients // args.users)
    # Enough quota and rate for this load: the point is throughput and order, not refusals.
    os.environ.update(ATELIER_USER_QUEUE_QUOTA=str(per_user), ATELIER_LIMIT_IMAGE_JOBS="100000/minute",
                      ATELIER_LIMIT_LOGINS="1000/minute")
    serial_s: list[float] = []
    concurrent_s: list[float] = []
    results: list[tuple[int, float, str | None]] = []
    fairness: list[float] = []
    with tempfile.TemporaryDirectory(prefix="atelier-bench-") as tmp:
        for u in range(args.users):
            subprocess.run([sys.executable, str(ROOT / "app.py"), "users", "add", f"user{u}", "--data-dir", tmp],
                           input=f"{PASSWORD}\n{PASSWORD}\n", text=True, check=True, capture_output=True)
        batching = {} if args.max_batch_images is None else {"ATELIER_MAX_BATCH_IMAGES": str(args.max_batch_images)}
        proc, url, _ = start_server(Path(tmp), "--no-warmup", env=batching)
        try:
            clients = [Client(url, auth=(f"user{i % args.users}", PASSWORD), verbose=False, download_files=False)
                       for i in range(args.clients)]
            clients[0].predict(**params, seed=-1, api_name="/generate_image")  # build and load the model
            wait_ready(url, "image")

            def serial() -> float:
                t0 = time.perf_counter()
                for _i in range(args.clients):
                    clients[0].predict(**params, seed=-1, api_name="/generate_image")
                return time.perf_counter() - t0

            def one(i: int) -> tuple[int, float, str | None]:
                start = time.perf_counter()
                try:
                    clients[i].predict(**params, seed=-1, api_name="/generate_image")
                    return i % args.users, time.perf_counter() - start, None
                except Exception as err:  # counted, not hidden
                    return i % args.users, time.perf_counter() - start, f"{type(err).__name__}: {err}"

            def concurrent() -> float:
                t0 = time.perf_counter()
                with ThreadPoolExecutor(args.clients) as pool:
                    this_round = list(pool.map(one, range(args.clients)))
                elapsed = time.perf_counter() - t0
                results.extend(this_round)
                means = [statistics.mean(t for uu, t, e in this_round if uu == u and not e) for u in range(args.users)
                         if any(uu == u and not e for uu, t, e in this_round)]
                fairness.append(max(means) / min(means))
                return elapsed

            for r in range(args.rounds):
                if r % 2:  # alternate which side goes first
                    concurrent_s.append(concurrent())
                    serial_s.append(serial())
                else:
                    serial_s.append(serial())
                    concurrent_s.append(concurrent())
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    errors = [e for _, _, e in results if e]
    ratios = [s / c for s, c in zip(serial_s, concurrent_s, strict=True)]
    by_user = {u: statistics.mean(t for uu, t, e in results if uu == u and not e) for u in range(args.users)}
    serial_rate = stats([args.clients / s for s in serial_s], 1, 2)
    concurrent_rate = stats([args.clients / c for c in concurrent_s], 1, 2)
    print(f"{args.clients} clients ({args.users} users), tiny SD {args.size}x{args.size}, {args.steps} steps; "
          f"{args.rounds} interleaved rounds; load average {load_average()}")
    print(f"  errors                 : {len(errors)}" + (f"  e.g. {errors[0]}" if errors else ""))
    print(f"  serial, one client     : {fmt(serial_rate, 'jobs/s')}")
    print(f"  all at once            : {fmt(concurrent_rate, 'jobs/s')}")
    ratio = stats(ratios, 1, 3)
    print(f"  at once / serial       : {ratio['median']:8.2f}x  (min {ratio['min']:.2f}, max {ratio['max']:.2f})")
    print("  mean latency per user  : " + ", ".join(f"user{u} {t:5.2f} s" for u, t in by_user.items()))
    fair = stats(fairness, 1, 2)
    print(f"  fairness (max/min)     : {fair['median']:8.2f}  (min {fair['min']:.2f}, max {fair['max']:.2f})")
    result = {"clients": args.clients, "users": args.users, "size": args.size, "steps": args.steps,
              "rounds": args.rounds, "max_batch_images": args.max_batch_images, "errors": len(errors),
              "serial_jobs_per_s": serial_rate, "concurrent_jobs_per_s": concurrent_rate,
              "concurrent_over_serial": ratio,
              "mean_latency_per_user_s": {f"user{u}": round(t, 2) for u, t in by_user.items()},
              "fairness_max_over_min": fair, "load_average_after": load_average()}
    suffix = "" if args.max_batch_images is None else f"_batch{args.max_batch_images}"
    print(f"  saved to {save('concurrency' + suffix, result)}")


if __name__ == "__main__":
    main()
