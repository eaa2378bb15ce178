"""Start-up time and idle memory: `python app.py --profile tiny --no-warmup` until /api/health answers, and the
server's RSS a second later (no model asked for), run after run; with --against DIR another checkout starts in
alternation with this one (the order alternates), so both see the same machine at the same moments.

    python bench/startup.py [--runs 5] [--against DIR]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import psutil
from _server import ROOT, checkout, fmt, load_average, save, start_server, stats


def one_start(root: Path, data_dir: Path) -> dict[str, float]:
    """Seconds to a listening server, its RSS and CPU seconds once idle, and whether it imported torch."""
    proc, _, seconds = start_server(data_dir, "--no-warmup", root=root)
    try:
        time.sleep(1)  # what it holds once the start's loose ends (threads, first sweep) settle
        server = psutil.Process(proc.pid)
        cpu = server.cpu_times()
        torch = any("torch/lib" in m.path for m in server.memory_maps())
        return {"s": seconds, "rss_mib": server.memory_info().rss / 2**20, "cpu_s": cpu.user + cpu.system,
                "torch_loaded": float(torch)}
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def main() -> None:
    """Starts of each checkout, alternating; min / median / max of each figure."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--against", type=Path, default=None, help="another checkout, started in alternation")
    parser.add_argument("--out", default="startup", help="results file name in bench/results/")
    args = parser.parse_args()
    roots = [ROOT, *([args.against.resolve()] if args.against else [])]
    rows: dict[Path, list[dict[str, float]]] = {root: [] for root in roots}
    load_before = load_average()
    with tempfile.TemporaryDirectory(prefix="atelier-startup-") as tmp:
        for run in range(args.runs):
            for root in roots if run % 2 == 0 else roots[::-1]:
                rows[root].append(one_start(root, Path(tmp) / f"{root.name}-{run}"))
    result = {"args": {**vars(args), "against": str(args.against) if args.against else None},
              "load_average_before": load_before, "load_average_after": load_average(),
              "versions": [{"checkout": checkout(root), "startup_s": stats(r["s"] for r in rows[root]),
                            "rss_idle_mib": stats(r["rss_mib"] for r in rows[root]),
                            "cpu_s": stats([r["cpu_s"] for r in rows[root]], digits=2),
                            "torch_loaded": any(r["torch_loaded"] for r in rows[root])} for root in roots]}
    for version in result["versions"]:
        print(f"{version['checkout']['path']} ({version['checkout']['commit']}):")
        print(f"  start-up to /api/health : {fmt(version['startup_s'], 's')}")
        print(f"  CPU of the start        : {fmt(version['cpu_s'], 's')}")
        print(f"  RSS idle                : {fmt(version['rss_idle_mib'], 'MiB')}")
    print(f"load average before / after: {load_before} / {result['load_average_after']}")
    print(f"saved {save(args.out, result)}")


if __name__ == "__main__":
    main()
