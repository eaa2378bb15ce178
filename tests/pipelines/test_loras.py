"""LoRA tags in the prompt, A1111's Lora hashes, and LoRAs applied by the diffusers backend (a tiny peft LoRA)."""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

import numpy as np
import pytest

from contracts import MAX_LORA_WEIGHT, ImageRequest, check_lora_weights
from pipelines.diffusers_backend import DiffusersBackend
from pipelines.image_base import BatchItem
from pipelines.loras import LoraRef, UnknownLora, check_prompt, lora_hashes, parse_loras
from tests.pipelines.tiny_assets import make_tiny_lora


def test_tags_are_parsed_and_taken_out_of_the_prompt() -> None:
    text, refs = parse_loras("a cat, <lora:style:0.6> in a hat <lora:detail> <LORA:style:0.8>")
    assert text == "a cat,  in a hat  "
    assert refs == [LoraRef("detail", 1.0), LoraRef("style", 0.8)]  # a name given twice keeps its last weight
    assert parse_loras("<lora:te_unet:0.5:0.7>")[1] == [LoraRef("te_unet", 0.5)]
    with pytest.raises(UnknownLora, match="a weight is a number between"):
        parse_loras("<lora:style:strong>")


# Weights that end a job "done" with a black image (nan, inf, overflow in fp16), or out of the stated range.
BAD_WEIGHTS = ["nan", "NaN", "-nan", "inf", "-inf", "Infinity", "1e308", "1e309", "-1e308", "10.001", "-10.5", "11",
               "1" + "0" * 400]


@pytest.mark.parametrize("weight", BAD_WEIGHTS)
def test_a_weight_that_is_not_finite_or_out_of_range_is_refused(weight: str) -> None:
    for tag in (f"<lora:style:{weight}>", f"<LORA:style:{weight}>", f"<lora:style:0.5:{weight}>",
                f"<lora: style : {weight} >"):
        with pytest.raises(UnknownLora, match=f"between -{MAX_LORA_WEIGHT:g} and {MAX_LORA_WEIGHT:g}"):
            parse_loras(f"a cat {tag}")
        assert check_prompt(f"a cat {tag}", None).startswith("the LoRA tag")
        assert check_lora_weights(f"a cat {tag}")
    # A remote A1111 server applies <lyco:…> tags as LoRAs too: their weights are checked as well.
    assert check_lora_weights(f"<lyco:style:{weight}>")


@pytest.mark.parametrize("weight", ["-10", "-1.5", "0", "+0.5", ".8", "1e-400", "10", "3E0"])
def test_negative_zero_and_range_edge_weights_are_accepted(weight: str) -> None:
    assert parse_loras(f"<lora:style:{weight}>")[1] == [LoraRef("style", float(weight))]
    assert check_lora_weights(f"<lora:style:{weight}> <lyco:other:{weight}:{weight}>") == ""


def test_a_weight_message_is_bounded_and_names_what_is_allowed() -> None:
    message = check_lora_weights("<lora:" + "n" * 5000 + ":" + "9" * 5000 + ">")
    assert len(message) < 300
    assert "…" in message
    assert "between -10 and 10" in message


@pytest.fixture(scope="module")
def lora_dir(tiny_sd_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("loras")
    make_tiny_lora(tiny_sd_dir, folder / "tiny_style.safetensors", seed=0)
    make_tiny_lora(tiny_sd_dir, folder / "other.safetensors", seed=1)
    return folder


def test_lora_hashes_are_written_as_a1111_does(lora_dir: Path) -> None:
    data = (lora_dir / "tiny_style.safetensors").read_bytes()
    header = int.from_bytes(data[:8], "little")
    # A1111 hashes a .safetensors LoRA's tensor data after the header ("addnet" hash), 12 hex digits.
    expected = hashlib.sha256(data[8 + header:]).hexdigest()[:12]
    assert lora_hashes("x <lora:tiny_style:0.5>, y", lora_dir) == f"tiny_style: {expected}"
    other = hashlib.sha256((lora_dir / "other.safetensors").read_bytes()[8 + int.from_bytes(
        (lora_dir / "other.safetensors").read_bytes()[:8], "little"):]).hexdigest()[:12]
    assert lora_hashes("<lora:other><lora:tiny_style>", lora_dir) == f"other: {other}, tiny_style: {expected}"
    assert lora_hashes("no tags", lora_dir) == ""


def test_unknown_names_get_a_message_listing_the_available_ones(lora_dir: Path, tmp_path: Path) -> None:
    assert check_prompt("a <lora:tiny_style:1>", lora_dir) == ""
    message = check_prompt("a <lora:nope:1>", lora_dir)
    assert "'nope'" in message
    assert "other, tiny_style" in message
    empty = check_prompt("<lora:x>", tmp_path / "empty")
    assert "none (put .safetensors LoRA files in <data>/empty)" in empty
    assert str(tmp_path) not in empty  # never the server's absolute path


def test_unknown_names_are_echoed_as_short_excerpts(lora_dir: Path) -> None:
    many = " ".join(f"<lora:{'x' * 3000}{i}:1>" for i in range(50))
    message = check_prompt(many, lora_dir)
    assert len(message) < 400
    assert "and 47 more" in message
    assert "other, tiny_style" in message
    assert "'bad\\nname\\x1b'" in check_prompt("<lora:bad\nname\x1b:1>", lora_dir)  # control characters escaped


@pytest.fixture(scope="module")
def backend(tiny_sd_dir: Path, lora_dir: Path) -> DiffusersBackend:
    b = DiffusersBackend(str(tiny_sd_dir), display_name="tiny", lora_dir=str(lora_dir))
    b.load(lambda phase: None)
    return b


def pixels(backend: DiffusersBackend, prompt: str, seed: int = 5) -> np.ndarray:
    req = ImageRequest(prompt=prompt, width=64, height=64, steps=2)
    (image,) = backend.generate(req, [seed], lambda update: None, threading.Event())
    return np.asarray(image.image)


def test_a_lora_at_weight_zero_equals_no_lora_and_at_one_changes_pixels(backend: DiffusersBackend) -> None:
    base = pixels(backend, "a cat")
    assert backend.runner.loras.loaded == []
    at_zero = pixels(backend, "a cat <lora:tiny_style:0>")
    assert backend.runner.loras.loaded == ["tiny_style"]
    assert any("lora" in name for name, _ in backend.pipe.unet.named_modules())
    at_one = pixels(backend, "a cat <lora:tiny_style:1>")
    assert np.array_equal(at_zero, base)
    assert not np.array_equal(at_one, base)
    assert np.array_equal(pixels(backend, "a cat <lora:tiny_style>"), at_one)  # kept loaded, same result
    # A job that asks for no LoRA unloads it and gets the model's own pixels again.
    assert np.array_equal(pixels(backend, "a cat"), base)
    assert backend.runner.loras.loaded == []
    assert not any("lora" in name for name, _ in backend.pipe.unet.named_modules())  # no LoRA layer left behind


def test_an_unknown_lora_fails_the_job_with_the_available_names(backend: DiffusersBackend) -> None:
    with pytest.raises(UnknownLora, match=r"unknown LoRA 'missing'.*available: other, tiny_style"):
        pixels(backend, "a cat <lora:missing:1>")


def test_jobs_with_different_loras_or_prompt_lengths_in_one_batch_get_their_own_pixels(
        backend: DiffusersBackend) -> None:
    jobs = (("a cat <lora:tiny_style:1>", 1), ("a dog", 2), ("a cat <lora:other:0.7>", 3),
            (" ".join(["a dog"] * 50), 4), ("a (dog:1.3)", 5))
    alone = [pixels(backend, p, seed) for p, seed in jobs]
    items = [BatchItem(ImageRequest(prompt=p, width=64, height=64, steps=2), [seed], lambda u: None,
                       threading.Event()) for p, seed in jobs]
    outcomes = backend.generate_batch(items)
    for outcome, expected in zip(outcomes, alone, strict=True):
        assert outcome is not None
        assert np.array_equal(np.asarray(outcome[0].image), expected)


def test_prompt_weights_and_long_prompts_reach_the_pipeline(backend: DiffusersBackend) -> None:
    plain = pixels(backend, "a cat")
    assert not np.array_equal(pixels(backend, "a (cat:1.6)"), plain)
    assert np.array_equal(pixels(backend, "a (cat:1)"), plain)  # weight 1 is no weight
    long = pixels(backend, " ".join(["a cat"] * 60))  # 120+ tokens: three chunks, nothing cut off
    assert not np.array_equal(long, pixels(backend, " ".join(["a cat"] * 40)))


def test_a_lora_of_another_family_is_named_by_family() -> None:
    from pipelines.loras import LoraShape, family_message

    assert family_message("x", LoraShape(768, False), "sd15", 768) == ""
    assert family_message("x", LoraShape(None, False), "sdxl", 2048) == ""  # a text-encoder-only LoRA: untold
    assert family_message("x", LoraShape(2048, False), "sd15", 768).startswith(
        "the LoRA 'x' is for SDXL and the checkpoint is Stable Diffusion 1.x")
    assert "is for Stable Diffusion 1.x and the checkpoint is SDXL" in family_message("x", LoraShape(768, False),
                                                                                      "sdxl", 2048)
    assert "is for Stable Diffusion 2.x" in family_message("x", LoraShape(1024, False), "sd15", 768)
    assert "is for SDXL" in family_message("x", LoraShape(96, True), "sd15", 32)  # a second text encoder: SDXL
    assert "text is 40 wide" in family_message("x", LoraShape(40, False), "sd15", 32)
