"""A1111 prompt syntax: attention weights, escapes, BREAK, chunking past 77 tokens, and the embeddings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from contracts import MAX_ATTENTION_WEIGHT, ImageLimits, ImageRequest, check_attention_weights, check_inputs
from pipelines.prompts import chunk_tokens, encode_prompts, needs_own_encoding, parse_attention, plain_text


@pytest.mark.parametrize(("text", "expected"), [
    # The examples of A1111's parse_prompt_attention docstring (modules/prompt_parser.py).
    ("normal text", [("normal text", 1.0)]),
    ("an (important) word", [("an ", 1.0), ("important", 1.1), (" word", 1.0)]),
    ("(unbalanced", [("unbalanced", 1.1)]),
    ("\\(literal\\]", [("(literal]", 1.0)]),
    ("(unnecessary)(parens)", [("unnecessaryparens", 1.1)]),
    ("a (((house:1.3)) [on] a (hill:0.5), sun, (((sky))).",
     [("a ", 1.0), ("house", 1.3 * 1.1 * 1.1), (" ", 1.1), ("on", 1.0), (" a ", 1.1), ("hill", 0.55),
      (", sun, ", 1.1), ("sky", 1.1 ** 4), (".", 1.1)]),
    ("[faded]", [("faded", 1 / 1.1)]),
    ("[[faded]]", [("faded", 1 / 1.1 / 1.1)]),
    ("(word:0.25)", [("word", 0.25)]),
    ("( word : 1.5 )", [(" word ", 1.5)]),
    ("a stray ) and ]", [("a stray ) and ]", 1.0)]),
    ("time: 12", [("time: 12", 1.0)]),
    ("a BREAK b", [("a", 1.0), ("BREAK", -1.0), ("b", 1.0)]),
    ("", [("", 1.0)]),
])
def test_attention_parsing_matches_a1111(text: str, expected: list[tuple[str, float]]) -> None:
    got = parse_attention(text)
    assert [t for t, _ in got] == [t for t, _ in expected]
    assert [w for _, w in got] == pytest.approx([w for _, w in expected])


# Weights that parse to infinity or huge numbers (a black image in float16), directly or multiplied by nesting.
BAD_ATTENTION = ["(word:" + "9" * 400 + ")", "(word:1" + "0" * 40 + ")", "(word:10.5)", "(word:-11)",
                 "((((word:10):10):10))", "(" * 30 + "word" + ")" * 30, "a (b:" + "9" * 400 + ") <lora:x:1>"]


@pytest.mark.parametrize("prompt", BAD_ATTENTION)
def test_an_attention_weight_that_is_not_finite_or_out_of_range_is_refused_naming_the_field(prompt: str) -> None:
    message = check_attention_weights(prompt)
    assert f"between {-MAX_ATTENTION_WEIGHT:g} and {MAX_ATTENTION_WEIGHT:g}" in message
    assert len(message) < 300  # a 400-digit weight is not echoed back whole
    for field in ("prompt", "negative_prompt"):
        values = {"prompt": "a cat", field: prompt}
        errors = check_inputs(ImageRequest(**values), ImageLimits())
        assert set(errors) == {field}
        assert errors[field].startswith(f"{field}: the attention weight")


@pytest.mark.parametrize("prompt", ["(word:10)", "(word:-10)", "(word:0)", "((((((masterpiece))))))", "[[[[x]]]]",
                                    "time: 12)", "(a:1.2.3)", "<lora:style:0.5> (b:1.3)", "a BREAK b"])
def test_ordinary_and_edge_attention_weights_are_accepted(prompt: str) -> None:
    assert check_attention_weights(prompt) == ""


def test_plain_text_drops_the_syntax_only() -> None:
    assert plain_text("a (red:1.3) [cat] \\(x\\)") == "a red cat (x)"


@pytest.fixture(scope="module")
def tiny_pipe(tiny_sd_dir: Path) -> Any:
    from diffusers import StableDiffusionPipeline

    return StableDiffusionPipeline.from_pretrained(str(tiny_sd_dir), safety_checker=None,
                                                   requires_safety_checker=False)


def test_weights_land_on_the_tokens_of_their_words(tiny_pipe: Any) -> None:
    tok = tiny_pipe.tokenizer
    ((ids, weights),) = chunk_tokens(tok, "a (cat:1.5) [dog]")
    assert len(ids) == len(weights) == 77
    assert ids[0] == tok.bos_token_id
    assert ids[-1] == tok.eos_token_id
    words = tok(["a", "cat", "dog"], add_special_tokens=False)["input_ids"]
    n = sum(len(w) for w in words)
    assert ids[1:1 + n] == [t for w in words for t in w]
    assert weights[1:1 + n] == pytest.approx([1.0] * len(words[0]) + [1.5] * len(words[1])
                                             + [1 / 1.1] * len(words[2]))
    assert set(weights[1 + n:]) == {1.0}  # padding and the end token are not weighted


def test_long_prompts_are_chunked_not_cut(tiny_pipe: Any) -> None:
    tok = tiny_pipe.tokenizer
    (a,) = tok("a", add_special_tokens=False)["input_ids"]  # one token in the tiny vocabulary
    words = " ".join(["a"] * 200)
    chunks = chunk_tokens(tok, words)
    assert [len(ids) for ids, _ in chunks] == [77, 77, 77]
    assert sum(ids.count(a) for ids, _ in chunks) == 200  # every token kept, none cut off
    assert needs_own_encoding(tok, words)
    assert not needs_own_encoding(tok, "a cat on the moon")


def test_break_starts_a_new_chunk_and_commas_pull_the_boundary_back(tiny_pipe: Any) -> None:
    tok = tiny_pipe.tokenizer
    assert len(chunk_tokens(tok, "cat BREAK dog")) == 2
    # 70 tokens, a comma, then 10 more: the boundary moves back to just after the comma (within 20 tokens).
    text = " ".join(["a"] * 70) + ", " + " ".join(["dog"] * 10)
    first, second = chunk_tokens(tok, text)
    comma = tok.convert_tokens_to_ids(",</w>")
    assert first[0][71] == comma
    assert first[0][72] == tok.pad_token_id
    (dog,) = tok("dog", add_special_tokens=False)["input_ids"]
    assert second[0][1:11] == [dog] * 10


def test_a_plain_prompt_gives_the_pipelines_own_embeddings(tiny_pipe: Any) -> None:
    import torch

    pos, neg = tiny_pipe.encode_prompt("a cat on the moon", "cpu", 1, True, "ugly")
    ours = encode_prompts(tiny_pipe, ["a cat on the moon"], ["ugly"], cfg=True)
    assert torch.equal(ours["prompt_embeds"], pos)
    assert torch.equal(ours["negative_prompt_embeds"], neg)


def test_weights_change_the_embeddings_and_long_prompts_pad_the_negative(tiny_pipe: Any) -> None:
    import torch

    plain = encode_prompts(tiny_pipe, ["a cat"], [""], cfg=False)["prompt_embeds"]
    weighted = encode_prompts(tiny_pipe, ["a (cat:1.5)"], [""], cfg=False)["prompt_embeds"]
    assert plain.shape == weighted.shape == (1, 77, 32)
    assert not torch.equal(plain, weighted)
    # A1111 brings each chunk back to its original mean after weighting.
    assert weighted.mean().item() == pytest.approx(plain.mean().item(), abs=1e-6)
    long = encode_prompts(tiny_pipe, [" ".join(["a"] * 100), "a dog"], ["", ""], cfg=True)
    assert long["prompt_embeds"].shape == long["negative_prompt_embeds"].shape == (2, 154, 32)
    # The short rows are padded with the empty prompt's chunk.
    empty = encode_prompts(tiny_pipe, [""], [""], cfg=False)["prompt_embeds"]
    assert torch.equal(long["prompt_embeds"][1:, 77:], empty)
