"""CPU per token of the chat service's reply path against a raw streamed generate(), in one process, by thread.

The wall-clock benchmarks of the APIs (bench/api_overhead.py) swing by a factor of two on a shared 2-core box. This
one counts CPU time instead, thread by thread (each thread's time.thread_time() when it ends, short-lived threads
included): the generate() thread's CPU per token, which the reply path's other threads disturb through the GIL, and
the CPU of those other threads per reply (the chat service's thread: chat template, database rows, the consumer of
the stream). Both sides run in this process, on the same loaded tiny GPTQ model, 1 torch thread, interleaved round by
round (the order alternates), a conversation stored per reply as the APIs store one. No HTTP: bench/api_overhead.py
measures that.

    python bench/chat_cpu.py [--root DIR] [--runs 20] [--out chat_cpu]

--root runs another checkout's code (a git worktree of an older commit) with this script: a before/after pair.
The tiny model is built under a temporary folder on first use (or --model DIR: a built tiny-r1-gptq folder).
"""

from __future__ import annotations

import argparse
import collections
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from _server import ROOT, checkout, load_average, save, stats

MESSAGE = "Explain why the sky is blue."
CPU: collections.Counter[str] = collections.Counter()


def count_thread_cpu() -> None:
    """Add each thread's CPU time, when it ends, to CPU under its name."""
    run = threading.Thread.run

    def counted(self: threading.Thread) -> None:
        name = self.name
        try:
            run(self)
        finally:
            CPU[name] += time.thread_time()

    threading.Thread.run = counted  # type: ignore[method-assign]


def main() -> None:
    """Both sides interleaved; print and save the figures."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--root", type=Path, default=ROOT)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--model", type=Path, default=None, help="a built tiny-r1-gptq folder")
    parser.add_argument("--out", default="chat_cpu")
    args = parser.parse_args()
    root = args.root.resolve()
    sys.path.insert(0, str(root))
    import torch

    torch.set_num_threads(1)
    torch.set_num_interop_threads(1)
    from text_overhead import raw_call

    from contracts import TextLimits, TextOptions
    from pipelines.tiny import ensure_tiny_r1, ensure_tiny_r1_gptq
    from pipelines.transformers_backend import TransformersTextBackend
    from services.chat import ChatService
    from services.model_slots import ModelSlot
    from storage.db import open_database

    count_thread_cpu()
    tmp = Path(tempfile.mkdtemp(prefix="atelier-chat-cpu-"))
    model = args.model or ensure_tiny_r1_gptq(tmp / "tiny-r1-gptq", source=ensure_tiny_r1(tmp / "tiny-r1"))
    backend = TransformersTextBackend(str(model), display_name="tiny-r1-gptq", device="cpu")
    backend.load(lambda phase: None)
    open_database(tmp / "chat.db")
    options = TextOptions(temperature=0.6, top_p=0.95, max_new_tokens=128, thinking_budget=None)
    slot = ModelSlot("text", backend, lambda b, report: None, model="tiny-r1-gptq", backend_name="transformers")
    chat = ChatService(slot, TextLimits(max_new_tokens=512), options)

    def service() -> int:
        handle = chat.start_messages([{"role": "user", "content": MESSAGE}], "bench", options, source="openai")
        return int(handle.wait_finished(120).usage["completion_tokens"])

    def raw() -> int:
        # In a thread of its own, as the service's consumer is, so that the consumer's CPU counts on both sides.
        answer: list[dict[str, Any]] = []
        params = {"max_new_tokens": 128, "temperature": 0.6, "top_p": 0.95}
        consumer = threading.Thread(target=lambda: answer.append(raw_call({"text": backend}, params)),
                                    name="raw-consumer")
        consumer.start()
        consumer.join()
        return int(answer[0]["tokens"])

    generate: dict[str, list[float]] = {"service": [], "raw": []}
    others: dict[str, list[float]] = {"service": [], "raw": []}
    for i in range(args.warmup + args.runs):
        for side, call in (("service", service), ("raw", raw))[:: 1 if i % 2 == 0 else -1]:
            CPU.clear()
            tokens = max(call(), 1)
            spent = sum(v for k, v in CPU.items() if "generate" in k)
            if i >= args.warmup:
                generate[side].append(spent / tokens)
                others[side].append(sum(CPU.values()) - spent)
    result: dict[str, Any] = {
        "what": "tiny GPTQ R1, 128 tokens, temperature 0.6, 1 torch thread; chat service (start_messages) vs raw "
                "streamed generate(), in one process",
        "checkout": checkout(root), "runs": args.runs, "warmup_runs_each": args.warmup,
        "generate_thread_cpu_us_per_token": {side: stats(v, 1e6) for side, v in generate.items()},
        "generate_cpu_ratio_per_round": stats([a / b for a, b in zip(generate["service"], generate["raw"],
                                                                        strict=True)], 1, 3),
        "other_threads_cpu_ms_per_reply": {side: stats(v, 1000) for side, v in others.items()},
        "load_average_after": load_average(),
    }
    print(f"{root} at {result['checkout']['commit']}; load average {result['load_average_after']}")
    for side, row in result["generate_thread_cpu_us_per_token"].items():
        print(f"  generate() thread, {side:<7}: {row['median']:.0f} µs a token (min {row['min']:.0f}, max "
              f"{row['max']:.0f}); other threads {statistics.median(others[side]) * 1000:.1f} ms a reply")
    ratio = result["generate_cpu_ratio_per_round"]
    print(f"  service / raw per round  : {ratio['median']:.3f}x (min {ratio['min']:.3f}, max {ratio['max']:.3f})")
    print(f"  saved to {save(args.out, result)}")


if __name__ == "__main__":
    main()
