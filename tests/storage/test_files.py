"""PNG files: AUTOMATIC1111's `parameters` chunk round-trips, and writes are atomic."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from storage.files import _PAIR, Parameters, parse_parameters, read_parameters, write_png_atomic

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


@given(pairs=st.lists(st.tuples(st.from_regex(r"[A-Za-z][A-Za-z /-]{1,40}[A-Za-z]", fullmatch=True),
                                 st.text("abc 019.+\\\"", max_size=12)), min_size=3, max_size=6),
       quoted=st.booleans())
def test_settings_keys_and_values_read_as_a1111s_pattern_reads_them(pairs: list[tuple[str, str]],
                                                                    quoted: bool) -> None:
    # storage.files bounds A1111's pattern (see bench/parameters_parse.py): on what A1111 writes, the same pairs.
    a1111 = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')
    line = ", ".join(f"{key}: {json.dumps(value) if quoted else value.replace(',', '')}" for key, value in pairs)
    assert _PAIR.findall(line) == a1111.findall(line)


def test_a_settings_key_is_read_up_to_64_characters() -> None:
    # The bound is what keeps a long line (a PNG sent to /png_info) from being re-scanned at every letter.
    for length in (64, 65, 5000):
        parsed = parse_parameters(f"p\nSteps: 4, {'k' * length}: v, CFG scale: 7")
        assert parsed["k" * 64] == "v"  # a longer key is read by its last 64 characters
        assert parsed["Steps"] == "4"


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
