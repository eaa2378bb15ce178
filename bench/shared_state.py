"""What sharing state on Redis costs each request: a rate-limit hit, a quota admission and a login-token lookup,
in process memory against a loopback redis-server, interleaved round by round.

    python bench/shared_state.py [--rounds 7] [--ops 2000]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from limits import parse  # noqa: E402
from limits.storage import storage_from_string  # noqa: E402
from limits.strategies import FixedWindowRateLimiter  # noqa: E402

from storage.shared_state import JobLedger, SharedTokens  # noqa: E402
from tests.live.redis import redis_server  # noqa: E402


def per_op_us(op: Callable[[int], object], ops: int) -> float:
    """Mean microseconds of one call of `op` over `ops` calls."""
    t0 = time.perf_counter()
    for i in range(ops):
        op(i)
    return (time.perf_counter() - t0) / ops * 1e6


def main() -> None:
    """Alternate memory and Redis for each operation, round by round; print and save min/median/max."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--ops", type=int, default=2000)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "shared_state.json")
    args = parser.parse_args()
    import redis

    item = parse("1000000/minute")
    with redis_server() as url:
        client = redis.Redis.from_url(url, decode_responses=True)
        limiters = {"memory": FixedWindowRateLimiter(storage_from_string("memory://")),
                    "redis": FixedWindowRateLimiter(storage_from_string(url))}
        ledgers = {"memory": JobLedger(), "redis": JobLedger(client)}
        memory_tokens: dict[str, str] = {"t0k3n": "alice"}
        tokens = {"memory": memory_tokens, "redis": SharedTokens(client)}
        tokens["redis"]["t0k3n"] = "alice"
        ops: dict[str, Callable[[str], Callable[[int], object]]] = {
            "rate_limit_hit": lambda where: lambda i: limiters[where].hit(item, "image", f"user:u{i % 50}"),
            # The default quota of 4: each of 50 users holds 4 tickets, then is refused (the same script runs).
            "quota_admit": lambda where: lambda i: ledgers[where].admit(f"u{i % 50}", set(), 4),
            "token_lookup": lambda where: lambda i: tokens[where].get("t0k3n"),
        }
        samples: dict[str, dict[str, list[float]]] = {name: {"memory": [], "redis": []} for name in ops}
        for _ in range(args.rounds):
            for name, make in ops.items():
                for where in ("memory", "redis"):
                    samples[name][where].append(per_op_us(make(where), args.ops))
        client.close()
    result = {name: {where: {"min_us": round(min(v), 1), "median_us": round(statistics.median(v), 1),
                             "max_us": round(max(v), 1), "rounds": len(v)} for where, v in by.items()}
              for name, by in samples.items()}
    result["setup"] = {"ops_per_round": args.ops, "redis": "redis-server on loopback, same machine"}
    for name in ops:
        for where in ("memory", "redis"):
            s = result[name][where]
            print(f"{name:15} {where:7} min {s['min_us']:8.1f} us  median {s['median_us']:8.1f} us  "
                  f"max {s['max_us']:8.1f} us")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
