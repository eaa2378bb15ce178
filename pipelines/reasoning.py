"""Split DeepSeek-R1 output into reasoning and answer, incrementally; shared by every text backend.

R1's chat template ends the prompt with ``<think>`` and a newline, so the output normally begins
inside the reasoning, without an opening tag, and holds one ``</think>`` before the answer. Servers
and models differ at the edges (an echoed opening tag, no closing tag when a reply was stopped or
truncated, backends that answer straight away), and a streamed tag can arrive cut across chunks
(``</th`` + ``ink>``). One splitter handles all of that, so every backend shows the same thing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Kind = Literal["reasoning", "answer"]

# Phases of the splitter. START: the output may still open with the opening tag, so nothing is decided.
_START = "start"
_REASONING = "reasoning"
_ANSWER = "answer"


@dataclass(frozen=True, slots=True)
class Chunk:
    """A piece of output text that is known to be reasoning or answer."""

    kind: Kind
    text: str


def _partial_tag_len(buffer: str, tag: str) -> int:
    """Length of the longest suffix of `buffer` that is a proper prefix of `tag` (0 if none)."""
    for n in range(min(len(buffer), len(tag) - 1), 0, -1):
        if buffer.endswith(tag[:n]):
            return n
    return 0


class ReasoningSplitter:
    """Streaming splitter: feed() raw model text, get back reasoning/answer chunks that are certain."""

    def __init__(
        self,
        starts_in_reasoning: bool = True,
        open_tag: str = "<think>",
        close_tag: str = "</think>",
    ) -> None:
        """Create a splitter; `starts_in_reasoning` is True when the prompt already opened the reasoning."""
        for name, tag in (("open_tag", open_tag), ("close_tag", close_tag)):
            # Leading whitespace is dropped before the opening tag is looked for, so a tag that starts
            # or ends with whitespace could never match reliably.
            if not tag or tag != tag.strip():
                raise ValueError(f"{name} must be non-empty with no surrounding whitespace, got {tag!r}")
        self._starts_in_reasoning = starts_in_reasoning
        self._open_tag = open_tag
        self._close_tag = close_tag
        self._phase = _START
        self._buffer = ""  # received but not yet emitted: at most a partial tag (plus the new text)
        self._reasoning = ""
        self._answer = ""
        self._finished = False

    @property
    def reasoning(self) -> str:
        """The reasoning emitted so far."""
        return self._reasoning

    @property
    def answer(self) -> str:
        """The answer emitted so far."""
        return self._answer

    @property
    def in_reasoning(self) -> bool:
        """Whether text arriving now counts as reasoning (False once the answer has begun)."""
        if self._phase == _START:
            # Undecided: with starts_in_reasoning everything up to the close tag is reasoning anyway;
            # without it, nothing is known to be reasoning until a whole opening tag has arrived.
            return self._starts_in_reasoning
        return self._phase == _REASONING

    @property
    def finished(self) -> bool:
        """Whether finish() has been called."""
        return self._finished

    def feed(self, text: str) -> list[Chunk]:
        """Add raw model text; return the chunks now certain, holding back only a possible partial tag."""
        if self._finished:
            raise RuntimeError("feed() called after finish()")
        self._buffer += text
        return self._process(final=False)

    def finish(self) -> list[Chunk]:
        """Flush what is held back (a partial tag that never completed is text); later calls return []."""
        if self._finished:
            return []
        self._finished = True
        return self._process(final=True)

    def _process(self, final: bool) -> list[Chunk]:
        """Move as much of the buffer as is certain into chunks; when `final`, move all of it."""
        out: list[Chunk] = []
        if self._phase == _START:
            self._decide_start(final)
        if self._phase == _REASONING:
            idx = self._buffer.find(self._close_tag)
            if idx >= 0:
                self._emit(out, "reasoning", self._buffer[:idx])
                self._buffer = self._buffer[idx + len(self._close_tag) :]
                # Everything after the first close tag is answer, stray tags included, so the answer
                # phase below takes the rest without looking for tags again.
                self._phase = _ANSWER
            else:
                keep = 0 if final else _partial_tag_len(self._buffer, self._close_tag)
                cut = len(self._buffer) - keep
                self._emit(out, "reasoning", self._buffer[:cut])
                self._buffer = self._buffer[cut:]
        if self._phase == _ANSWER:
            self._emit(out, "answer", self._buffer)
            self._buffer = ""
        return out

    def _decide_start(self, final: bool) -> None:
        """Decide, once enough has arrived, whether the output opens with the opening tag."""
        # Leading whitespace is never shown (reasoning and answer are both left-stripped), so dropping
        # it here keeps the undecided buffer no longer than the opening tag.
        self._buffer = self._buffer.lstrip()
        if not self._buffer:
            return
        if self._buffer.startswith(self._open_tag):
            self._buffer = self._buffer[len(self._open_tag) :]
            self._phase = _REASONING
            return
        if not final and self._open_tag.startswith(self._buffer):
            return  # could still become the opening tag: wait for more text
        self._phase = _REASONING if self._starts_in_reasoning else _ANSWER

    def _emit(self, out: list[Chunk], kind: Kind, text: str) -> None:
        """Append `text` as `kind`, left-stripping until that kind has content; never emit empty text."""
        if kind == "reasoning":
            if not self._reasoning:
                text = text.lstrip()
            if not text:
                return
            self._reasoning += text
        else:
            if not self._answer:
                text = text.lstrip()  # R1 puts "\n\n" after </think>
            if not text:
                return
            self._answer += text
        # Merge with the previous chunk of the same call so a caller gets one chunk per kind per feed.
        if out and out[-1].kind == kind:
            out[-1] = Chunk(kind, out[-1].text + text)
        else:
            out.append(Chunk(kind, text))


def split_reasoning(text: str, starts_in_reasoning: bool = True) -> tuple[str, str]:
    """Split a whole model output into (reasoning, answer), exactly as streaming it would."""
    splitter = ReasoningSplitter(starts_in_reasoning=starts_in_reasoning)
    splitter.feed(text)
    splitter.finish()
    return splitter.reasoning, splitter.answer


def strip_reasoning(text: str) -> str:
    """Return the answer part of a full assistant message, so reasoning is never sent back to the model."""
    # A stored message is either raw model output or an answer that was already split off. With a close
    # tag it is raw output whose reasoning ends there; without one it is all reasoning if it opens with
    # the opening tag (a stopped reply) and an answer otherwise. A raw reply that was stopped before any
    # tag cannot be told from an answer, which is why callers should store split_reasoning()'s answer.
    if "</think>" in text:
        return split_reasoning(text, starts_in_reasoning=True)[1]
    return split_reasoning(text, starts_in_reasoning=False)[1]
