"""The text-backend interface: option and message checks, history preparation, usage, registry."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from contracts import MAX_SEED, TextLimits, TextOptions, check_messages, check_text_options
from pipelines.text_base import TextUsage, create_text_backend, history_for_model, text_backend_names

LIMITS = TextLimits(max_new_tokens=100, max_message_chars=50)
ROOT = Path(__file__).resolve().parents[2]


def test_defaults_are_r1_recommendations_and_valid() -> None:
    opts = TextOptions()
    assert (opts.temperature, opts.top_p, opts.max_new_tokens) == (0.6, 0.95, 1024)
    assert opts.thinking_budget is None
    assert opts.seed is None
    assert check_text_options(opts, TextLimits()) == {}
    assert TextLimits() == TextLimits(max_new_tokens=8192, max_message_chars=20000)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("temperature", -0.1, "temperature must be between 0 (greedy) and 2, got -0.1"),
        ("temperature", 2.5, "temperature must be between 0 (greedy) and 2, got 2.5"),
        ("top_p", 0.0, "top_p must be greater than 0 and at most 1, got 0"),
        ("top_p", 1.01, "top_p must be greater than 0 and at most 1, got 1.01"),
        ("max_new_tokens", 0, "max_new_tokens must be between 1 and 100, got 0"),
        ("max_new_tokens", 101, "max_new_tokens must be between 1 and 100, got 101"),
        ("thinking_budget", 0, "thinking_budget must be empty (no limit) or between 1 and 100, got 0"),
        ("thinking_budget", 101, "thinking_budget must be empty (no limit) or between 1 and 100, got 101"),
        ("seed", -1, f"seed must be empty (random) or between 0 and {MAX_SEED}, got -1"),
        ("seed", MAX_SEED + 1, f"seed must be empty (random) or between 0 and {MAX_SEED}, got {MAX_SEED + 1}"),
    ],
)
def test_each_bad_option_names_the_allowed_range(field: str, value: float, message: str) -> None:
    opts = TextOptions(max_new_tokens=10).model_copy(update={field: value})
    errors = check_text_options(opts, LIMITS)
    assert list(errors) == [field]
    assert errors[field].startswith(message)


@pytest.mark.parametrize(
    "update",
    [
        {"temperature": 0.0},
        {"temperature": 2.0},
        {"top_p": 1.0},
        {"max_new_tokens": 1},
        {"max_new_tokens": 100},
        {"thinking_budget": 1},
        {"thinking_budget": 100},
        {"seed": 0},
        {"seed": MAX_SEED},
    ],
)
def test_edge_values_are_allowed(update: dict[str, float]) -> None:
    assert check_text_options(TextOptions(max_new_tokens=10).model_copy(update=update), LIMITS) == {}


def test_all_problems_are_reported_at_once() -> None:
    opts = TextOptions(temperature=3, top_p=0, max_new_tokens=0, thinking_budget=0, seed=-5)
    assert set(check_text_options(opts, LIMITS)) == {"temperature", "top_p", "max_new_tokens", "thinking_budget",
                                                     "seed"}


def test_a_good_conversation_passes() -> None:
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "x" * 50},
    ]
    assert check_messages(messages, LIMITS) == {}


@pytest.mark.parametrize(
    ("messages", "key", "fragment"),
    [
        ([], "messages", "must not be empty"),
        ([{"role": "robot", "content": "hi"}, {"role": "user", "content": "hi"}], "messages[0].role",
         "must be one of system, user, assistant, got 'robot'"),
        ([{"role": "user", "content": "x" * 51}], "messages[0].content", "51 characters; at most 50"),
        ([{"role": "user", "content": ["parts"]}], "messages[0].content", "must be text, got list"),
        ([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}], "messages",
         "last message must be from the user"),
        ([{"role": "user", "content": " \n "}], "messages", "must not be empty"),
    ],
)  # fmt: skip
def test_bad_conversations_say_what_is_wrong(messages: list[dict[str, str]], key: str, fragment: str) -> None:
    errors = check_messages(messages, LIMITS)
    assert key in errors
    assert fragment in errors[key]


def test_history_for_model_drops_reasoning_of_assistant_turns_only() -> None:
    messages = [
        {"role": "system", "content": "sys </think> kept"},
        {"role": "user", "content": "why </think> kept"},
        {"role": "assistant", "content": "secret plan\n</think>\n\nthe answer", "reasoning": "secret plan"},
        {"role": "assistant", "content": "<think>stopped while thinking"},
        {"role": "assistant", "content": "already an answer"},
        {"role": "user", "content": "next"},
    ]
    assert history_for_model(messages) == [
        {"role": "system", "content": "sys </think> kept"},
        {"role": "user", "content": "why </think> kept"},
        {"role": "assistant", "content": "the answer"},
        {"role": "assistant", "content": ""},
        {"role": "assistant", "content": "already an answer"},
        {"role": "user", "content": "next"},
    ]
    assert messages[2]["content"].startswith("secret plan")  # the caller's list is left alone


def test_usage_starts_empty() -> None:
    assert TextUsage() == TextUsage(prompt_tokens=0, completion_tokens=0, reasoning_tokens=0, finish_reason="stop")


def test_registry_knows_transformers_and_lists_names_for_unknown_ones() -> None:
    assert "transformers" in text_backend_names()
    with pytest.raises(ValueError, match="unknown text backend 'nope'; choose one of: .*transformers"):
        create_text_backend("nope")


def test_importing_the_interface_does_not_import_torch() -> None:
    # Settings and request validation import this module; they must not pay for torch.
    code = "import sys, pipelines.text_base; assert 'torch' not in sys.modules, 'torch was imported'"
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)
