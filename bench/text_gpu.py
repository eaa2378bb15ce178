"""GPU check of the in-process text path at DeepSeek-R1-Distill-Qwen-14B's real size (random GPTQ 4-bit weights).

Writes a GPTQ v1 checkpoint with R1-14B's exact shape (48 layers, hidden 5120, MLP 13824, 40 heads / 8 KV heads,
vocab 152064, group 128; the R1 tokenizer and chat template of the tiny model) straight from random packed tensors,
no calibration and nothing downloaded, then loads it through TransformersTextBackend.load() (the app's own code:
kernel choice, dtype, device map). Measures, greedy so every reply runs to its length:

- decode tok/s and time to first token at batch 1 with 512 and 4096 tokens of context, for the dynamic KV cache,
  the static one and static + compiled decode, interleaved run by run (first run of each: warm-up and compile);
- peak VRAM alone, and with Stable Diffusion 1.5 in fp16 (random weights, bench/gpu_check.py) resident beside it;
- offload and reload times as the idle policy does them;
- concurrency 1/2/4/8: aggregate tok/s of N concurrent replies on TransformersTextBackend(..., max_batch=8) against
  one reply on the batch-1 path, interleaved.

Needs a CUDA GPU; `--tiny` runs the same script on a two-layer model of small shape on any device (CI's smoke test).
The fast kernels are compiled by nvcc on the first load (minutes; cached under GPTQMODEL_TORCH_EXTENSIONS_DIR). On a
box without network set GPTQMODEL_OFFLINE=1, or Machete's first build waits on a download of CUTLASS 4.7.1 from
GitHub; with GPTQMODEL_CUTLASS_DIR pointing at a CUTLASS 4.7.1 checkout Machete builds offline, else an H200 uses
Marlin (and the JSON's kernel section says why).

    python bench/text_gpu.py [--tiny] [--only decode,memory,offload,concurrency] [--runs 3]
                             [--new-tokens 256] [--gptq-backend auto] [--checkpoint-dir DIR] [--out results.json]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch
from gpu_check import build_sd15_random, reset_peak, spread, sync, vram

from contracts import TextOptions
from pipelines.tiny import ensure_tiny_r1, ensure_tiny_sd
from pipelines.transformers_backend import TransformersTextBackend

SECTIONS = ("decode", "memory", "offload", "concurrency")
VARIANTS = ("dynamic", "static", "static+compile")
# Words the prompt of a given length is made of (the tiny tokenizer was trained on English like this).
WORDS = ("the", "quick", "brown", "fox", "jumps", "over", "a", "lazy", "dog", "while", "journey", "of", "thousand",
         "miles", "begins", "with", "single", "step", "and", "sea", "is", "wide", "deep")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja")
PACK = 8  # 4-bit values per int32
V1_ZEROS = 0x77777777  # symmetric GPTQ v1 stores zero point 8 as 8 - 1 in every nibble


@dataclass(frozen=True)
class Shape:
    """A Qwen2 model's shape; vocab 0 means the tokenizer's size rounded up to 64 rows."""

    layers: int
    hidden: int
    intermediate: int
    heads: int
    kv_heads: int
    vocab: int
    group_size: int
    context: int
    rms_norm_eps: float = 1e-5
    rope_theta: float = 1_000_000.0


# deepseek-ai/DeepSeek-R1-Distill-Qwen-14B's config.json.
R1_14B = Shape(layers=48, hidden=5120, intermediate=13824, heads=40, kv_heads=8, vocab=152064, group_size=128,
               context=131072)
# Every dimension a multiple of the group size, like the real one; context room for the --tiny contexts.
TINY = Shape(layers=2, hidden=256, intermediate=512, heads=4, kv_heads=2, vocab=0, group_size=128, context=8192)


def quantized_linear(fin: int, fout: int, group: int, device: str, gen: torch.Generator) -> dict[str, torch.Tensor]:
    """Random packed GPTQ v1 tensors of one in->out linear layer (symmetric, no act-order)."""
    # Uniform 4-bit codes give weights of about 4.6 * scale in spread: this scale keeps each layer's output near
    # its input's size, so 48 random layers stay finite in fp16.
    base = 1.0 / (4.6 * fin**0.5)
    scales = (torch.rand(fin // group, fout, generator=gen, device=device) + 0.5) * base
    return {
        "qweight": torch.randint(-2**31, 2**31, (fin // PACK, fout), dtype=torch.int32, generator=gen,
                                 device=device),
        "qzeros": torch.full((fin // group, fout // PACK), V1_ZEROS, dtype=torch.int32, device=device),
        "scales": scales.half(),
        "g_idx": (torch.arange(fin, dtype=torch.int32, device=device) // group),
    }


def write_random_gptq(out: Path, shape: Shape, tokenizer_dir: Path, device: str, seed: int = 0) -> Shape:
    """Write a random-weight GPTQ 4-bit Qwen2 checkpoint of ``shape`` (safetensors shards, index, config with its
    quantization_config, generation config, the tokenizer from ``tokenizer_dir``) into ``out``; returns the shape
    with the vocabulary resolved."""
    from safetensors.torch import save_file
    from transformers import AutoTokenizer, Qwen2Config

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    shape = shape if shape.vocab else Shape(**{**asdict(shape), "vocab": -(-len(tokenizer) // 64) * 64})
    out.mkdir(parents=True, exist_ok=True)
    for name in TOKENIZER_FILES:
        shutil.copyfile(tokenizer_dir / name, out / name)
    gen = torch.Generator(device).manual_seed(seed)
    weight_map: dict[str, str] = {}

    def save(tensors: dict[str, torch.Tensor], name: str) -> None:
        save_file({k: v.contiguous().cpu() for k, v in tensors.items()}, str(out / name), metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(tensors, name))

    def half(*size: int, std: float) -> torch.Tensor:
        return (torch.randn(*size, generator=gen, device=device) * std).half()

    h, kv = shape.hidden, shape.kv_heads * (shape.hidden // shape.heads)
    linears = {"self_attn.q_proj": (h, h), "self_attn.k_proj": (h, kv), "self_attn.v_proj": (h, kv),
               "self_attn.o_proj": (h, h), "mlp.gate_proj": (h, shape.intermediate),
               "mlp.up_proj": (h, shape.intermediate), "mlp.down_proj": (shape.intermediate, h)}
    def ones() -> torch.Tensor:  # a fresh tensor each: safetensors refuses tensors that share memory
        return torch.ones(h, dtype=torch.float16, device=device)

    save({"model.embed_tokens.weight": half(shape.vocab, h, std=1.0), "lm_head.weight": half(shape.vocab, h, std=0.02),
          "model.norm.weight": ones()}, "embeddings.safetensors")
    for layer in range(shape.layers):  # one shard per layer keeps the CPU copy small (~200 MB at 14B)
        prefix = f"model.layers.{layer}."
        tensors = {prefix + "input_layernorm.weight": ones(), prefix + "post_attention_layernorm.weight": ones()}
        for name, (fin, fout) in linears.items():
            for key, value in quantized_linear(fin, fout, shape.group_size, device, gen).items():
                tensors[f"{prefix}{name}.{key}"] = value
            if name in ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"):  # Qwen2 has q/k/v biases
                tensors[f"{prefix}{name}.bias"] = half(fout, std=0.02)
        save(tensors, f"layer-{layer:03d}.safetensors")
    (out / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    config = Qwen2Config(
        hidden_size=h, intermediate_size=shape.intermediate, num_hidden_layers=shape.layers,
        num_attention_heads=shape.heads, num_key_value_heads=shape.kv_heads, vocab_size=shape.vocab,
        max_position_embeddings=shape.context, max_window_layers=shape.layers, rms_norm_eps=shape.rms_norm_eps,
        rope_theta=shape.rope_theta, tie_word_embeddings=False, use_sliding_window=False,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    ).to_dict()
    config.update(architectures=["Qwen2ForCausalLM"], dtype="float16", quantization_config={
        "quant_method": "gptq", "bits": 4, "group_size": shape.group_size, "desc_act": False, "sym": True,
        "format": "gptq", "checkpoint_format": "gptq", "true_sequential": True, "damp_percent": 0.01})
    (out / "config.json").write_text(json.dumps(config, indent=1))
    (out / "generation_config.json").write_text(json.dumps({
        "bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id, "do_sample": True, "temperature": 0.6, "top_p": 0.95}))
    return shape


def prompt_of(backend: TransformersTextBackend, tokens: int) -> tuple[list[dict[str, str]], int]:
    """A one-message chat whose rendered prompt is about ``tokens`` tokens long, and its exact length."""
    n, got = tokens, 0
    messages: list[dict[str, str]] = []
    for _ in range(10):
        messages = [{"role": "user", "content": " ".join(WORDS[i % len(WORDS)] for i in range(n))}]
        got = len(backend.tokenizer(backend.prompt_text(messages), add_special_tokens=False)["input_ids"])
        if abs(got - tokens) <= max(2, tokens // 100):
            break
        n = max(1, round(n * tokens / got))
    return messages, got


def timed_reply(backend: TransformersTextBackend, messages: list[dict[str, str]], new_tokens: int) -> dict[str, float]:
    """One greedy reply through stream(): seconds to its first text chunk and to its end, tokens generated."""
    sync()
    t0 = time.perf_counter()
    first: float | None = None
    stream = backend.stream(messages, TextOptions(temperature=0.0, max_new_tokens=new_tokens), threading.Event())
    for _ in stream:
        if first is None:
            first = time.perf_counter()
    sync()
    end = time.perf_counter()
    return {"first_chunk_s": (first or end) - t0, "total_s": end - t0, "tokens": stream.usage.completion_tokens}


def measure(backend: TransformersTextBackend, messages: list[dict[str, str]], new_tokens: int) -> dict[str, float]:
    """Time to first token (a one-token reply: prefill and one step, as stream() runs them) and the decode rate
    after it (the full reply's remaining tokens over its remaining time). Text chunks are no clock for either: the
    streamer holds tokens back until they decode to whole words."""
    first = timed_reply(backend, messages, 1)
    full = timed_reply(backend, messages, new_tokens)
    rest = full["total_s"] - first["total_s"]
    return {"ttft_s": first["total_s"], "total_s": full["total_s"], "tokens": full["tokens"],
            "decode_tok_s": (full["tokens"] - 1) / rest if full["tokens"] > 1 and rest > 0 else 0.0}


def set_variant(backend: TransformersTextBackend, variant: str) -> None:
    """Switch a loaded backend between the decode variants: the settings are read per reply (_generation_config),
    and a backend loaded with compile=True only compiles replies whose config asks for it."""
    backend.loaded.cache = "dynamic" if variant == "dynamic" else "static"
    backend.loaded.compile = variant == "static+compile"


def summary(samples: list[dict[str, float]]) -> dict[str, Any]:
    """min/median/max of each measure of a list of replies."""
    return {key: spread([s[key] for s in samples]) for key in ("decode_tok_s", "ttft_s", "total_s")}


def line(label: str, stats: dict[str, Any]) -> str:
    d, t = stats["decode_tok_s"], stats["ttft_s"]
    return (f"{label:28s} decode {d['min']:8.1f} / {d['median']:8.1f} / {d['max']:8.1f} tok/s   "
            f"first token {t['min']:.3f} / {t['median']:.3f} / {t['max']:.3f} s")


def decode(backend: TransformersTextBackend, args: argparse.Namespace, prompts: dict[int, Any]) -> dict[str, Any]:
    """Batch-1 decode and time to first token per context and variant, interleaved run by run."""
    out: dict[str, Any] = {"first_run_s": {}}
    for context, (messages, _) in prompts.items():
        for variant in VARIANTS:  # warm-up: the compiled variant compiles here
            set_variant(backend, variant)
            out["first_run_s"][f"{variant}@{context}"] = round(measure(backend, messages, args.new_tokens)
                                                               ["total_s"], 3)
    samples: dict[str, list[dict[str, float]]] = {f"{v}@{c}": [] for c in prompts for v in VARIANTS}
    for run in range(args.runs):
        for context, (messages, _) in prompts.items():
            for variant in VARIANTS if run % 2 == 0 else VARIANTS[::-1]:  # alternate who goes first
                set_variant(backend, variant)
                samples[f"{variant}@{context}"].append(measure(backend, messages, args.new_tokens))
        print(f"decode run {run + 1}/{args.runs} done", flush=True)
    set_variant(backend, "dynamic")
    out["table"] = {key: summary(values) for key, values in samples.items()}
    for key, stats in out["table"].items():
        print(line(key, stats))
    out["static_over_dynamic"] = {f"{v}@{c}": ratio(out["table"][f"{v}@{c}"]["decode_tok_s"]["median"],
                                                    out["table"][f"dynamic@{c}"]["decode_tok_s"]["median"])
                                  for c in prompts for v in VARIANTS[1:]}
    return out


def ratio(value: float, base: float) -> float | None:
    """value / base, or None when the base measured no decode at all (a tiny reply can end within the time of its
    one-token run, which leaves no rate to compare: measure() records 0 then)."""
    return round(value / base, 3) if base > 0 else None


def memory(backend: TransformersTextBackend, work: Path, args: argparse.Namespace,
           prompts: dict[int, Any]) -> dict[str, Any]:
    """Peak VRAM of the text model alone, then beside Stable Diffusion 1.5 fp16 with an image job and a reply."""
    from contracts import ImageRequest
    from pipelines.diffusers_backend import DiffusersBackend

    out: dict[str, Any] = {"text_resident": vram()}
    longest = max(prompts)
    reset_peak()
    timed_reply(backend, prompts[longest][0], args.new_tokens)
    out["text_alone_reply_at_context"] = {"context": longest, **vram()}
    sd = work / "sd"
    if not sd.exists():
        (ensure_tiny_sd if args.tiny else build_sd15_random)(sd)
    image = DiffusersBackend(str(sd))
    image.load(lambda phase: None)
    out["both_resident"] = vram()
    size = 64 if args.tiny else 512
    req = ImageRequest(prompt="a lighthouse at dusk", negative_prompt="blurry", width=size, height=size,
                       steps=4 if args.tiny else 20, cfg_scale=7.0, sampler="Euler a")
    reset_peak()
    image.generate(req, [42], lambda update: None, threading.Event())
    out["both_image_job"] = vram()
    reset_peak()
    timed_reply(backend, prompts[longest][0], args.new_tokens)
    out["both_text_reply"] = vram()
    image.unload()
    peaks = [out[key]["peak_mib"] for key in ("both_image_job", "both_text_reply") if "peak_mib" in out[key]]
    out["both_peak_mib"] = max(peaks, default=None)
    return out


def goals(results: dict[str, Any]) -> dict[str, Any]:
    """The issue's goals against this run's medians (None where a section did not run or there is no GPU)."""
    gpu = results["device"] == "cuda"
    table = results.get("decode", {}).get("table", {})
    best = max((stats["decode_tok_s"]["median"] for key, stats in table.items() if key.endswith("@512")), default=None)
    over = results.get("concurrency", {}).get("over_single", {}).get("8")
    both = results.get("memory", {}).get("both_peak_mib")
    return {"batch1_decode_at_512_tok_s": best, "batch1_ge_100_tok_s": best >= 100 if gpu and best else None,
            "eight_chats_over_one": over, "eight_chats_ge_4x": over >= 4 if gpu and over else None,
            "text_and_sd15_peak_mib": both, "both_le_14_gb": both <= 14 * 1024 if gpu and both else None}


def offload_reload(backend: TransformersTextBackend, args: argparse.Namespace, prompts: dict[int, Any]
                   ) -> dict[str, Any]:
    """What the idle policy does: offload() (a GPTQ model is dropped), then load() (reloaded from disk)."""
    t0 = time.perf_counter()
    backend.offload()
    sync()
    out: dict[str, Any] = {"offload_s": round(time.perf_counter() - t0, 3), "after_offload": vram(),
                           "offloaded": backend.describe()["offloaded"]}
    t0 = time.perf_counter()
    backend.load(lambda phase: None)
    sync()
    out["reload_s"] = round(time.perf_counter() - t0, 3)
    first = measure(backend, prompts[min(prompts)][0], args.new_tokens)
    out["first_reply_after_reload"] = {k: round(v, 3) for k, v in first.items()}
    return out


def concurrent(backend: TransformersTextBackend, messages: list[dict[str, str]], n: int,
               new_tokens: int) -> dict[str, float]:
    """N replies at once from N threads: aggregate tok/s over the wall time (a reply's error is raised here)."""
    with ThreadPoolExecutor(max_workers=n) as pool:
        t0 = time.perf_counter()
        results = list(pool.map(lambda _: timed_reply(backend, messages, new_tokens), range(n)))
        wall = time.perf_counter() - t0
    return {"aggregate_tok_s": sum(r["tokens"] for r in results) / wall, "wall_s": wall,
            "first_chunk_s": statistics.median(r["first_chunk_s"] for r in results)}


def concurrency(model: Path, single: TransformersTextBackend, args: argparse.Namespace,
                prompts: dict[int, Any]) -> dict[str, Any]:
    """Aggregate tok/s of 1/2/4/8 concurrent replies sharing forward passes, against one reply on the batch-1 path."""
    levels = args.concurrency
    engine = TransformersTextBackend(str(model), device=args.device, gptq_backend=args.gptq_backend,
                                     max_batch=max(levels))
    engine.load(lambda phase: None)
    messages = prompts[min(prompts)][0]
    for n in levels:  # warm-up
        concurrent(engine, messages, n, args.new_tokens)
    samples: dict[str, list[float]] = {"single": [], **{str(n): [] for n in levels}}
    ttft: dict[str, list[float]] = {str(n): [] for n in levels}
    names: list[str | int] = ["single", *levels]
    for run in range(args.runs):
        for name in names if run % 2 == 0 else names[::-1]:
            if name == "single":
                reply = timed_reply(single, messages, args.new_tokens)
                samples["single"].append(reply["tokens"] / reply["total_s"])
            else:
                result = concurrent(engine, messages, int(name), args.new_tokens)
                samples[str(name)].append(result["aggregate_tok_s"])
                ttft[str(name)].append(result["first_chunk_s"])
        print(f"concurrency run {run + 1}/{args.runs} done", flush=True)
    engine.unload()
    out: dict[str, Any] = {"max_batch": max(levels), "aggregate_tok_s": {k: spread(v, 1) for k, v in samples.items()},
                           "median_first_chunk_s": {k: spread(v) for k, v in ttft.items()}}
    base = out["aggregate_tok_s"]["single"]["median"]
    out["over_single"] = {str(n): round(out["aggregate_tok_s"][str(n)]["median"] / base, 2) for n in levels}
    for key, stats in out["aggregate_tok_s"].items():
        print(f"concurrency {key:>6s}: {stats['min']:8.1f} / {stats['median']:8.1f} / {stats['max']:8.1f} tok/s")
    return out


def main(argv: list[str] | None = None) -> None:
    """Build the checkpoint, run the chosen sections, print and write the results."""
    ints: Callable[[str], list[int]] = lambda text: [int(x) for x in text.split(",")]  # noqa: E731
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tiny", action="store_true", help="a two-layer model of small shape, on any device")
    parser.add_argument("--only", default=",".join(SECTIONS), help=f"comma-separated of {', '.join(SECTIONS)}")
    parser.add_argument("--runs", type=int, default=3, help="interleaved timed runs per variant")
    parser.add_argument("--new-tokens", type=int, default=256)
    parser.add_argument("--contexts", type=ints, default=[512, 4096], help="prompt lengths in tokens")
    parser.add_argument("--concurrency", type=ints, default=[1, 2, 4, 8])
    parser.add_argument("--gptq-backend", default="auto", help="ATELIER_GPTQ_BACKEND for the loads")
    parser.add_argument("--compile-backend", default="inductor", help="eager/aot_eager: a quick smoke run on CPU")
    parser.add_argument("--checkpoint-dir", type=Path, default=None,
                        help="where the random checkpoint is written (kept, and reused when it is there)")
    parser.add_argument("--out", type=Path, default=None, help="default: bench/results/text_gpu[_tiny].json")
    args = parser.parse_args(argv)
    only = set(args.only.split(","))
    if unknown := only - set(SECTIONS):
        parser.error(f"unknown section(s): {', '.join(sorted(unknown))}")
    if not args.tiny and not torch.cuda.is_available():
        # Writing ~10 GB of random GPTQ weights and decoding through a 14B model on a CPU would mean nothing.
        sys.exit("bench/text_gpu.py needs a CUDA GPU and torch found none; "
                 "run `python bench/text_gpu.py --tiny` to try the script on a tiny model on this machine.")
    args.device = "cuda" if torch.cuda.is_available() else "cpu"
    out_path = args.out or Path(__file__).parent / "results" / ("text_gpu_tiny.json" if args.tiny else "text_gpu.json")
    results: dict[str, Any] = {"torch": torch.__version__, "device": args.device,
                               "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else "none",
                               "runs": args.runs, "new_tokens": args.new_tokens}
    work = Path(tempfile.mkdtemp(prefix="atelier-text-gpu-"))
    model = args.checkpoint_dir or work / "r1-gptq"
    try:
        t0 = time.perf_counter()
        if not (model / "config.json").exists():
            shape = write_random_gptq(model, TINY if args.tiny else R1_14B, ensure_tiny_r1(work / "tiny-r1"),
                                      args.device)
            results["shape"] = asdict(shape)
        results["build_s"] = round(time.perf_counter() - t0, 1)
        results["checkpoint_gb"] = round(sum(f.stat().st_size for f in model.glob("*.safetensors")) / 1e9, 2)
        reset_peak()
        # Loaded for static + compile (that installs the compiled decode step), then switched per reply.
        backend = TransformersTextBackend(str(model), device=args.device, gptq_backend=args.gptq_backend,
                                          cache="static", compile=True, compile_backend=args.compile_backend)
        t0 = time.perf_counter()
        backend.load(lambda phase: print(phase, flush=True))
        results["load_s"] = round(time.perf_counter() - t0, 1)
        results["loaded"] = vram()
        set_variant(backend, "dynamic")
        results["kernel"] = backend.describe()
        print(f"kernel: {backend.loaded.kernel} ({json.dumps(results['kernel']['kernel_choice'])})")
        prompts = {context: prompt_of(backend, context) for context in args.contexts}
        results["contexts"] = {context: got for context, (_, got) in prompts.items()}
        if "decode" in only:
            results["decode"] = decode(backend, args, prompts)
        if "memory" in only:
            results["memory"] = memory(backend, work, args, prompts)
        if "offload" in only:
            results["offload"] = offload_reload(backend, args, prompts)
        if "concurrency" in only:
            results["concurrency"] = concurrency(model, backend, args, prompts)
        backend.unload()
        results["goals"] = goals(results)
        print("goals: " + json.dumps(results["goals"]))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    text = json.dumps(results, indent=1)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(text)
    print(f"written to {out_path}")


if __name__ == "__main__":
    main()
