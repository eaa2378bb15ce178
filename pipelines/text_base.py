"""The text-backend interface, its usage report, the history a model sees, and the backend registry. The options a
reply runs with and their checks are contracts.py's."""

from __future__ import annotations

import threading
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from typing import Literal, Protocol, Self

from contracts import TextOptions
from pipelines.reasoning import Chunk, strip_reasoning
from pipelines.registry import ModelBackend, Registry

FinishReason = Literal["stop", "length", "cancelled"]


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


class ChunkStream:
    """What a TextStream's classes share: iteration over a reply's chunk generator, and a ``with`` block that ends in
    close(), which a backend extends to release what its reply holds."""

    def __init__(self, usage: TextUsage, chunks: Generator[Chunk, None, None]) -> None:
        self.usage = usage
        self._chunks = chunks

    def __iter__(self) -> Iterator[Chunk]:
        """The stream itself."""
        return self

    def __next__(self) -> Chunk:
        """The next piece of reasoning or answer."""
        return next(self._chunks)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the chunk generator (its finally block runs, if it had started)."""
        self._chunks.close()


class TextBackend(ModelBackend, Protocol):
    """What every text backend offers besides loading: replies streamed one per call (several may run at once)."""

    def stream(self, messages: list[dict[str, str]], options: TextOptions, stop: threading.Event) -> TextStream:
        """Start a reply to OpenAI-style messages; earlier reasoning is never sent back to the model."""
        ...


TEXT_BACKENDS: Registry[TextBackend] = Registry("text", ("pipelines.transformers_backend", "pipelines.openai_backend"))
register_text_backend = TEXT_BACKENDS.register
create_text_backend = TEXT_BACKENDS.create
text_backend_names = TEXT_BACKENDS.names
