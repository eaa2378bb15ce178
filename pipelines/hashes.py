"""File hashes as AUTOMATIC1111 writes them into PNG metadata, cached per file version (hashing GBs takes seconds)."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from pathlib import Path

_BLOCK = 1 << 20
_cache: dict[tuple[str, str, int, int], str] = {}
_lock = threading.Lock()


def _cached(kind: str, path: Path, compute: Callable[[Path], str]) -> str:
    """`compute(path)`, remembered until the file's size or modification time changes."""
    stat = path.stat()
    key = (kind, str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    with _lock:
        if key in _cache:
            return _cache[key]
    value = compute(path)
    with _lock:
        _cache[key] = value
    return value


def _sha256(path: Path, offset: int = 0) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        f.seek(offset)
        for block in iter(lambda: f.read(_BLOCK), b""):
            digest.update(block)
    return digest.hexdigest()


def sha256(path: Path) -> str:
    """The SHA-256 of the whole file (A1111's checkpoint hash; its `Model hash` is the first 10 hex digits)."""
    return _cached("sha256", Path(path), _sha256)


def addnet_sha256(path: Path) -> str:
    """The SHA-256 A1111 uses for LoRA files: of a .safetensors file's tensor data, after its JSON header (so
    editing the metadata keeps the hash); of the whole file for other formats."""
    path = Path(path)
    if path.suffix.lower() != ".safetensors":
        return sha256(path)

    def compute(p: Path) -> str:
        with p.open("rb") as f:
            header = int.from_bytes(f.read(8), "little")
        return _sha256(p, offset=8 + header)

    return _cached("addnet", path, compute)


def legacy_model_hash(path: Path) -> str:
    """A1111's old short hash (sd_models.model_hash), which sd-webui-controlnet shows after a model's name: the first
    8 hex digits of the SHA-256 of the 64 KiB at offset 1 MiB (of nothing, for a smaller file)."""

    def compute(p: Path) -> str:
        with p.open("rb") as f:
            f.seek(0x100000)
            return hashlib.sha256(f.read(0x10000)).hexdigest()[:8]

    return _cached("legacy", Path(path), compute)
