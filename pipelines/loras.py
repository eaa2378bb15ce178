"""LoRA files from ``<data>/loras``, asked for in the prompt with AUTOMATIC1111's ``<lora:name:weight>`` tags.

``<lora:name>`` means weight 1; ``<lora:name:0.6>`` scales it. The tags are taken out of the prompt before it is
encoded (A1111 replaces them by nothing, so the text around them stays as typed). A LoRA stays loaded (as a
peft adapter) while jobs keep asking for it, and is unloaded by the first job that does not; with none asked for
the pipeline runs without any LoRA layer. A1111's ``<lora:name:te:unet>`` form with separate text-encoder and
UNet weights is read with its first weight for both.

A weight is a finite number between -MAX_LORA_WEIGHT and MAX_LORA_WEIGHT (negative weights, as A1111 allows, push
away from what the LoRA learnt); ``nan``, ``inf`` and huge numbers are refused, since they turn every pixel black. Both
weights of the te:unet form are checked, and so are ``<lyco:…>`` tags (A1111's other name for the same thing), because
a remote A1111 server applies them as they are written: the bound and its check are part of the request's contract
(contracts.py), which every request meets before it reaches a backend.
"""

from __future__ import annotations

import functools
import itertools
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from contracts import excerpt, lora_tag_weights
from pipelines.hashes import addnet_sha256
from pipelines.messages import data_folder, excerpts

LORA_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".bin")
# A1111's extra-network tag (modules/extra_networks.py): <kind:args>, here only kind "lora".
_TAG = re.compile(r"<lora:([^>]+)>", re.IGNORECASE)


class UnknownLora(ValueError):
    """A prompt asks for a LoRA that is not in the folder; the message lists the ones that are."""


@dataclass(frozen=True)
class LoraRef:
    """One ``<lora:name:weight>`` tag: the name as typed and its weight."""

    name: str
    weight: float = 1.0


def _weights(tag: str, args: str) -> list[float]:
    """The tag's te and unet weights as written (empty ones left out); UnknownLora for one out of bounds."""
    try:
        return lora_tag_weights(tag, args)
    except ValueError as err:
        raise UnknownLora(str(err)) from None


def parse_loras(prompt: str) -> tuple[str, list[LoraRef]]:
    """The prompt without its LoRA tags, and the tags in order (a name given twice keeps its last weight)."""
    found: dict[str, LoraRef] = {}
    for match in _TAG.finditer(prompt):
        name = match.group(1).split(":")[0].strip()
        weights = _weights(match.group(0), match.group(1))
        found.pop(name, None)
        found[name] = LoraRef(name, weights[0] if weights else 1.0)
    return _TAG.sub("", prompt), list(found.values())


def strip_loras(prompt: str) -> str:
    """The prompt without its LoRA tags."""
    return _TAG.sub("", prompt)


def lora_key(prompt: str) -> tuple[tuple[str, float], ...]:
    """What must match for two prompts to share a pipeline call: their LoRAs and weights (order-free)."""
    try:
        refs = parse_loras(prompt)[1]
    except UnknownLora:
        return (("", float("nan")),)
    return tuple(sorted((r.name, r.weight) for r in refs))


def available_loras(folder: Path | None) -> dict[str, Path]:
    """LoRA files in `folder` by name (the file stem, as A1111 names them), sorted by name."""
    if folder is None or not Path(folder).is_dir():
        return {}
    files = [p for p in Path(folder).rglob("*") if p.is_file() and p.suffix.lower() in LORA_SUFFIXES]
    return {p.stem: p for p in sorted(files, key=lambda p: p.stem.lower())}


def unknown_message(names: list[str], folder: Path | None) -> str:
    """The message for LoRA names that are not in the folder."""
    known = list(available_loras(folder))
    listing = ", ".join(known) if known else f"none (put .safetensors LoRA files in {data_folder(folder)})"
    return f"unknown LoRA {excerpts(names)} in the prompt; available: {listing}."


def check_prompt(prompt: str, folder: Path | None) -> str:
    """An error message for a prompt's LoRA tags (unknown names, bad weights), or '' when they are fine."""
    try:
        refs = parse_loras(prompt)[1]
    except UnknownLora as err:
        return str(err)
    known = available_loras(folder)
    missing = [r.name for r in refs if r.name not in known]
    return unknown_message(missing, folder) if missing else ""


def lora_hashes(prompt: str, folder: Path | None) -> str:
    """A1111's ``Lora hashes`` value for the prompt: ``name: hash, name: hash`` with the name as typed (colons and
    commas removed) and the first 12 hex digits of the file's addnet SHA-256; '' when the prompt has no LoRA."""
    known = available_loras(folder)
    pairs = []
    for ref in parse_loras(prompt)[1]:
        if ref.name in known:
            alias = ref.name.replace(":", "").replace(",", "")
            pairs.append(f"{alias}: {addnet_sha256(known[ref.name])[:12]}")
    return ", ".join(pairs)


# Text widths that tell the model families apart (the input of a cross-attention's to_k).
TEXT_WIDTH_FAMILIES = {768: "sd15", 1024: "sd2", 2048: "sdxl"}
# A cross-attention to_k's LoRA "down" matrix, in diffusers/peft's, kohya's (A1111's) and old diffusers' key layouts.
_TO_K_DOWN = re.compile(
    r"attn2[._](?:processor[._])?to_k(?:_lora)?[._](?:lora_A|lora_down|lora[._]down|down)[._]weight$")
# A LoRA for SDXL's second text encoder (kohya's lora_te2_, diffusers' text_encoder_2): only SDXL has one.
_SECOND_ENCODER = re.compile(r"^(?:lora_te2_|text_encoder_2\.)")


@dataclass(frozen=True)
class LoraShape:
    """What a LoRA file tells of the model it was made for: the text width its UNet part reads (768 SD 1.x, 1024
    SD 2.x, 2048 SDXL; None without a cross-attention layer) and whether it has a second text encoder (SDXL)."""

    width: int | None
    two_encoders: bool

    def family(self) -> str | None:
        """"sd15", "sd2", "sdxl", or None when the file does not tell."""
        return "sdxl" if self.two_encoders else TEXT_WIDTH_FAMILIES.get(self.width or 0)


def lora_shape(path: Path) -> LoraShape:
    """A LoRA's LoraShape, read from its keys without loading its weights where the format allows."""
    return _lora_shape(Path(path), *_version(Path(path)))


@functools.lru_cache(maxsize=256)
def _lora_shape(path: Path, size: int, mtime: int) -> LoraShape:
    """lora_shape, once per file version (a .pt file is read whole)."""
    if path.suffix.lower() == ".safetensors":
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            keys = list(f.keys())
            key = next((k for k in keys if _TO_K_DOWN.search(k)), None)
            shape = f.get_slice(key).get_shape() if key is not None else None
    else:
        state = _read_state_dict(path)
        keys = list(state)
        key = next((k for k in keys if _TO_K_DOWN.search(k)), None)
        shape = list(state[key].shape) if key is not None else None
    width = int(shape[1]) if shape is not None and len(shape) == 2 else None
    return LoraShape(width, any(_SECOND_ENCODER.search(k) for k in keys))


def family_message(name: str, lora: LoraShape, model_family: str, model_width: int | None) -> str:
    """The message for a LoRA made for another family than the checkpoint's ("sd15", "sd2", "sdxl"), or '' when
    they fit or the file does not tell."""
    from pipelines.checkpoints import FAMILY_LABELS

    theirs = lora.family()
    if theirs is not None and theirs in FAMILY_LABELS and theirs != model_family:
        what = FAMILY_LABELS[theirs]
    elif lora.width is not None and model_width is not None and lora.width != model_width:
        what = f"a model whose text is {lora.width} wide"  # a family this table does not know, by its shape
    else:
        return ""
    return (f"the LoRA {excerpt(name)} is for {what} and the checkpoint is {FAMILY_LABELS[model_family]}; use a "
            "LoRA made for the checkpoint's family, or another checkpoint.")


def _read_state_dict(path: Path) -> dict[str, Any]:
    if path.suffix.lower() == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    import torch

    data = torch.load(str(path), map_location="cpu", weights_only=True)  # never unpickle code from a download
    return data.get("state_dict", data) if isinstance(data, dict) else data


class LoraLoader:
    """Keeps a pipeline's peft adapters in step with what the current job's prompt asks for."""

    def __init__(self, folder: Path | None) -> None:
        self.folder = Path(folder) if folder is not None else None
        self._loaded: dict[str, tuple[str, int, int]] = {}  # name -> (adapter, size, mtime) of the loaded file
        self._lock = threading.Lock()
        self._ids = itertools.count()  # adapter names are never reused within one pipeline

    @property
    def loaded(self) -> list[str]:
        """Names of the LoRAs loaded now."""
        return sorted(self._loaded)

    def forget(self) -> None:
        """The pipeline was dropped: nothing is loaded any more."""
        self._loaded.clear()

    @staticmethod
    def _check_families(pipe: Any, files: dict[str, Path], family: str) -> None:
        """UnknownLora naming both families for a LoRA made for another family than the pipeline's (an SDXL LoRA
        on SD 1.5 would fail deep in diffusers with a shape error, or worse, load part of itself)."""
        width = getattr(getattr(getattr(pipe, "unet", None), "config", None), "cross_attention_dim", None)
        for name, path in files.items():
            if message := family_message(name, lora_shape(path), family, width):
                raise UnknownLora(message)

    def apply(self, pipe: Any, refs: list[LoraRef], family: str = "sd15") -> None:
        """Load the asked-for LoRAs (reusing loaded ones), unload the rest, and set their weights."""
        with self._lock:
            known = available_loras(self.folder)
            missing = [r.name for r in refs if r.name not in known]
            if missing:
                raise UnknownLora(unknown_message(missing, self.folder))
            if refs and not hasattr(pipe, "load_lora_weights"):
                raise UnknownLora(f"{type(pipe).__name__} cannot load LoRAs; remove the <lora:…> tags.")
            self._check_families(pipe, {r.name: known[r.name] for r in refs}, family)
            wanted = {r.name: r for r in refs}
            stale = [n for n, (_, size, mtime) in self._loaded.items()
                     if n not in wanted or (size, mtime) != _version(known.get(n))]
            if stale and len(stale) == len(self._loaded):
                pipe.unload_lora_weights()  # none kept: take the LoRA layers out, so the model runs as built
                self._loaded.clear()
            elif stale:
                pipe.delete_adapters([self._loaded.pop(n)[0] for n in stale])
            for name in wanted:
                if name not in self._loaded:
                    adapter = f"lora{next(self._ids)}_" + re.sub(r"\W", "_", name)
                    pipe.load_lora_weights(_read_state_dict(known[name]), adapter_name=adapter)
                    self._loaded[name] = (adapter, *_version(known[name]))
            if wanted:
                pipe.set_adapters([self._loaded[n][0] for n in wanted], adapter_weights=[r.weight for r in refs])


def _version(path: Path | None) -> tuple[int, int]:
    if path is None:
        return (-1, -1)
    stat = path.stat()
    return stat.st_size, stat.st_mtime_ns
