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

import itertools
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from contracts import lora_tag_weights
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

    def apply(self, pipe: Any, refs: list[LoraRef]) -> None:
        """Load the asked-for LoRAs (reusing loaded ones), unload the rest, and set their weights."""
        with self._lock:
            known = available_loras(self.folder)
            missing = [r.name for r in refs if r.name not in known]
            if missing:
                raise UnknownLora(unknown_message(missing, self.folder))
            if refs and not hasattr(pipe, "load_lora_weights"):
                raise UnknownLora(f"{type(pipe).__name__} cannot load LoRAs; remove the <lora:…> tags.")
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
