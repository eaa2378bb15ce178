"""Tests for the streaming <think> splitter shared by every text backend."""

from __future__ import annotations

import ast
import dataclasses
import itertools
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipelines import reasoning as reasoning_module
from pipelines.reasoning import Chunk, ReasoningSplitter, split_reasoning, strip_reasoning

OPEN = "<think>"
CLOSE = "</think>"
R1_OUTPUT = "Okay, 2+2.\nThat is 4.\n</think>\n\nThe answer is **4**."


def stream(pieces: list[str], starts_in_reasoning: bool = True) -> tuple[ReasoningSplitter, list[Chunk]]:
    """Feed `pieces` one by one, then finish; return the splitter and every chunk it emitted."""
    splitter = ReasoningSplitter(starts_in_reasoning=starts_in_reasoning)
    chunks: list[Chunk] = []
    for piece in pieces:
        chunks.extend(splitter.feed(piece))
    chunks.extend(splitter.finish())
    return splitter, chunks


def joined(chunks: list[Chunk], kind: str) -> str:
    """Concatenate the text of the chunks of one kind."""
    return "".join(c.text for c in chunks if c.kind == kind)


def oracle(text: str, starts_in_reasoning: bool = True) -> tuple[str, str]:
    """Split whole strings by the rules written plainly: an independent reference for the splitter."""
    rest = text.lstrip()
    if rest.startswith(OPEN):
        rest, in_reasoning = rest[len(OPEN) :], True
    else:
        in_reasoning = starts_in_reasoning
    if not in_reasoning:
        return "", rest
    idx = rest.find(CLOSE)
    if idx < 0:
        return rest.lstrip(), ""
    return rest[:idx].lstrip(), rest[idx + len(CLOSE) :].lstrip()


# --- examples ---------------------------------------------------------------------------------------


def test_r1_output_without_opening_tag() -> None:
    assert split_reasoning(R1_OUTPUT) == ("Okay, 2+2.\nThat is 4.\n", "The answer is **4**.")


def test_opening_tag_at_start_is_swallowed() -> None:
    assert split_reasoning("<think>\nHmm.\n</think>\n\n4") == ("Hmm.\n", "4")
    assert split_reasoning("  \n<think>Hmm.</think>4") == ("Hmm.", "4")


def test_opening_tag_later_in_reasoning_is_text() -> None:
    assert split_reasoning("Hmm <think> x</think>4") == ("Hmm <think> x", "4")
    assert split_reasoning("<think><think>x</think>4") == ("<think>x", "4")


@pytest.mark.parametrize("cut", range(len(R1_OUTPUT) + 1))
def test_split_into_two_feeds_at_every_position(cut: int) -> None:
    splitter, chunks = stream([R1_OUTPUT[:cut], R1_OUTPUT[cut:]])
    assert (splitter.reasoning, splitter.answer) == split_reasoning(R1_OUTPUT)
    assert (joined(chunks, "reasoning"), joined(chunks, "answer")) == split_reasoning(R1_OUTPUT)


@pytest.mark.parametrize("text", [R1_OUTPUT, "<think>\nHmm.\n</think>\n\n4", "🤔</think>🎉"])
@pytest.mark.parametrize("starts_in_reasoning", [True, False])
def test_one_character_at_a_time(text: str, starts_in_reasoning: bool) -> None:
    splitter, chunks = stream(list(text), starts_in_reasoning)
    expected = split_reasoning(text, starts_in_reasoning)
    assert (splitter.reasoning, splitter.answer) == expected
    assert (joined(chunks, "reasoning"), joined(chunks, "answer")) == expected


def test_partial_close_tag_is_held_back_until_it_resolves() -> None:
    splitter = ReasoningSplitter()
    assert splitter.feed("Thinking</") == [Chunk("reasoning", "Thinking")]
    assert splitter.feed("thi") == []
    assert splitter.reasoning == "Thinking"
    assert splitter.in_reasoning
    assert splitter.feed("nk") == []
    assert splitter.feed(">") == []  # the tag is complete, but the answer has no text yet
    assert not splitter.in_reasoning
    assert splitter.feed("\n\n") == []  # leading whitespace of the answer is stripped
    assert splitter.feed("Four") == [Chunk("answer", "Four")]
    assert splitter.finish() == []
    assert (splitter.reasoning, splitter.answer) == ("Thinking", "Four")


def test_one_feed_can_carry_both_kinds() -> None:
    splitter = ReasoningSplitter()
    assert splitter.feed("a</think>b") == [Chunk("reasoning", "a"), Chunk("answer", "b")]


def test_partial_close_tag_that_turns_out_not_to_be_a_tag_is_reasoning() -> None:
    splitter = ReasoningSplitter()
    assert splitter.feed("x </thi") == [Chunk("reasoning", "x ")]
    assert splitter.feed("s is <b>") == [Chunk("reasoning", "</this is <b>")]
    assert splitter.reasoning == "x </this is <b>"


def test_only_the_longest_possible_partial_tag_is_held() -> None:
    splitter = ReasoningSplitter()
    # "</</th": the first "</" can no longer start the tag, the trailing "</th" still can.
    assert splitter.feed("a</</th") == [Chunk("reasoning", "a</")]
    assert splitter.feed("ink>b") == [Chunk("answer", "b")]


def test_no_closing_tag_everything_is_reasoning() -> None:
    assert split_reasoning("Let me think about this...") == ("Let me think about this...", "")
    assert split_reasoning("<think>\nStill thinking") == ("Still thinking", "")


def test_partial_tag_that_never_completes_is_flushed_as_text() -> None:
    splitter = ReasoningSplitter()
    assert splitter.feed("stopped at </th") == [Chunk("reasoning", "stopped at ")]
    assert splitter.finish() == [Chunk("reasoning", "</th")]
    assert (splitter.reasoning, splitter.answer) == ("stopped at </th", "")


def test_starts_in_answer_without_opening_tag() -> None:
    assert split_reasoning("\n Hello there", starts_in_reasoning=False) == ("", "Hello there")
    splitter = ReasoningSplitter(starts_in_reasoning=False)
    assert splitter.feed("Hi") == [Chunk("answer", "Hi")]
    assert not splitter.in_reasoning


def test_starts_in_answer_with_opening_tag() -> None:
    text = "\n<think>\nplan\n</think>\n\nanswer"
    assert split_reasoning(text, starts_in_reasoning=False) == ("plan\n", "answer")
    splitter = ReasoningSplitter(starts_in_reasoning=False)
    assert splitter.feed("  <thi") == []  # could be the opening tag: undecided, nothing shown
    assert not splitter.in_reasoning
    assert splitter.feed("nk>plan") == [Chunk("reasoning", "plan")]
    assert splitter.in_reasoning


def test_starts_in_answer_close_tag_without_opening_is_literal_answer() -> None:
    assert split_reasoning("a </think> b", starts_in_reasoning=False) == ("", "a </think> b")


@pytest.mark.parametrize("starts_in_reasoning", [True, False])
def test_partial_opening_tag_that_never_completes_is_text(starts_in_reasoning: bool) -> None:
    splitter = ReasoningSplitter(starts_in_reasoning=starts_in_reasoning)
    assert splitter.feed("\n<thi") == []
    kind = "reasoning" if starts_in_reasoning else "answer"
    assert splitter.finish() == [Chunk(kind, "<thi")]


def test_partial_opening_tag_that_turns_out_different_is_text() -> None:
    assert split_reasoning("<thing>x", starts_in_reasoning=False) == ("", "<thing>x")
    assert split_reasoning("<thing>x</think>y") == ("<thing>x", "y")


def test_stray_tags_after_the_answer_begins_are_literal_answer() -> None:
    text = "r</think>\n\na <think>b</think> c </think>"
    assert split_reasoning(text) == ("r", "a <think>b</think> c </think>")
    splitter, _ = stream(list(text))
    assert splitter.answer == "a <think>b</think> c </think>"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("\n\n  r  \n</think>\n\n  a  ", ("r  \n", "a  ")),  # only leading whitespace is stripped
        ("   \n\t", ("", "")),
        ("</think>", ("", "")),
        ("\n</think>\n\nanswer", ("", "answer")),
        ("r</think>   \n", ("r", "")),
        ("<think>\n\n</think>\n\n", ("", "")),
        ("r\n\n</think>a\n\nb", ("r\n\n", "a\n\nb")),  # inner whitespace is kept
        ("\u3000r</think>\u00a0a", ("r", "a")),  # unicode whitespace counts as whitespace
    ],
)
def test_whitespace_handling(text: str, expected: tuple[str, str]) -> None:
    assert split_reasoning(text) == expected


def test_unicode_and_emoji_around_tags() -> None:
    text = "思考中🤔</think>答え🎉<think>"
    assert split_reasoning(text) == ("思考中🤔", "答え🎉<think>")
    splitter, chunks = stream(["思考中🤔</", "think>", "答", "え🎉<think>"])
    assert (splitter.reasoning, splitter.answer) == ("思考中🤔", "答え🎉<think>")
    assert chunks[0] == Chunk("reasoning", "思考中🤔")


@pytest.mark.parametrize("starts_in_reasoning", [True, False])
def test_empty_input(starts_in_reasoning: bool) -> None:
    assert split_reasoning("", starts_in_reasoning) == ("", "")
    splitter = ReasoningSplitter(starts_in_reasoning=starts_in_reasoning)
    assert splitter.feed("") == []
    assert splitter.finish() == []
    assert (splitter.reasoning, splitter.answer) == ("", "")


def test_finish_is_final() -> None:
    splitter = ReasoningSplitter()
    splitter.feed("abc </th")
    assert splitter.finish() == [Chunk("reasoning", "</th")]
    assert splitter.finished
    assert splitter.finish() == []
    with pytest.raises(RuntimeError):
        splitter.feed("ink>")


def test_custom_tags() -> None:
    splitter = ReasoningSplitter(starts_in_reasoning=False, open_tag="[r]", close_tag="[/r]")
    chunks = [c for piece in ["[", "r]x [", "/", "r] y"] for c in splitter.feed(piece)]
    chunks += splitter.finish()
    assert (splitter.reasoning, splitter.answer) == ("x ", "y")
    assert (joined(chunks, "reasoning"), joined(chunks, "answer")) == ("x ", "y")


@pytest.mark.parametrize("cut", range(len("x ==== y") + 1))
def test_self_overlapping_close_tag_split_at_every_position(cut: int) -> None:
    # With "===" a buffer ending "==" could be the tag's start at two lengths: the longer must be held.
    text = "x ==== y"
    splitter = ReasoningSplitter(open_tag="<<<", close_tag="===")
    chunks = splitter.feed(text[:cut]) + splitter.feed(text[cut:]) + splitter.finish()
    assert (splitter.reasoning, splitter.answer) == ("x ", "= y")
    assert (joined(chunks, "reasoning"), joined(chunks, "answer")) == ("x ", "= y")


@pytest.mark.parametrize(("open_tag", "close_tag"), [("", "</think>"), ("<think>", ""), (" <t>", "</t>")])
def test_bad_tags_are_refused(open_tag: str, close_tag: str) -> None:
    with pytest.raises(ValueError, match="_tag must be"):
        ReasoningSplitter(open_tag=open_tag, close_tag=close_tag)


def test_chunk_is_frozen() -> None:
    chunk = Chunk("answer", "x")
    with pytest.raises(dataclasses.FrozenInstanceError):
        chunk.text = "y"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (R1_OUTPUT, "The answer is **4**."),
        ("<think>plan</think>\n\nanswer", "answer"),
        ("already an answer", "already an answer"),  # stored answers pass through
        ("\nalready an answer\n", "already an answer\n"),
        ("<think>stopped while thinking", ""),  # all reasoning: nothing is sent back
        ("", ""),
    ],
)
def test_strip_reasoning(message: str, expected: str) -> None:
    assert strip_reasoning(message) == expected


def test_module_stays_free_of_web_db_and_torch_imports() -> None:
    tree = ast.parse(Path(reasoning_module.__file__).read_text(encoding="utf-8"))
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert not imported & {"gradio", "fastapi", "peewee", "torch", "transformers"}


# --- properties -------------------------------------------------------------------------------------

# Fragments chosen so that tags, partial tags, whitespace and multi-byte characters meet in every order.
FRAGMENTS = st.sampled_from(
    [OPEN, CLOSE, "<", "/", ">", "</", "<th", "</th", "ink>", "k>", "think", "t", "a", "b c",
     " ", "\n", "\n\n", "\t", "\u00a0", "é", "思", "🤔", "👩‍💻"]
)  # fmt: skip
TEXTS = st.lists(FRAGMENTS, max_size=25).map("".join)
LONGEST_TAG = max(len(OPEN), len(CLOSE))


@st.composite
def chunked(draw: st.DrawFn) -> tuple[str, list[str]]:
    """Draw a text and an arbitrary chunking of it into feed() calls (empty pieces included)."""
    text = draw(TEXTS)
    cuts = sorted(draw(st.lists(st.integers(0, len(text)), max_size=12)))
    bounds = [0, *cuts, len(text)]
    return text, [text[a:b] for a, b in itertools.pairwise(bounds)]


FAST = settings(max_examples=100, deadline=None)


@FAST
@given(chunked(), st.booleans())
def test_any_chunking_gives_the_one_shot_split(
    case: tuple[str, list[str]], starts_in_reasoning: bool
) -> None:
    text, pieces = case
    assert "".join(pieces) == text
    splitter, chunks = stream(pieces, starts_in_reasoning)
    expected = split_reasoning(text, starts_in_reasoning)
    assert (splitter.reasoning, splitter.answer) == expected
    # Emitted chunks are exactly the properties: nothing emitted twice, nothing lost between them.
    assert (joined(chunks, "reasoning"), joined(chunks, "answer")) == expected
    assert all(c.text for c in chunks)
    assert all(c.kind in ("reasoning", "answer") for c in chunks)
    # Once the answer has begun, no reasoning follows.
    kinds = [c.kind for c in chunks]
    if "answer" in kinds:
        assert "reasoning" not in kinds[kinds.index("answer") :]


@FAST
@given(TEXTS, st.booleans())
def test_one_shot_split_follows_the_rules(text: str, starts_in_reasoning: bool) -> None:
    assert split_reasoning(text, starts_in_reasoning) == oracle(text, starts_in_reasoning)


@FAST
@given(TEXTS, st.booleans())
def test_input_is_accounted_for(text: str, starts_in_reasoning: bool) -> None:
    """Emitted text plus swallowed tags and leading whitespace rebuild the input exactly."""
    reasoning, answer = split_reasoning(text, starts_in_reasoning)
    ws, opened, closed = r"\s*", re.escape(OPEN), re.escape(CLOSE)
    thought = ws + f"(?:{opened})?" + ws + re.escape(reasoning) + f"(?:{closed}{ws}{re.escape(answer)})?"
    answered_straight_away = ws + re.escape(answer)
    assert re.fullmatch(f"{thought}|{answered_straight_away}", text, flags=re.DOTALL)


@FAST
@given(chunked(), st.booleans())
def test_feed_holds_back_at_most_a_partial_tag(
    case: tuple[str, list[str]], starts_in_reasoning: bool
) -> None:
    """After every feed, what was emitted is the split of what arrived, short of at most a partial tag."""
    _, pieces = case
    splitter = ReasoningSplitter(starts_in_reasoning=starts_in_reasoning)
    received = ""
    for piece in pieces:
        splitter.feed(piece)
        received += piece
        emitted = (splitter.reasoning, splitter.answer)
        held_candidates = [
            split_reasoning(received[: len(received) - k], starts_in_reasoning)
            for k in range(min(LONGEST_TAG, len(received) + 1))
        ]
        assert emitted in held_candidates
        # Text that cannot be part of a tag is never held.
        if not any(received.endswith(tag[:n]) for tag in (OPEN, CLOSE) for n in range(1, len(tag))):
            assert emitted == split_reasoning(received, starts_in_reasoning)


@FAST
@given(TEXTS)
def test_strip_reasoning_never_returns_reasoning(text: str) -> None:
    if CLOSE in text:
        assert strip_reasoning(text) == split_reasoning(text)[1]
    else:
        assert strip_reasoning(text) == split_reasoning(text, starts_in_reasoning=False)[1]
    # Stripping a stored answer again changes nothing, unless the answer itself carries a stray tag.
    answer = strip_reasoning(text)
    if CLOSE not in answer and not answer.startswith(OPEN):
        assert strip_reasoning(answer) == answer
