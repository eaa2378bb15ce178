"""The tiny DeepSeek-R1 builders: files, GPTQ config and tensors, R1 tokenizer and template, idempotence."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from transformers import AutoModelForCausalLM, AutoTokenizer

from pipelines import tiny
from pipelines.tiny import (
    MARKER_NAME,
    R1_ASSISTANT,
    R1_BOS,
    R1_EOS,
    R1_USER,
    THINK_CLOSE,
    THINK_OPEN,
    ensure_tiny_r1,
    ensure_tiny_r1_gptq,
)

CONVERSATION = [
    {"role": "user", "content": "What is two plus two?"},
    {"role": "assistant", "content": "Hidden chain of thought.\n</think>\n\nIt is four."},
    {"role": "user", "content": "And three plus three?"},
]


def read_config(folder: Path) -> dict:
    return json.loads((folder / "config.json").read_text(encoding="utf-8"))


def test_tiny_r1_is_a_small_qwen2(tiny_r1_dir: Path) -> None:
    config = read_config(tiny_r1_dir)
    assert config["architectures"] == ["Qwen2ForCausalLM"]
    assert (config["hidden_size"], config["num_hidden_layers"]) == (64, 2)
    assert "quantization_config" not in config
    marker = json.loads((tiny_r1_dir / MARKER_NAME).read_text(encoding="utf-8"))
    assert marker["kind"] == "r1"
    assert marker["random_weights"] is True
    assert "Random weights" in (tiny_r1_dir / "README.md").read_text(encoding="utf-8")


def test_gptq_copy_declares_4_bit_gptq_v1(tiny_r1_gptq_dir: Path) -> None:
    qconfig = read_config(tiny_r1_gptq_dir)["quantization_config"]
    assert qconfig["quant_method"] == "gptq"
    assert qconfig["bits"] == 4
    assert qconfig["group_size"] == 32
    assert qconfig["sym"] is True
    # Published GPTQ checkpoints (the real R1 default among them) are v1; gptqmodel's internal v2 is not.
    assert qconfig["checkpoint_format"] == "gptq"
    assert qconfig["dataset"] is None  # calibration text is not part of the model
    marker = json.loads((tiny_r1_gptq_dir / MARKER_NAME).read_text(encoding="utf-8"))
    assert marker["kind"] == "r1-gptq"


def test_gptq_copy_stores_packed_int4_tensors(tiny_r1_gptq_dir: Path) -> None:
    with safe_open(str(tiny_r1_gptq_dir / "model.safetensors"), framework="pt") as weights:
        names = set(weights.keys())
        qweight = weights.get_tensor("model.layers.0.mlp.down_proj.qweight")
    projections = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                   "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")  # fmt: skip
    for layer in range(2):
        for proj in projections:
            prefix = f"model.layers.{layer}.{proj}"
            assert {f"{prefix}.qweight", f"{prefix}.qzeros", f"{prefix}.scales", f"{prefix}.g_idx"} <= names
            assert f"{prefix}.weight" not in names  # no full-precision copy left behind
    # down_proj is 128 -> 64: eight 4-bit values per int32 word, so 128 / 8 rows.
    assert qweight.dtype == torch.int32
    assert tuple(qweight.shape) == (16, 64)


def test_gptq_copy_computes_what_the_full_model_computes(tiny_r1_dir: Path, tiny_r1_gptq_dir: Path) -> None:
    """Close logits prove the packing and the v2 -> v1 zero-point conversion are right (a wrong one
    gives unrelated logits, cosine near 0)."""
    tokenizer = AutoTokenizer.from_pretrained(tiny_r1_gptq_dir)
    inputs = tokenizer("The quick brown fox jumps over the lazy dog. What is two plus two?", return_tensors="pt")
    full = AutoModelForCausalLM.from_pretrained(tiny_r1_dir, dtype=torch.float32)
    quantized = AutoModelForCausalLM.from_pretrained(tiny_r1_gptq_dir, dtype=torch.float32, device_map={"": "cpu"})
    with torch.inference_mode():
        expected = full(**inputs).logits[0]
        actual = quantized(**inputs).logits[0]
    similarity = torch.nn.functional.cosine_similarity(expected, actual, dim=-1)
    assert similarity.min().item() > 0.98


def test_chat_template_renders_the_r1_prompt(tiny_r1_gptq_dir: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(tiny_r1_gptq_dir)
    prompt = tokenizer.apply_chat_template(CONVERSATION, add_generation_prompt=True, tokenize=False)
    assert prompt == (
        f"{R1_BOS}{R1_USER}What is two plus two?{R1_ASSISTANT}\n\nIt is four.{R1_EOS}"
        f"{R1_USER}And three plus three?{R1_ASSISTANT}{THINK_OPEN}\n"
    )
    assert "Hidden chain of thought" not in prompt  # the template drops earlier reasoning itself
    ids = tokenizer.apply_chat_template(CONVERSATION, add_generation_prompt=True, return_dict=False)
    assert ids.count(tokenizer.bos_token_id) == 1
    assert ids[-2] == tokenizer.convert_tokens_to_ids(THINK_OPEN)


@pytest.mark.parametrize("tag", [THINK_OPEN, THINK_CLOSE])
def test_think_tags_are_single_ordinary_tokens(tiny_r1_gptq_dir: Path, tag: str) -> None:
    tokenizer = AutoTokenizer.from_pretrained(tiny_r1_gptq_dir)
    ids = tokenizer.encode(tag, add_special_tokens=False)
    assert len(ids) == 1
    assert ids[0] not in tokenizer.all_special_ids
    # Not special, so they survive the decoding a streamer does, and the reasoning splitter sees them.
    assert tokenizer.decode(tokenizer.encode(f"a{tag}b", add_special_tokens=False), skip_special_tokens=True) == (
        f"a{tag}b"
    )


def test_r1_special_tokens_are_special(tiny_r1_dir: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(tiny_r1_dir)
    assert (tokenizer.bos_token, tokenizer.eos_token) == (R1_BOS, R1_EOS)
    for token in (R1_BOS, R1_EOS, R1_USER, R1_ASSISTANT):
        ids = tokenizer.encode(token, add_special_tokens=False)
        assert len(ids) == 1
        assert ids[0] in tokenizer.all_special_ids
    # Plain encode() starts with bos, as the real R1-Distill tokenizer's does.
    assert tokenizer.encode("hi")[0] == tokenizer.bos_token_id


def test_second_call_is_a_no_op(
    tiny_r1_dir: Path, tiny_r1_gptq_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = {p: p.stat().st_mtime_ns for folder in (tiny_r1_dir, tiny_r1_gptq_dir) for p in folder.iterdir()}

    def no_build(*args: object) -> None:
        raise AssertionError("a finished tiny model was built again")

    monkeypatch.setattr(tiny, "_build_r1", no_build)
    monkeypatch.setattr(tiny, "_build_r1_gptq", no_build)
    assert ensure_tiny_r1(tiny_r1_dir) == tiny_r1_dir
    assert ensure_tiny_r1_gptq(tiny_r1_gptq_dir, source=tiny_r1_dir) == tiny_r1_gptq_dir
    after = {p: p.stat().st_mtime_ns for folder in (tiny_r1_dir, tiny_r1_gptq_dir) for p in folder.iterdir()}
    assert after == before
    # Atomic builds leave no temporary siblings behind.
    assert sorted(p.name for p in tiny_r1_dir.parent.iterdir()) == ["tiny-r1", "tiny-r1-gptq"]


def test_gptq_build_without_source_builds_the_r1_beside_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The quantization itself is covered above; here only the wiring: where the source goes, what is passed.
    calls: list[tuple[Path, Path]] = []

    def fake_r1(out: Path) -> None:
        (out / "config.json").write_text("{}", encoding="utf-8")

    def fake_gptq(source: Path, out: Path) -> None:
        calls.append((source, out))

    monkeypatch.setattr(tiny, "_build_r1", fake_r1)
    monkeypatch.setattr(tiny, "_build_r1_gptq", fake_gptq)
    dest = ensure_tiny_r1_gptq(tmp_path / "q")
    assert dest == tmp_path / "q"
    assert (tmp_path / "tiny-r1" / "config.json").is_file()
    assert len(calls) == 1
    assert calls[0][0] == tmp_path / "tiny-r1"
    assert calls[0][1].parent == tmp_path  # built in a sibling, then renamed into place
    assert calls[0][1] != dest
    assert (dest / MARKER_NAME).is_file()


def test_a_failed_build_leaves_nothing_at_the_destination(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(source: Path, out: Path) -> None:
        (out / "config.json").write_text("{}", encoding="utf-8")
        raise RuntimeError("quantization failed")

    monkeypatch.setattr(tiny, "_build_r1", lambda out: None)
    monkeypatch.setattr(tiny, "_build_r1_gptq", broken)
    with pytest.raises(RuntimeError, match="quantization failed"):
        ensure_tiny_r1_gptq(tmp_path / "q", source=tmp_path / "src")
    assert not (tmp_path / "q").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]
