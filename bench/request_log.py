"""What the request log costs a job: tiny image jobs with the log on and off, interleaved job by job in one process
(same services, same thread settings, the order alternating each round), and the log's own costs measured apart:
one record() on the job's thread, and one row's share of the writer's batched INSERT.

    python bench/request_log.py [--rounds 15] [--jobs 20] [--size 64] [--steps 2] [--database-url postgresql://…]

The issue's bar: at most 2 % of a tiny job. The interleaved ratio shows whether the writer thread slows jobs down
(it competes for the CPU and the database's write lock); the direct costs say how much there is to compete with.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from _server import load_average, save, stats  # noqa: E402

from services.container import Services, build_services  # noqa: E402
from services.request_log import RequestLog, RequestRecord  # noqa: E402
from settings import Settings  # noqa: E402
from storage.models import RequestLog as Row  # noqa: E402


def job_seconds(services: Services, params: dict[str, Any], jobs: int) -> list[float]:
    """Wall seconds of `jobs` tiny image jobs run one after another, as the job's own thread sees them."""
    times = []
    for _ in range(jobs):
        req = services.images.validate(**params, seed=-1)
        started = time.perf_counter()
        snap = services.images.run(req, user="bench")
        times.append(time.perf_counter() - started)
        assert snap.status == "done", snap.message
    return times


def record_us(calls: int) -> float:
    """Microseconds of one record() on the caller's thread, building its record included (a log of its own whose
    writer never runs: nothing is written, and nothing is dropped)."""
    log = RequestLog(max_pending=calls + 1)
    started = time.perf_counter()
    for _ in range(calls):
        log.record(RequestRecord.here("image", "done", user="bench", model="tiny", images=1, duration_s=0.1,
                                      gpu_s=0.05))
    return (time.perf_counter() - started) / calls * 1e6


def write_us_per_row(rows: int) -> float:
    """Microseconds of the writer's time per row: `rows` rows written in its batches, one transaction each."""
    log = RequestLog(max_pending=rows + 1, flush_every_s=0.01)
    for i in range(rows):
        log.record(RequestRecord("read", "done", user=f"u{i % 50}", route="/api/history", duration_s=0.001))
    started = time.perf_counter()
    log.start()
    assert log.flush(300)
    took = time.perf_counter() - started
    log.stop()
    Row.delete().where(Row.route == "/api/history").execute()
    return took / rows * 1e6


def main() -> None:
    """Alternate on and off round by round; print and save min/median/max and the direct costs."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--jobs", type=int, default=20, help="jobs per side per round")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--database-url", default="", help="PostgreSQL instead of SQLite in a temp data dir")
    parser.add_argument("--out", default="request_log")
    args = parser.parse_args()
    params = {"prompt": "a lighthouse at dusk", "width": args.size, "height": args.size, "steps": args.steps}
    with tempfile.TemporaryDirectory(prefix="atelier-bench-") as tmp:
        settings = Settings(profile="tiny", data_dir=Path(tmp), warmup=False, cache_enabled=False,
                            database_url=args.database_url)
        services = build_services(settings)
        log = services.request_log
        direct_record_us = statistics.median(record_us(5000) for _ in range(5))
        direct_write_us = write_us_per_row(5000)
        log.start()
        job_seconds(services, params, 3)  # load the model and warm up before anything is timed
        samples: dict[str, list[float]] = {"on": [], "off": []}
        for round_ in range(args.rounds):
            # Job by job within a round, the order alternating: both sides meet the same load as it drifts.
            times: dict[str, list[float]] = {"on": [], "off": []}
            for job in range(2 * args.jobs):
                side = "on" if (job + round_) % 2 == 0 else "off"
                services.images.request_log = log if side == "on" else None
                times[side] += job_seconds(services, params, 1)
            for side, values in times.items():
                samples[side].append(statistics.median(values))
        assert log.flush(60)
        rows = Row.select().count()
        log.stop()
        services.shut_down()
    on, off = stats(samples["on"], 1000, 2), stats(samples["off"], 1000, 2)
    ratios = stats([a / b for a, b in zip(samples["on"], samples["off"], strict=True)], 1, 4)
    job_ms = off["median"]
    result = {
        "job": {"size": args.size, "steps": args.steps, "profile": "tiny", "jobs_per_side_per_round": args.jobs,
                "rounds": args.rounds, "database": "postgresql" if args.database_url else "sqlite"},
        "job_ms_log_on": on, "job_ms_log_off": off,
        "ratio_on_off_per_round": ratios,
        "record_us_on_job_thread": round(direct_record_us, 2),
        "writer_us_per_row": round(direct_write_us, 1),
        "direct_cost_share_of_job": round((direct_record_us + direct_write_us) / (job_ms * 1000), 5),
        "rows_written": rows, "load_average": load_average(),
    }
    print(f"tiny image job {args.size}x{args.size}, {args.steps} steps, {args.rounds} rounds x {args.jobs} jobs a side")
    print(f"  log on : median {on['median']:.2f} ms (min {on['min']:.2f}, max {on['max']:.2f})")
    print(f"  log off: median {off['median']:.2f} ms (min {off['min']:.2f}, max {off['max']:.2f})")
    print(f"  on / off per round: median {ratios['median']:.4f} (min {ratios['min']:.4f}, max {ratios['max']:.4f})")
    print(f"  record() on the job's thread: {direct_record_us:.2f} us; writer per row: {direct_write_us:.1f} us; "
          f"together {result['direct_cost_share_of_job'] * 100:.3f} % of a job")
    print(f"  saved to {save(args.out, result)}")


if __name__ == "__main__":
    main()
