"""What Atelier adds on top of transformers: /chat through gradio_client vs a raw streamed generate().

Same tiny 4-bit GPTQ DeepSeek-R1 (the folder the app built), same prompt and sampling settings. Reports the
median time to first token and decode tokens per second each way, and their ratios.

    python bench/text_overhead.py [--runs 5] [--max-new-tokens 128]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from pathlib import Path

from _server import start_server, wait_ready
from gradio_client import Client

MESSAGE = "Explain why the sky is blue."


def api_run(client: Client, max_new_tokens: int) -> tuple[float, float, int]:
    """(time to first token, decode tokens/s, tokens) for one /chat reply."""
    t0 = time.perf_counter()
    job = client.submit(message=MESSAGE, conversation_id=None, temperature=0.6, top_p=0.95,
                        max_new_tokens=max_new_tokens, api_name="/chat")
    first = None
    for update in job:
        if first is None and (update["reasoning"] or update["answer"]):
            first = time.perf_counter()
    result = job.result()
    end = time.perf_counter()
    tokens = result["usage"]["completion_tokens"]
    first = first or end
    return first - t0, (tokens - 1) / max(end - first, 1e-9), tokens


def raw_runs(model_dir: Path, runs: int, max_new_tokens: int) -> list[tuple[float, float, int]]:
    """The same measurements for model.generate() with a TextIteratorStreamer, as transformers documents it."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, TextIteratorStreamer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, device_map={"": "cpu"})
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": MESSAGE}], add_generation_prompt=True,
                                           return_tensors="pt", return_dict=True)
    out = []
    for i in range(runs + 1):  # the first run warms up, as the app's first request did
        streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
        counted: list[int] = []
        t0 = time.perf_counter()

        def generate() -> None:
            ids = model.generate(**prompt, streamer=streamer, max_new_tokens=max_new_tokens, do_sample=True,  # noqa: B023
                                 temperature=0.6, top_p=0.95)
            counted.append(ids.shape[1] - prompt["input_ids"].shape[1])  # noqa: B023

        thread = threading.Thread(target=generate)
        with torch.inference_mode():
            thread.start()
            first = None
            for text in streamer:
                if first is None and text.strip():
                    first = time.perf_counter()
            thread.join()
        end = time.perf_counter()
        first = first or end
        if i:
            out.append((first - t0, (counted[0] - 1) / max(end - first, 1e-9), counted[0]))
    return out


def main() -> None:
    """Run both sides and print the figures."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--max-new-tokens", type=int, default=128)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="atelier-bench-") as tmp:
        data_dir = Path(tmp)
        proc, url, _ = start_server(data_dir, "--no-warmup")
        try:
            client = Client(url, verbose=False, download_files=False)
            api_run(client, 8)  # builds and loads the model
            wait_ready(url, "text")
            api = [api_run(client, args.max_new_tokens) for _ in range(args.runs)]
        finally:
            proc.terminate()
            proc.wait(timeout=30)
        raw = raw_runs(data_dir / "models" / "tiny-r1-gptq", args.runs, args.max_new_tokens)

    def med(rows: list[tuple[float, float, int]], i: int) -> float:
        return statistics.median(r[i] for r in rows)

    print(f"tiny R1 GPTQ 4-bit on CPU, up to {args.max_new_tokens} new tokens, median of {args.runs} runs")
    print(f"  time to first token   raw {med(raw, 0) * 1000:7.1f} ms   /chat {med(api, 0) * 1000:7.1f} ms   "
          f"ratio {med(api, 0) / med(raw, 0):5.2f}x")
    print(f"  decode tokens/s       raw {med(raw, 1):7.1f}      /chat {med(api, 1):7.1f}      "
          f"ratio {med(api, 1) / med(raw, 1):5.2f}x")
    print(f"  tokens per reply      raw {med(raw, 2):7.0f}      /chat {med(api, 2):7.0f}")


if __name__ == "__main__":
    main()
