"""What the OpenAI and AUTOMATIC1111 APIs add on top of the raw library calls, and their memory per call.

Three parts, each in one `python app.py --profile tiny` (no result cache, so every run computes), with the raw side
run inside that server process on the very objects the app loaded (bench/_probes.py), the same threads, the same
parameters and seed, and the same number of warm-up runs; the two sides interleaved run by run, the order
alternating:

- image: `POST /sdapi/v1/txt2img` from one client over one kept-alive HTTP connection (httpx) against the raw
  diffusers pipeline call, tiny SD 256², 8 steps;
- text: `POST /v1/chat/completions` streaming (SSE over one kept-alive connection; the thinking budget lifted, as
  the raw side has none) against a raw streamed `generate()` with a TextIteratorStreamer: time to first token, and
  tokens per second over the whole reply;
- rss: 1,000 API calls (tiny txt2img through /sdapi and /v1 in turn, random seeds), each from a fresh connection:
  the server's RSS after call 200 against after call 1,000 (no Gradio session is made per call).

    python bench/api_overhead.py [--parts image,text,rss] [--runs 12] [--calls 1000] [--out api_overhead]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import psutil
from _server import ROOT, RawSide, checkout, fmt, load_average, save, start_server, stats, thread_env, wait_ready

MESSAGE = "Explain why the sky is blue."


def raw_call(backends: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """The raw side in the server process: the diffusers call (image) or a streamed generate() (text)."""
    if params["kind"] == "cpu":  # the process's CPU time in ns resolution, exited threads included (/proc: 10 ms)
        return {"cpu_s": time.process_time()}
    if params["kind"] == "image":
        from image_overhead import raw_call as raw_image

        return raw_image(backends, params)
    from text_overhead import raw_call as raw_text

    return raw_text(backends, params)


def image_part(url: str, raw: RawSide, args: argparse.Namespace) -> dict[str, Any]:
    """/sdapi/v1/txt2img over one kept-alive connection vs the raw pipeline call, interleaved."""
    params = {"prompt": "a lighthouse at dusk", "negative_prompt": "", "width": args.size, "height": args.size,
              "steps": args.steps, "cfg_scale": 7.0, "seed": 42, "sampler": "Euler a"}
    body = {**params, "sampler_name": "Euler a"}
    with httpx.Client(base_url=url, timeout=300) as client:  # one client: the connection is kept alive

        def api() -> float:
            t0 = time.perf_counter()
            answer = client.post("sdapi/v1/txt2img", json=body)
            answer.raise_for_status()
            return time.perf_counter() - t0

        def rawside() -> float:
            t0 = time.perf_counter()
            raw.call({"kind": "image", **params})
            return time.perf_counter() - t0

        api_s, raw_s = interleave(api, rawside, args.runs, args.warmup)
    return summary(api_s, raw_s, "api_ms", f"tiny SD {args.size}x{args.size}, {args.steps} steps, Euler a, seed 42")


def interleave(api: Any, raw: Any, runs: int, warmup: int) -> tuple[list[float], list[float]]:
    """Both sides `runs` times, alternating which goes first, after `warmup` untimed runs of each."""
    for _ in range(warmup):
        api()
        raw()
    api_s, raw_s = [], []
    for i in range(runs):
        if i % 2:
            raw_s.append(raw())
            api_s.append(api())
        else:
            api_s.append(api())
            raw_s.append(raw())
    return api_s, raw_s


def summary(api_s: list[float], raw_s: list[float], key: str, what: str) -> dict[str, Any]:
    """min / median / max of each side and of the per-round ratio."""
    ratios = [a / r for a, r in zip(api_s, raw_s, strict=True)]
    return {"what": what, "raw_ms": stats(raw_s, 1000), key: stats(api_s, 1000), "ratio": stats(ratios, 1, 3),
            "ratio_of_medians": round(statistics.median(api_s) / statistics.median(raw_s), 3),
            "overhead_ms_median": round((statistics.median(api_s) - statistics.median(raw_s)) * 1000, 1)}


def chat_stream(client: httpx.Client, model: str, params: dict[str, Any]) -> dict[str, Any]:
    """One streamed /v1/chat/completions reply: first token, total time, tokens (from the usage chunk)."""
    body = {"model": model, "messages": [{"role": "user", "content": MESSAGE}], "stream": True,
            "stream_options": {"include_usage": True}, "max_tokens": params["max_new_tokens"],
            "temperature": params["temperature"], "top_p": params["top_p"], "thinking_budget": 0}
    t0 = time.perf_counter()
    first = last = None
    tokens = 0
    with client.stream("POST", "v1/chat/completions", json=body) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if not line.startswith("data: {"):
                continue
            chunk = json.loads(line[6:])
            if chunk.get("usage"):
                tokens = chunk["usage"]["completion_tokens"]
            delta = chunk["choices"][0]["delta"] if chunk.get("choices") else {}
            if (delta.get("reasoning_content") or "").strip() or (delta.get("content") or "").strip():
                last = time.perf_counter()
                first = first or last
    end = time.perf_counter()
    return {"ttft_s": (first or end) - t0, "total_s": end - t0, "last_s": (last or end) - t0, "tokens": tokens}


def cpu_s(raw: RawSide) -> float:
    """The server process's CPU seconds so far (all threads, ended ones too), read in the server."""
    return float(raw.call({"kind": "cpu"})["cpu_s"])


def decode_rate(run: dict[str, Any]) -> float:
    """Tokens per second from the first token to the last (the reply's decode speed, without its start and end)."""
    return (run["tokens"] - 1) / max(run["last_s"] - run["ttft_s"], 1e-9)


class TextSide:
    """One server's text side: streamed /v1/chat/completions replies and raw streamed generate() calls, each timed
    with the server's CPU time."""

    def __init__(self, url: str, raw: RawSide, args: argparse.Namespace) -> None:
        self.raw, self.args = raw, args
        self.params = {"kind": "text", "max_new_tokens": args.max_new_tokens, "temperature": 0.6, "top_p": 0.95}
        self.client = httpx.Client(base_url=url, timeout=300)
        self.model = self.client.get("v1/models").json()["data"][0]["id"]
        self.api_runs: list[dict[str, Any]] = []
        self.raw_runs: list[dict[str, Any]] = []

    def api(self) -> None:
        """One streamed reply through the API."""
        cpu = cpu_s(self.raw)
        self.api_runs.append(chat_stream(self.client, self.model, self.params))
        self.api_runs[-1]["cpu_s"] = cpu_s(self.raw) - cpu

    def raw_call(self) -> None:
        """One raw streamed generate() in the server."""
        cpu = cpu_s(self.raw)
        self.raw_runs.append(self.raw.call(self.params))
        self.raw_runs[-1]["cpu_s"] = cpu_s(self.raw) - cpu

    def close(self) -> None:
        """Close the HTTP client."""
        self.client.close()

    def rates(self) -> dict[str, list[float]]:
        """Per round (warm-ups left out): API ÷ raw of tokens/s, of the decode speed and of CPU per token."""
        api, raw = self.api_runs[self.args.warmup:], self.raw_runs[self.args.warmup:]
        pairs = list(zip(api, raw, strict=True))
        return {"tokens_per_s": [(a["tokens"] / a["total_s"]) / (r["tokens"] / r["total_s"]) for a, r in pairs],
                "decode": [decode_rate(a) / decode_rate(r) for a, r in pairs],
                "cpu": [(a["cpu_s"] / max(a["tokens"], 1)) / (r["cpu_s"] / max(r["tokens"], 1)) for a, r in pairs]}

    def summary(self) -> dict[str, Any]:
        """First token, tokens/s (over the whole reply, and from the first token to the last), CPU per token."""
        api_runs, raw_runs = self.api_runs[self.args.warmup:], self.raw_runs[self.args.warmup:]
        api_rate = [r["tokens"] / r["total_s"] for r in api_runs]
        raw_rate = [r["tokens"] / r["total_s"] for r in raw_runs]
        api_cpu = [r["cpu_s"] / max(r["tokens"], 1) for r in api_runs]
        raw_cpu = [r["cpu_s"] / max(r["tokens"], 1) for r in raw_runs]
        ratios = self.rates()
        return {
            "what": f"tiny GPTQ R1, {self.args.max_new_tokens} tokens, temperature 0.6, streamed",
            "ttft_ms": {"raw": stats([r["ttft_s"] for r in raw_runs], 1000),
                        "api": stats([r["ttft_s"] for r in api_runs], 1000),
                        "api_minus_raw_per_round": stats([a["ttft_s"] - r["ttft_s"] for a, r in
                                                          zip(api_runs, raw_runs, strict=True)], 1000)},
            "tokens_per_s": {"raw": stats(raw_rate), "api": stats(api_rate),
                             "ratio_per_round": stats(ratios["tokens_per_s"], 1, 3)},
            "decode_tokens_per_s": {"raw": stats(decode_rate(r) for r in raw_runs),
                                    "api": stats(decode_rate(r) for r in api_runs),
                                    "ratio_per_round": stats(ratios["decode"], 1, 3)},
            "server_cpu_ms_per_token": {"raw": stats(raw_cpu, 1000, 3), "api": stats(api_cpu, 1000, 3),
                                        "ratio_per_round": stats(ratios["cpu"], 1, 3)},
            "after_last_token_ms": {"raw": stats([r["total_s"] - r["last_s"] for r in raw_runs], 1000),
                                    "api": stats([r["total_s"] - r["last_s"] for r in api_runs], 1000)},
            "tokens": {"raw": stats([r["tokens"] for r in raw_runs]), "api": stats([r["tokens"] for r in api_runs])},
        }


def text_part(sides: list[TextSide], args: argparse.Namespace) -> None:
    """Each server's API and raw calls, warm-ups first, then `runs` rounds, the order reversed every other round
    (with --against, both servers in each round: two versions compared at the same moments)."""
    calls = [call for side in sides for call in (side.api, side.raw_call)]
    for _ in range(args.warmup):
        for call in calls:
            call()
    for i in range(args.runs):
        for call in (calls if i % 2 == 0 else calls[::-1]):
            call()


def compared(this: TextSide, that: TextSide) -> dict[str, Any]:
    """This version's API ÷ raw ratios over the other's, round by round."""
    mine, theirs = this.rates(), that.rates()
    return {key: stats([a / b for a, b in zip(mine[key], theirs[key], strict=True)], 1, 3) for key in mine}


def rss_part(url: str, pid: int, args: argparse.Namespace) -> dict[str, Any]:
    """`calls` tiny jobs, each from a fresh connection, /sdapi and /v1 in turn: RSS after call 200 and at the end."""
    server = psutil.Process(pid)
    samples: dict[int, float] = {}
    failures = 0
    for i in range(1, args.calls + 1):
        if i % 2:
            answer = httpx.post(url + "sdapi/v1/txt2img", json={"prompt": f"call {i}", "width": 64, "height": 64,
                                                                "steps": 1, "seed": -1}, timeout=120)
        else:
            answer = httpx.post(url + "v1/images/generations", json={"prompt": f"call {i}", "size": "64x64",
                                                                     "steps": 1}, timeout=120)
        failures += answer.status_code != 200
        if i % 100 == 0 or i == 200:
            samples[i] = server.memory_info().rss / 2**20
            print(f"  call {i}: RSS {samples[i]:.1f} MiB", flush=True)
    start, end = samples[200], samples[args.calls]
    return {"calls": args.calls, "failures": failures, "rss_mib_by_call": {str(k): round(v, 1) for k, v in
                                                                           sorted(samples.items())},
            "rss_200_mib": round(start, 1), "rss_end_mib": round(end, 1),
            "growth_200_to_end_pct": round(100 * (end - start) / start, 2)}


def serve(data_dir: Path, root: Path, args: argparse.Namespace, text: bool) -> tuple[Any, str, RawSide]:
    """A tiny-profile server of the checkout at `root`, its models loaded, and its raw side."""
    env = {**thread_env(args.threads), "ATELIER_CACHE_ENABLED": "false"}
    proc, url, _ = start_server(data_dir, "--no-warmup", threads=(args.threads, args.interop), env=env,
                                raw="api_overhead:raw_call", raw_port_file=data_dir.parent / f"{data_dir.name}.port",
                                root=root)
    try:
        httpx.post(url + "sdapi/v1/txt2img", json={"prompt": "warm", "steps": 1, "width": 64, "height": 64},
                   timeout=300).raise_for_status()  # builds and loads the tiny model
        wait_ready(url, "image")
        if text:
            httpx.post(url + "v1/chat/completions", timeout=600, json={
                "model": "tiny-gptq", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2})
            wait_ready(url, "text")
        return proc, url, RawSide(data_dir.parent / f"{data_dir.name}.port")
    except BaseException:
        proc.terminate()
        raise


def main() -> None:
    """Run the parts asked for; print and save the figures."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--parts", default="image,text,rss")
    parser.add_argument("--runs", type=int, default=12)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=max(1, (os.cpu_count() or 1) // 2))
    parser.add_argument("--interop", type=int, default=1)
    parser.add_argument("--out", default="api_overhead")
    parser.add_argument("--against", type=Path, default=None,
                        help="text part: another checkout (a git worktree of an older commit) served beside this one, "
                             "both versions in every round")
    args = parser.parse_args()
    parts = args.parts.split(",")
    result: dict[str, Any] = {"checkout": checkout(ROOT), "runs": args.runs, "warmup_runs_each": args.warmup,
                              "cpus": os.cpu_count(), "threads": {"intra_op": args.threads, "inter_op": args.interop}}
    servers: list[tuple[Any, str, RawSide]] = []
    sides: list[TextSide] = []
    with tempfile.TemporaryDirectory(prefix="atelier-bench-") as tmp:
        try:
            servers.append(serve(Path(tmp) / "data", ROOT, args, "text" in parts))
            proc, url, raw = servers[0]
            if "image" in parts:
                result["image"] = image_part(url, raw, args)
            if "text" in parts:
                if args.against is not None:
                    servers.append(serve(Path(tmp) / "against", args.against.resolve(), args, True))
                sides = [TextSide(url, side_raw, args) for _, url, side_raw in servers]
                text_part(sides, args)
                result["text"] = sides[0].summary()
                if len(sides) == 2:
                    result["against"] = {"checkout": checkout(args.against.resolve()), "text": sides[1].summary(),
                                         "this_over_that_per_round": compared(sides[0], sides[1])}
            if "rss" in parts:
                result["rss"] = rss_part(url, proc.pid, args)
        finally:
            for side in sides:
                side.close()
            for server, _, server_raw in servers:
                server_raw.close()
                server.terminate()
                server.wait(timeout=30)
    result["load_average_after"] = load_average()
    report(result)
    print(f"  saved to {save(args.out, result)}")


def report(result: dict[str, Any]) -> None:
    """Print the figures."""
    print(f"load average {result['load_average_after']} on {result['cpus']} CPUs; {result['runs']} interleaved runs")
    if image := result.get("image"):
        print(f"image: {image['what']}")
        print(f"  raw pipeline call       : {fmt(image['raw_ms'], 'ms')}")
        print(f"  /sdapi/v1/txt2img       : {fmt(image['api_ms'], 'ms')}")
        print(f"  ratio per round         : {image['ratio']['median']:.3f}x (min {image['ratio']['min']:.3f}, max "
              f"{image['ratio']['max']:.3f}); of medians {image['ratio_of_medians']:.3f}x, "
              f"+{image['overhead_ms_median']} ms")
    if text := result.get("text"):
        print(f"text: {text['what']}")
        print(f"  first token raw / API   : {text['ttft_ms']['raw']['median']:.1f} / "
              f"{text['ttft_ms']['api']['median']:.1f} ms; API - raw per round median "
              f"{text['ttft_ms']['api_minus_raw_per_round']['median']:.1f} ms")
        rate = text["tokens_per_s"]
        print(f"  tokens/s raw / API      : {rate['raw']['median']:.1f} / {rate['api']['median']:.1f}; ratio per "
              f"round {rate['ratio_per_round']['median']:.3f}x (min {rate['ratio_per_round']['min']:.3f})")
        rate = text["decode_tokens_per_s"]
        print(f"  first to last token     : {rate['raw']['median']:.1f} / {rate['api']['median']:.1f} tokens/s; "
              f"ratio per round {rate['ratio_per_round']['median']:.3f}x (min {rate['ratio_per_round']['min']:.3f})")
        cpu = text["server_cpu_ms_per_token"]
        print(f"  server CPU per token    : {cpu['raw']['median']:.3f} / {cpu['api']['median']:.3f} ms; ratio per "
              f"round {cpu['ratio_per_round']['median']:.3f}x")
        tail = text["after_last_token_ms"]
        print(f"  after the last token    : {tail['raw']['median']:.1f} / {tail['api']['median']:.1f} ms")
    if against := result.get("against"):
        print(f"against {against['checkout']['commit']} ({against['checkout']['path']}), the same rounds:")
        rate, decode = against["text"]["tokens_per_s"]["ratio_per_round"], against["text"]["decode_tokens_per_s"]
        print(f"  its tokens/s API / raw  : per round {rate['median']:.3f}x (min {rate['min']:.3f}); first to last "
              f"token {decode['ratio_per_round']['median']:.3f}x")
        cpu = against["text"]["server_cpu_ms_per_token"]["ratio_per_round"]
        print(f"  its server CPU per token: API / raw {cpu['median']:.3f}x")
        for key, row in against["this_over_that_per_round"].items():
            print(f"  this ÷ that, {key:<13}: {row['median']:.3f}x (min {row['min']:.3f}, max {row['max']:.3f})")
    if rss := result.get("rss"):
        print(f"rss: {rss['calls']} calls from fresh connections, {rss['failures']} failed: RSS at call 200 "
              f"{rss['rss_200_mib']} MiB, at the end {rss['rss_end_mib']} MiB ({rss['growth_200_to_end_pct']:+.2f} %)")
    if result.get("image") and result["image"]["raw_ms"]["median"] > result["image"]["api_ms"]["median"]:
        print("  WARNING: the raw side lost to the API: the baseline is broken", file=sys.stderr)


if __name__ == "__main__":
    main()
