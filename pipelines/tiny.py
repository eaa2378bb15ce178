"""Tiny random-weight models in Hugging Face format, so the real ``from_pretrained`` code runs offline.

The models use the same classes as the real defaults (Stable Diffusion, DeepSeek-R1-Distill-Qwen and its
GPTQ 4-bit copy) but are a few MB, build in seconds on a CPU, and make noise. Each build writes into a
temporary sibling folder and is moved into place with one ``os.replace``, so a half-built model is never
visible at its destination; a finished model carries a marker file and is returned as is next time.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from pipelines.loading import exclusive_load, no_report

# Torch, diffusers and transformers are imported inside the builders: importing this module must stay
# cheap, because settings and the backend registry import it even when a tiny model is already on disk.

MARKER_NAME = "atelier-tiny.json"
# Bump when a recipe below changes, so models built by an older recipe are rebuilt instead of reused.
RECIPE_VERSION = 1
SEED = 0
OPEN_CLIP_PAD = "!"  # OpenCLIP pads with id 0, which is "!" in CLIP's vocabulary (SDXL's tokenizer_2 does the same)

# DeepSeek-R1 special tokens, spelled as in DeepSeek's tokenizer: full-width bars (U+FF5C) and
# U+2581 "lower one eighth block" in place of spaces.
R1_BOS = "<\uff5cbegin\u2581of\u2581sentence\uff5c>"
R1_EOS = "<\uff5cend\u2581of\u2581sentence\uff5c>"
R1_USER = "<\uff5cUser\uff5c>"
R1_ASSISTANT = "<\uff5cAssistant\uff5c>"
THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"

# The chat template of deepseek-ai/DeepSeek-R1-Distill-Qwen-* (tokenizer_config.json, revision that
# ends the prompt with "<think>\n" and strips earlier reasoning), copied verbatim so the tiny model
# renders prompts byte for byte like the real one.
R1_CHAT_TEMPLATE = (
    "{% if not add_generation_prompt is defined %}{% set add_generation_prompt = false %}{% endif %}"
    "{% set ns = namespace(is_first=false, is_tool=false, is_output_first=true, system_prompt='') %}"
    "{%- for message in messages %}{%- if message['role'] == 'system' %}"
    "{% set ns.system_prompt = message['content'] %}{%- endif %}{%- endfor %}"
    "{{bos_token}}{{ns.system_prompt}}"
    "{%- for message in messages %}"
    "{%- if message['role'] == 'user' %}{%- set ns.is_tool = false -%}"
    "{{'<\uff5cUser\uff5c>' + message['content']}}{%- endif %}"
    "{%- if message['role'] == 'assistant' and message['content'] is none %}{%- set ns.is_tool = false -%}"
    "{%- for tool in message['tool_calls']%}{%- if not ns.is_first %}"
    "{{'<\uff5cAssistant\uff5c><\uff5ctool\u2581calls\u2581begin\uff5c><\uff5ctool\u2581call\u2581begin\uff5c>'"
    " + tool['type'] + '<\uff5ctool\u2581sep\uff5c>' + tool['function']['name'] + '\\n' + '```json' + '\\n'"
    " + tool['function']['arguments'] + '\\n' + '```' + '<\uff5ctool\u2581call\u2581end\uff5c>'}}"
    "{%- set ns.is_first = true -%}{%- else %}"
    "{{'\\n' + '<\uff5ctool\u2581call\u2581begin\uff5c>' + tool['type'] + '<\uff5ctool\u2581sep\uff5c>'"
    " + tool['function']['name'] + '\\n' + '```json' + '\\n' + tool['function']['arguments'] + '\\n'"
    " + '```' + '<\uff5ctool\u2581call\u2581end\uff5c>'}}"
    "{{'<\uff5ctool\u2581calls\u2581end\uff5c><\uff5cend\u2581of\u2581sentence\uff5c>'}}"
    "{%- endif %}{%- endfor %}{%- endif %}"
    "{%- if message['role'] == 'assistant' and message['content'] is not none %}{%- if ns.is_tool %}"
    "{{'<\uff5ctool\u2581outputs\u2581end\uff5c>' + message['content'] + '<\uff5cend\u2581of\u2581sentence\uff5c>'}}"
    "{%- set ns.is_tool = false -%}{%- else %}{% set content = message['content'] %}"
    "{% if '</think>' in content %}{% set content = content.split('</think>')[-1] %}{% endif %}"
    "{{'<\uff5cAssistant\uff5c>' + content + '<\uff5cend\u2581of\u2581sentence\uff5c>'}}{%- endif %}{%- endif %}"
    "{%- if message['role'] == 'tool' %}{%- set ns.is_tool = true -%}{%- if ns.is_output_first %}"
    "{{'<\uff5ctool\u2581outputs\u2581begin\uff5c><\uff5ctool\u2581output\u2581begin\uff5c>' + message['content']"
    " + '<\uff5ctool\u2581output\u2581end\uff5c>'}}{%- set ns.is_output_first = false %}{%- else %}"
    "{{'\\n<\uff5ctool\u2581output\u2581begin\uff5c>' + message['content']"
    " + '<\uff5ctool\u2581output\u2581end\uff5c>'}}"
    "{%- endif %}{%- endif %}{%- endfor -%}"
    "{% if ns.is_tool %}{{'<\uff5ctool\u2581outputs\u2581end\uff5c>'}}{% endif %}"
    "{% if add_generation_prompt and not ns.is_tool %}{{'<\uff5cAssistant\uff5c><think>\\n'}}{% endif %}"
)

# Words that get whole-word merges in the tiny CLIP vocabulary, so typical prompts tokenize into a few
# real ids instead of single letters; anything else still tokenizes (every byte is in the vocabulary).
_CLIP_WORDS = (  # noqa: SIM905 - a word list reads better as prose than as 150 literals
    "a an the of in on at with and or by for to from is are this that it its photo picture image "
    "painting drawing sketch portrait landscape cat dog horse bird fish astronaut riding mars moon sun "
    "sky cloud clouds sea ocean river lake mountain mountains forest tree trees flower flowers city "
    "street house castle car boat man woman girl boy child face eyes hair red green blue yellow black "
    "white orange purple pink gold silver dark light bright night day morning sunset sunrise winter "
    "summer snow rain fire water stone glass wood metal robot dragon space planet star stars galaxy "
    "beautiful detailed high quality realistic style art digital oil watercolor cinematic lighting "
    "render 4k 8k hd sharp focus intricate elegant epic fantasy futuristic ancient old new small big "
    "tiny large standing sitting walking flying running wearing holding looking close up view wide "
    "shot by trending artstation concept studio ghibli van gogh"
).split()

# A small English corpus for training the tiny R1 byte-level BPE; its only job is giving the
# vocabulary ordinary English subwords, so chat text encodes into plausible, short id sequences.
_R1_CORPUS = """
The quick brown fox jumps over the lazy dog. A journey of a thousand miles begins with a single step.
Please reason step by step, and put your final answer within a box. Let me think about this problem.
First, I need to understand what the question is asking. Then I will check each part of the answer.
Hello! How can I help you today? I am an assistant that answers questions, writes stories and code.
What is the capital of France? The capital of France is Paris. What is two plus two? It is four.
Numbers: 0 1 2 3 4 5 6 7 8 9 10 11 12 100 1000 2024 2025 3.14 -1 +1 = * / ( ) [ ] { } < > " ' ` ~
Write a short poem about the sea. The sea is wide and deep and blue, the waves come in and go out too.
Explain how a computer works. A computer reads instructions from memory, runs them on a processor,
and writes the results back. Programs are written in languages such as Python, C, Rust and JavaScript.
def main():
    print("hello world")
    return 0
for i in range(10):
    if i % 2 == 0:
        continue
Stable Diffusion turns a text prompt into an image. The model starts from noise and removes it step by
step. Reasoning models think before they answer: they write their thoughts, then give a final answer.
Wait, let me double check. Actually, that is not right. Hmm, so the answer should be the other one.
Therefore, the answer is correct. In summary, we found the result by breaking the problem into parts.
Science, history, music, art, mathematics, physics, chemistry, biology, language and literature are
all subjects people study at school and university. Teachers, students, doctors, engineers, writers.
Monday Tuesday Wednesday Thursday Friday Saturday Sunday. January February March April May June July
August September October November December. Spring, summer, autumn and winter are the four seasons.
"""


def ensure_tiny_sd(dest: Path, report: Callable[[str], None] = no_report) -> Path:
    """Build (once) a tiny random-weight Stable Diffusion pipeline at ``dest`` and return ``dest``."""
    return _ensure(Path(dest), "sd", _build_sd, report)


def ensure_tiny_sd_inpaint(dest: Path, report: Callable[[str], None] = no_report) -> Path:
    """Build (once) a tiny random-weight Stable Diffusion inpainting pipeline (9-channel UNet) at ``dest``."""
    return _ensure(Path(dest), "sd-inpaint", lambda out: _build_sd(out, inpainting=True), report)


def ensure_tiny_sdxl(dest: Path, report: Callable[[str], None] = no_report) -> Path:
    """Build (once) a tiny random-weight Stable Diffusion XL pipeline (two text encoders, size-conditioned UNet)."""
    return _ensure(Path(dest), "sdxl", _build_sdxl, report)


def ensure_tiny_sdxl_inpaint(dest: Path, report: Callable[[str], None] = no_report) -> Path:
    """Build (once) a tiny random-weight SDXL inpainting pipeline (9-channel UNet) at ``dest``."""
    return _ensure(Path(dest), "sdxl-inpaint", lambda out: _build_sdxl(out, inpainting=True), report)


def ensure_tiny_controlnet(dest: Path, base: Path, report: Callable[[str], None] = no_report) -> Path:
    """Build (once) a tiny ControlNet for the tiny SD or SDXL pipeline at ``base`` (``ControlNetModel.from_unet``)."""
    return _ensure(Path(dest), "controlnet", lambda out: _build_controlnet(Path(base), out), report)


def ensure_tiny_r1(dest: Path, report: Callable[[str], None] = no_report) -> Path:
    """Build (once) a tiny random-weight DeepSeek-R1-like causal LM with its tokenizer at ``dest``."""
    return _ensure(Path(dest), "r1", _build_r1, report)


def ensure_tiny_r1_gptq(dest: Path, source: Path | None = None, report: Callable[[str], None] = no_report) -> Path:
    """Build (once) a 4-bit GPTQ copy of the tiny R1 (``source``, built if not given) at ``dest``."""
    dest = Path(dest)
    if _is_built(dest, "r1-gptq"):
        return dest
    src = ensure_tiny_r1(Path(source) if source is not None else dest.parent / "tiny-r1", report)
    return _ensure(dest, "r1-gptq", lambda out: _build_r1_gptq(src, out), report)


# --- atomic, idempotent builds ----------------------------------------------------------------------


def _is_built(dest: Path, kind: str) -> bool:
    """Whether ``dest`` holds a finished build of ``kind`` made by the current recipe."""
    try:
        marker = json.loads((dest / MARKER_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(marker, dict) and marker.get("kind") == kind and marker.get("version") == RECIPE_VERSION


def _ensure(dest: Path, kind: str, build: Callable[[Path], None], report: Callable[[str], None] = no_report) -> Path:
    """Run ``build`` into a temporary sibling folder and move it to ``dest`` in one step, unless built."""
    if _is_built(dest, kind):
        return dest
    # Building constructs models, which must not overlap another model's load (see exclusive_load): a tiny
    # R1 built while the image pipeline loaded got meta-device weights and could not be saved.
    with exclusive_load(f"the tiny {kind} model", report):
        return _build_once(dest, kind, build)


def _build_once(dest: Path, kind: str, build: Callable[[Path], None]) -> Path:
    if _is_built(dest, kind):  # built by another thread while this one waited for the lock
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    # A unique sibling (same file system, so os.replace is a rename) that never collides with another
    # process or thread building the same model; mkdir (not mkdtemp) keeps the umask's permissions.
    tmp = dest.with_name(f"{dest.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    tmp.mkdir()
    try:
        build(tmp)
        marker = {"kind": kind, "version": RECIPE_VERSION, "random_weights": True}
        (tmp / MARKER_NAME).write_text(json.dumps(marker, indent=2) + "\n", encoding="utf-8")
        if dest.exists() and not _is_built(dest, kind):
            _discard(dest)
        try:
            os.replace(tmp, dest)
        except OSError:
            # Another builder moved its finished copy in first (rename onto a non-empty folder fails);
            # that copy is as good as ours. Anything else is a real error.
            if not _is_built(dest, kind):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def _discard(path: Path) -> None:
    """Remove a stale build: rename it away first, so ``path`` never shows a half-deleted model."""
    trash = Path(tempfile.mkdtemp(prefix=f"{path.name}.old-{os.getpid()}-", dir=path.parent))
    with contextlib.suppress(FileNotFoundError):  # someone else removed or replaced it meanwhile
        os.replace(path, trash / path.name)
    shutil.rmtree(trash, ignore_errors=True)


def _write_readme(out: Path, title: str, body: str) -> None:
    """Write the README that labels a folder as a random-weight test model."""
    text = (
        f"# {title}\n\n"
        "**Random weights: this is a test model and its output is noise.** It was built offline by\n"
        "`pipelines/tiny.py` (Atelier) so tests and `--profile tiny` can exercise the real\n"
        "`from_pretrained` loading code without downloading anything. Do not use it for real work.\n\n"
        f"{body}\n"
    )
    (out / "README.md").write_text(text, encoding="utf-8")


# --- tiny Stable Diffusion --------------------------------------------------------------------------


def _clip_vocab_and_merges() -> tuple[dict[str, int], list[str]]:
    """A small CLIP-style byte-level vocabulary and merge list covering common prompt words."""
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    # Like the real CLIP vocabulary: every byte, then every byte as a word end, then merged pieces,
    # then the two special tokens; the byte entries guarantee that no input ever maps to unk.
    byte_chars = list(bytes_to_unicode().values())
    tokens: list[str] = byte_chars + [c + "</w>" for c in byte_chars]
    merges: list[str] = []
    known = set(tokens)
    for word in _CLIP_WORDS:
        # Merge left to right: "c a" -> "ca", then "ca t</w>" -> "cat</w>"; each result is a new token.
        symbols = [*word[:-1], word[-1] + "</w>"]
        piece = symbols[0]
        for symbol in symbols[1:]:
            merged = piece + symbol
            if merged not in known:
                merges.append(f"{piece} {symbol}")
                tokens.append(merged)
                known.add(merged)
            piece = merged
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    return {token: index for index, token in enumerate(tokens)}, merges


def _write_clip_vocab_files(folder: Path) -> tuple[Path, Path]:
    """Write ``vocab.json`` and ``merges.txt`` in the format of openai/clip-vit-large-patch14."""
    vocab, merges = _clip_vocab_and_merges()
    folder.mkdir(parents=True, exist_ok=True)
    vocab_path = folder / "vocab.json"
    merges_path = folder / "merges.txt"
    vocab_path.write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    # The "#version" header is part of the format: loaders skip the first line of merges.txt.
    merges_path.write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    return vocab_path, merges_path


def _tiny_clip_tokenizer(folder: Path) -> object:
    """A ``CLIPTokenizer`` built from vocab files written into ``folder``."""
    from transformers import CLIPTokenizer

    vocab_path, merges_path = _write_clip_vocab_files(folder)
    # transformers 5 takes these as ``vocab=``/``merges=``; the old ``vocab_file=``/``merges_file=``
    # keywords are swallowed by **kwargs and silently give an empty vocabulary where every word is unk.
    return CLIPTokenizer(vocab=str(vocab_path), merges=str(merges_path), model_max_length=77)


def _build_sd(out: Path, inpainting: bool = False) -> None:
    """Write a tiny ``StableDiffusionPipeline`` into ``out``; with ``inpainting``, a ``StableDiffusionInpaintPipeline``
    whose UNet takes 9 channels (latents, mask, masked-picture latents) like SD 1.5's inpainting checkpoints."""
    from diffusers import StableDiffusionInpaintPipeline, StableDiffusionPipeline

    # The vocab files go where the pipeline saves its tokenizer, so the folder also carries the
    # vocab.json/merges.txt pair that real SD repositories ship (tokenizer.json is added next to them).
    tokenizer = _tiny_clip_tokenizer(out / "tokenizer")
    pipeline_cls = StableDiffusionInpaintPipeline if inpainting else StableDiffusionPipeline
    pipe = pipeline_cls(
        unet=_tiny_unet(inpainting),
        vae=_tiny_vae(),
        text_encoder=_tiny_clip_text_encoder(tokenizer),
        tokenizer=tokenizer,
        scheduler=_sd15_scheduler(),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(out, safe_serialization=True)
    _write_readme(
        out,
        "Atelier tiny Stable Diffusion" + (" inpainting" if inpainting else ""),
        f"A `{pipeline_cls.__name__}` (diffusers) with a tiny {'9-channel ' if inpainting else ''}UNet, a four-block\n"
        "VAE (scale factor 8), a two-layer CLIP text encoder and a small CLIP tokenizer. Load it with\n"
        "`AutoPipelineForText2Image.from_pretrained(path)`.",
    )


# Each component is built right after seeding, so its weights do not depend on how the others were built; the UNet,
# the VAE and the text encoder are built in this order, as they always were (the same seed gives the same model).
def _tiny_unet(inpainting: bool) -> Any:
    """Two blocks, cross-attention of width 32; 9 input channels for an inpainting model."""
    import torch
    from diffusers import UNet2DConditionModel

    torch.manual_seed(SEED)
    return UNet2DConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=1,
        sample_size=32,
        in_channels=9 if inpainting else 4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=4,
    )


def _tiny_vae() -> Any:
    """Four blocks, like the real VAE, so the latent is 1/8 of the image side (vae_scale_factor 8); with fewer
    blocks a 512x512 request would run the UNet on far larger latents and crawl."""
    import torch
    from diffusers import AutoencoderKL

    torch.manual_seed(SEED)
    return AutoencoderKL(
        block_out_channels=(32, 32, 32, 32),
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        latent_channels=4,
        layers_per_block=1,
        sample_size=256,
        scaling_factor=0.18215,
    )


def _tiny_clip_text_encoder(tokenizer: Any) -> Any:
    """A two-layer CLIP text encoder of width 32 over the tokenizer's vocabulary."""
    import torch
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(SEED)
    return CLIPTextModel(CLIPTextConfig(
        hidden_size=32,
        intermediate_size=37,
        num_hidden_layers=2,
        num_attention_heads=4,
        projection_dim=32,
        vocab_size=len(tokenizer),
        max_position_embeddings=77,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    ))


def _sd15_scheduler() -> Any:
    """Stable Diffusion 1.x's scheduler settings, as in its scheduler_config.json."""
    from diffusers import PNDMScheduler

    return PNDMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        num_train_timesteps=1000,
        steps_offset=1,
        skip_prk_steps=True,
        set_alpha_to_one=False,
    )


# --- tiny Stable Diffusion XL -----------------------------------------------------------------------

# Widths of the tiny SDXL's text encoders: different, like CLIP ViT-L (768) and OpenCLIP ViT-bigG (1280), because
# diffusers' single-file loader tells the two apart by their position-embedding width.
SDXL_CLIP_L_WIDTH = 32
SDXL_CLIP_G_WIDTH = 64
SDXL_POOLED_WIDTH = 48  # OpenCLIP-G's projection (1280 in the real model); unlike its width, so a transposed
# text_projection could not load silently
SDXL_TIME_EMBED_DIM = 8  # per size-conditioning number (256 in the real model); six numbers: two sizes and a crop


def _tiny_text_config(tokenizer: Any, width: int, projection: int, act: str) -> Any:
    from transformers import CLIPTextConfig

    return CLIPTextConfig(hidden_size=width, intermediate_size=width * 2, num_hidden_layers=2, num_attention_heads=4,
                          projection_dim=projection, hidden_act=act, vocab_size=len(tokenizer),
                          max_position_embeddings=77, bos_token_id=tokenizer.bos_token_id,
                          eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)


def _tiny_sdxl_unet(in_channels: int) -> Any:
    """A two-level UNet wired like SDXL's: the text_time added embedding, linear projections, several
    transformer layers per block (so the single-file key mapping of each is exercised)."""
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        sample_size=32, in_channels=in_channels, out_channels=4, layers_per_block=1,
        block_out_channels=(32, 64), down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), transformer_layers_per_block=(1, 2),
        attention_head_dim=(2, 4), cross_attention_dim=SDXL_CLIP_L_WIDTH + SDXL_CLIP_G_WIDTH,
        use_linear_projection=True, addition_embed_type="text_time", addition_time_embed_dim=SDXL_TIME_EMBED_DIM,
        projection_class_embeddings_input_dim=SDXL_POOLED_WIDTH + 6 * SDXL_TIME_EMBED_DIM,
    )


def _build_sdxl(out: Path, inpainting: bool = False) -> None:
    """Write a tiny ``StableDiffusionXLPipeline`` (or, with ``inpainting``, ``StableDiffusionXLInpaintPipeline``)."""
    import torch
    from diffusers import (
        AutoencoderKL,
        EulerDiscreteScheduler,
        StableDiffusionXLInpaintPipeline,
        StableDiffusionXLPipeline,
    )
    from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    tokenizer = _tiny_clip_tokenizer(out / "tokenizer")
    # SDXL's second tokenizer is the same BPE padded with "!" (id 0), as OpenCLIP pads, instead of the end token.
    vocab_path, merges_path = _write_clip_vocab_files(out / "tokenizer_2")
    tokenizer_2 = CLIPTokenizer(vocab=str(vocab_path), merges=str(merges_path), model_max_length=77,
                                pad_token=OPEN_CLIP_PAD)
    torch.manual_seed(SEED)
    unet = _tiny_sdxl_unet(9 if inpainting else 4)
    torch.manual_seed(SEED)
    # SDXL's VAE: the SD layout with another scaling factor, and force_upcast (its fp16 decode overflows).
    vae = AutoencoderKL(block_out_channels=(32, 32, 32, 32), down_block_types=("DownEncoderBlock2D",) * 4,
                        up_block_types=("UpDecoderBlock2D",) * 4, latent_channels=4, layers_per_block=1,
                        sample_size=256, scaling_factor=0.13025, force_upcast=True)
    torch.manual_seed(SEED)
    text_encoder = CLIPTextModel(_tiny_text_config(tokenizer, SDXL_CLIP_L_WIDTH, SDXL_CLIP_L_WIDTH, "quick_gelu"))
    torch.manual_seed(SEED + 1)
    text_encoder_2 = CLIPTextModelWithProjection(
        _tiny_text_config(tokenizer_2, SDXL_CLIP_G_WIDTH, SDXL_POOLED_WIDTH, "gelu"))
    # SDXL base's scheduler_config.json.
    scheduler = EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                       num_train_timesteps=1000, steps_offset=1, timestep_spacing="leading",
                                       interpolation_type="linear", prediction_type="epsilon")
    components = dict(vae=vae, text_encoder=text_encoder, text_encoder_2=text_encoder_2, tokenizer=tokenizer,
                      tokenizer_2=tokenizer_2, unet=unet, scheduler=scheduler, force_zeros_for_empty_prompt=True,
                      add_watermarker=False)
    if inpainting:  # like diffusers/stable-diffusion-xl-1.0-inpainting-0.1
        pipe: Any = StableDiffusionXLInpaintPipeline(**components, requires_aesthetics_score=False)
    else:
        pipe = StableDiffusionXLPipeline(**components)
    pipe.save_pretrained(out, safe_serialization=True)
    _write_readme(
        out, "Atelier tiny Stable Diffusion XL" + (" inpainting" if inpainting else ""),
        f"A `{type(pipe).__name__}` (diffusers) with a tiny {'9-channel ' if inpainting else ''}UNet conditioned on\n"
        "text, a pooled text embedding and image sizes (`text_time`), two tiny text encoders (CLIP-L-like and\n"
        "OpenCLIP-G-like with a projection), a four-block VAE and small CLIP tokenizers.",
    )


# --- tiny ControlNet -----------------------------------------------------------------------------------


def _build_controlnet(base: Path, out: Path) -> None:
    """Write a ControlNet made from ``base``'s UNet, its zero-initialised output convolutions given random weights
    (a fresh ControlNet adds exactly nothing, which would hide a ControlNet that is never applied)."""
    import torch
    from diffusers import ControlNetModel, UNet2DConditionModel

    unet = UNet2DConditionModel.from_pretrained(str(base), subfolder="unet")
    if unet.config.in_channels != 4:
        raise ValueError(f"a ControlNet is built from a 4-channel UNet; {base} has {unet.config.in_channels}")
    torch.manual_seed(SEED)
    # The conditioning embedding keeps diffusers' default widths but at the small end: it only has to bring the
    # control image down to the latent size (three stride-2 convolutions for the VAE's factor 8).
    controlnet = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(8, 16, 16, 32))
    generator = torch.Generator().manual_seed(SEED)
    with torch.no_grad():
        zero_convs = [*controlnet.controlnet_down_blocks, controlnet.controlnet_mid_block,
                      controlnet.controlnet_cond_embedding.conv_out]
        for conv in zero_convs:
            conv.weight.copy_(torch.randn(conv.weight.shape, generator=generator) * 0.5)
            conv.bias.copy_(torch.randn(conv.bias.shape, generator=generator) * 0.1)
    controlnet.save_pretrained(out, safe_serialization=True)
    family = "SDXL" if unet.config.addition_embed_type == "text_time" else "Stable Diffusion 1.x"
    _write_readme(
        out, f"Atelier tiny ControlNet ({family})",
        "A `ControlNetModel` (diffusers) made with `ControlNetModel.from_unet` from the tiny model's UNet; its\n"
        "zero convolutions carry random weights so that the control image visibly changes the output.",
    )


# --- tiny DeepSeek-R1 ---------------------------------------------------------------------------------


def _tiny_r1_tokenizer() -> object:
    """A byte-level BPE trained in process, dressed as the DeepSeek-R1-Distill tokenizer."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=1000,
        special_tokens=[R1_BOS, R1_EOS, R1_USER, R1_ASSISTANT],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(_R1_CORPUS.splitlines(), trainer=trainer)
    # Like the real R1-Distill tokenizer, plain encode() starts with bos; apply_chat_template renders
    # bos itself and encodes with add_special_tokens=False, so chat prompts carry exactly one.
    bos_id = backend.token_to_id(R1_BOS)
    backend.post_processor = processors.TemplateProcessing(
        single=f"{R1_BOS} $A", pair=f"{R1_BOS} $A {R1_BOS} $B", special_tokens=[(R1_BOS, bos_id)]
    )
    # <think> and </think> are ordinary added tokens in R1 (not special), so they stay whole when
    # encoding and survive decode(skip_special_tokens=True), which the reasoning splitter relies on.
    backend.add_tokens([AddedToken(t, special=False, normalized=False) for t in (THINK_OPEN, THINK_CLOSE)])
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=R1_BOS,
        eos_token=R1_EOS,
        pad_token=R1_EOS,
        extra_special_tokens=[R1_USER, R1_ASSISTANT],
        chat_template=R1_CHAT_TEMPLATE,
        model_max_length=2048,
        clean_up_tokenization_spaces=False,
    )


def _mirror_r1_tokenizer_config(out: Path) -> None:
    """Make ``tokenizer_config.json`` declare what DeepSeek-R1-Distill-Qwen's does."""
    path = out / "tokenizer_config.json"
    config = json.loads(path.read_text(encoding="utf-8"))
    # The real file names LlamaTokenizerFast, which AutoTokenizer (transformers 5) resolves for a qwen2
    # model to Qwen2Tokenizer over tokenizer.json; declaring the same makes loading take the same path.
    # An explicit null unk_token keeps Qwen2Tokenizer from adding its default "<|endoftext|>" token.
    config.update(
        tokenizer_class="LlamaTokenizerFast", unk_token=None, add_bos_token=True, add_eos_token=False
    )
    path.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _build_r1(out: Path) -> None:
    """Write a tiny ``Qwen2ForCausalLM`` with an R1 tokenizer and generation config into ``out``."""
    import torch
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    tokenizer = _tiny_r1_tokenizer()
    # Padding the embedding rows to a multiple of 64 is what real checkpoints do; extra rows are unused.
    vocab_size = -(-len(tokenizer) // 64) * 64
    config = Qwen2Config(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=vocab_size,
        max_position_embeddings=2048,
        tie_word_embeddings=False,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(SEED)
    model = Qwen2ForCausalLM(config)
    # DeepSeek's recommended sampling for R1, as in the real generation_config.json.
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        do_sample=True,
        temperature=0.6,
        top_p=0.95,
    )
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    _mirror_r1_tokenizer_config(out)
    _write_readme(
        out,
        "Atelier tiny DeepSeek-R1",
        "A two-layer `Qwen2ForCausalLM` shaped like DeepSeek-R1-Distill-Qwen, with a ~1000-token byte-level\n"
        "BPE tokenizer carrying R1's special tokens and chat template (the prompt ends with `<think>\\n`).\n"
        "Load it with `AutoModelForCausalLM.from_pretrained(path)` and `AutoTokenizer.from_pretrained(path)`.",
    )


# --- tiny DeepSeek-R1, GPTQ 4-bit ---------------------------------------------------------------------


# Calibration text for GPTQ: a few R1-shaped chat strings are plenty for two 64-wide layers.
_GPTQ_CALIBRATION = (
    f"{R1_BOS}{R1_USER}What is two plus two?{R1_ASSISTANT}{THINK_OPEN}\nLet me think. Two plus two is four."
    f"\n{THINK_CLOSE}\n\nThe answer is 4.{R1_EOS}",
    f"{R1_BOS}{R1_USER}Write a short poem about the sea.{R1_ASSISTANT}{THINK_OPEN}\nThe sea is wide and"
    f" deep.\n{THINK_CLOSE}\n\nThe waves come in and go out too.{R1_EOS}",
    "The quick brown fox jumps over the lazy dog. A journey of a thousand miles begins with a single step.",
    "Explain how a computer works. A computer reads instructions from memory and runs them on a processor.",
)
# Group size 32 divides the 64-wide hidden and 128-wide MLP layers (the real model uses 128, which
# would leave a 64-wide layer with one partial group).
GPTQ_GROUP_SIZE = 32


@contextlib.contextmanager
def _env(**values: str) -> Iterator[None]:
    """Set environment variables for the duration of a block, then restore them."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, old in saved.items():
            if old is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = old


def _build_r1_gptq(source: Path, out: Path) -> None:
    """Quantize the tiny R1 at ``source`` to 4-bit GPTQ on the CPU and write it into ``out``."""
    import torch
    from gptqmodel.utils.model import hf_convert_gptq_v2_to_v1_format
    from transformers import AutoModelForCausalLM, AutoTokenizer, GPTQConfig

    tokenizer = AutoTokenizer.from_pretrained(source)
    config = GPTQConfig(
        bits=4,
        group_size=GPTQ_GROUP_SIZE,
        sym=True,
        desc_act=False,
        dataset=list(_GPTQ_CALIBRATION),
        tokenizer=tokenizer,
    )
    # gptqmodel packs the weights with a C++ extension that it JIT-compiles on first use (about 30 s
    # and a compiler); for layers this small its pure-PyTorch packer is instant and needs neither.
    with _env(GPTQMODEL_DISABLE_PACK_EXT="1"):
        torch.manual_seed(SEED)
        # fp16 like real GPTQ checkpoints; quantizing from fp32 would record fp32 as the model dtype. No
        # device_map: the quantizer then places everything on the CPU itself, and save_pretrained does not
        # mistake an explicit {"": "cpu"} map for offloaded weights (a spurious warning and code path).
        model = AutoModelForCausalLM.from_pretrained(source, quantization_config=config, dtype=torch.float16)
    # gptqmodel quantizes into its internal gptq_v2 layout and transformers saves that as is; published
    # checkpoints (and the real R1 GPTQ default) are v1 ("gptq"), so convert like optimum's own save()
    # does, and loading the tiny model takes the same v1 -> v2 conversion path as loading the real one.
    quantizer = model.hf_quantizer.optimum_quantizer
    model, converted = hf_convert_gptq_v2_to_v1_format(
        model, quantizer.sym, quantizer.bits, quantizer.quant_linear, quantizer.format, quantizer.meta
    )
    qconfig = model.config.quantization_config
    if converted:
        qconfig.format = "gptq"
    # The calibration strings are not needed to load the model; keep config.json short.
    qconfig.dataset = None
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    # Keep the tokenizer_config.json exactly as the source wrote it (save_pretrained rewrites it).
    shutil.copyfile(source / "tokenizer_config.json", out / "tokenizer_config.json")
    _write_readme(
        out,
        "Atelier tiny DeepSeek-R1, GPTQ 4-bit",
        f"The tiny R1 quantized to 4-bit GPTQ (group size {GPTQ_GROUP_SIZE}, symmetric, v1 checkpoint format)\n"
        "on the CPU with transformers' `GPTQConfig` (optimum + gptqmodel). Load it with\n"
        "`AutoModelForCausalLM.from_pretrained(path, device_map=...)`; transformers picks the gptqmodel kernel.",
    )
