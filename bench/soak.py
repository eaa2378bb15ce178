"""Soak: many short jobs, each from a fresh gradio_client session closed after its job, as scripts and browser
tabs come and go. Every round prints the server's RSS, open files and Gradio temp-dir size.

    python bench/soak.py                      # 200 jobs, a short look
    python bench/soak.py --jobs 1000          # the docs/benchmarks.md figure: RSS job 200 -> job 1000
    python bench/soak.py --sessions 1000      # what a session holds: RSS growth per session, all of them held

Every `--chat-every`-th job is a /chat message, the others tiny /generate_image jobs. The temp-dir sweep runs with
a short age here (--temp-max-age) so that a soak of minutes shows what weeks would.

--sessions N measures what a finished session holds while the server keeps it for a returning browser: N fresh
gradio_client sessions, each closed after one tiny image job, against a server with the default settings but for
the grace (--session-grace, 3600 s: the default 600 s, with a sweep every 300 s, holds every session only for runs
under 15 minutes, and a busy machine takes longer), so every session is still held at the end; the figure is the
RSS growth from session --baseline to the last, per session. With --against DIR (another checkout, e.g.
`git worktree add /tmp/before a442068`) a second server runs that code, and the sessions alternate between the
two, so both see the same machine at the same moments.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import psutil
from _server import ROOT, checkout, start_server, wait_ready
from gradio_client import Client

RESULTS = ROOT / "bench" / "results"


def dir_size(path: Path) -> tuple[int, int]:
    """Files under `path` and their total bytes (0, 0 when it does not exist)."""
    files = total = 0
    for entry in path.rglob("*"):
        try:
            if entry.is_file():
                files += 1
                total += entry.stat().st_size
        except OSError:  # swept while we looked
            continue
    return files, total


def measure(proc: psutil.Process, temp_dir: Path) -> dict[str, float]:
    """RSS (MiB), open file descriptors and temp-dir files / MiB of the server right now."""
    files, size = dir_size(temp_dir)
    return {"rss_mib": proc.memory_info().rss / 2**20, "open_fds": proc.num_fds(), "temp_files": files,
            "temp_mib": size / 2**20}


def one_job(url: str, index: int, args: argparse.Namespace, auth: tuple[str, str] | None) -> float:
    """One job from a fresh client, closed after it; the seconds it took (NaN when it failed: counted, not fatal)."""
    start = time.perf_counter()
    try:
        client = Client(url, verbose=False, download_files=False, auth=auth)
    except Exception as err:  # a soak counts a failed connect and goes on
        print(f"job {index}: {type(err).__name__}: {err}", file=sys.stderr)
        return math.nan
    try:
        if args.chat_every and index % args.chat_every == args.chat_every - 1:
            client.predict(message=f"soak {index}", max_new_tokens=args.tokens, api_name="/chat")
        else:
            client.predict(prompt=f"soak {index}", negative_prompt="", width=args.size, height=args.size,
                           steps=args.steps, cfg_scale=7.0, seed=index, sampler="Euler a", batch_count=1,
                           api_name="/generate_image")
    except Exception as err:
        print(f"job {index}: {type(err).__name__}: {err}", file=sys.stderr)
        return math.nan
    finally:
        client.close()
    return time.perf_counter() - start


def session_rounds(args: argparse.Namespace, servers: list[tuple[str, psutil.Process]]) -> list[list[dict[str, float]]]:
    """Fresh closed sessions, one job each, alternating between the servers; each server's RSS every --round."""
    rows: list[list[dict[str, float]]] = [[] for _ in servers]
    failures = [0 for _ in servers]
    args.chat_every = 0
    with ThreadPoolExecutor(args.parallel) as pool:
        for done in range(0, args.sessions + 1, args.round):
            if done:
                for n, (url, _) in enumerate(servers):
                    failures[n] += sum(math.isnan(t) for t in pool.map(lambda i, url=url: one_job(url, i, args, None),
                                                                        range(done - args.round, done)))
            for n, (_, server) in enumerate(servers):
                rows[n].append({"sessions": done, "rss_mib": server.memory_info().rss / 2**20,
                                "failures": failures[n]})
            print(f"{done:5d} " + " ".join(f"{r[-1]['rss_mib']:9.1f}" for r in rows), flush=True)
    return rows


def per_session_kib(rows: list[dict[str, float]], baseline: int) -> float:
    """RSS growth from the baseline round to the last, in KiB per session."""
    base = next(r for r in rows if r["sessions"] >= baseline)
    last = rows[-1]
    return (last["rss_mib"] - base["rss_mib"]) * 1024 / max(1, last["sessions"] - base["sessions"])


def sessions_mode(args: argparse.Namespace) -> None:
    """What a finished session holds, on this checkout (and on --against's), with the default settings."""
    os.environ.update(ATELIER_LIMIT_IMAGE_JOBS="100000/minute", ATELIER_LIMIT_READS="100000/minute",
                      ATELIER_SESSION_GRACE_S=str(args.session_grace))
    roots = [ROOT, *([args.against.resolve()] if args.against else [])]
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="atelier-soak-") as tmp:
        procs = [start_server(Path(tmp) / f"v{n}", root=root)[:2] for n, root in enumerate(roots)]
        try:
            servers = [(url, psutil.Process(popen.pid)) for popen, url in procs]
            for url, _ in servers:
                wait_ready(url, "image")
            print(f"{'sessions':>8} " + " ".join(f"{'RSS MiB':>9}" for _ in servers) + "   (" +
                  ", ".join(str(root) for root in roots) + ")")
            rows = session_rounds(args, servers)
        finally:
            for popen, _ in procs:
                popen.terminate()
                popen.wait(timeout=30)
    elapsed = time.monotonic() - started
    result = {"when": datetime.now(UTC).isoformat(timespec="seconds"), "args": {**vars(args), "against": str(
        args.against) if args.against else None}, "elapsed_s": round(elapsed), "load_average_after": os.getloadavg(),
        # A session closed at time t is forgotten at the first sweep (every 300 s from the start) at least the
        # grace later: a run shorter than the grace still holds every session at its end.
        "session_grace_s": args.session_grace, "all_held": elapsed < args.session_grace,
        "versions": [{"checkout": checkout(root), "rounds": r, "kib_per_session": round(per_session_kib(
            r, args.baseline), 1)} for root, r in zip(roots, rows, strict=True)]}
    for version in result["versions"]:
        print(f"{version['checkout']['path']} ({version['checkout']['commit']}): "
              f"{version['kib_per_session']:.1f} KiB a session (RSS from session {args.baseline} to {args.sessions}), "
              f"failures {version['rounds'][-1]['failures']}")
    if not result["all_held"]:
        print(f"WARNING: the run took {elapsed:.0f} s, longer than the {args.session_grace:.0f} s grace: the first "
              "sessions may have been forgotten, so the figure is low", file=sys.stderr)
    if args.save:
        RESULTS.mkdir(exist_ok=True)
        path = RESULTS / "soak_sessions.json"
        path.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {path}")


def main() -> None:
    """Start the tiny app, run the jobs round by round, print and save the figures."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--round", type=int, default=50, help="jobs between two measurements")
    parser.add_argument("--chat-every", type=int, default=5, help="every Nth job is a chat message (0: none)")
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--tokens", type=int, default=16, help="max new tokens per chat reply")
    parser.add_argument("--baseline", type=int, default=200, help="the job the growth is measured from")
    parser.add_argument("--parallel", type=int, default=2, help="sessions at once")
    parser.add_argument("--temp-max-age", type=float, default=30, help="seconds a temp file is kept (sweep)")
    parser.add_argument("--grace", type=float, default=30, help="seconds a quiet session keeps its state")
    parser.add_argument("--login", action="store_true", help="with an account, so per-user maps are exercised")
    parser.add_argument("--save", action="store_true", help="write bench/results/soak.json (soak_sessions.json)")
    parser.add_argument("--sessions", type=int, default=0,
                        help="measure what a finished session holds over this many sessions (default settings)")
    parser.add_argument("--against", type=Path, default=None, help="with --sessions: another checkout, alternated")
    parser.add_argument("--session-grace", type=float, default=3600,
                        help="with --sessions: ATELIER_SESSION_GRACE_S, long enough to hold every session")
    args = parser.parse_args()
    if args.sessions:
        sessions_mode(args)
        return
    password = "soak-password-1"
    # The point is memory over many sessions, not refusals: limits out of the way.
    os.environ.update(ATELIER_LIMIT_IMAGE_JOBS="100000/minute", ATELIER_LIMIT_CHAT_MESSAGES="100000/minute",
                      ATELIER_LIMIT_LOGINS="100000/minute", ATELIER_LIMIT_READS="100000/minute",
                      ATELIER_TEMP_MAX_AGE_S=str(args.temp_max_age), ATELIER_SESSION_GRACE_S=str(args.grace),
                      ATELIER_TEMP_SWEEP_EVERY_S=str(max(1.0, min(args.temp_max_age, args.grace) / 3)))
    rounds: list[dict[str, float]] = []
    latencies: list[float] = []
    with tempfile.TemporaryDirectory(prefix="atelier-soak-") as tmp:
        auth = None
        if args.login:
            subprocess.run([sys.executable, str(ROOT / "app.py"), "users", "add", "soak", "--data-dir", tmp],
                           input=f"{password}\n{password}\n", text=True, check=True, capture_output=True)
            auth = ("soak", password)
        popen, url, _ = start_server(Path(tmp))
        pool = ThreadPoolExecutor(args.parallel)
        try:
            server = psutil.Process(popen.pid)
            wait_ready(url, "image")
            wait_ready(url, "text")
            temp_dir = Path(tmp) / "tmp" / "gradio"
            print(f"{'job':>5} {'RSS MiB':>8} {'fds':>5} {'temp files':>10} {'temp MiB':>8} {'s/job':>6}")
            for done in range(0, args.jobs + 1, args.round):
                if done:
                    latencies += pool.map(lambda i: one_job(url, i, args, auth), range(done - args.round, done))
                row = {"job": done, **measure(server, temp_dir)}
                rounds.append(row)
                recent = statistics.median(ok(latencies[-args.round:])) if latencies else 0.0
                print(f"{done:5d} {row['rss_mib']:8.1f} {row['open_fds']:5d} {row['temp_files']:10d} "
                      f"{row['temp_mib']:8.2f} {recent:6.2f}", flush=True)
                if args.save and latencies:  # after every round, so a run cut short still leaves its figures
                    save(rounds, latencies, args)
        finally:
            pool.shutdown()
            popen.terminate()
            popen.wait(timeout=30)
    summarize(rounds, latencies, args)


def summarize(rounds: list[dict[str, float]], latencies: list[float], args: argparse.Namespace) -> None:
    """Growth from the baseline job to the last, the temp-dir high-water mark; JSON with --save."""
    base, growth = growth_from(rounds, args.baseline)
    last = rounds[-1]
    print(f"RSS job {base['job']} -> job {last['job']}: {base['rss_mib']:.1f} -> {last['rss_mib']:.1f} MiB "
          f"({growth * 100:+.1f} %); temp files max {max(r['temp_files'] for r in rounds)}, "
          f"last {last['temp_files']}; open fds {base['open_fds']} -> {last['open_fds']}")
    done = ok(latencies)
    print(f"job latency s: min {min(done):.2f} median {statistics.median(done):.2f} max {max(done):.2f}; "
          f"failed {sum(math.isnan(t) for t in latencies)} of {len(latencies)}")
    if args.save:
        print(f"wrote {save(rounds, latencies, args)}")


def ok(latencies: list[float]) -> list[float]:
    """The latencies of the jobs that succeeded."""
    return [t for t in latencies if not math.isnan(t)] or [math.nan]


def growth_from(rounds: list[dict[str, float]], baseline: int) -> tuple[dict[str, float], float]:
    """The baseline round (or the first measured one) and the RSS growth from it to the last round."""
    base = next((r for r in rounds if r["job"] == baseline), rounds[min(1, len(rounds) - 1)])
    return base, rounds[-1]["rss_mib"] / base["rss_mib"] - 1


def save(rounds: list[dict[str, float]], latencies: list[float], args: argparse.Namespace) -> Path:
    """Write bench/results/soak.json; return its path."""
    base, growth = growth_from(rounds, args.baseline)
    done = ok(latencies)
    RESULTS.mkdir(exist_ok=True)
    out = {"when": datetime.now(UTC).isoformat(timespec="seconds"), "args": vars(args), "rounds": rounds,
           "baseline_job": base["job"], "last_job": rounds[-1]["job"], "rss_growth_from_baseline": growth,
           "temp_files_max": max(r["temp_files"] for r in rounds),
           "failed_jobs": sum(math.isnan(t) for t in latencies),
           "latency_s": {"min": min(done), "median": statistics.median(done), "max": max(done)}}
    path = RESULTS / "soak.json"
    path.write_text(json.dumps(out, indent=2) + "\n")
    return path


if __name__ == "__main__":
    main()
