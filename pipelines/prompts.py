"""AUTOMATIC1111's prompt syntax for Stable Diffusion: attention weights and prompts longer than 77 tokens.

Supported, with A1111's meaning (its "Original" emphasis mode):

- ``(words)`` multiplies the attention to ``words`` by 1.1; nesting multiplies again: ``((words))`` is 1.21.
- ``(words:1.5)`` sets the multiplier to 1.5 (any decimal number, also below 1: ``(words:0.5)``). A word's weight,
  its brackets and numbers multiplied, must be finite and within ±10 (contracts.MAX_ATTENTION_WEIGHT): a request
  asking for more is refused with a message naming the prompt field, since an infinite or huge weight (``(word:``
  and 400 digits parses to infinity) turns every pixel black.
- ``[words]`` divides the attention by 1.1; ``[[words]]`` by 1.21.
- ``\\(``, ``\\)``, ``\\[``, ``\\]`` and ``\\\\`` are the literal characters, without any weighting.
- An unclosed ``(`` or ``[`` weights the rest of the prompt; a stray ``)`` or ``]`` is kept as text.
- ``BREAK`` (upper case, as a word) ends the current 75-token chunk and starts a new one.
- Prompts longer than 75 tokens are split into chunks of 75 tokens (plus the start and end tokens, 77), each
  encoded on its own and joined, as A1111 does; a chunk boundary moves back to just after the last comma when
  that comma is at most 20 tokens before it. The prompt and the negative prompt are padded to the same number of
  chunks with the encoding of an empty prompt. Nothing is cut off.
- ``<lora:name:weight>`` tags are taken out before this parsing (see pipelines/loras.py).

Not supported: prompt editing ``[from:to:when]``, alternation ``[a|b]``, ``AND`` (composable diffusion),
textual-inversion embeddings and CLIP skip. Here weighting applies to pipelines with one CLIP text encoder (Stable
Diffusion 1.x/2.x); SDXL's two encoders are weighted by pipelines/sdxl.py with the same chunks.

A plain prompt of up to 75 tokens gives exactly the embeddings the diffusers pipeline computes itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from contracts import BREAK_MARK, parse_attention

CHUNK = 75  # tokens per chunk between the start and end tokens
COMMA_BACKTRACK = 20  # A1111's default "comma padding backtrack"


@dataclass
class _Chunk:
    tokens: list[int] = field(default_factory=list)
    weights: list[float] = field(default_factory=list)


def chunk_tokens(tokenizer: Any, text: str) -> list[tuple[list[int], list[float]]]:
    """Token ids and weights of each 77-token chunk of `text` (start and end tokens included), as A1111 builds
    them: 75 prompt tokens per chunk, padded, a comma backtrack at the boundary, BREAK starting a new chunk."""
    runs = parse_attention(text)
    start, end = tokenizer.bos_token_id, tokenizer.eos_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else end
    comma = tokenizer.convert_tokens_to_ids(",</w>") if ",</w>" in tokenizer.get_vocab() else None
    ids = tokenizer([t for t, _ in runs], add_special_tokens=False, truncation=False, verbose=False)["input_ids"]
    chunks: list[tuple[list[int], list[float]]] = []
    chunk = _Chunk()
    last_comma = -1

    def close() -> None:
        nonlocal chunk, last_comma
        fill = CHUNK - len(chunk.tokens)
        # The end token right after the words, then padding: A1111 pads with the end token and then sets everything
        # after the first end token to the pad id, which differs where the tokenizer pads with its own token
        # (OpenCLIP's "!" in SD 2.x and SDXL's second encoder); for SD 1.x, whose pad is the end token, it is moot.
        tokens = [start, *chunk.tokens, end, *[pad] * fill]
        chunks.append((tokens, [1.0, *chunk.weights, 1.0, *[1.0] * fill]))
        chunk, last_comma = _Chunk(), -1

    for (piece, weight), tokens in zip(runs, ids, strict=True):
        if weight == BREAK_MARK and piece == "BREAK":
            close()
            continue
        for token in tokens:
            if token == comma:
                last_comma = len(chunk.tokens)
            elif len(chunk.tokens) == CHUNK and last_comma != -1 and CHUNK - last_comma <= COMMA_BACKTRACK:
                # Break just after the last comma, so a phrase is not cut in two; its tail opens the next chunk.
                cut = last_comma + 1
                tail = _Chunk(chunk.tokens[cut:], chunk.weights[cut:])
                chunk.tokens, chunk.weights = chunk.tokens[:cut], chunk.weights[:cut]
                close()
                chunk = tail
            if len(chunk.tokens) == CHUNK:
                close()
            chunk.tokens.append(token)
            chunk.weights.append(weight)
    if chunk.tokens or not chunks:
        close()
    return chunks


def needs_own_encoding(tokenizer: Any, text: str) -> bool:
    """True when `text` uses the syntax or runs past 75 tokens, so the pipeline's own encoding would differ."""
    runs = parse_attention(text)
    if runs != [(text, 1.0)]:
        return True
    return len(tokenizer(text, add_special_tokens=False, truncation=False, verbose=False)["input_ids"]) > CHUNK


def chunk_count(pipe: Any, text: str) -> int:
    """How many 77-token chunks a prompt (its <lora:…> tags removed) takes: with one CLIP encoder, or with SDXL's two
    (the longer of their chunkings, as pipelines/sdxl.py pads); 1 where the pipeline cannot weight."""
    from pipelines.loras import strip_loras

    text = strip_loras(text)
    if supports_weighting(pipe):
        return len(chunk_tokens(pipe.tokenizer, text))
    tokenizers = [getattr(pipe, name, None) for name in ("tokenizer", "tokenizer_2")]
    if all(t is not None for t in tokenizers) and getattr(pipe, "text_encoder_2", None) is not None:
        return max(len(chunk_tokens(t, text)) for t in tokenizers)
    return 1


def emphasize(z: Any, weights: list[float]) -> Any:
    """A chunk's hidden states (1×77×width) multiplied token by token by its weights, then brought back to their
    original mean: A1111's "Original" emphasis (modules/sd_emphasis.py)."""
    import torch

    w = torch.tensor(weights, device=z.device, dtype=z.dtype).reshape(1, -1, 1)
    original_mean = z.mean()
    z = z * w
    return z * (original_mean / z.mean())


def _encode_chunks(text_encoder: Any, chunks: list[tuple[list[int], list[float]]], device: Any) -> Any:
    """Each chunk through CLIP, weighted and brought back to its original mean (A1111's 'Original' emphasis)."""
    import torch

    parts = []
    for tokens, weights in chunks:
        ids = torch.tensor([tokens], device=device)
        parts.append(emphasize(text_encoder(ids)[0], weights))
    return torch.cat(parts, dim=1)


def encode_prompts(pipe: Any, prompts: list[str], negatives: list[str], cfg: bool) -> dict[str, Any]:
    """``prompt_embeds`` (and ``negative_prompt_embeds`` with CFG) for a Stable Diffusion pipeline, one prompt at a
    time, every row padded to the longest row's chunk count with empty-prompt chunks."""
    import torch

    tokenizer, encoder, device = pipe.tokenizer, pipe.text_encoder, pipe._execution_device
    texts = prompts + (negatives if cfg else [])
    with torch.no_grad():
        rows = [_encode_chunks(encoder, chunk_tokens(tokenizer, t), device) for t in texts]
        longest = max(r.shape[1] for r in rows)
        if any(r.shape[1] != longest for r in rows):
            empty = _encode_chunks(encoder, chunk_tokens(tokenizer, ""), device)
            rows = [torch.cat([r, *[empty] * ((longest - r.shape[1]) // empty.shape[1])], dim=1) for r in rows]
    dtype = encoder.dtype
    out = {"prompt_embeds": torch.cat(rows[:len(prompts)]).to(dtype=dtype)}
    if cfg:
        out["negative_prompt_embeds"] = torch.cat(rows[len(prompts):]).to(dtype=dtype)
    return out


def supports_weighting(pipe: Any) -> bool:
    """True for pipelines with one CLIP tokenizer and text encoder (SD 1.x/2.x and their img2img/inpaint)."""
    return (getattr(pipe, "tokenizer", None) is not None and getattr(pipe, "text_encoder", None) is not None
            and getattr(pipe, "text_encoder_2", None) is None)


def plain_text(text: str) -> str:
    """The prompt with the weighting syntax removed (for pipelines that cannot weight): the words only."""
    return "".join(t if w != BREAK_MARK else " " for t, w in parse_attention(text))
