"""What Atelier adds on top of transformers: /chat through gradio_client vs a raw streamed generate().

Both sides run side by side, interleaved run by run (the order alternates), in the same server process: the raw
generate() runs there too (bench/_probes.py), on the model and tokenizer objects the app loaded (the tiny 4-bit
GPTQ DeepSeek-R1 it built), with a TextIteratorStreamer as transformers documents it, the same prompt, sampling
settings and token limit, the same torch threads, and the same number of warm-up runs.

Per run: time to first token, the whole reply's time per token (tokens / total time: no side can look faster by
where its "first token" lands), and the decode rate after the first token. min / median / max each, and the
per-round ratio of time per token.

    python bench/text_overhead.py [--runs 10] [--max-new-tokens 128]

Concurrency mode (``--concurrency 1,2,4,8``): that many chats at once through /chat, against two servers side by
side: one that batches them (ATELIER_TEXT_CONCURRENCY = the largest level, so replies share forward passes,
pipelines/text_batching.py) and one that runs one reply at a time (ATELIER_TEXT_CONCURRENCY=1, the others wait in
Gradio's queue). Per round, every level on both servers (the order alternates); aggregate tok/s (all tokens of
the round / its wall time), and that against a single chat on the same server.

    python bench/text_overhead.py --concurrency 1,2,4,8 [--runs 5] [--max-new-tokens 128]
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

from _server import RawSide, fmt, load_average, save, start_server, stats, thread_env, wait_ready
from image_overhead import start_vanilla_gradio

MESSAGE = "Explain why the sky is blue."


def raw_call(backends: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """The raw side, run in the server process: model.generate() with a TextIteratorStreamer, timed there."""
    import torch
    from transformers import TextIteratorStreamer

    backend = backends["text"]
    tokenizer, model = backend.tokenizer, backend.lm
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": MESSAGE}], add_generation_prompt=True,
                                           return_tensors="pt", return_dict=True).to(model.device)
    streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
    counted: list[int] = []

    def generate() -> None:
        with torch.inference_mode():
            ids = model.generate(**prompt, streamer=streamer, max_new_tokens=params["max_new_tokens"],
                                 do_sample=True, temperature=params["temperature"], top_p=params["top_p"])
        counted.append(int(ids.shape[1] - prompt["input_ids"].shape[1]))

    t0 = time.perf_counter()
    thread = threading.Thread(target=generate)
    thread.start()
    first = last = None
    for text in streamer:
        if text.strip():
            last = time.perf_counter()
            first = first or last
    thread.join()
    end = time.perf_counter()
    choice = getattr(backend, "kernel_choice", None)
    return {"ttft_s": (first or end) - t0, "total_s": end - t0, "decode_s": end - (first or end),
            "last_s": (last or end) - t0,
            "tokens": counted[0], "gptq_backend": getattr(choice, "backend", "") or ""}


def plain_app_call(client: Any, params: dict[str, Any]) -> dict[str, Any]:
    """One reply from the plain Gradio app's /chat (bench/_vanilla_gradio.py), timed as api_call times /chat."""
    t0 = time.perf_counter()
    job = client.submit(MESSAGE, params["temperature"], params["top_p"], params["max_new_tokens"], api_name="/chat")
    first = None
    while not job.done():
        if first is None and any(str(o[0]).strip() for o in job.outputs()):
            first = time.perf_counter()
        time.sleep(0.005)
    _, tokens = job.result()
    end = time.perf_counter()
    return {"ttft_s": (first or end) - t0, "total_s": end - t0, "decode_s": end - (first or end),
            "tokens": int(tokens)}


def api_call(client: Any, params: dict[str, Any]) -> dict[str, Any]:
    """One /chat reply through gradio_client, timed the same way from the client."""
    t0 = time.perf_counter()
    job = client.submit(message=MESSAGE, conversation_id=None, temperature=params["temperature"],
                        top_p=params["top_p"], max_new_tokens=params["max_new_tokens"], api_name="/chat")
    first = None
    # Poll the outputs every 5 ms: iterating the job spins gradio_client's 1 ms loop on the CPU the server needs.
    while not job.done():
        if first is None and any(o.get("reasoning") or o.get("answer") for o in job.outputs()):
            first = time.perf_counter()
        time.sleep(0.005)
    result = job.result()
    end = time.perf_counter()
    return {"ttft_s": (first or end) - t0, "total_s": end - t0, "decode_s": end - (first or end),
            "tokens": int(result["usage"]["completion_tokens"])}


def concurrent_round(clients: list[Any], params: dict[str, Any]) -> dict[str, Any]:
    """One chat per client, all at once; aggregate tokens per second over the whole round's wall time."""
    t0 = time.perf_counter()
    jobs = [client.submit(message=MESSAGE, conversation_id=None, temperature=params["temperature"],
                          top_p=params["top_p"], max_new_tokens=params["max_new_tokens"], api_name="/chat")
            for client in clients]
    # One poller for all jobs, every 20 ms: a thread per job spinning on the two shared CPUs would slow the server.
    while not all(job.done() for job in jobs):
        time.sleep(0.02)
    results = [job.result() for job in jobs]
    wall = time.perf_counter() - t0
    failed = [r.get("error") or r for r in results if r.get("status") != "done"]
    if failed:
        raise RuntimeError(f"a chat failed: {failed[0]}")
    tokens = sum(int(r["usage"]["completion_tokens"]) for r in results)
    return {"wall_s": wall, "tokens": tokens, "tokens_per_s": tokens / wall}


def concurrency_mode(args: argparse.Namespace, params: dict[str, Any]) -> None:
    """Chats at each concurrency level on a batching server and a one-at-a-time server, interleaved."""
    from gradio_client import Client

    levels = sorted({int(n) for n in args.concurrency.split(",")})
    servers = {"batched": max(levels), "serial": 1}  # ATELIER_TEXT_CONCURRENCY of each
    runs: dict[str, dict[int, list[dict[str, Any]]]] = {name: {n: [] for n in levels} for name in servers}
    with tempfile.TemporaryDirectory(prefix="atelier-bench-") as tmp:
        procs, clients = {}, {}
        try:
            for name, concurrency in servers.items():
                env = {**thread_env(args.threads), "ATELIER_TEXT_CONCURRENCY": str(concurrency)}
                procs[name], url, _ = start_server(Path(tmp) / name, "--no-warmup",
                                                   threads=(args.threads, args.interop), env=env)
                clients[name] = [Client(url, verbose=False, download_files=False) for _ in range(max(levels))]
                api_call(clients[name][0], {**params, "max_new_tokens": 8})  # builds and loads the model
                wait_ready(url, "text")
                for _ in range(args.warmup):
                    concurrent_round(clients[name][: max(levels)], params)
            order = list(servers)
            for i in range(args.runs):
                for n in levels:
                    for name in order if i % 2 == 0 else order[::-1]:  # alternate which server goes first
                        runs[name][n].append(concurrent_round(clients[name][:n], params))
        finally:
            for proc in procs.values():
                proc.terminate()
                proc.wait(timeout=30)

    result: dict[str, Any] = {
        "what": f"tiny R1 GPTQ 4-bit, {MESSAGE!r}, up to {args.max_new_tokens} new tokens, temperature "
                f"{params['temperature']}, top_p {params['top_p']}; N chats at once through /chat",
        "servers": {name: {"ATELIER_TEXT_CONCURRENCY": c} for name, c in servers.items()},
        "interleaved_runs": args.runs, "warmup_rounds_each": args.warmup,
        "threads": {"intra_op": args.threads, "inter_op": args.interop},
        "load_average_after": load_average(), "cpus": os.cpu_count(), "levels": {},
    }
    print(f"{result['what']}; {args.runs} interleaved runs after {args.warmup} warm-up rounds each; {args.threads} "
          f"intra-op / {args.interop} inter-op threads; load average {result['load_average_after']} on "
          f"{result['cpus']} CPUs")
    for n in levels:
        row: dict[str, Any] = {}
        for name in servers:
            single = runs[name][levels[0]]
            row[name] = {
                "aggregate_tokens_per_s": stats([r["tokens_per_s"] for r in runs[name][n]]),
                "tokens_per_round": stats([r["tokens"] for r in runs[name][n]], 1, 0),
                # Per run: this level's aggregate over the single chat's in the same round.
                "over_single_chat": stats([r["tokens_per_s"] / s["tokens_per_s"]
                                           for r, s in zip(runs[name][n], single, strict=True)], 1, 2),
            }
            print(f"  {n} at once, {name:<7} {fmt(row[name]['aggregate_tokens_per_s'], 'tok/s')}  "
                  f"{row[name]['over_single_chat']['median']:.2f}x its own {levels[0]} at once (per run, median)")
        row["batched_over_serial"] = stats([b["tokens_per_s"] / s["tokens_per_s"] for b, s in
                                            zip(runs["batched"][n], runs["serial"][n], strict=True)], 1, 2)
        result["levels"][str(n)] = row
        ratio = row["batched_over_serial"]
        print(f"  {'':<19} batched over serial, per run: {ratio['median']:.2f}x (min {ratio['min']:.2f}, "
              f"max {ratio['max']:.2f})")
    print(f"  saved to {save(args.out, result)}")


def summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """min / median / max of each measure over the runs."""
    return {
        "ttft_ms": stats([r["ttft_s"] for r in runs], 1000),
        "ms_per_token": stats([r["total_s"] / max(r["tokens"], 1) for r in runs], 1000, 2),
        # A reply that ended after a few tokens (the tiny model drew eos) has no decode phase worth a rate.
        "decode_tokens_per_s": stats([(r["tokens"] - 1) / max(r["decode_s"], 1e-9) for r in runs
                                      if r["tokens"] >= 16] or [0.0]),
        "tokens": stats([r["tokens"] for r in runs], 1, 0),
        "total_ms": stats([r["total_s"] for r in runs], 1000),
    }


def main() -> None:
    """Run both sides interleaved; print and save the figures."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2, help="untimed runs on each side first")
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--threads", type=int, default=max(1, (os.cpu_count() or 1) // 2),
                        help="torch intra-op threads, both sides (see bench/image_overhead.py)")
    parser.add_argument("--interop", type=int, default=1, help="torch inter-op threads, both sides")
    parser.add_argument("--concurrency", default="",
                        help="e.g. 1,2,4,8: chats at once, batched vs one at a time (instead of /chat vs raw)")
    parser.add_argument("--out", default=None, help="results file name in bench/results/")
    args = parser.parse_args()
    params = {"max_new_tokens": args.max_new_tokens, "temperature": 0.6, "top_p": 0.95}
    if args.concurrency:
        args.out = args.out or "text_concurrency"
        concurrency_mode(args, params)
        return
    args.out = args.out or "text_overhead"
    from gradio_client import Client

    with tempfile.TemporaryDirectory(prefix="atelier-bench-") as tmp:
        port_file = Path(tmp) / "raw.port"
        proc, url, _ = start_server(Path(tmp) / "data", "--no-warmup", threads=(args.threads, args.interop),
                                    env=thread_env(args.threads), raw="text_overhead:raw_call",
                                    raw_port_file=port_file)
        raw_side = plain = None
        try:
            client = Client(url, verbose=False, download_files=False)
            api_call(client, {**params, "max_new_tokens": 8})  # builds and loads the model
            wait_ready(url, "text")
            raw_side = RawSide(port_file)
            kernel = raw_side.call({**params, "max_new_tokens": 4})["gptq_backend"]
            # A plain Gradio app streaming the same model folder's generate(), with the same kernel and threads.
            plain, plain_url = start_vanilla_gradio(
                "--text", str(Path(tmp) / "data" / "models" / "tiny-r1-gptq"), "--gptq-backend", kernel,
                "--threads", str(args.threads), "--interop", str(args.interop), env=thread_env(args.threads))
            plain_client = Client(plain_url, verbose=False, download_files=False)
            sides = {"chat": lambda: api_call(client, params), "raw": lambda: raw_side.call(params),
                     "plain_app": lambda: plain_app_call(plain_client, params)}
            for _ in range(args.warmup):
                for call in sides.values():
                    call()
            runs: dict[str, list[dict[str, Any]]] = {name: [] for name in sides}
            for i in range(args.runs):
                order = list(sides) if i % 2 == 0 else list(sides)[::-1]  # alternate which side goes first
                for name in order:
                    runs[name].append(sides[name]())
            api, raw, plain_runs = runs["chat"], runs["raw"], runs["plain_app"]
        finally:
            if raw_side is not None:
                raw_side.close()
            proc.terminate()
            proc.wait(timeout=30)
            if plain is not None:
                plain.terminate()
                plain.wait(timeout=30)

    per_token = [(a["total_s"] / max(a["tokens"], 1)) / (r["total_s"] / max(r["tokens"], 1))
                 for a, r in zip(api, raw, strict=True)]
    result = {
        "what": f"tiny R1 GPTQ 4-bit, up to {args.max_new_tokens} new tokens, temperature 0.6, top_p 0.95",
        "interleaved_runs": args.runs, "warmup_runs_each": args.warmup,
        "threads": {"intra_op": args.threads, "inter_op": args.interop},
        "load_average_after": load_average(), "cpus": os.cpu_count(),
        "raw": summary(raw), "chat": summary(api), "plain_app": summary(plain_runs),
        "gptq_backend": kernel,
        "ratio_ms_per_token_chat_over_raw": stats(per_token, 1, 3),
        "ratio_ms_per_token_chat_over_plain_app": stats(
            [(a["total_s"] / max(a["tokens"], 1)) / (p["total_s"] / max(p["tokens"], 1))
             for a, p in zip(api, plain_runs, strict=True)], 1, 3),
        "ratio_ttft_chat_over_plain_app": stats([a["ttft_s"] / p["ttft_s"] for a, p in zip(api, plain_runs,
                                                                                            strict=True)], 1, 3),
        "ratio_ttft_of_medians": round(statistics.median(a["ttft_s"] for a in api)
                                       / statistics.median(r["ttft_s"] for r in raw), 2),
    }
    print(f"{result['what']}; {args.runs} interleaved runs after {args.warmup} warm-ups each; {args.threads} "
          f"intra-op / {args.interop} inter-op threads; load average {result['load_average_after']} on "
          f"{result['cpus']} CPUs")
    for label, key, unit in (("time to first token", "ttft_ms", "ms"), ("time per token", "ms_per_token", "ms"),
                             ("decode after 1st token", "decode_tokens_per_s", "tok/s"),
                             ("tokens per reply", "tokens", "")):
        print(f"  {label:<23} raw {fmt(result['raw'][key], unit)}")
        print(f"  {'':<23} /chat {fmt(result['chat'][key], unit)}")
        print(f"  {'':<23} plain app {fmt(result['plain_app'][key], unit)}")
    ratio = result["ratio_ms_per_token_chat_over_raw"]
    print(f"  time per token, /chat over raw, per round: {ratio['median']:.2f}x (min {ratio['min']:.2f}, "
          f"max {ratio['max']:.2f}); first token {result['ratio_ttft_of_medians']:.2f}x (medians)")
    for label, key in (("time per token", "ratio_ms_per_token_chat_over_plain_app"),
                       ("time to first token", "ratio_ttft_chat_over_plain_app")):
        row = result[key]
        print(f"  {label}, /chat over the plain Gradio app, per round: {row['median']:.2f}x (min {row['min']:.2f}, "
              f"max {row['max']:.2f})")
    if result["raw"]["ms_per_token"]["median"] > result["chat"]["ms_per_token"]["median"]:
        print("  WARNING: the raw side lost to the app: the baseline is broken, do not quote this ratio",
              file=sys.stderr)
    print(f"  saved to {save(args.out, result)}")


if __name__ == "__main__":
    main()
