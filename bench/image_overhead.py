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
import shutil
import signal
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
    t0, c0 = time.perf_counter(), time.thread_time()
    pipe(prompt=params["prompt"], width=params["width"], height=params["height"],
         num_inference_steps=params["steps"], guidance_scale=params["cfg_scale"],
         generator=torch.Generator("cpu").manual_seed(params["seed"]))
    return {"s": time.perf_counter() - t0, "cpu_s": time.thread_time() - c0, "threads": torch.get_num_threads(),
            "interop": torch.get_num_interop_threads()}


COUNTS = ("preview count", "messages sent")


GRADIO_CLIENT_POLL_S = 0.05  # gradio_client 2.x: stream_sse_v1plus and check_for_cancel sleep this long when idle


def set_client_poll(seconds: float) -> None:
    """Make this process's gradio_client look for new messages every `seconds` instead of every 50 ms.

    gradio_client hands each event's messages from its reader thread to the waiting call through a deque that the
    call polls with time.sleep(0.05) whenever it is empty (gradio_client/utils.py, stream_sse_v1plus): a result
    that arrives just after a look waits up to 50 ms more on the client, whichever server sent it. That quantum is
    the ~50 ms step between a fast and a slow mode of both sides at 256²; a shorter poll shows the servers' own
    times."""
    import gradio_client.utils as client_utils

    class PollingTime:
        def __getattr__(self, name: str) -> Any:
            return getattr(time, name)

        @staticmethod
        def sleep(delay: float) -> None:
            time.sleep(seconds if delay == GRADIO_CLIENT_POLL_S else delay)

    client_utils.time = PollingTime()  # type: ignore[assignment]


RESULT_ARRIVALS: list[float] = []  # perf_counter() when gradio_client's reader thread got each process_completed


def clock_result_arrivals() -> None:
    """Note when each result message reaches this process's gradio_client (its reader thread queues it for the
    waiting call), so that a call's time splits into the servers' part (submit to the result's arrival) and the
    client's own wait after it (its idle poll, see set_client_poll)."""
    import collections

    import gradio_client.client as client_module

    class ArrivalDeque(collections.deque):
        def append(self, item: Any) -> None:
            if isinstance(item, dict) and item.get("msg") == "process_completed":
                RESULT_ARRIVALS.append(time.perf_counter())
            super().append(item)

    client_module.deque = ArrivalDeque  # type: ignore[attr-defined]


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
    pipeline = next((r for r in probes if r["name"].startswith("pipeline call")), None)
    # The plain app has no job thread of its own: its handler is the pipeline call.
    job = next((r for r in probes if r["name"].startswith("job thread")), pipeline)
    finished = marks.get("job finished (handle updated)")
    if finished is None and pipeline is not None:
        finished = {"t0": pipeline["t1"]}
    completed = marks.get("message sent: process_completed")
    if join is not None and job is not None:
        out["gap: submit → queue/join arrives (client, HTTP, gateway)"] = join["t0"] - client_t0
        out["gap: queue/join done → job thread starts (queue pick-up, handler)"] = job["t0"] - join["t1"]
    if finished is not None and completed is not None:
        out["gap: job finished → result message sent (watch poll, postprocess)"] = completed["t0"] - finished["t0"]
        out["gap: result message sent → client returns (SSE, gradio_client's 50 ms poll)"] = client_t1 - completed["t0"]
    return out


def start_vanilla_gradio(*flags: str, env: dict[str, str] | None = None,
                         timeout: float = 300) -> tuple[subprocess.Popen, str]:
    """bench/_vanilla_gradio.py in its own process: a plain Gradio app with one queued echo (and, with
    `--sd DIR`, the same pipeline folder behind /generate_image); its process and URL."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(BENCH / "_vanilla_gradio.py"), str(port), *flags],
                            env={**os.environ, **OFFLINE_ENV, **(env or {})}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
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


def wait_for_file(path: Path, timeout: float = 30) -> None:
    """Wait until a server wrote `path`."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise RuntimeError(f"no {path.name} from the server")
        time.sleep(0.05)


def read_profile(proc: subprocess.Popen, path: Path) -> list[tuple[list[str], int]]:
    """Ask a server's CPU sampler (bench/_cpu_profile.py) for its profile; its rows (stack, CPU ns)."""
    path.unlink(missing_ok=True)
    proc.send_signal(signal.SIGUSR2)
    wait_for_file(path)
    return [(stack, ns) for stack, ns in json.loads(path.read_text())["frames"]]


def profile_summary(rows: list[tuple[list[str], int]], jobs: int, top: int = 40) -> dict[str, Any]:
    """CPU ms per job in all, and by function: inclusive (the function or what it called) and self (the function
    itself); the raw side's calls (in the same process) are left out."""
    rows = [(stack, ns) for stack, ns in rows if not any("raw_call" in f for f in stack)]
    total = sum(ns for _, ns in rows)
    inclusive: dict[str, int] = {}
    own: dict[str, int] = {}
    for stack, ns in rows:
        for name in set(stack):
            inclusive[name] = inclusive.get(name, 0) + ns
        own[stack[-1]] = own.get(stack[-1], 0) + ns

    def per_job(table: dict[str, int]) -> dict[str, float]:
        ranked = sorted(table.items(), key=lambda kv: -kv[1])[:top]
        return {name: round(ns / jobs / 1e6, 2) for name, ns in ranked}

    return {"cpu_ms_per_job": round(total / jobs / 1e6, 1), "inclusive_ms_per_job": per_job(inclusive),
            "self_ms_per_job": per_job(own)}


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
    parser.add_argument("--profile", action="store_true",
                        help="profile both servers' CPU by Python stack (bench/_cpu_profile.py), only the app and "
                             "plain-app sides timed")
    parser.add_argument("--null-model", default="", metavar="UNET_MS,VAE_MS",
                        help="both apps' UNet and VAE decode only sleep this long (bench/_null_model.py): what is "
                             "left is each app's own work")
    parser.add_argument("--cprofile", action="store_true",
                        help="with --profile: cProfile each server's event loop (main thread) instead of sampling; "
                             "the pstats files land in --keep-profiles")
    parser.add_argument("--keep-profiles", type=Path, default=None, help="copy the raw CPU profiles into this folder")
    parser.add_argument("--out", default="image_overhead", help="results file name in bench/results/")
    parser.add_argument("--client-poll-ms", type=float, default=None,
                        help="gradio_client's idle poll for new messages on both sides (default: its own 50 ms)")
    parser.add_argument("--against", type=Path, default=None,
                        help="another checkout (a git worktree of an older commit) to run side by side, round by round")
    args = parser.parse_args()
    params = {"prompt": "a lighthouse at dusk", "negative_prompt": "", "width": args.size, "height": args.size,
              "steps": args.steps, "cfg_scale": 7.0, "seed": 42, "sampler": "Euler a", "batch_count": 1}
    threads = (args.threads, args.interop)
    from gradio_client import Client

    if args.client_poll_ms is not None:
        set_client_poll(args.client_poll_ms / 1000)
    clock_result_arrivals()
    arrived: dict[str, list[float]] = {"app": [], "plain_app": []}  # submit to the result's arrival
    client_wait: dict[str, list[float]] = {"app": [], "plain_app": []}  # the result's arrival to predict()'s return

    def note_arrival(side: str, t0: float, t1: float) -> None:
        arrived[side].append(RESULT_ARRIVALS[-1] - t0)
        client_wait[side].append(t1 - RESULT_ARRIVALS[-1])

    if args.cprofile:  # the servers read it at start
        os.environ["ATELIER_BENCH_PROFILE_KIND"] = "cprofile"
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
               **({"GRADIO_PROFILING": "1"} if args.phases else {}),
               **({"ATELIER_BENCH_NULL_MODEL": args.null_model} if args.null_model else {}),
               **({"ATELIER_BENCH_CPU_PROFILE": str(Path(tmp) / "app.profile")} if args.profile else {})}
        proc, url, _ = start_server(data_dir, "--no-warmup", threads=threads, env=env,
                                    probes=probe_file if args.phases else None, raw="image_overhead:raw_call",
                                    raw_port_file=Path(tmp) / "raw.port")
        worker = vanilla = None
        # Another checkout's server (--against) with the same settings; no CPU profile of it (one file each).
        other_env = {k: v for k, v in env.items() if k != "ATELIER_BENCH_CPU_PROFILE"}
        other = Version(args.against, Path(tmp) / "against", other_env, threads, params) if args.against else None
        try:
            client = Client(url, verbose=False, download_files=False)
            # gradio_client builds a new httpx client, and with it a TLS context that loads the CA bundle, for every
            # call and every event stream, even for a plain-http URL; ssl_verify=False skips the bundle. On http://
            # nothing is verified either way, so this is the same call, minus that cost: the figure a script on the
            # box (or behind a proxy that ends TLS) gets.
            plain_client = Client(url, verbose=False, download_files=False, ssl_verify=False)
            client.predict(**{**params, "steps": 1}, api_name="/generate_image")  # builds + loads the model
            wait_ready(url, "image")
            # The plain Gradio app loads the very pipeline folder the app just built, with the same threads.
            vanilla, vanilla_url = start_vanilla_gradio(
                "--sd", str(data_dir / "models" / "tiny-sd"), "--threads", str(args.threads),
                "--interop", str(args.interop),
                *(["--cpu-profile", str(Path(tmp) / "plain.profile")] if args.profile else []),
                *(["--probes", str(Path(tmp) / "plain-probes.jsonl")] if args.phases else []),
                env={**thread_env(args.threads),
                     **({"ATELIER_BENCH_NULL_MODEL": args.null_model} if args.null_model else {})})
            vanilla_client = Client(vanilla_url, verbose=False, download_files=False)
            rss_loaded = psutil.Process(proc.pid).memory_info().rss
            worker = RawSide(Path(tmp) / "raw.port")

            server, plain_server = psutil.Process(proc.pid), psutil.Process(vanilla.pid)
            cpu: dict[str, list[float]] = {"app": [], "plain_app": [], "raw": []}
            # With --phases: each side's pipeline call and the rest of the call's time around it (the client, the
            # queue, the app's own work), which the pipeline's noise on a busy machine does not swamp.
            plain_pipeline_s: list[float] = []
            plain_outside_s: list[float] = []
            app_pipeline_s: list[float] = []
            app_outside_s: list[float] = []
            plain_phases: list[dict[str, float]] = []
            # The pipeline thread's own CPU seconds in each side's call (time.thread_time()).
            plain_pipeline_cpu: list[float] = []
            app_pipeline_cpu: list[float] = []

            faults: dict[str, list[float]] = {"app": [], "plain_app": [], "raw": []}
            system: dict[str, list[float]] = {"app": [], "plain_app": [], "raw": []}
            marks: dict[int, tuple[float, int]] = {}

            def cpu_of(process: psutil.Process) -> float:
                # Also notes the system time and minor page faults (/proc/PID/stat) for the next call's delta.
                times = process.cpu_times()
                with open(f"/proc/{process.pid}/stat") as f:
                    minflt = int(f.read().rsplit(")", 1)[1].split()[7])
                marks[process.pid] = (times.system, minflt)
                return times.user + times.system

            def app_run() -> tuple[float, float, float]:
                c0 = cpu_of(server)
                t0 = time.perf_counter()
                client.predict(**params, api_name="/generate_image")
                t1 = time.perf_counter()
                note_arrival("app", t0, t1)
                sys0, flt0 = marks[server.pid]
                cpu["app"].append(cpu_of(server) - c0)
                system["app"].append(marks[server.pid][0] - sys0)
                faults["app"].append(marks[server.pid][1] - flt0)
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

            def plain_app_run() -> float:
                # The same call set against a plain Gradio app running the same pipeline folder: one queued event,
                # the pipeline call, a PNG out. What Atelier adds over that is Atelier's own.
                c0 = cpu_of(plain_server)
                t0 = time.perf_counter()
                vanilla_client.predict(**params, api_name="/generate_image")
                t1 = time.perf_counter()
                note_arrival("plain_app", t0, t1)
                if args.phases:
                    probes = read_probes(Path(tmp) / "plain-probes.jsonl", t0, t1)
                    calls = [r for r in probes if r["name"].startswith("pipeline call")]
                    plain_pipeline_s.append(sum(r["t1"] - r["t0"] for r in calls))
                    plain_pipeline_cpu.append(sum(r["cpu"] for r in calls))
                    plain_outside_s.append(t1 - t0 - plain_pipeline_s[-1])
                    plain_phases.append(phases_of(t0, t1, probes))
                sys0, flt0 = marks[plain_server.pid]
                cpu["plain_app"].append(cpu_of(plain_server) - c0)
                system["plain_app"].append(marks[plain_server.pid][0] - sys0)
                faults["plain_app"].append(marks[plain_server.pid][1] - flt0)
                return t1 - t0

            def raw_run() -> tuple[float, dict[str, Any]]:
                c0 = cpu_of(server)
                t0 = time.perf_counter()
                answer = worker.call(params)
                t1 = time.perf_counter()
                sys0, flt0 = marks[server.pid]
                cpu["raw"].append(cpu_of(server) - c0)
                system["raw"].append(marks[server.pid][0] - sys0)
                faults["raw"].append(marks[server.pid][1] - flt0)
                return t1 - t0, answer

            def floor_run() -> float:
                # What any queued call costs through gradio_client (a fresh httpx client with its SSL context
                # per call, the SSE stream, its 50 ms message poll): the part of the overhead no app can cut.
                t0 = time.perf_counter()
                client.predict(limit=1, api_name="/history")
                return time.perf_counter() - t0

            for _ in range(args.warmup):
                app_run()
                plain_app_run()
                raw_run()
                app_plain_run()
                floor_run()
                vanilla_run()
            n_warm_traces = len(gradio_traces(url)) if args.phases else 0
            plain_phases.clear()
            for times in (*arrived.values(), *client_wait.values()):
                times.clear()
            for table in (cpu, system, faults, {"": plain_pipeline_s}, {"": plain_outside_s},
                          {"": plain_pipeline_cpu}):
                for times in table.values():
                    times.clear()
            if args.profile:
                proc.send_signal(signal.SIGUSR1)  # profiles start after the warm-up
                vanilla.send_signal(signal.SIGUSR1)
            app_s: list[float] = []
            raw_s: list[float] = []
            raw_inner_s: list[float] = []
            raw_cpu_s: list[float] = []
            floor_s: list[float] = []
            plain_s: list[float] = []
            plain_ratios: list[float] = []
            vanilla_s: list[float] = []
            plain_app_s: list[float] = []
            over_plain_app: list[float] = []
            ratios: list[float] = []
            job_phases: list[dict[str, float]] = []
            if other is not None:
                other.warm_up(args.warmup)
            for i in range(args.runs):
                if other is not None and i % 2 == 0:  # the other version first every other round
                    other.round()
                # Alternate which side goes first, so neither always runs right after the other.
                if i % 2:
                    p = plain_app_run()
                    (r, answer), (a, t0, t1) = raw_run(), app_run()
                else:
                    (a, t0, t1), (r, answer) = app_run(), raw_run()
                    p = plain_app_run()
                if other is not None and i % 2 == 1:
                    other.round()
                plain_app_s.append(p)
                over_plain_app.append(a / p)
                if not args.profile:  # a profile charges the app's server with the app's calls alone
                    plain_s.append(app_plain_run())
                    plain_ratios.append(plain_s[-1] / r)
                    floor_s.append(floor_run())
                    vanilla_s.append(vanilla_run())
                app_s.append(a)
                raw_s.append(r)
                raw_inner_s.append(answer["s"])
                raw_cpu_s.append(answer["cpu_s"])
                ratios.append(a / r)
                if args.phases:
                    job_phases.append(phases_of(t0, t1, read_probes(probe_file, t0, t1)))
                    app_pipeline_s.append(job_phases[-1].get("pipeline call (generate_batch, incl. previews)", 0.0))
                    app_outside_s.append(a - app_pipeline_s[-1])
                    app_pipeline_cpu.append(sum(row.get("cpu", 0.0) for row in read_probes(probe_file, t0, t1)
                                                if row["name"].startswith("pipeline call (generate_batch")))
            traces = gradio_traces(url)[n_warm_traces:] if args.phases else []
            profiles = {}
            if args.cprofile and args.keep_profiles:
                args.keep_profiles.mkdir(parents=True, exist_ok=True)
                for name, server_proc in (("app", proc), ("plain", vanilla)):
                    server_proc.send_signal(signal.SIGUSR2)
                    wait_for_file(Path(tmp) / f"{name}.profile")
                    shutil.copy(Path(tmp) / f"{name}.profile", args.keep_profiles / f"{name}.pstats")
            elif args.profile and args.keep_profiles:
                args.keep_profiles.mkdir(parents=True, exist_ok=True)
                for name, server_proc in (("app", proc), ("plain", vanilla)):
                    rows = read_profile(server_proc, Path(tmp) / f"{name}.profile")
                    (args.keep_profiles / f"{name}.json").write_text(json.dumps({"runs": args.runs, "frames": rows}))
            if args.profile and not args.cprofile:
                profiles = {"app": profile_summary(read_profile(proc, Path(tmp) / "app.profile"), args.runs),
                            "plain_app": profile_summary(read_profile(vanilla, Path(tmp) / "plain.profile"),
                                                         args.runs)}
        finally:
            if worker is not None:
                worker.close()
            if other is not None:
                other.stop()
            proc.terminate()
            proc.wait(timeout=30)
            if vanilla is not None:
                vanilla.terminate()
                vanilla.wait(timeout=30)

    import torch

    result: dict[str, Any] = {
        "what": f"tiny SD {args.size}x{args.size}, {args.steps} steps, Euler a, CFG 7, seed 42"
                + (f"; null model (UNet, VAE sleep ms: {args.null_model})" if args.null_model else ""),
        "checkout": checkout(ROOT), "interleaved_runs": args.runs, "warmup_runs_each": args.warmup,
        "torch": torch.__version__, "device": "cuda" if torch.cuda.is_available() else "cpu",
        "threads": {"intra_op": args.threads, "inter_op": args.interop, "raw_side_reported":
                    [answer["threads"], answer["interop"]]},
        "load_average_after": load_average(), "cpus": os.cpu_count(),
        "gradio_client_poll_ms": GRADIO_CLIENT_POLL_S * 1000 if args.client_poll_ms is None else args.client_poll_ms,
        "raw_ms": stats(raw_s, 1000), "raw_in_worker_ms": stats(raw_inner_s, 1000), "app_ms": stats(app_s, 1000),
        "plain_gradio_app_ms": stats(plain_app_s, 1000),
        "ratio_app_over_plain_gradio_app": stats(over_plain_app, 1, 3),
        # The same calls up to the moment the result reached gradio_client, and its wait after that (its poll).
        "result_arrived_ms": {side: stats(times, 1000) for side, times in arrived.items()},
        "ratio_result_arrived_app_over_plain_gradio_app": stats(
            [a / p for a, p in zip(arrived["app"], arrived["plain_app"], strict=True)], 1, 3),
        "client_wait_after_result_ms": {side: stats(times, 1000) for side, times in client_wait.items()},
        # CPU seconds the serving process spent on each call (all its threads): what each side costs in work,
        # which a busy shared machine stretches far less than the wall-clock time.
        "server_cpu_ms": {side: stats(times, 1000) for side, times in cpu.items()},
        "server_system_cpu_ms": {side: stats(times, 1000) for side, times in system.items()},
        "server_minor_page_faults": {side: stats(times, 1, 0) for side, times in faults.items()},
        "server_cpu_ratio_app_over_plain_gradio_app": stats(
            [a / p for a, p in zip(cpu["app"], cpu["plain_app"], strict=True)], 1, 3),
        "ratio_of_medians_app_over_plain_gradio_app": round(statistics.median(app_s) / statistics.median(plain_app_s),
                                                             3),
        "ratio_app_over_raw": stats(ratios, 1, 3),
        "ratio_of_medians": round(statistics.median(app_s) / statistics.median(raw_s), 3),
        # The least disturbed run of each side: on a shared machine the closest to what each really costs.
        "ratio_of_mins": round(min(app_s) / min(raw_s), 3),
        "overhead_ms_median": round((statistics.median(app_s) - statistics.median(raw_s)) * 1000, 1),
        "startup_s": round(startup_s, 2), "rss_idle_mib": round(rss_idle / 2**20),
        "rss_loaded_mib": round(rss_loaded / 2**20),
    }
    if floor_s:  # the sides a --profile run leaves out
        result.update({
            "client_floor_ms": stats(floor_s, 1000), "plain_gradio_echo_ms": stats(vanilla_s, 1000),
            "app_ssl_verify_off_ms": stats(plain_s, 1000),
            "ratio_app_ssl_verify_off_over_raw": stats(plain_ratios, 1, 3),
            # The lowest ratio any app on Gradio could reach through the default client: raw + a plain Gradio echo.
            "ratio_floor_plain_gradio": round((statistics.median(raw_s) + statistics.median(vanilla_s))
                                              / statistics.median(raw_s), 3)})
    if profiles:
        result["cpu_profile"] = profiles
    if other is not None:
        result["against"] = other.summary(app_s, ratios)
    if args.phases:
        names = sorted({k for p in job_phases for k in p})
        result["phases_ms"] = {k: stats([p.get(k, 0.0) for p in job_phases], 1 if k in COUNTS else 1000)
                               for k in names if not k.startswith("message sent")}
        names = sorted({k for p in plain_phases for k in p})
        result["plain_app_phases_ms"] = {k: stats([p.get(k, 0.0) for p in plain_phases],
                                                  1 if k in COUNTS else 1000)
                                         for k in names if not k.startswith("message sent")}
        keys = ["queue_wait_ms", "preprocess_ms", "fn_call_ms", "postprocess_ms", "streaming_diff_ms", "total_ms",
                "n_iterations", "postprocess_save_pil_to_cache_ms", "save_file_to_cache_ms",
                "postprocess_move_to_cache_ms"]
        result["gradio_profile"] = {k: stats([t[k] for t in traces]) for k in keys if traces}
        result["pipeline_and_rest_ms"] = {
            "app_pipeline": stats(app_pipeline_s, 1000), "plain_app_pipeline": stats(plain_pipeline_s, 1000),
            "app_rest": stats(app_outside_s, 1000), "plain_app_rest": stats(plain_outside_s, 1000),
            "app_rest_minus_plain_app_rest": stats([a - p for a, p in zip(app_outside_s, plain_outside_s,
                                                                                strict=True)], 1000),
            "app_pipeline_thread_cpu": stats(app_pipeline_cpu, 1000),
            "raw_thread_cpu": stats(raw_cpu_s, 1000),
            "plain_app_pipeline_thread_cpu": stats(plain_pipeline_cpu, 1000),
            "app_pipeline_over_plain_app_pipeline": stats([a / p for a, p in zip(app_pipeline_s, plain_pipeline_s,
                                                                                   strict=True)], 1, 3)}
    print(f"{result['what']}; {args.runs} interleaved runs after {args.warmup} warm-ups each; torch "
          f"{result['torch']} on {result['device']}, {args.threads} intra-op / {args.interop} inter-op threads on "
          f"both sides; load average {result['load_average_after']} on {result['cpus']} CPUs")
    print(f"  raw pipeline call        : {fmt(result['raw_ms'], 'ms')}")
    print(f"  /generate_image (client) : {fmt(result['app_ms'], 'ms')}")
    ratio = result["ratio_app_over_raw"]
    print(f"  plain Gradio app, same pipeline: {fmt(result['plain_gradio_app_ms'], 'ms')}")
    over = result["ratio_app_over_plain_gradio_app"]
    print(f"  ratio app/plain app, per round : {over['median']:8.2f}x  (min {over['min']:.2f}, max {over['max']:.2f})")
    arrived = result["result_arrived_ms"]
    over = result["ratio_result_arrived_app_over_plain_gradio_app"]
    print(f"  until the result reached the client, app / plain app: {arrived['app']['median']:.1f} / "
          f"{arrived['plain_app']['median']:.1f} ms; per round {over['median']:.2f}x (min {over['min']:.2f}, max "
          f"{over['max']:.2f})")
    wait = result["client_wait_after_result_ms"]
    print(f"  gradio_client's wait after the result, app / plain app: {fmt(wait['app'], 'ms')} / "
          f"{fmt(wait['plain_app'], 'ms')}")
    for side, row in result["server_cpu_ms"].items():
        print(f"  server CPU per call, {side:<9}: {fmt(row, 'ms')}; system "
              f"{result['server_system_cpu_ms'][side]['median']:.0f} ms, minor page faults "
              f"{result['server_minor_page_faults'][side]['median']:.0f}")
    over = result["server_cpu_ratio_app_over_plain_gradio_app"]
    print(f"  server CPU app/plain app, per round: {over['median']:.2f}x (min {over['min']:.2f}, "
          f"max {over['max']:.2f})")
    if floor_s:
        print(f"  gradio_client floor      : {fmt(result['client_floor_ms'], 'ms')}  (/history, limit=1: any queued "
              "call)")
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
        print(f"  phases of one job (median, ms): {'app':>8} {'plain app':>10}")
        plain_phases_ms = result["plain_app_phases_ms"]
        for name in sorted({*result["phases_ms"], *plain_phases_ms}):
            app_row, plain_row = result["phases_ms"].get(name), plain_phases_ms.get(name)
            app_ms = f"{app_row['median']:8.1f}" if app_row else f"{'-':>8}"
            plain_ms = f"{plain_row['median']:10.1f}" if plain_row else f"{'-':>10}"
            print(f"    {name:<75} {app_ms} {plain_ms}")
        print("  each call's pipeline and the rest around it (median, ms):")
        for name, row in result["pipeline_and_rest_ms"].items():
            print(f"    {name:<75} {row['median']:8.2f}  (min {row['min']:.2f}, max {row['max']:.2f})")
        print("  Gradio's profiler, per job (median):")
        for name, row in result.get("gradio_profile", {}).items():
            print(f"    {name:<75} {row['median']:8.1f}")
    for side, summary in profiles.items():
        print(f"  CPU profile, {side}: {summary['cpu_ms_per_job']} ms a job; by function, inclusive (ms a job):")
        for name, ms in list(summary["inclusive_ms_per_job"].items())[:25]:
            print(f"    {name:<90} {ms:8.2f}")
    if result["raw_ms"]["median"] > result["app_ms"]["median"]:
        print("  WARNING: the raw side lost to the app: the baseline is broken, do not quote this ratio",
              file=sys.stderr)
    print(f"  saved to {save(args.out, result)}")


if __name__ == "__main__":
    main()
