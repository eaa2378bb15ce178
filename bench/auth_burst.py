"""A burst of bad HTTP basic logins must not slow anyone else: /api/health and another user's REST read while
64 wrong passwords arrive at once, against the same requests with no burst (interleaved round by round).

Each bad login uses its own account name, so none is throttled and every one costs a full argon2 check: the
worst case for the server.

    python bench/auth_burst.py [--rounds 5] [--burst 64] [--samples 20]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from _server import ROOT, start_server

PASSWORD = "bench-password-1"


def timed_get(http: httpx.Client, path: str, **kwargs: object) -> float:
    """Seconds for one GET, which must answer 200."""
    t0 = time.perf_counter()
    response = http.get(path, **kwargs)
    elapsed = time.perf_counter() - t0
    assert response.status_code == 200, (path, response.status_code, response.text[:200])
    return elapsed


def summary(values: list[float]) -> dict[str, float]:
    """min/median/max in milliseconds."""
    return {"min_ms": round(min(values) * 1000, 2), "median_ms": round(statistics.median(values) * 1000, 2),
            "max_ms": round(max(values) * 1000, 2), "n": len(values)}


def main() -> None:
    """Interleave quiet rounds and burst rounds; print and save min/median/max latencies."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--burst", type=int, default=64)
    parser.add_argument("--samples", type=int, default=20, help="health and read requests per quiet round")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "auth_burst.json")
    args = parser.parse_args()
    samples: dict[str, list[float]] = {"health_quiet": [], "health_burst": [], "read_quiet": [], "read_burst": [],
                                       "burst_s": []}
    os.environ["ATELIER_LIMIT_READS"] = "100000/minute"  # measure latency, not the read limit
    with tempfile.TemporaryDirectory(prefix="atelier-bench-") as tmp:
        subprocess.run([sys.executable, str(ROOT / "app.py"), "users", "add", "alice", "--data-dir", tmp],
                       input=f"{PASSWORD}\n{PASSWORD}\n", text=True, check=True, capture_output=True)
        proc, url, _ = start_server(Path(tmp), "--no-warmup")
        try:
            http = httpx.Client(base_url=url, timeout=300)
            alice = {"auth": ("alice", PASSWORD)}
            timed_get(http, "api/history", **alice)  # her first read is checked; later ones are remembered

            def quiet(pairs: int) -> None:
                for _ in range(pairs):
                    samples["health_quiet"].append(timed_get(http, "api/health"))
                    samples["read_quiet"].append(timed_get(http, "api/history", **alice))

            def guess(i: int) -> int:
                with httpx.Client(base_url=url, timeout=300) as own:
                    return own.get("api/history", auth=(f"guess{i}", "wrong password")).status_code

            for round_ in range(args.rounds):
                quiet(args.samples)
                t0 = time.perf_counter()
                with ThreadPoolExecutor(args.burst) as pool:
                    futures = [pool.submit(guess, round_ * args.burst + i) for i in range(args.burst)]
                    time.sleep(0.05)  # let the guesses reach the server first
                    taken = 0
                    while not all(f.done() for f in futures) or taken < 3:
                        samples["health_burst"].append(timed_get(http, "api/health"))
                        samples["read_burst"].append(timed_get(http, "api/history", **alice))
                        taken += 1
                        time.sleep(0.02)  # a steady trickle, not a second burst
                    codes = [f.result() for f in futures]
                samples["burst_s"].append(time.perf_counter() - t0)
                assert set(codes) == {401}, codes
                print(f"round {round_ + 1}/{args.rounds}: burst of {args.burst} took {samples['burst_s'][-1]:.1f} s",
                      file=sys.stderr)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    result = {"burst": args.burst, "rounds": args.rounds,
              **{name: summary(values) for name, values in samples.items() if name != "burst_s"},
              "burst_s": {k.replace("_ms", "_s"): round(v / 1000, 2) for k, v in summary(samples["burst_s"]).items()
                          if k != "n"}}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{args.burst} bad basic logins at once, {args.rounds} interleaved rounds (ms: min / median / max)")
    for name in ("health_quiet", "health_burst", "read_quiet", "read_burst"):
        s = result[name]
        print(f"  {name:13s}: {s['min_ms']:8.1f} / {s['median_ms']:8.1f} / {s['max_ms']:8.1f}  (n={s['n']})")
    b = result["burst_s"]
    print(f"  whole burst  : {b['min_s']:.1f} / {b['median_s']:.1f} / {b['max_s']:.1f} s")
    print(f"  saved to {args.out}")


if __name__ == "__main__":
    main()
