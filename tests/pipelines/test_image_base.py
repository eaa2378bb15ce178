"""Request checks (diffusers' check_inputs style), seeds, and the backend registry."""

from __future__ import annotations

import pytest

from contracts import MAX_SEED, SAMPLERS, ImageLimits, ImageRequest, check_inputs, resolve_seed
from pipelines.image_base import create_image_backend, image_backend_names

LIMITS = ImageLimits(min_size=64, max_size=1024, max_steps=150, max_batch_count=4, max_prompt_chars=100)


def test_a_good_request_has_no_errors() -> None:
    assert check_inputs(ImageRequest(prompt="a fox", width=256, height=320, steps=20), LIMITS) == {}


@pytest.mark.parametrize(
    ("changes", "field", "needle"),
    [
        ({"prompt": "   "}, "prompt", "must not be empty"),
        ({"prompt": "x" * 101}, "prompt", "at most 100"),
        ({"negative_prompt": "x" * 101}, "negative_prompt", "at most 100"),
        ({"width": 250}, "width", "multiple of 8 between 64 and 1024"),
        ({"height": 2048}, "height", "multiple of 8 between 64 and 1024"),
        ({"width": 56}, "width", "multiple of 8 between 64 and 1024"),
        ({"steps": 0}, "steps", "between 1 and 150"),
        ({"steps": 151}, "steps", "between 1 and 150"),
        ({"cfg_scale": -1}, "cfg_scale", "between 0 and 30"),
        ({"seed": -2}, "seed", f"between 0 and {MAX_SEED}"),
        ({"seed": MAX_SEED + 1}, "seed", "-1 (random)"),
        ({"sampler": "Euler b"}, "sampler", "DPM++ 2M"),
        ({"batch_count": 5}, "batch_count", "between 1 and 4"),
    ],
)
def test_each_bad_value_gets_a_message_naming_the_allowed_range(changes: dict, field: str, needle: str) -> None:
    errors = check_inputs(ImageRequest(**{"prompt": "a fox", **changes}), LIMITS)
    assert list(errors) == [field]
    assert needle in errors[field]


@pytest.mark.parametrize("tag", ["<lora:style:nan>", "<lora:style:inf>", "<lora:style:1e308>", "<lora:style:0.5:-inf>",
                                 "<lyco:style:nan>", "<lora:style:-11>"])
@pytest.mark.parametrize("field", ["prompt", "negative_prompt"])
def test_a_lora_weight_is_checked_without_any_lora_folder(tag: str, field: str) -> None:
    # No catalog is needed (a remote A1111 server's names are not checked here): the weight alone is refused.
    errors = check_inputs(ImageRequest(**{"prompt": "a fox", field: f"a fox {tag}"}), LIMITS)
    assert list(errors) == [field]
    assert errors[field].startswith(f"{field}: the LoRA tag")
    assert "between -10 and 10" in errors[field]


def test_a_sampler_or_upscaler_name_is_echoed_as_a_short_excerpt() -> None:
    req = ImageRequest(prompt="a fox", sampler="<b>" * 2000, hr_upscaler="\x1b[31m" + "u" * 900)
    errors = check_inputs(req, LIMITS, upscalers=[])
    assert len(errors["sampler"]) < 250
    assert "…" in errors["sampler"]
    assert len(errors["hr_upscaler"]) < 300
    assert "\\x1b" in errors["hr_upscaler"]


def test_several_bad_values_are_all_reported() -> None:
    errors = check_inputs(ImageRequest(prompt="", width=7, steps=0), LIMITS)
    assert set(errors) == {"prompt", "width", "steps"}


def test_samplers_include_the_automatic1111_basics() -> None:
    assert {"Euler a", "Euler", "DPM++ 2M", "DDIM"} <= set(SAMPLERS)


def test_batch_seeds_follow_automatic1111() -> None:
    assert ImageRequest(prompt="p", batch_count=3).seeds(41) == [41, 42, 43]
    assert ImageRequest(prompt="p", batch_count=2).seeds(MAX_SEED) == [MAX_SEED, 0]


def test_random_seed_is_resolved_to_a_concrete_value() -> None:
    seeds = {resolve_seed(-1) for _ in range(20)}
    assert all(0 <= s <= MAX_SEED for s in seeds)
    assert len(seeds) > 1
    assert resolve_seed(42) == 42


def test_registry_knows_diffusers_and_names_the_choices_for_an_unknown_backend() -> None:
    assert "diffusers" in image_backend_names()
    with pytest.raises(ValueError, match="choose one of: .*diffusers"):
        create_image_backend("nope")
