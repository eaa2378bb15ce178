"""Half precision and the VAE: SDXL's VAE overflows in float16 (its activations pass 65504), which gives NaNs and
black pictures. Two cures, as in AUTOMATIC1111 and diffusers:

- an **fp16-fix VAE** (madebyollin's ``sdxl-vae-fp16-fix``: the same decoder retrained to stay in range), swapped in
  when one sits in ``<data>/vae``; it decodes in float16 at full speed;
- otherwise **upcasting**: ``vae.config.force_upcast``, which diffusers' SDXL pipelines read to decode (and encode)
  in float32 and go back to float16 afterwards (A1111's ``--no-half-vae``).

And a last guard for any family, :func:`nan_fallback`: a decode that still returns NaN or infinity is done again
in float32, and SDXL pipelines upcast from then on (A1111's "Automatically revert VAE to 32-bit floats").
float32 and bfloat16 (float32's range) need none of this.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

# How the fp16-fix VAE is named where users get it (a folder or file name holding one of these).
FP16_FIX_MARKERS = ("fp16-fix", "fp16_fix", "fp16fix")
VAE_SUFFIXES = (".safetensors", ".ckpt", ".pt")


@dataclass(frozen=True)
class VaePrecision:
    """What to do about the VAE's precision: nothing, swap in an fp16-fix VAE, or upcast; and why."""

    action: Literal["none", "fp16-fix", "upcast"]
    reason: str
    vae_path: Path | None = None


def is_fp16_fix(path: str | Path) -> bool:
    """True for a VAE that decodes in float16 without overflow: a diffusers folder whose config clears
    ``force_upcast`` (as the fp16-fix's does), or a file or folder named like the fp16-fix."""
    p = Path(path).expanduser()
    if any(marker in p.name.lower() for marker in FP16_FIX_MARKERS):
        return True
    config = p / "config.json" if (p / "config.json").is_file() else p / "vae" / "config.json"
    if p.is_dir() and config.is_file():
        return json.loads(config.read_text()).get("force_upcast") is False
    return False


def find_fp16_fix(vae_dir: Path | None) -> Path | None:
    """The first fp16-fix VAE (by name) among the files and folders of ``vae_dir``, or None."""
    if vae_dir is None or not Path(vae_dir).is_dir():
        return None
    for entry in sorted(Path(vae_dir).iterdir(), key=lambda e: e.name.lower()):
        usable = entry.is_dir() or entry.suffix.lower() in VAE_SUFFIXES
        if usable and any(m in entry.name.lower() for m in FP16_FIX_MARKERS):
            return entry
    return None


def plan_vae_precision(sdxl: bool, dtype: Any, chosen_vae: str = "", vae_dir: Path | None = None) -> VaePrecision:
    """Decide how an SDXL (or other) pipeline in ``dtype`` decodes safely, given the VAE the user chose ("" for the
    checkpoint's own) and the VAE folder where an fp16-fix may be."""
    import torch

    if dtype != torch.float16:
        return VaePrecision("none", f"{str(dtype).removeprefix('torch.')} has float32's range: no overflow")
    if not sdxl:
        return VaePrecision("none", "the SD 1.x/2.x VAE decodes in float16 (a NaN falls back to float32)")
    if chosen_vae:
        if is_fp16_fix(chosen_vae):
            return VaePrecision("none", f"the chosen VAE {Path(chosen_vae).name!r} is an fp16-fix")
        return VaePrecision("upcast", f"the chosen VAE {Path(chosen_vae).name!r} is not an fp16-fix: "
                                      "it decodes in float32")
    fix = find_fp16_fix(vae_dir)
    if fix is not None:
        return VaePrecision("fp16-fix", f"SDXL's VAE overflows in float16: using {fix.name!r} instead", fix)
    return VaePrecision("upcast", "SDXL's VAE overflows in float16 and no fp16-fix VAE is in the VAE folder: "
                                  "it decodes in float32")


def apply_vae_precision(pipe: Any, plan: VaePrecision, dtype: Any, config: Path | None = None) -> None:
    """Carry out ``plan`` on a loaded pipeline; ``config`` configures an fp16-fix given as a single file (the
    checkpoint's shipped config, pipelines/checkpoints.py)."""
    if plan.action == "fp16-fix" and plan.vae_path is not None:
        from pipelines.checkpoints import load_vae

        vae = load_vae(plan.vae_path, dtype, config)
        vae.register_to_config(force_upcast=False)  # a file configured from the SDXL config inherits True
        vae.to(pipe.vae.device)
        pipe.vae = vae
    elif plan.action == "upcast":
        pipe.vae.register_to_config(force_upcast=True)


def _sample(out: Any) -> Any:
    return out[0] if isinstance(out, tuple) else out.sample


@contextlib.contextmanager
def nan_fallback(vae: Any) -> Iterator[None]:
    """Within the block, a ``vae.decode`` whose result is not finite is redone with the VAE in float32 (then put
    back in its dtype), and ``force_upcast`` is set so SDXL pipelines decode in float32 from then on; latents are
    cast to the VAE's dtype. The method is restored afterwards, also when another wrapper (the backend's row-by-row
    decode) was in place."""
    import torch

    had_own = "decode" in vars(vae)
    previous = vae.decode

    def decode(z: Any, *args: Any, **kwargs: Any) -> Any:
        out = previous(z.to(vae.dtype), *args, **kwargs)
        if torch.isfinite(_sample(out)).all():
            return out
        dtype = vae.dtype
        vae.to(torch.float32)
        try:
            out = previous(z.to(torch.float32), *args, **kwargs)
        finally:
            vae.to(dtype)  # the pipeline casts latents to the dtype it found; SDXL's upcast itself from now on
        vae.register_to_config(force_upcast=True)
        return out

    vae.decode = decode
    try:
        yield
    finally:
        if had_own:
            vae.decode = previous
        else:
            del vae.decode
