"""What every in-process backend shares when it loads a model: the unavailable-model error and its
explanation, download progress from the Hugging Face cache, and one load at a time in the process."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path


class ModelUnavailable(RuntimeError):
    """The model cannot be loaded; the message says why and how to fix it."""


@dataclass(frozen=True)
class ModelKind:
    """How error messages name one kind of model: its noun, its CLI flag, and what a valid folder holds."""

    noun: str
    flag: str
    folder: str


IMAGE_MODEL = ModelKind("image", "--image-model", "a diffusers folder (one with model_index.json)")
TEXT_MODEL = ModelKind(
    "text", "--text-model", "a transformers folder (one with config.json, tokenizer files and *.safetensors)"
)


# What huggingface_hub and diffusers say when a model is neither cached nor downloadable: their own advice ("pass
# local_files_only=False", "check the stacktrace above") is for programmers; the message says what to do instead.
_NOT_CACHED = ("outgoing traffic has been disabled", "not fully cached", "cannot find the requested files",
               "couldn't connect", "connection", "offline", "local_files_only", "localentrynotfound")


def explain_load_error(model: str, err: BaseException, kind: ModelKind = IMAGE_MODEL) -> str:
    """Turn a from_pretrained failure into a reason and a fix a user can act on: what is missing, the one command
    that fixes it, and --profile tiny to try without (the loader's own words only when they say something else)."""
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    looks_local = model.startswith((".", "/", "~")) or Path(model).exists()
    try_tiny = "To try Atelier without it: python app.py --profile tiny."
    if looks_local:
        return (f"The {kind.noun} model folder {model!r} could not be loaded ({text}). "
                f"Point {kind.flag} at {kind.folder}. {try_tiny}")
    said = f"{type(err).__name__}: {text}".lower()
    cause = "" if any(words in said for words in _NOT_CACHED) else f" ({type(err).__name__}: {text[:200]})"
    return (f"The {kind.noun} model {model} is not on this machine, and it could not be downloaded{cause}. "
            f"To fetch it, run once with internet access: hf download {model} "
            f"(or pass a folder that holds it with {kind.flag}). {try_tiny}")


def hub_cache_bytes(repo_id: str) -> int:
    """Bytes of a hub repo in the local cache so far (finished and partial files), for download progress."""
    from huggingface_hub import constants

    folder = Path(constants.HF_HUB_CACHE) / ("models--" + repo_id.replace("/", "--")) / "blobs"
    if not folder.is_dir():
        return 0
    return sum(f.stat().st_size for f in folder.iterdir() if f.is_file())


@contextlib.contextmanager
def download_progress(repo_id: str, report: Callable[[str], None], every_s: float = 1.0) -> Iterator[None]:
    """Report the growing cache size of ``repo_id`` every ``every_s`` seconds while the block runs."""
    done = threading.Event()

    def watch() -> None:
        # from_pretrained and snapshot_download give no progress callback; the growing cache folder is
        # an honest gauge.
        while not done.wait(every_s):
            report(f"downloading {repo_id}: {hub_cache_bytes(repo_id) / 1e6:.0f} MB so far")

    report(f"downloading {repo_id} (or finding it in the Hugging Face cache)")
    watcher = threading.Thread(target=watch, name=f"download-progress-{repo_id}", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        done.set()
        watcher.join()


def model_revision(folder: str | Path) -> str:
    """Which files a model folder holds: a hub snapshot's commit hash, or a local folder's fingerprint."""
    import hashlib

    path = Path(folder).expanduser().resolve()
    if path.parent.name == "snapshots":
        return path.name  # the hub cache names snapshot folders by commit
    # A local folder: names, sizes and times of its files change whenever its weights are replaced.
    stats = [(str(p.relative_to(path)), p.stat().st_size, int(p.stat().st_mtime))
             for p in sorted(path.rglob("*")) if p.is_file()]
    return "local:" + hashlib.sha256(repr(stats).encode()).hexdigest()[:16]


# diffusers, transformers and accelerate build a model's skeleton by patching process-wide state for the length
# of the construction, not per thread: accelerate's init_empty_weights (used by diffusers) swaps
# nn.Module.register_parameter so that every parameter registered anywhere lands on the meta device;
# transformers swaps PreTrainedModel.tie_weights/init_weights and torch.linspace, and both set torch's default
# dtype. A text model whose weights were assigned while the image pipeline was inside init_empty_weights kept
# them on the meta device, and its generate() failed with "Tensor.item() cannot be called on meta tensors"; a
# tiny model built meanwhile could not even be saved; two loads that save and restore the same patch out of
# order can leave it in place for good. A running job registers no parameter and builds no model; the one
# patched global it may read, the default dtype, changes only while a half-precision model is built, and the
# jobs give the same output under any default (tests/pipelines/test_load_isolation.py). So only loads and
# builds exclude each other. The lock covers the from_pretrained calls (downloads happen before them) and the
# tiny builds; no job ever takes it, so a load waits at most for the other model's load, never for its job.
# Reentrant, so a build that loads a model (the tiny GPTQ step) cannot deadlock on itself.
_LOAD_LOCK = threading.RLock()
_loading = ""  # the model holding the lock, for the waiting message (read without the lock: display only)


def no_report(phase: str) -> None:
    """A report callback that reports nowhere."""


@contextlib.contextmanager
def exclusive_load(model: str, report: Callable[[str], None] = no_report, phase: str = "") -> Iterator[None]:
    """Hold the process-wide load lock while the block builds ``model``; say so while waiting for it,
    then report ``phase`` (if given)."""
    global _loading
    if not _LOAD_LOCK.acquire(blocking=False):
        report(f"waiting for {_loading or 'another model'} to finish before loading {model}")
        _LOAD_LOCK.acquire()
    outer, _loading = _loading, model
    try:
        if phase:
            report(phase)
        yield
    finally:
        _loading = outer
        _LOAD_LOCK.release()
