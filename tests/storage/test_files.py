"""PNG files: AUTOMATIC1111's `parameters` chunk round-trips, and writes are atomic."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from storage.files import Parameters, parse_parameters, read_parameters, write_png_atomic

PARAMS = Parameters(prompt="a fox, watercolor", negative_prompt="blurry", steps=20, sampler="DPM++ 2M",
                    cfg_scale=7.5, seed=42, width=256, height=256, model="runwayml/sd: v1,5")


def test_text_is_in_automatic1111_format() -> None:
    assert PARAMS.to_text() == (
        "a fox, watercolor\nNegative prompt: blurry\n"
        'Steps: 20, Sampler: DPM++ 2M, CFG scale: 7.5, Seed: 42, Size: 256x256, Model: "runwayml/sd: v1,5"'
    )


def test_png_carries_parameters_that_read_back(tmp_path: Path) -> None:
    dest = write_png_atomic(Image.new("RGB", (256, 256), "red"), tmp_path / "day" / "1.png", PARAMS)
    text = read_parameters(dest)
    assert text == PARAMS.to_text()
    parsed = parse_parameters(text)
    assert parsed["Prompt"] == "a fox, watercolor"
    assert parsed["Negative prompt"] == "blurry"
    assert parsed["Seed"] == "42"
    assert parsed["Size"] == "256x256"
    assert parsed["Sampler"] == "DPM++ 2M"
    assert parsed["Model"] == "runwayml/sd: v1,5"
    assert [p.name for p in dest.parent.iterdir()] == ["1.png"]  # no temp file left behind


@given(
    prompt=st.text(st.characters(blacklist_categories=["Cs", "Cc"]), min_size=1, max_size=60).filter(
        lambda s: s.strip() == s and s and not s.startswith("Negative prompt:") and ":" not in s
    ),
    negative=st.text(st.characters(blacklist_categories=["Cs", "Cc"]), max_size=30).filter(
        lambda s: s.strip() == s),
    seed=st.integers(0, 2**32 - 1),
    steps=st.integers(1, 500),
)
def test_parameters_round_trip(prompt: str, negative: str, seed: int, steps: int) -> None:
    params = Parameters(prompt=prompt, negative_prompt=negative, steps=steps, sampler="Euler a", cfg_scale=7,
                        seed=seed, width=512, height=768, model="m")
    parsed = parse_parameters(params.to_text())
    assert parsed["Prompt"] == prompt
    assert parsed["Negative prompt"] == negative
    assert parsed["Seed"] == str(seed)
    assert parsed["Steps"] == str(steps)
    assert parsed["Size"] == "512x768"


def test_a_failed_write_leaves_no_file(tmp_path: Path) -> None:
    class Broken(Exception):
        pass

    image = Image.new("RGB", (8, 8))

    def explode(*_: object, **__: object) -> None:
        raise Broken

    image.save = explode  # type: ignore[method-assign]
    with pytest.raises(Broken):
        write_png_atomic(image, tmp_path / "x.png", PARAMS)
    assert list(tmp_path.iterdir()) == []
