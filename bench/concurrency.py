"""32 clients at once on the tiny profile: errors, throughput against the same jobs run serially, and
fairness between users (each user's mean latency). The two sides are interleaved round by round (the order
alternates), on one server, and each figure is printed as min / median / max over the rounds.

With --against DIR (another checkout, e.g. `git worktree add /tmp/before a403b27`), a second server runs that
checkout's code with the same settings and the same rounds run on both, the versions alternating round by round.

    python bench/concurrency.py [--rounds 3] [--clients 32] [--users 4] [--steps 4] [--max-batch-images N]
                                [--against DIR] [--out NAME]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from _server import ROOT, add_users, checkout, fmt, load_average, save, start_server, stats, wait_ready
from gradio_client import Client

PASSWORD = "bench-password-1"


class Version:
    """One checkout's server and clients: the jobs one after another from one client, and all clients at once."""

    def __init__(self, root: Path, data_dir: Path, args: argparse.Namespace, params: dict[str, Any]) -> None:
        self.root, self.args, self.params = root.resolve(), args, params
        data_dir.mkdir(parents=True, exist_ok=True)
        add_users(self.root, data_dir, [f"user{u}" for u in range(args.users)], PASSWORD)
        batching = {} if args.max_batch_images is None else {"ATELIER_MAX_BATCH_IMAGES": str(args.max_batch_images)}
        self.proc, url, _ = start_server(data_dir, "--no-warmup", env=batching, root=self.root)
        self.clients = [Client(url, auth=(f"user{i % args.users}", PASSWORD), verbose=False, download_files=False)
                        for i in range(args.clients)]
        self.clients[0].predict(**params, seed=-1, api_name="/generate_image")  # build and load the model
        wait_ready(url, "image")
        self.serial_s: list[float] = []
        self.concurrent_s: list[float] = []
        self.results: list[tuple[int, float, str | None]] = []
        self.fairness: list[float] = []

    def serial(self) -> None:
        """The jobs one after another from one client."""
        t0 = time.perf_counter()
        for _i in range(self.args.clients):
            self.clients[0].predict(**self.params, seed=-1, api_name="/generate_image")
        self.serial_s.append(time.perf_counter() - t0)

    def _one(self, i: int) -> tuple[int, float, str | None]:
        users = self.args.users
        start = time.perf_counter()
        try:
            self.clients[i].predict(**self.params, seed=-1, api_name="/generate_image")
            return i % users, time.perf_counter() - start, None
        except Exception as err:  # counted, not hidden
            return i % users, time.perf_counter() - start, f"{type(err).__name__}: {err}"

    def concurrent(self) -> None:
        """Every client at once."""
        t0 = time.perf_counter()
        with ThreadPoolExecutor(self.args.clients) as pool:
            this_round = list(pool.map(self._one, range(self.args.clients)))
        elapsed = time.perf_counter() - t0
        self.results.extend(this_round)
        means = [statistics.mean(t for uu, t, e in this_round if uu == u and not e) for u in range(self.args.users)
                 if any(uu == u and not e for uu, t, e in this_round)]
        self.fairness.append(max(means) / min(means))
        self.concurrent_s.append(elapsed)

    def round(self, number: int) -> None:
        """Both sides, the order alternating from round to round."""
        sides = [self.serial, self.concurrent]
        for side in sides[::-1] if number % 2 else sides:
            side()

    def summary(self) -> dict[str, Any]:
        """Errors, throughput of both sides, their ratio, and fairness between users."""
        args = self.args
        errors = [e for _, _, e in self.results if e]
        by_user = {u: statistics.mean(t for uu, t, e in self.results if uu == u and not e) for u in range(args.users)}
        return {"checkout": checkout(self.root), "errors": len(errors), "first_error": errors[0] if errors else None,
                "serial_jobs_per_s": stats([args.clients / s for s in self.serial_s], 1, 2),
                "concurrent_jobs_per_s": stats([args.clients / c for c in self.concurrent_s], 1, 2),
                "concurrent_over_serial": stats([s / c for s, c in zip(self.serial_s, self.concurrent_s, strict=True)],
                                                1, 3),
                "mean_latency_per_user_s": {f"user{u}": round(t, 2) for u, t in by_user.items()},
                "fairness_max_over_min": stats(self.fairness, 1, 2),
                "per_round_s": {"serial": [round(t, 3) for t in self.serial_s],
                                "all_at_once": [round(t, 3) for t in self.concurrent_s]}}

    def stop(self) -> None:
        """End its server."""
        self.proc.terminate()
        self.proc.wait(timeout=30)


def show(summary: dict[str, Any], indent: str = "  ") -> None:
    """One version's figures."""
    error = f"  e.g. {summary['first_error']}" if summary["first_error"] else ""
    print(f"{indent}errors                 : {summary['errors']}{error}")
    print(f"{indent}serial, one client     : {fmt(summary['serial_jobs_per_s'], 'jobs/s')}")
    print(f"{indent}all at once            : {fmt(summary['concurrent_jobs_per_s'], 'jobs/s')}")
    ratio = summary["concurrent_over_serial"]
    print(f"{indent}at once / serial       : {ratio['median']:8.2f}x  (min {ratio['min']:.2f}, max {ratio['max']:.2f})")
    print(f"{indent}mean latency per user  : " + ", ".join(f"{u} {t:5.2f} s"
                                                         for u, t in summary["mean_latency_per_user_s"].items()))
    fair = summary["fairness_max_over_min"]
    print(f"{indent}fairness (max/min)     : {fair['median']:8.2f}  (min {fair['min']:.2f}, max {fair['max']:.2f})")


def main() -> None:
    """Rounds of: the jobs one after another from one client, and all clients at once (each user with several);
    with --against, the same rounds on another checkout's server, the versions alternating."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--users", type=int, default=4)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--max-batch-images", type=int, default=None,
                        help="ATELIER_MAX_BATCH_IMAGES for the server (default: the profile's)")
    parser.add_argument("--against", type=Path, default=None,
                        help="another checkout (a git worktree of an older commit) to run side by side, round by round")
    parser.add_argument("--out", default=None, help="results file name in bench/results/")
    args = parser.parse_args()
    params = {"prompt": "a crowd", "negative_prompt": "", "width": args.size, "height": args.size,
              "steps": args.steps, "cfg_scale": 7.0, "sampler": "Euler a", "batch_count": 1}
    per_user = -(-args.clients // args.users)
    # Enough quota and rate for this load: the point is throughput and order, not refusals.
    os.environ.update(ATELIER_USER_QUEUE_QUOTA=str(per_user), ATELIER_LIMIT_IMAGE_JOBS="100000/minute",
                      ATELIER_LIMIT_LOGINS="1000/minute")
    with tempfile.TemporaryDirectory(prefix="atelier-bench-") as tmp:
        versions = [Version(ROOT, Path(tmp) / "this", args, params)]
        try:
            if args.against:
                versions.append(Version(args.against, Path(tmp) / "against", args, params))
            for r in range(args.rounds):
                for version in versions[::-1] if r % 2 else versions:  # the versions alternate too
                    version.round(r)
        finally:
            for version in versions:
                version.stop()
    summaries = [version.summary() for version in versions]
    print(f"{args.clients} clients ({args.users} users), tiny SD {args.size}x{args.size}, {args.steps} steps; "
          f"{args.rounds} interleaved rounds; load average {load_average()}")
    show(summaries[0])
    result = {"clients": args.clients, "users": args.users, "size": args.size, "steps": args.steps,
              "rounds": args.rounds, "max_batch_images": args.max_batch_images, **summaries[0],
              "load_average_after": load_average()}
    if len(versions) == 2:
        this, other = versions
        print(f"  against {summaries[1]['checkout']['commit']} ({summaries[1]['checkout']['path']}), the same rounds:")
        show(summaries[1], "    ")
        per_round = {side: stats([a / b for a, b in zip(getattr(this, side), getattr(other, side), strict=True)], 1, 3)
                     for side in ("serial_s", "concurrent_s")}
        print(f"    this over the other, time per round: serial {per_round['serial_s']['median']:.3f}x (min "
              f"{per_round['serial_s']['min']:.3f}, max {per_round['serial_s']['max']:.3f}), all at once "
              f"{per_round['concurrent_s']['median']:.3f}x (min {per_round['concurrent_s']['min']:.3f}, max "
              f"{per_round['concurrent_s']['max']:.3f})")
        result["against"] = {**summaries[1], "this_time_over_against_time": per_round}
    suffix = "" if args.max_batch_images is None else f"_batch{args.max_batch_images}"
    print(f"  saved to {save(args.out or 'concurrency' + suffix, result)}")


if __name__ == "__main__":
    main()
