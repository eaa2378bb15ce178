"""bench/text_gpu.py: its random GPTQ checkpoint loads through transformers + gptqmodel and computes what its packed
tensors say; the script refuses the full size without CUDA and runs end to end on the tiny shape (CI's smoke run)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import torch

from contracts import TextOptions
from pipelines.transformers_backend import TransformersTextBackend

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "bench" / "text_gpu.py"
SMOKE = ["--tiny", "--runs", "1", "--new-tokens", "6", "--contexts", "40,120", "--compile-backend", "eager"]


def bench_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("text_gpu", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["text_gpu"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def run_script(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=600,
                          cwd=tmp_path, env={**os.environ, **(env or {})})


def dequantized(file: dict[str, torch.Tensor], name: str, group: int) -> torch.Tensor:
    """The in x out weight a GPTQ v1 layer stores: nibble i % 8 of qweight[i // 8] minus the zero point 8, times the
    scale of its group (written out by hand, independent of gptqmodel)."""
    qweight, scales = file[f"{name}.qweight"], file[f"{name}.scales"].float()
    shifts = torch.arange(8, dtype=torch.int32) * 4
    codes = (qweight.unsqueeze(1) >> shifts.view(1, 8, 1)) & 0xF  # [in/8, 8, out]
    codes = codes.reshape(-1, qweight.shape[1]).float()
    assert torch.all(file[f"{name}.qzeros"] == 0x77777777)
    return (codes - 8) * scales.repeat_interleave(group, dim=0)


def test_r1_14b_shape_is_the_real_config() -> None:
    shape = bench_module().R1_14B
    assert (shape.layers, shape.hidden, shape.intermediate, shape.heads, shape.kv_heads, shape.vocab,
            shape.group_size) == (48, 5120, 13824, 40, 8, 152064, 128)


def test_the_random_checkpoint_loads_and_computes_its_packed_weights(tmp_path: Path, tiny_r1_dir: Path) -> None:
    from safetensors.torch import load_file

    bench = bench_module()
    shape = bench.write_random_gptq(tmp_path / "ckpt", bench.TINY, tiny_r1_dir, "cpu")
    config = json.loads((tmp_path / "ckpt" / "config.json").read_text())
    assert config["quantization_config"]["group_size"] == 128
    assert config["num_hidden_layers"] == len(list((tmp_path / "ckpt").glob("layer-*.safetensors"))) == 2
    backend = TransformersTextBackend(str(tmp_path / "ckpt"), device="cpu")
    backend.load(lambda phase: None)
    assert backend.loaded.quantization == "GPTQ 4-bit, group 128"
    assert backend.loaded.kernel == "TorchAtenLinear"
    file = load_file(tmp_path / "ckpt" / "layer-000.safetensors")
    layer = backend.lm.model.layers[0]
    x = torch.randn(3, shape.hidden)
    for name, module in (("mlp.up_proj", layer.mlp.up_proj), ("self_attn.k_proj", layer.self_attn.k_proj)):
        expected = x @ dequantized(file, f"model.layers.0.{name}", 128)
        bias = file.get(f"model.layers.0.{name}.bias")
        if bias is not None:
            expected = expected + bias.float()
        with torch.inference_mode():
            got = module(x)
        # gptqmodel's CPU kernel multiplies in bf16 (~1% off); a wrong packing or zero point is off by ~100%.
        assert (got - expected).norm() / expected.norm() < 0.02
    stream = backend.stream([{"role": "user", "content": "hi"}], TextOptions(temperature=0.0, max_new_tokens=8),
                            threading.Event())
    list(stream)
    assert stream.usage.completion_tokens == 8
    backend.unload()


@pytest.mark.skipif(torch.cuda.is_available(), reason="the guard only speaks on a machine without CUDA")
def test_without_cuda_the_full_size_exits_with_a_clear_message(tmp_path: Path) -> None:
    out = tmp_path / "never.json"
    result = run_script(tmp_path, "--out", str(out), env={"CUDA_VISIBLE_DEVICES": ""})
    assert result.returncode == 1
    assert "needs a CUDA GPU" in result.stderr
    assert "--tiny" in result.stderr
    assert not out.exists()


def test_tiny_smoke_run_writes_every_section(tmp_path: Path) -> None:
    out = tmp_path / "tiny.json"
    result = run_script(tmp_path, *SMOKE, "--only", "decode,memory,offload", "--out", str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    data: dict[str, Any] = json.loads(out.read_text())
    assert data["kernel"]["kernel"] == "TorchAtenLinear"
    assert data["kernel"]["kernel_choice"]["requested"] == "auto"
    assert set(data["contexts"]) == {"40", "120"}
    table = data["decode"]["table"]
    assert set(table) == {f"{v}@{c}" for v in ("dynamic", "static", "static+compile") for c in (40, 120)}
    assert all(stats["decode_tok_s"]["median"] > 0 for stats in table.values())
    assert {"text_resident", "both_resident", "both_image_job", "both_text_reply"} <= set(data["memory"])
    assert data["offload"]["first_reply_after_reload"]["tokens"] == 6
    assert data["goals"]["batch1_ge_100_tok_s"] is None  # no verdict without a GPU
    assert "decode " in result.stdout  # the min / median / max lines


def test_tiny_smoke_run_of_the_concurrency_section(tmp_path: Path) -> None:
    out = tmp_path / "tiny.json"
    result = run_script(tmp_path, *SMOKE, "--only", "concurrency", "--concurrency", "1,2", "--out", str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    data = json.loads(out.read_text())["concurrency"]
    assert set(data["aggregate_tok_s"]) == {"single", "1", "2"}
    assert data["max_batch"] == 2


def test_a_ratio_over_a_decode_that_measured_nothing_is_none_not_a_crash() -> None:
    """A tiny reply may end within its one-token run's time: measure() then records 0 tok/s, and the static-over-dynamic
    ratio has nothing to divide by (CI's smoke run once died of a ZeroDivisionError there)."""
    ratio = bench_module().ratio
    assert ratio(30.0, 20.0) == 1.5
    assert ratio(30.0, 0.0) is None
