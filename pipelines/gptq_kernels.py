"""Which gptqmodel kernel runs a GPTQ checkpoint: the fastest one this machine can run, decided before loading.

gptqmodel 7.6 ships its CUDA kernels (Machete, Marlin, ExLlamaV2) as sources and JIT-compiles them with ``nvcc`` on
first use. Without ``nvcc`` its own auto-selection silently settles on a slow kernel, so the choice is made here,
where it can be logged, reported in /api/health and explained once. The decision (``choose_kernel``) is a pure
function of what the host offers (``Host``) and of a ``build`` callback, so it is tested with made-up hosts.
"""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

# ATELIER_GPTQ_BACKEND's values besides auto (settings.GptqBackend), fastest first at batch 1 on the GPUs each supports.
CUDA_ORDER: tuple[str, ...] = ("machete", "marlin", "exllama_v2", "triton", "torch")


@dataclass(frozen=True)
class Kernel:
    """One gptqmodel GPTQ kernel and what it needs."""

    name: str  # the ATELIER_GPTQ_BACKEND value
    label: str  # as people call it
    backend: str  # gptqmodel's BACKEND value, passed to GPTQConfig(backend=...)
    extension: str | None = None  # gptqmodel.extension name JIT-compiled with nvcc (None: nothing to build)
    min_capability: tuple[int, int] = (0, 0)
    only_capability: tuple[int, int] | None = None  # Machete's CUTLASS kernels exist for SM90 alone
    needs_triton: bool = False
    cuda_only: bool = True


KERNELS: dict[str, Kernel] = {
    "machete": Kernel("machete", "Machete", "gptq_machete", extension="machete", only_capability=(9, 0)),
    # Atelier loads GPTQ in fp16 on CUDA (pipelines.transformers_backend._pick_dtype): the fp16 build is the one used.
    "marlin": Kernel("marlin", "Marlin", "gptq_marlin", extension="marlin_fp16", min_capability=(7, 5)),
    "exllama_v2": Kernel("exllama_v2", "ExLlamaV2", "gptq_exllama_v2", extension="exllamav2", min_capability=(6, 0)),
    "triton": Kernel("triton", "Triton", "gptq_triton", min_capability=(7, 0), needs_triton=True),
    # Plain PyTorch: dequantizes on the fly, runs anywhere.
    "torch": Kernel("torch", "torch", "gptq_torch", cuda_only=False),
}


class KernelUnavailable(RuntimeError):
    """The kernel ATELIER_GPTQ_BACKEND asks for cannot run here; the message says why and what to do."""


@dataclass(frozen=True)
class Host:
    """What this process offers a GPTQ kernel."""

    device: str  # "cuda", "cpu", "mps", ...
    capability: tuple[int, int] | None = None  # CUDA compute capability of the device the model goes to
    gpu_name: str = ""
    nvcc: str | None = None  # path of the CUDA compiler, None when there is none
    nvcc_version: str | None = None  # its release, e.g. "13.0"
    triton: bool = False
    torch_cuda: str | None = None  # the CUDA version torch was built with (nvcc must match its major)


@dataclass
class KernelChoice:
    """The decision and its reasons, as /api/health shows it."""

    requested: str
    backend: str  # passed to GPTQConfig(backend=...)
    chosen: str | None  # a KERNELS key; None: gptqmodel picks for a non-CUDA device
    reason: str
    skipped: dict[str, str] = field(default_factory=dict)  # kernel -> why it was not used
    warning: str | None = None  # set when a faster kernel for this GPU could not be built

    def as_dict(self) -> dict[str, Any]:
        """The health page's view."""
        return {"requested": self.requested, "chosen": self.chosen, "reason": self.reason,
                "skipped": dict(self.skipped), "warning": self.warning}


def probe_host(device: str) -> Host:
    """What the real machine offers for ``device`` (a torch device string)."""
    import torch

    kind = device.split(":", 1)[0]
    if kind != "cuda" or not torch.cuda.is_available():
        return Host(device=kind)
    index = torch.device(device).index or 0
    try:
        import triton  # noqa: F401  (only whether it imports)

        has_triton = True
    except ImportError:
        has_triton = False
    nvcc = find_nvcc()
    return Host(device="cuda", capability=tuple(torch.cuda.get_device_capability(index)),  # type: ignore[arg-type]
                gpu_name=torch.cuda.get_device_name(index), nvcc=nvcc, nvcc_version=nvcc_release(nvcc),
                triton=has_triton, torch_cuda=torch.version.cuda)


def find_nvcc() -> str | None:
    """The nvcc torch's extension builder would use (CUDA_HOME, then PATH), as gptqmodel finds it."""
    from pathlib import Path

    from torch.utils.cpp_extension import CUDA_HOME

    if CUDA_HOME and (Path(CUDA_HOME) / "bin" / "nvcc").is_file():
        return str(Path(CUDA_HOME) / "bin" / "nvcc")
    return shutil.which("nvcc")


def nvcc_release(nvcc: str | None) -> str | None:
    """The release nvcc reports ("13.0"), or None when there is no nvcc or it does not answer."""
    if nvcc is None:
        return None
    try:
        # The path is torch's own CUDA_HOME or PATH lookup, the compiler torch's extension builder would run.
        text = subprocess.run([nvcc, "--version"], capture_output=True, text=True, timeout=30).stdout  # noqa: S603
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r"release (\d+\.\d+)", text)
    return match.group(1) if match else None


def static_obstacle(kernel: Kernel, host: Host) -> str | None:
    """Why ``kernel`` cannot run on ``host`` without trying to build it; None when it may."""
    if host.device != "cuda":
        return f"{kernel.label} runs only on NVIDIA GPUs (CUDA); this model is on {host.device}" if kernel.cuda_only \
            else None
    cap = host.capability or (0, 0)
    shown = f"{cap[0]}.{cap[1]}"
    gpu = f"{host.gpu_name or 'this GPU'} (compute capability {shown})"
    if kernel.only_capability is not None and cap != kernel.only_capability:
        need = kernel.only_capability
        return f"{kernel.label} needs a Hopper GPU (compute capability {need[0]}.{need[1]}); found {gpu}"
    if cap < kernel.min_capability:
        need = kernel.min_capability
        return f"{kernel.label} needs compute capability {need[0]}.{need[1]} or newer; found {gpu}"
    if kernel.extension is not None and host.nvcc is None:
        return f"{kernel.label} is compiled on first use and needs the CUDA compiler nvcc, which is not installed"
    nvcc_major, torch_major = _major(host.nvcc_version), _major(host.torch_cuda)
    if kernel.extension is not None and nvcc_major and torch_major and nvcc_major != torch_major:
        # torch's extension builder refuses an nvcc of another CUDA major than torch was built with.
        return (f"{kernel.label} is compiled on first use by nvcc, and nvcc {host.nvcc_version} does not match the "
                f"CUDA {host.torch_cuda} PyTorch was built with")
    if kernel.needs_triton and not host.triton:
        return f"{kernel.label} needs the triton package, which is not installed"
    return None


def _major(version: str | None) -> str | None:
    return version.split(".")[0] if version else None


def _hardware_supports(kernel: Kernel, host: Host) -> bool:
    """Whether the GPU itself could run ``kernel`` (missing software aside): the kernel a user should get."""
    cap = host.capability or (0, 0)
    if kernel.only_capability is not None:
        return cap == kernel.only_capability
    return cap >= kernel.min_capability


def fix_hint(host: Host) -> str:
    """What a user does about a kernel that could not be built."""
    toolkit = f"CUDA {host.torch_cuda.split('.')[0]}.x " if host.torch_cuda else ""
    return (f"install the {toolkit}toolkit (nvcc) so gptqmodel can compile it, or run Atelier's Docker image, "
            "which has it; or set ATELIER_GPTQ_BACKEND to a kernel that works here to choose it knowingly")


def _cost(best: Kernel, chosen: Kernel) -> str:
    """The price of running ``chosen`` instead of ``best``, in words (measured on a GPU: see docs/benchmarks.md)."""
    if chosen.name in ("torch", "triton"):
        return f"decode runs several times slower than with {best.label}"
    return f"decode is slower than with {best.label}, most of all for single chats"


def _obstacle(kernel: Kernel, host: Host, build: Callable[[Kernel], str | None]) -> str | None:
    """Why ``kernel`` cannot run here, building its extension when nothing else stands in the way; None: it can."""
    problem = static_obstacle(kernel, host)
    if problem is None and kernel.extension is not None:
        error = build(kernel)
        problem = f"{kernel.label} failed to compile: {error}" if error else None
    return problem


def choose_kernel(requested: str, host: Host, build: Callable[[Kernel], str | None]) -> KernelChoice:
    """The kernel to load a GPTQ checkpoint with. ``build(kernel)`` compiles a kernel's extension and returns
    None on success or the error text; it is only called for kernels the hardware and software allow.

    auto takes the fastest kernel that works and warns (naming the cost and the fix) when a faster one for this
    GPU could not be built; an explicit kernel that cannot run raises KernelUnavailable instead of falling back.
    """
    if requested != "auto" and requested not in KERNELS:
        raise KernelUnavailable(f"ATELIER_GPTQ_BACKEND={requested} is not a GPTQ kernel; "
                                f"use one of: auto, {', '.join(CUDA_ORDER)}")
    if requested != "auto":
        kernel = KERNELS[requested]
        problem = _obstacle(kernel, host, build)
        if problem is not None:
            fix = fix_hint(host) if host.device == "cuda" else "set ATELIER_GPTQ_BACKEND=auto (or torch)"
            raise KernelUnavailable(f"ATELIER_GPTQ_BACKEND={requested}: {problem}. To fix it: {fix}.")
        return KernelChoice(requested, kernel.backend, kernel.name, "set by ATELIER_GPTQ_BACKEND")
    if host.device != "cuda":
        # gptqmodel's CPU (and XPU/MPS) kernels need no compiler; its own order is the right one there.
        return KernelChoice(requested, "auto", None, f"on {host.device} gptqmodel picks its own kernel")
    skipped: dict[str, str] = {}
    best: Kernel | None = None
    for name in CUDA_ORDER:
        kernel = KERNELS[name]
        if best is None and _hardware_supports(kernel, host):
            best = kernel
        problem = _obstacle(kernel, host, build)
        if problem is not None:
            skipped[name] = problem
            continue
        reason = f"the fastest kernel for {host.gpu_name or 'this GPU'} that works here"
        warning = None
        if best is not None and best is not kernel:
            reason = f"{best.label} could not be used: {skipped[best.name]}"
            warning = (f"GPTQ model runs on the {kernel.label} kernel instead of {best.label} "
                       f"({skipped[best.name]}): {_cost(best, kernel)}. To fix it: {fix_hint(host)}.")
        return KernelChoice(requested, kernel.backend, kernel.name, reason, skipped, warning)
    raise AssertionError("the torch kernel always works on CUDA")  # pragma: no cover - torch has no obstacle


def build_extension(kernel: Kernel, report: Callable[[str], None] | None = None) -> str | None:
    """Compile (or load from gptqmodel's cache) ``kernel``'s CUDA extension; None on success, else the error."""
    if kernel.extension is None:
        return None
    from gptqmodel import extension

    if report is not None:
        report(f"preparing the {kernel.label} GPTQ kernel (compiled by nvcc on first use: a few minutes, then cached)")
    try:
        extension.load(kernel.extension)
    except (RuntimeError, ValueError, OSError) as err:
        return " ".join(str(err).split())[:500]
    return None


_warned: set[str] = set()
_warned_lock = threading.Lock()


def warn_once(message: str) -> bool:
    """Log ``message`` as a warning the first time this process sees it; True when it was logged."""
    with _warned_lock:
        if message in _warned:
            return False
        _warned.add(message)
    log.warning(message)
    return True
