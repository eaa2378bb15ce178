"""What Atelier adds on top of diffusers: /generate_image through gradio_client vs the raw pipeline call.

Both sides run side by side, interleaved run by run (the order alternates), in the same server process: the raw
call runs there too (bench/_probes.py), on the pipeline object the app loaded, so both have the same torch
intra-op / inter-op threads, OMP/MKL pool sizes, memory and background activity, the same parameters and seed
(the app's result cache is off, so every run computes), and the same number of warm-up runs. It prints min /
median / max for each side and for the per-round ratio, the server's start-up time and resident memory, and with
--phases where the app's extra time goes (Gradio's own profiler plus probes on the app's steps, bench/_probes.py).
Two more sides run in each round: the same call through a client with ssl_verify=False, and a plain Gradio app's
queued echo (bench/_vanilla_gradio.py), the cost of one call through Gradio and gradio_client with no app at all.

With --against DIR (another checkout, e.g. `git worktree add /tmp/before a403b27`), a second server runs that
checkout's code with the same settings, and each round times both versions' /generate_image and raw call, the order
alternating: two versions compared on the same box at the same moments, their ratio per round with its spread.

    python bench/image_overhead.py [--runs 10] [--size 256] [--steps 8] [--phases] [--against DIR]
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
import urllib.request
from pathlib import Path
from typing import Any

import psutil
from _server import (
    BENCH,
    OFFLINE_ENV,
    ROOT,
    RawSide,
    checkout,
    fmt,
    free_port,
    load_average,
    save,
    start_server,
    stats,
    thread_env,
    wait_ready,
)


def raw_call(backends: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """The raw side, run in the server process (bench/_probes.py): the documented diffusers call, on the pipeline
    object the app loaded, with the app's Euler a scheduler, timed where it runs."""
    import torch

    pipe = backends["image"].pipe
    t0 = time.perf_counter()
    pipe(prompt=params["prompt"], width=params["width"], height=params["height"],
         num_inference_steps=params["steps"], guidance_scale=params["cfg_scale"],
         generator=torch.Generator("cpu").manual_seed(params["seed"]))
    return {"s": time.perf_counter() - t0, "threads": torch.get_num_threads(),
            "interop": torch.get_num_interop_threads()}


COUNTS = ("preview count", "messages sent")


def read_probes(path: Path, t0: float, t1: float) -> list[dict[str, Any]]:
    """The probe timings recorded between t0 and t1."""
    if not path.exists():
        return []
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in rows if t0 <= r["t0"] <= t1]


def phases_of(client_t0: float, client_t1: float, probes: list[dict[str, Any]]) -> dict[str, float]:
    """One job's phases in seconds: the probes summed by name, and the gaps around the job thread."""
    out: dict[str, float] = {}
    for row in probes:
        out[row["name"]] = out.get(row["name"], 0.0) + row["t1"] - row["t0"]
    out["preview count"] = float(sum(1 for r in probes if r["name"] == "preview: latents to RGB"))
    out["messages sent"] = float(sum(1 for r in probes if r["name"].startswith("message sent")))
    marks = {r["name"]: r for r in probes}
    join = marks.get("gradio: queue/join (validator, enqueue)")
    job = next((r for r in probes if r["name"].startswith("job thread")), None)
    finished = marks.get("job finished (handle updated)")
    completed = marks.get("message sent: process_completed")
    if join is not None and job is not None:
        out["gap: submit → queue/join arrives (client, HTTP, gateway)"] = join["t0"] - client_t0
        out["gap: queue/join done → job thread starts (queue pick-up, handler)"] = job["t0"] - join["t1"]
    if finished is not None and completed is not None:
        out["gap: job finished → result message sent (watch poll, postprocess)"] = completed["t0"] - finished["t0"]
        out["gap: result message sent → client returns (SSE, gradio_client's 50 ms poll)"] = client_t1 - completed["t0"]
    return out


def start_vanilla_gradio(timeout: float = 120) -> tuple[subprocess.Popen, str]:
    """bench/_vanilla_gradio.py in its own process: a plain Gradio app with one queued echo; its process and URL."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(BENCH / "_vanilla_gradio.py"), str(port)],
                            env={**os.environ, **OFFLINE_ENV}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"the plain Gradio app exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url + "config", timeout=2):
                return proc, url
        except OSError:
            if time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError("the plain Gradio app never answered") from None
            time.sleep(0.1)


def gradio_traces(url: str) -> list[dict[str, Any]]:
    """Gradio's own per-event profile (GRADIO_PROFILING=1) for /generate_image."""
    with urllib.request.urlopen(url + "gradio_api/profiling/traces", timeout=10) as response:
        traces = json.loads(response.read())
    traces = traces.get("traces", traces) if isinstance(traces, dict) else traces
    return [t for t in traces if t.get("fn_name") == "generate_image"]


class Version:
    """Another checkout's server, timed in the same rounds as this one's: its /generate_image and its raw call."""

    def __init__(self, root: Path, data_dir: Path, env: dict[str, str], threads: tuple[int, int],
                 params: dict[str, Any]) -> None:
        from gradio_client import Client

        self.root, self.params = root.resolve(), params
        self.proc, url, self.startup_s = start_server(data_dir, "--no-warmup", threads=threads, env=env,
                                                      raw="image_overhead:raw_call",
                                                      raw_port_file=data_dir.parent / "against-raw.port",
                                                      root=self.root)
        self.client = Client(url, verbose=False, download_files=False)
        self.client.predict(**{**params, "steps": 1}, api_name="/generate_image")  # builds + loads the model
        wait_ready(url, "image")
        self.rss_loaded = psutil.Process(self.proc.pid).memory_info().rss
        self.worker = RawSide(data_dir.parent / "against-raw.port")
        self.app_s: list[float] = []
        self.raw_s: list[float] = []

    def warm_up(self, runs: int) -> None:
        """Untimed runs, as many as this version's."""
        for _ in range(runs):
            self.client.predict(**self.params, api_name="/generate_image")
            self.worker.call(self.params)

    def round(self) -> None:
        """One timed app call and one raw call, the order alternating from round to round."""
        calls = [self._app, self._raw]
        for call in calls if len(self.app_s) % 2 else calls[::-1]:
            call()

    def _app(self) -> None:
        t0 = time.perf_counter()
        self.client.predict(**self.params, api_name="/generate_image")
        self.app_s.append(time.perf_counter() - t0)

    def _raw(self) -> None:
        t0 = time.perf_counter()
        self.worker.call(self.params)
        self.raw_s.append(time.perf_counter() - t0)

    def summary(self, this_app_s: list[float], this_ratios: list[float]) -> dict[str, Any]:
        """Its figures, and this version's over its own, round by round."""
        ratios = [a / r for a, r in zip(self.app_s, self.raw_s, strict=True)]
        return {"checkout": checkout(self.root), "app_ms": stats(self.app_s, 1000), "raw_ms": stats(self.raw_s, 1000),
                "ratio_app_over_raw": stats(ratios, 1, 3),
                "this_app_over_against_app": stats([a / b for a, b in zip(this_app_s, self.app_s, strict=True)], 1, 3),
                "this_ratio_over_against_ratio": stats([a / b for a, b in zip(this_ratios, ratios, strict=True)], 1, 3),
                "rss_loaded_mib": round(self.rss_loaded / 2**20),
                "per_round_app_ms": [round(t * 1000, 1) for t in self.app_s],
                "this_per_round_app_ms": [round(t * 1000, 1) for t in this_app_s]}

    def stop(self) -> None:
        """End its server."""
        self.worker.close()
        self.proc.terminate()
        self.proc.wait(timeout=30)


def main() -> None:
    """Run both sides interleaved; print and save the figures."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2, help="untimed runs on each side first")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=8)
    # Half the cores: with as many OpenMP threads as cores, a machine that is busy anyway deschedules one of them
    # and every parallel region waits for it at the barrier (on 2 loaded cores: 10 s instead of 0.75 s a job).
    parser.add_argument("--threads", type=int, default=max(1, (os.cpu_count() or 1) // 2),
                        help="torch intra-op threads, both sides")
    parser.add_argument("--interop", type=int, default=1, help="torch inter-op threads, both sides")
    parser.add_argument("--phases", action="store_true", help="also time the app's phases (probes, Gradio profiler)")
    parser.add_argument("--out", default="image_overhead", help="results file name in bench/results/")
    parser.add_argument("--against", type=Path, default=None,
                        help="another checkout (a git worktree of an older commit) to run side by side, round by round")
    args = parser.parse_args()
    params = {"prompt": "a lighthouse at dusk", "negative_prompt": "", "width": args.size, "height": args.size,
              "steps": args.steps, "cfg_scale": 7.0, "seed": 42, "sampler": "Euler a", "batch_count": 1}
    threads = (args.threads, args.interop)
    from gradio_client import Client

    with tempfile.TemporaryDirectory(prefix="atelier-bench-") as tmp:
        # Start-up and idle memory of the app as users start it (no bootstrap, no torch imported up front).
        plain, _, startup_s = start_server(Path(tmp) / "plain", "--no-warmup")
        rss_idle = psutil.Process(plain.pid).memory_info().rss
        plain.terminate()
        plain.wait(timeout=30)

        data_dir = Path(tmp) / "data"
        probe_file = Path(tmp) / "probes.jsonl"
        # No result cache: the same seed each run must compute each time, as the raw side does (with the cache on,
        # every run after the first was a cache hit, and the "app" beat the raw call).
        env = {**thread_env(args.threads), "ATELIER_CACHE_ENABLED": "false",
               **({"GRADIO_PROFILING": "1"} if args.phases else {})}
        proc, url, _ = start_server(data_dir, "--no-warmup", threads=threads, env=env,
                                    probes=probe_file if args.phases else None, raw="image_overhead:raw_call",
                                    raw_port_file=Path(tmp) / "raw.port")
        worker = None
        other = Version(args.against, Path(tmp) / "against", env, threads, params) if args.against else None
        vanilla, vanilla_url = start_vanilla_gradio()
        try:
            client = Client(url, verbose=False, download_files=False)
            # gradio_client builds a new httpx client, and with it a TLS context that loads the CA bundle, for every
            # call and every event stream, even for a plain-http URL; ssl_verify=False skips the bundle. On http://
            # nothing is verified either way, so this is the same call, minus that cost: the figure a script on the
            # box (or behind a proxy that ends TLS) gets.
            plain_client = Client(url, verbose=False, download_files=False, ssl_verify=False)
            vanilla_client = Client(vanilla_url, verbose=False, download_files=False)
            client.predict(**{**params, "steps": 1}, api_name="/generate_image")  # builds + loads the model
            wait_ready(url, "image")
            rss_loaded = psutil.Process(proc.pid).memory_info().rss
            worker = RawSide(Path(tmp) / "raw.port")

            def app_run() -> tuple[float, float, float]:
                t0 = time.perf_counter()
                client.predict(**params, api_name="/generate_image")
                t1 = time.perf_counter()
                return t1 - t0, t0, t1

            def app_plain_run() -> float:
                t0 = time.perf_counter()
                plain_client.predict(**params, api_name="/generate_image")
                return time.perf_counter() - t0

            def vanilla_run() -> float:
                # The same gradio_client against a plain Gradio app with nothing of Atelier: Gradio's and
                # gradio_client's own cost for one queued call, which no app built on them can go below.
                t0 = time.perf_counter()
                vanilla_client.predict("x", api_name="/echo")
                return time.perf_counter() - t0

            def raw_run() -> tuple[float, dict[str, Any]]:
                t0 = time.perf_counter()
                answer = worker.call(params)
                return time.perf_counter() - t0, answer

            def floor_run() -> float:
                # What any queued call costs through gradio_client (a fresh httpx client with its SSL context
                # per call, the SSE stream, its 50 ms message poll): the part of the overhead no app can cut.
                t0 = time.perf_counter()
                client.predict(limit=1, api_name="/history")
                return time.perf_counter() - t0

            for _ in range(args.warmup):
                app_run()
                raw_run()
                app_plain_run()
                floor_run()
                vanilla_run()
            n_warm_traces = len(gradio_traces(url)) if args.phases else 0
            app_s: list[float] = []
            raw_s: list[float] = []
            raw_inner_s: list[float] = []
            floor_s: list[float] = []
            plain_s: list[float] = []
            plain_ratios: list[float] = []
            vanilla_s: list[float] = []
            ratios: list[float] = []
            job_phases: list[dict[str, float]] = []
            if other is not None:
                other.warm_up(args.warmup)
            for i in range(args.runs):
                if other is not None and i % 2 == 0:  # the other version first every other round
                    other.round()
                # Alternate which side goes first, so neither always runs right after the other.
                if i % 2:
                    (r, answer), (a, t0, t1) = raw_run(), app_run()
                else:
                    (a, t0, t1), (r, answer) = app_run(), raw_run()
                if other is not None and i % 2 == 1:
                    other.round()
                plain_s.append(app_plain_run())
                plain_ratios.append(plain_s[-1] / r)
                floor_s.append(floor_run())
                vanilla_s.append(vanilla_run())
                app_s.append(a)
                raw_s.append(r)
                raw_inner_s.append(answer["s"])
                ratios.append(a / r)
                if args.phases:
                    job_phases.append(phases_of(t0, t1, read_probes(probe_file, t0, t1)))
            traces = gradio_traces(url)[n_warm_traces:] if args.phases else []
        finally:
            if worker is not None:
                worker.close()
            if other is not None:
                other.stop()
            proc.terminate()
            proc.wait(timeout=30)
            vanilla.terminate()
            vanilla.wait(timeout=30)

    import torch

    result: dict[str, Any] = {
        "what": f"tiny SD {args.size}x{args.size}, {args.steps} steps, Euler a, CFG 7, seed 42",
        "checkout": checkout(ROOT), "interleaved_runs": args.runs, "warmup_runs_each": args.warmup,
        "torch": torch.__version__, "device": "cuda" if torch.cuda.is_available() else "cpu",
        "threads": {"intra_op": args.threads, "inter_op": args.interop, "raw_side_reported":
                    [answer["threads"], answer["interop"]]},
        "load_average_after": load_average(), "cpus": os.cpu_count(),
        "raw_ms": stats(raw_s, 1000), "raw_in_worker_ms": stats(raw_inner_s, 1000), "app_ms": stats(app_s, 1000),
        "client_floor_ms": stats(floor_s, 1000),
        "plain_gradio_echo_ms": stats(vanilla_s, 1000),
        "app_ssl_verify_off_ms": stats(plain_s, 1000),
        "ratio_app_over_raw": stats(ratios, 1, 3),
        "ratio_app_ssl_verify_off_over_raw": stats(plain_ratios, 1, 3),
        # The lowest ratio any app on Gradio could reach through the default client: raw + a plain Gradio echo.
        "ratio_floor_plain_gradio": round((statistics.median(raw_s) + statistics.median(vanilla_s))
                                          / statistics.median(raw_s), 3),
        "ratio_of_medians": round(statistics.median(app_s) / statistics.median(raw_s), 3),
        # The least disturbed run of each side: on a shared machine the closest to what each really costs.
        "ratio_of_mins": round(min(app_s) / min(raw_s), 3),
        "overhead_ms_median": round((statistics.median(app_s) - statistics.median(raw_s)) * 1000, 1),
        "startup_s": round(startup_s, 2), "rss_idle_mib": round(rss_idle / 2**20),
        "rss_loaded_mib": round(rss_loaded / 2**20),
    }
    if other is not None:
        result["against"] = other.summary(app_s, ratios)
    if args.phases:
        names = sorted({k for p in job_phases for k in p})
        result["phases_ms"] = {k: stats([p.get(k, 0.0) for p in job_phases], 1 if k in COUNTS else 1000)
                               for k in names if not k.startswith("message sent")}
        keys = ["queue_wait_ms", "preprocess_ms", "fn_call_ms", "postprocess_ms", "streaming_diff_ms", "total_ms",
                "n_iterations", "postprocess_save_pil_to_cache_ms", "save_file_to_cache_ms",
                "postprocess_move_to_cache_ms"]
        result["gradio_profile"] = {k: stats([t[k] for t in traces]) for k in keys if traces}
    print(f"{result['what']}; {args.runs} interleaved runs after {args.warmup} warm-ups each; torch "
          f"{result['torch']} on {result['device']}, {args.threads} intra-op / {args.interop} inter-op threads on "
          f"both sides; load average {result['load_average_after']} on {result['cpus']} CPUs")
    print(f"  raw pipeline call        : {fmt(result['raw_ms'], 'ms')}")
    print(f"  /generate_image (client) : {fmt(result['app_ms'], 'ms')}")
    ratio = result["ratio_app_over_raw"]
    print(f"  gradio_client floor      : {fmt(result['client_floor_ms'], 'ms')}  (/history, limit=1: any queued call)")
    print(f"  plain Gradio echo        : {fmt(result['plain_gradio_echo_ms'], 'ms')}  (no Atelier: Gradio + client "
          f"alone; raw + this = {result['ratio_floor_plain_gradio']:.2f}x raw)")
    plain = result["ratio_app_ssl_verify_off_over_raw"]
    print(f"  /generate_image, ssl_verify=False: {fmt(result['app_ssl_verify_off_ms'], 'ms')}; ratio per round "
          f"{plain['median']:.2f}x (min {plain['min']:.2f}, max {plain['max']:.2f})")
    print(f"  ratio app/raw, per round : {ratio['median']:8.2f}x  (min {ratio['min']:.2f}, max {ratio['max']:.2f}); "
          f"+{result['overhead_ms_median']:.0f} ms per job (medians); ratio of the fastest runs "
          f"{result['ratio_of_mins']:.2f}x")
    print(f"  start-up to /api/health  : {startup_s:8.1f} s")
    print(f"  server RSS idle / loaded : {result['rss_idle_mib']} / {result['rss_loaded_mib']} MiB")
    if other is not None:
        against = result["against"]
        print(f"  against {against['checkout']['commit']} ({against['checkout']['path']}), the same rounds:")
        print(f"    raw pipeline call        : {fmt(against['raw_ms'], 'ms')}")
        print(f"    /generate_image (client) : {fmt(against['app_ms'], 'ms')}")
        print(f"    ratio app/raw, per round : {against['ratio_app_over_raw']['median']:8.2f}x  (min "
              f"{against['ratio_app_over_raw']['min']:.2f}, max {against['ratio_app_over_raw']['max']:.2f})")
        row = against["this_app_over_against_app"]
        print(f"    this /generate_image over the other's, per round: {row['median']:.3f}x (min {row['min']:.3f}, "
              f"max {row['max']:.3f}); app/raw ratio over the other's: "
              f"{against['this_ratio_over_against_ratio']['median']:.3f}x")
    if args.phases:
        print("  phases of one job (median, ms):")
        for name, row in result["phases_ms"].items():
            print(f"    {name:<75} {row['median']:8.1f}")
        print("  Gradio's profiler, per job (median):")
        for name, row in result.get("gradio_profile", {}).items():
            print(f"    {name:<75} {row['median']:8.1f}")
    if result["raw_ms"]["median"] > result["app_ms"]["median"]:
        print("  WARNING: the raw side lost to the app: the baseline is broken, do not quote this ratio",
              file=sys.stderr)
    print(f"  saved to {save(args.out, result)}")


if __name__ == "__main__":
    main()
