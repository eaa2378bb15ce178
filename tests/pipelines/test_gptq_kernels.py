"""The GPTQ kernel decision across GPUs, compilers and settings (made-up hosts, no GPU needed), and the one warning
a fallback gives."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
import torch

from pipelines import gptq_kernels
from pipelines.gptq_kernels import KERNELS, Host, Kernel, KernelUnavailable, choose_kernel, warn_once
from pipelines.loading import ModelUnavailable

NVCC = "/usr/local/cuda/bin/nvcc"
H200 = Host("cuda", (9, 0), "NVIDIA H200", nvcc=NVCC, triton=True, torch_cuda="13.0")
A100 = Host("cuda", (8, 0), "NVIDIA A100", nvcc=NVCC, triton=True, torch_cuda="13.0")
T4 = Host("cuda", (7, 5), "Tesla T4", nvcc=NVCC, triton=True, torch_cuda="13.0")
P100 = Host("cuda", (6, 0), "Tesla P100", nvcc=NVCC, triton=False, torch_cuda="13.0")
CPU = Host("cpu")


class Builder:
    """Stands in for nvcc: records what it was asked to build; ``broken`` kernels fail to compile."""

    def __init__(self, *broken: str) -> None:
        self.broken = set(broken)
        self.built: list[str] = []

    def __call__(self, kernel: Kernel) -> str | None:
        self.built.append(kernel.name)
        return "nvcc exited with status 1" if kernel.name in self.broken else None


def no_nvcc(host: Host) -> Host:
    return Host(host.device, host.capability, host.gpu_name, nvcc=None, triton=host.triton, torch_cuda=host.torch_cuda)


@pytest.mark.parametrize(("host", "expected"), [(H200, "machete"), (A100, "marlin"), (T4, "marlin"),
                                                (P100, "exllama_v2")])
def test_auto_takes_the_fastest_kernel_the_gpu_supports(host: Host, expected: str) -> None:
    build = Builder()
    choice = choose_kernel("auto", host, build)
    assert choice.chosen == expected
    assert choice.backend == KERNELS[expected].backend
    assert choice.warning is None
    assert build.built == [expected]  # kernels the GPU cannot run are never compiled
    assert set(choice.skipped) == set(gptq_kernels.CUDA_ORDER[:gptq_kernels.CUDA_ORDER.index(expected)])


def test_machete_is_hopper_only_and_that_is_no_fallback() -> None:
    choice = choose_kernel("auto", A100, Builder())
    assert "Hopper" in choice.skipped["machete"]
    assert "8.0" in choice.skipped["machete"]
    assert choice.warning is None  # an A100 never had Machete to lose


def test_without_nvcc_auto_falls_back_to_triton_and_says_what_it_costs_and_how_to_fix_it() -> None:
    build = Builder()
    choice = choose_kernel("auto", no_nvcc(A100), build)
    assert choice.chosen == "triton"
    assert build.built == []  # nothing to compile with
    assert "nvcc" in choice.skipped["marlin"]
    assert "nvcc" in choice.skipped["exllama_v2"]
    assert choice.warning is not None
    assert "instead of Marlin" in choice.warning
    assert "several times slower" in choice.warning
    assert "CUDA 13.x toolkit" in choice.warning
    assert "Docker image" in choice.warning
    assert "ATELIER_GPTQ_BACKEND" in choice.warning
    assert choice.reason.startswith("Marlin could not be used")


def test_without_nvcc_or_triton_auto_ends_on_torch() -> None:
    host = Host("cuda", (9, 0), "NVIDIA H200", nvcc=None, triton=False, torch_cuda="13.0")
    choice = choose_kernel("auto", host, Builder())
    assert choice.chosen == "torch"
    assert "instead of Machete" in choice.warning


def test_a_kernel_that_fails_to_compile_falls_back_to_the_next() -> None:
    build = Builder("machete")
    choice = choose_kernel("auto", H200, build)
    assert choice.chosen == "marlin"
    assert build.built == ["machete", "marlin"]
    assert "failed to compile: nvcc exited with status 1" in choice.skipped["machete"]
    assert "instead of Machete" in choice.warning
    assert "slower" in choice.warning


def test_on_the_cpu_auto_leaves_the_choice_to_gptqmodel() -> None:
    build = Builder()
    choice = choose_kernel("auto", CPU, build)
    assert (choice.chosen, choice.backend, choice.warning) == (None, "auto", None)
    assert build.built == []


@pytest.mark.parametrize("forced", ["marlin", "machete", "exllama_v2", "triton"])
def test_a_forced_cuda_kernel_on_the_cpu_is_refused_with_the_fix(forced: str) -> None:
    with pytest.raises(KernelUnavailable, match=rf"ATELIER_GPTQ_BACKEND={forced}: .* runs only on NVIDIA GPUs .*"
                                                r"on cpu\. To fix it: set ATELIER_GPTQ_BACKEND=auto"):
        choose_kernel(forced, CPU, Builder())


def test_a_forced_kernel_is_used_as_asked_without_falling_back() -> None:
    assert choose_kernel("torch", CPU, Builder()).backend == "gptq_torch"
    assert choose_kernel("exllama_v2", H200, Builder()).chosen == "exllama_v2"
    with pytest.raises(KernelUnavailable, match=r"needs a Hopper GPU.*NVIDIA A100 \(compute capability 8\.0\)"):
        choose_kernel("machete", A100, Builder())
    with pytest.raises(KernelUnavailable, match=r"nvcc, which is not installed\. To fix it: install the CUDA 13"):
        choose_kernel("marlin", no_nvcc(A100), Builder())
    with pytest.raises(KernelUnavailable, match="Marlin failed to compile: nvcc exited"):
        choose_kernel("marlin", A100, Builder("marlin"))
    with pytest.raises(KernelUnavailable, match="not a GPTQ kernel"):
        choose_kernel("exllama", A100, Builder())


def test_warn_once_logs_a_message_a_single_time(caplog: pytest.LogCaptureFixture,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gptq_kernels, "_warned", set())
    with caplog.at_level(logging.WARNING, logger="pipelines.gptq_kernels"):
        assert warn_once("slow kernel") is True
        assert warn_once("slow kernel") is False
        assert warn_once("another") is True
    assert [r.getMessage() for r in caplog.records] == ["slow kernel", "another"]


def test_nvcc_of_another_cuda_major_than_torch_is_not_tried() -> None:
    host = Host("cuda", (9, 0), "NVIDIA H200", nvcc=NVCC, nvcc_version="12.8", triton=True, torch_cuda="13.0")
    build = Builder()
    choice = choose_kernel("auto", host, build)
    assert build.built == []
    assert choice.chosen == "triton"
    assert "nvcc 12.8 does not match the CUDA 13.0 PyTorch was built with" in choice.skipped["machete"]
    assert "CUDA 13.x toolkit" in choice.warning
    same = Host("cuda", (9, 0), "NVIDIA H200", nvcc=NVCC, nvcc_version="13.0", triton=True, torch_cuda="13.0")
    assert choose_kernel("auto", same, Builder()).chosen == "machete"


def test_nvcc_release_is_read_from_nvcc(tmp_path: Path) -> None:
    fake = tmp_path / "nvcc"
    fake.write_text("#!/bin/sh\necho 'nvcc: NVIDIA (R) Cuda compiler driver'\n"
                    "echo 'Cuda compilation tools, release 13.0, V13.0.88'\n")
    fake.chmod(0o755)
    assert gptq_kernels.nvcc_release(str(fake)) == "13.0"
    assert gptq_kernels.nvcc_release(None) is None
    assert gptq_kernels.nvcc_release(str(tmp_path / "missing")) is None


@pytest.mark.skipif(torch.cuda.is_available(), reason="gptqmodel's refusal to build without CUDA")
def test_a_failed_build_returns_gptqmodels_reason() -> None:
    error = gptq_kernels.build_extension(KERNELS["marlin"])
    assert error is not None
    assert "CUDA is not available" in error
    assert gptq_kernels.build_extension(KERNELS["triton"]) is None  # nothing to build


def test_the_backend_builds_the_chosen_kernel_and_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    from pipelines import transformers_loading as tl

    built: list[str] = []

    def fake_build(kernel: Kernel, report: Any = None) -> None:
        built.append(kernel.name)
        report(f"building {kernel.label}")

    monkeypatch.setattr(tl, "probe_host", lambda device: A100)
    monkeypatch.setattr(tl, "build_extension", fake_build)
    phases: list[str] = []
    choice = tl.TransformersModel("unused", device="cuda")._choose_kernel(phases.append)
    assert (choice.chosen, built, phases) == ("marlin", ["marlin"], ["building Marlin"])
    refused = tl.TransformersModel("unused", device="cuda", gptq_backend="machete")
    with pytest.raises(ModelUnavailable, match="ATELIER_GPTQ_BACKEND=machete: Machete needs a Hopper GPU"):
        refused._choose_kernel(phases.append)
