"""The text-backend interface, its options, input checks, usage report and the backend registry."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from pydantic import BaseModel

from pipelines.messages import excerpt
from pipelines.reasoning import Chunk, strip_reasoning
from pipelines.registry import Registry

MAX_SEED = 2**32 - 1
ROLES: tuple[str, ...] = ("system", "user", "assistant")
FinishReason = Literal["stop", "length", "cancelled"]


class TextOptions(BaseModel):
    """Sampling settings for one reply; the defaults are DeepSeek's recommendation for R1."""

    temperature: float = 0.6
    top_p: float = 0.95
    max_new_tokens: int = 1024
    # Reasoning tokens after which the backend forces "</think>", so the model has to answer.
    thinking_budget: int | None = None
    # None: a fresh random stream each time; a number makes a reply reproducible on the same machine.
    seed: int | None = None


@dataclass(frozen=True)
class TextLimits:
    """The bounds options and messages are checked against (from settings)."""

    max_new_tokens: int = 8192
    max_message_chars: int = 20000


def check_text_options(opts: TextOptions, limits: TextLimits) -> dict[str, str]:
    """Return {field: message} for every bad option; empty when the options are fine."""
    errors: dict[str, str] = {}
    if not 0 <= opts.temperature <= 2:
        errors["temperature"] = (
            f"temperature must be between 0 (greedy) and 2, got {opts.temperature:g}; R1 works best at 0.6."
        )
    if not 0 < opts.top_p <= 1:
        errors["top_p"] = f"top_p must be greater than 0 and at most 1, got {opts.top_p:g}."
    if not 1 <= opts.max_new_tokens <= limits.max_new_tokens:
        errors["max_new_tokens"] = (
            f"max_new_tokens must be between 1 and {limits.max_new_tokens}, got {opts.max_new_tokens}."
        )
    budget = opts.thinking_budget
    if budget is not None and not 1 <= budget <= limits.max_new_tokens:
        errors["thinking_budget"] = (
            f"thinking_budget must be empty (no limit) or between 1 and {limits.max_new_tokens}, got {budget}."
        )
    if opts.seed is not None and not 0 <= opts.seed <= MAX_SEED:
        errors["seed"] = f"seed must be empty (random) or between 0 and {MAX_SEED}, got {opts.seed}."
    return errors


def check_messages(messages: list[dict[str, str]], limits: TextLimits) -> dict[str, str]:
    """Return {field: message} for a malformed conversation; empty when it can be sent to a model."""
    if not messages:
        return {"messages": "messages must not be empty: send at least one user message."}
    errors: dict[str, str] = {}
    for index, message in enumerate(messages):
        where = f"messages[{index}]"
        role, content = message.get("role"), message.get("content")
        if role not in ROLES:
            errors[f"{where}.role"] = f"{where}.role must be one of {', '.join(ROLES)}, got {excerpt(role)}."
        if not isinstance(content, str):
            errors[f"{where}.content"] = f"{where}.content must be text, got {type(content).__name__}."
        elif len(content) > limits.max_message_chars:
            errors[f"{where}.content"] = (
                f"{where}.content is {len(content)} characters; at most {limits.max_message_chars} are allowed."
            )
    last = messages[-1]
    if last.get("role") != "user":
        errors.setdefault("messages", "the last message must be from the user: the model replies to it.")
    elif isinstance(last.get("content"), str) and not last["content"].strip():
        errors.setdefault("messages", "the last user message must not be empty: ask the model something.")
    return errors


def history_for_model(messages: list[dict[str, str]]) -> list[dict[str, str]]:
    """The conversation as a model should see it: role and content only, earlier reasoning removed."""
    # R1 is trained on conversations whose earlier turns carry only the final answer; the template drops
    # text before a "</think>" but not the reasoning of a reply that was stopped before it closed.
    return [
        {
            "role": m["role"],
            "content": strip_reasoning(m["content"]) if m["role"] == "assistant" else m["content"],
        }
        for m in messages
    ]


@dataclass
class TextUsage:
    """Token counts of one reply (they grow while it streams) and why it ended (set when it ends)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    reasoning_tokens: int = 0
    finish_reason: FinishReason = "stop"


class TextStream(Protocol):
    """A reply being generated: iterate it for reasoning/answer chunks; ``usage`` is final once it ends.

    Setting the stop event ends the iteration normally (no exception) with finish_reason "cancelled", so the
    caller keeps the partial text. Closing the stream (or dropping it) stops the generation too.
    """

    usage: TextUsage

    def __iter__(self) -> Iterator[Chunk]:
        """The stream itself."""
        ...

    def __next__(self) -> Chunk:
        """The next piece of reasoning or answer."""
        ...

    def close(self) -> None:
        """Stop generating and release what the reply holds; safe to call more than once."""
        ...


class TextBackend(Protocol):
    """What every text backend offers: load once, then stream one reply at a time."""

    name: str

    @property
    def model_name(self) -> str:
        """The model as shown in the UI and stored in history."""
        ...

    def load(self, report: Callable[[str], None]) -> None:
        """Load weights (or check the remote server), or bring offloaded ones back; report() each phase."""
        ...

    def stream(self, messages: list[dict[str, str]], options: TextOptions, stop: threading.Event) -> TextStream:
        """Start a reply to OpenAI-style messages; earlier reasoning is never sent back to the model."""
        ...

    def unload(self) -> None:
        """Free the model's memory."""
        ...

    def offload(self) -> None:
        """Free GPU memory while idle; the next load() brings the model back (a no-op on the CPU)."""
        ...

    def describe(self) -> dict[str, Any]:
        """Device, precision, quantization and notes for the health page."""
        ...


TEXT_BACKENDS: Registry[TextBackend] = Registry("text", ("pipelines.transformers_backend", "pipelines.openai_backend"))
register_text_backend = TEXT_BACKENDS.register
create_text_backend = TEXT_BACKENDS.create
text_backend_names = TEXT_BACKENDS.names
