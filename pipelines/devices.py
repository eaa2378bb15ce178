"""Device, dtype and GPU-memory policy shared by the in-process backends."""

from __future__ import annotations

import gc
import importlib.util
import logging
from dataclasses import dataclass

import torch

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Placement:
    """Where a model runs and in which precision."""

    device: str
    dtype: torch.dtype

    @property
    def dtype_name(self) -> str:
        """The dtype as a short string, e.g. 'float16'."""
        return str(self.dtype).removeprefix("torch.")


def pick_placement(prefer: str | None = None) -> Placement:
    """fp16 on CUDA (SD and R1 are trained for it), fp32 elsewhere (CPU fp16 is slow or unsupported)."""
    device = prefer or ("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda"):
        return Placement(device, torch.float16)
    if device == "mps":
        return Placement(device, torch.float16)
    return Placement("cpu", torch.float32)


def xformers_usable(device: str) -> bool:
    """xformers only helps on CUDA and only when it is installed; SDPA is the default otherwise."""
    return device.startswith("cuda") and importlib.util.find_spec("xformers") is not None


def release_memory() -> None:
    """Give freed tensors back to the allocator and, on CUDA, to the driver."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def gpu_memory() -> dict[str, int] | None:
    """Allocated and reserved bytes on the current CUDA device, or None without one."""
    if not torch.cuda.is_available():
        return None
    return {
        "allocated": int(torch.cuda.memory_allocated()),
        "reserved": int(torch.cuda.memory_reserved()),
        "peak_allocated": int(torch.cuda.max_memory_allocated()),
    }


def apply_threads(intra_op: int, inter_op: int) -> dict[str, int]:
    """Set torch's intra-op and inter-op thread counts for this process; return those in effect. torch takes the
    inter-op count only before its first parallel work: later (a second app in one process) it keeps the one it
    has, with a warning."""
    torch.set_num_threads(intra_op)
    if torch.get_num_interop_threads() != inter_op:
        try:
            torch.set_num_interop_threads(inter_op)
        except RuntimeError as err:
            log.warning("torch inter-op threads stay at %d, not %d: %s", torch.get_num_interop_threads(), inter_op,
                        err)
    return {"intra_op": torch.get_num_threads(), "inter_op": torch.get_num_interop_threads()}
