"""Reading an infotext's settings line: A1111's pattern (re_param) against storage/files.py's, side by side, on a real
A1111 line and on a long run of letters (what a PNG sent to /png_info may hold), interleaved round by round.

A1111's pattern backtracks over every start of a run of key characters, so its time grows with the square of the
run; ours bounds the key at 64 characters and never re-scans a quoted value.

    python bench/parameters_parse.py [--rounds 3] [--sizes 4096 16384]
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from storage.files import _PAIR  # noqa: E402  (after the path is set)

A1111 = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')
REAL = ('Steps: 20, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, Seed: 1234567, Size: 512x768, '
        'Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, Lora hashes: "add_detail: 7c6bad76eb54", '
        'Version: v1.10.1')


def seconds(pattern: re.Pattern[str], line: str) -> float:
    """One findall over `line`, as parse_parameters runs it."""
    started = time.perf_counter()
    pattern.findall(line)
    return time.perf_counter() - started


def summary(values: list[float]) -> dict[str, float]:
    """min/median/max in milliseconds."""
    return {"min_ms": round(min(values) * 1000, 3), "median_ms": round(statistics.median(values) * 1000, 3),
            "max_ms": round(max(values) * 1000, 3), "n": len(values)}


def main() -> None:
    """Time both patterns on each line, alternating which goes first; print and save the summary."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sizes", type=int, nargs="+", default=[4096, 16384])
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "parameters_parse.json")
    args = parser.parse_args()
    assert A1111.findall(REAL) == _PAIR.findall(REAL)  # the same pairs from what A1111 writes
    lines = {"a1111_line": REAL, **{f"letters_{n}": "x" * n for n in args.sizes}}
    samples: dict[str, dict[str, list[float]]] = {name: {"a1111": [], "atelier": []} for name in lines}
    for round_index in range(args.rounds):
        for name, line in lines.items():
            order = [("a1111", A1111), ("atelier", _PAIR)]
            for label, pattern in order if round_index % 2 == 0 else order[::-1]:
                samples[name][label].append(seconds(pattern, line))
    result = {name: {label: summary(values) for label, values in sides.items()} for name, sides in samples.items()}
    result["rounds"] = args.rounds  # type: ignore[assignment]
    print(json.dumps(result, indent=2))
    args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
