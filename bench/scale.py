"""One replica against two replicas behind HAProxy, on the tiny profile: image-job throughput and p95 latency, and
what the proxy adds to one request. Every part is real and on loopback: `python app.py` replica processes sharing
PostgreSQL, Redis and an S3 API (moto's server), HAProxy configured from deploy/haproxy.cfg.

    python bench/scale.py [--rounds 3] [--clients 4] [--jobs 3] [--probes 200] [--threads 2]

Both sides run in the same deployment, round by round, in alternating order:
- "one replica": every client talks to replica r1 directly (no proxy);
- "two replicas": every client goes through the proxy, which sticks each client to one of r1 and r2.
On a 2-core machine two replicas share the same cores, so this shows the cost of the extra parts, not a speed-up:
scaling out pays where each replica has a GPU box of its own.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.update({"GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1"})

import httpx  # noqa: E402

from bench._server import fmt, load_average, save, stats, thread_env  # noqa: E402

PARAMS: dict[str, Any] = {"prompt": "a lighthouse at dusk", "negative_prompt": "", "width": 64, "height": 64,
                          "steps": 4, "cfg_scale": 7.0, "sampler": "Euler a", "batch_count": 1}


def p95(values: list[float]) -> float:
    """The 95th percentile (inclusive method: a value that was seen for small samples)."""
    return statistics.quantiles(values, n=20, method="inclusive")[-1] if len(values) > 1 else values[0]


def sessions_at(url: str, clients: int) -> list[Any]:
    """`clients` logged-in gradio_client sessions (made once per side: logging in is not part of a job)."""
    from gradio_client import Client

    from tests.live.stack import PASSWORD

    return [Client(url, auth=("alice", PASSWORD), verbose=False, download_files=False) for _ in range(clients)]


def run_jobs(sessions: list[Any], jobs: int, first_seed: int) -> tuple[float, list[float]]:
    """The sessions at once, each running `jobs` image jobs one after another (seeds all different, so the result
    cache never answers); the wall time and every job's latency in seconds."""
    clients = len(sessions)
    latencies: list[float] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def work(index: int) -> None:
        try:
            for j in range(jobs):
                t0 = time.perf_counter()
                sessions[index].predict(**PARAMS, seed=first_seed + index * jobs + j, api_name="/generate_image")
                with lock:
                    latencies.append(time.perf_counter() - t0)
        except BaseException as err:  # reported after the threads end
            errors.append(err)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    if errors:
        raise errors[0]
    return wall, latencies


def probe(direct: httpx.Client, proxied: httpx.Client, samples: int) -> tuple[list[float], list[float]]:
    """GET /api/health straight from r1 and through the proxy, alternating request by request (keep-alive both)."""
    times: dict[str, list[float]] = {"direct": [], "proxy": []}
    for i in range(samples):
        order = (("direct", direct), ("proxy", proxied)) if i % 2 == 0 else (("proxy", proxied), ("direct", direct))
        for name, http in order:
            t0 = time.perf_counter()
            http.get("/api/health").raise_for_status()
            times[name].append(time.perf_counter() - t0)
    return times["direct"], times["proxy"]


def main() -> None:
    """Start the deployment, warm both replicas, then alternate the two sides round by round; print and save."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, default=4, help="sessions submitting at once")
    parser.add_argument("--jobs", type=int, default=3, help="jobs per session per round")
    parser.add_argument("--probes", type=int, default=200, help="health requests per side per round")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads in each replica")
    parser.add_argument("--save", action="store_true", help="write bench/results/scale_threads<N>.json")
    args = parser.parse_args()

    from pipelines.tiny import ensure_tiny_sd
    from tests.live.postgres import PostgresServer
    from tests.live.redis import redis_server
    from tests.live.s3 import MotoS3
    from tests.live.stack import scale_stack

    with tempfile.TemporaryDirectory(prefix="atelier-scale-") as tmp:
        root = Path(tmp)
        tiny = ensure_tiny_sd(root / "tiny-sd")
        postgres = PostgresServer().start()
        s3 = MotoS3().start()
        # The same torch threads in every replica; limits off (logins too: the sessions log in at once): this
        # measures capacity, not the sharing policy.
        env = {**thread_env(args.threads), "ATELIER_RATE_LIMITS": "off", "ATELIER_LIMIT_LOGINS": "1000/minute"}
        try:
            with redis_server() as redis_url, \
                    scale_stack(root / "stack", tiny, postgres.create_database(), redis_url, s3, env=env) as up:
                r1 = up.replicas[0]
                # Load the model on both replicas before timing anything (warm-up is off in the stack).
                for replica in up.replicas:
                    run_jobs(sessions_at(replica.url + "/", 1), 1, first_seed=10_000 + replica.port)
                clients = {"one": sessions_at(r1.url + "/", args.clients), "two": sessions_at(up.url, args.clients)}
                sides: dict[str, dict[str, list[float]]] = {
                    side: {"jobs_per_s": [], "latency_s": [], "p95_s": []} for side in ("one", "two")}
                direct_ms: list[float] = []
                proxy_ms: list[float] = []
                seed = 1
                with httpx.Client(base_url=r1.url, timeout=30) as direct, \
                        httpx.Client(base_url=up.url, timeout=30) as proxied:
                    for round_ in range(args.rounds):
                        d, p = probe(direct, proxied, args.probes)
                        direct_ms += [x * 1000 for x in d]
                        proxy_ms += [x * 1000 for x in p]
                        order = ("one", "two") if round_ % 2 == 0 else ("two", "one")
                        for side in order:
                            wall, latencies = run_jobs(clients[side], args.jobs, seed)
                            seed += args.clients * args.jobs
                            sides[side]["jobs_per_s"].append(len(latencies) / wall)
                            sides[side]["latency_s"] += latencies
                            sides[side]["p95_s"].append(p95(latencies))
                            print(f"round {round_ + 1} {side:>3}: {len(latencies) / wall:6.2f} jobs/s, "
                                  f"p95 {p95(latencies):.2f} s", flush=True)
        finally:
            s3.stop()
            postgres.stop()

    ratio = [two / one for one, two in zip(sides["one"]["jobs_per_s"], sides["two"]["jobs_per_s"], strict=True)]
    added = statistics.median(proxy_ms) - statistics.median(direct_ms)
    result = {
        "command": "python bench/scale.py " + " ".join(sys.argv[1:]),
        "cores": os.cpu_count(), "threads": args.threads, "clients": args.clients, "jobs": args.jobs,
        "rounds": args.rounds, "load_average": load_average(),
        "one_replica": {"jobs_per_s": stats(sides["one"]["jobs_per_s"], digits=3),
                        "latency_s": stats(sides["one"]["latency_s"], digits=3),
                        "p95_s": round(p95(sides["one"]["latency_s"]), 3)},
        "two_replicas_behind_proxy": {"jobs_per_s": stats(sides["two"]["jobs_per_s"], digits=3),
                                      "latency_s": stats(sides["two"]["latency_s"], digits=3),
                                      "p95_s": round(p95(sides["two"]["latency_s"]), 3)},
        "throughput_ratio_two_over_one": stats(ratio, digits=3),
        "health_direct_ms": stats(direct_ms, digits=2), "health_via_proxy_ms": stats(proxy_ms, digits=2),
        "proxy_added_ms_median": round(added, 2),
    }
    print(f"one replica        : {fmt(result['one_replica']['jobs_per_s'], 'jobs/s')}, "
          f"p95 {result['one_replica']['p95_s']:.2f} s")
    print(f"two behind proxy   : {fmt(result['two_replicas_behind_proxy']['jobs_per_s'], 'jobs/s')}, "
          f"p95 {result['two_replicas_behind_proxy']['p95_s']:.2f} s")
    print(f"ratio two/one      : {result['throughput_ratio_two_over_one']}")
    print(f"/api/health direct : {fmt(result['health_direct_ms'], 'ms')}")
    print(f"/api/health proxied: {fmt(result['health_via_proxy_ms'], 'ms')}  (+{added:.2f} ms median per request)")
    if args.save:
        print(f"saved {save(f'scale_threads{args.threads}', result)}")


if __name__ == "__main__":
    main()
