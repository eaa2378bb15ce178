"""What the data folders hold: checkpoints, VAEs, LoRAs, upscalers and ControlNets, by the names users and the API
see, and which model family each checkpoint is (a LoRA or ControlNet of another family is refused before queueing)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from contracts import excerpt
from pipelines.checkpoints import CHECKPOINT_SUFFIXES, VAE_SUFFIXES, is_diffusers_folder, model_family, model_hash
from pipelines.controlnet import available_controlnets, controlnet_family
from pipelines.hashes import sha256
from pipelines.loras import available_loras, check_prompt, family_message, lora_hashes, lora_shape, parse_loras
from pipelines.messages import data_folder

UPSCALER_SUFFIXES = (".pth", ".pt", ".safetensors", ".ckpt")
# A1111 titles a checkpoint "name.safetensors [hash]"; scripts written for its API send that title back.
_TITLE_HASH = re.compile(r"\s*\[[0-9a-fA-F]{8,64}\]$")


def _hidden(path: Path) -> bool:
    """Dot files and the tiny builder's temporary folders (``name.tmp-…``, ``name.old-…``) are not choices."""
    return path.name.startswith(".") or ".tmp-" in path.name or ".old-" in path.name


class Catalog:
    """Lists and resolves the files under the models, loras, vae and upscalers folders (read on every call, so
    files copied in while the server runs show up without a restart)."""

    def __init__(self, models_dir: Path, loras_dir: Path, vae_dir: Path, upscalers_dir: Path,
                 controlnet_dir: Path | None = None, default_model: str = "", builtin: tuple[str, ...] = ()) -> None:
        self.models_dir = Path(models_dir)
        self.loras_dir = Path(loras_dir)
        self.vae_dir = Path(vae_dir)
        self.upscalers_dir = Path(upscalers_dir)
        self.controlnet_dir = Path(controlnet_dir) if controlnet_dir is not None else None
        self.default_model = default_model  # the configured checkpoint (a path or hub id): what "" runs
        # Checkpoint folders under models_dir that are listed before they exist: the tiny profile builds them when a
        # job first asks for one (services/container.py).
        self.builtin = builtin

    def _model_paths(self) -> dict[str, Path]:
        found: dict[str, Path] = {}
        if self.models_dir.is_dir():
            for path in sorted(self.models_dir.iterdir(), key=lambda p: p.name.lower()):
                if _hidden(path):
                    continue
                if (path.is_file() and path.suffix.lower() in CHECKPOINT_SUFFIXES) or is_diffusers_folder(path):
                    found[path.name] = path
        for name in self.builtin:
            found.setdefault(name, self.models_dir / name)
        return found

    def _vae_paths(self) -> dict[str, Path]:
        found: dict[str, Path] = {}
        if self.vae_dir.is_dir():
            for path in sorted(self.vae_dir.iterdir(), key=lambda p: p.name.lower()):
                if _hidden(path):
                    continue
                folder = path.is_dir() and any((path / sub / "config.json").is_file() for sub in ("", "vae"))
                if folder or (path.is_file() and path.suffix.lower() in VAE_SUFFIXES):
                    found[path.name] = path
        return found

    def models(self) -> list[str]:
        """Checkpoint names: single files with their extension, diffusers folders by folder name."""
        return list(self._model_paths())

    def vaes(self) -> list[str]:
        """VAE names: files with their extension, diffusers VAE folders by folder name."""
        return list(self._vae_paths())

    def loras(self) -> list[str]:
        """LoRA names as written in ``<lora:name:weight>``: the file stems."""
        return list(available_loras(self.loras_dir))

    def upscalers(self) -> list[str]:
        """Upscaler model names as given in ``hr_upscaler``: the file stems."""
        if not self.upscalers_dir.is_dir():
            return []
        files = [p for p in self.upscalers_dir.iterdir()
                 if p.is_file() and not _hidden(p) and p.suffix.lower() in UPSCALER_SUFFIXES]
        return sorted((p.stem for p in files), key=str.lower)

    def controlnets(self) -> dict[str, Path]:
        """ControlNet models by the name sd-webui-controlnet lists, "name [hash]"."""
        return available_controlnets(self.controlnet_dir)

    def family(self, model: str) -> str | None:
        """The family ("sd15", "sd2", "sdxl") of the checkpoint a job names ("" = the configured one); None when it
        cannot be told without loading it (a .ckpt, a hub id, a model not built yet, an unknown name)."""
        try:
            path = self.resolve_model(model) if model else Path(self.default_model)
        except ValueError:
            return None
        return model_family(path) if path.exists() else None

    def families(self) -> dict[str, Any]:
        """Each checkpoint's and ControlNet's family ("sd15", "sd2", "sdxl"; None where it cannot be told without
        loading) and the default checkpoint's: what a client needs to offer the ControlNets that fit a checkpoint."""
        return {"models": {name: self.family(name) for name in self.models()},
                "controlnets": {name: _controlnet_family(path) for name, path in self.controlnets().items()},
                "default": self.family("")}

    def listed_model(self, name: str) -> str | None:
        """The checkpoint name in models() that `name` stands for (itself, its stem, A1111's "name [hash]" title,
        as a PNG's Model names it); None when the folder has no such checkpoint."""
        return self._listed(name, self._model_paths())

    def listed_vae(self, name: str) -> str | None:
        """The VAE name in vaes() that `name` stands for; None when the folder has no such VAE."""
        return self._listed(name, self._vae_paths())

    @staticmethod
    def _listed(name: str, paths: dict[str, Path]) -> str | None:
        key = _TITLE_HASH.sub("", name.strip())
        stems = {Path(n).stem: n for n, p in paths.items() if not p.is_dir()}
        return key if key in paths else stems.get(key)

    def resolve_model(self, name: str) -> Path:
        """The checkpoint file or folder for a name (also without extension, or as A1111's "name [hash]" title);
        ValueError listing the available ones for an unknown name."""
        return self._resolve(name, self._model_paths(), "model", self.models_dir,
                             ".safetensors checkpoints or diffusers folders")

    def resolve_vae(self, name: str) -> Path:
        """The VAE file or folder for a name; ValueError listing the available ones for an unknown name."""
        return self._resolve(name, self._vae_paths(), "vae", self.vae_dir, "VAE .safetensors files")

    @staticmethod
    def _resolve(name: str, paths: dict[str, Path], kind: str, folder: Path, what: str) -> Path:
        if (listed := Catalog._listed(name, paths)) is not None:
            return paths[listed]
        listing = ", ".join(paths) if paths else f"none (put {what} in {data_folder(folder)})"
        raise ValueError(f"{kind} {excerpt(name)} is not available; choose one of: {listing}.")

    def model_hash(self, name: str) -> str:
        """A1111's ``Model hash`` of a named checkpoint file ('' for a diffusers folder or an unknown name)."""
        try:
            return model_hash(self.resolve_model(name))
        except ValueError:
            return ""

    def model_sha256(self, name: str) -> str:
        """The full SHA-256 of a named checkpoint file ('' for a diffusers folder or an unknown name), as
        AUTOMATIC1111's /sdapi/v1/sd-models lists it; computed once per file and cached."""
        try:
            path = self.resolve_model(name)
        except ValueError:
            return ""
        return sha256(path) if path.is_file() else ""

    def model_path(self, name: str) -> Path | None:
        """The file or folder of a named checkpoint, or None for an unknown name."""
        try:
            return self.resolve_model(name)
        except ValueError:
            return None

    def lora_hashes(self, prompt: str) -> str:
        """A1111's ``Lora hashes`` value for a prompt's ``<lora:…>`` tags ('' when there are none)."""
        return lora_hashes(prompt, self.loras_dir)

    def field_errors(self, prompt: str = "", model: str = "", vae: str = "") -> dict[str, str]:
        """{field: message} for unknown LoRAs in the prompt, an unknown model or VAE; empty when all are known."""
        errors: dict[str, str] = {}
        if message := check_prompt(prompt, self.loras_dir) or self._lora_family(prompt, model):
            errors["prompt"] = message
        for field, value, resolve in (("model", model, self.resolve_model), ("vae", vae, self.resolve_vae)):
            if value:
                try:
                    resolve(value)
                except ValueError as err:
                    errors[field] = str(err)
        return errors

    def _lora_family(self, prompt: str, model: str) -> str:
        """The message for a LoRA in the prompt made for another family than the checkpoint's ('' when they fit)."""
        refs = parse_loras(prompt)[1]
        family = self.family(model) if refs else None
        if family is None:
            return ""
        known = available_loras(self.loras_dir)
        for ref in refs:
            if ref.name in known and (message := family_message(ref.name, lora_shape(known[ref.name]), family, None)):
                return f"prompt: {message}"
        return ""


def _controlnet_family(path: Path) -> str | None:
    """A listed ControlNet's family, None when its file cannot be read or configured (the job using it says why)."""
    try:
        return controlnet_family(path)
    except Exception:  # a listing never fails for one unreadable file (a job using it says why)
        return None
