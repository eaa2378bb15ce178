"""The Docker image provides what the GPTQ kernel choice needs (pipelines/gptq_kernels.py): nvcc of torch's CUDA major,
a host compiler and Python headers, Marlin's generated sources, and a writable, persistent kernel cache. Static
checks: no Docker engine runs in CI."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = (ROOT / "Dockerfile").read_text()
# The CUDA major each pinned torch wheel on PyPI is built for (its `cuda-toolkit==13.0.*` requirement); torch's
# extension builder refuses an nvcc of another major. A torch bump must revisit the base image.
TORCH_CUDA_MAJOR = {"2.13.0": "13"}


def app_stage() -> str:
    """The Dockerfile from its last FROM on: the stage that runs Atelier."""
    return DOCKERFILE[DOCKERFILE.rindex("\nFROM "):]


def env_value(name: str) -> str:
    match = re.search(rf"\b{name}=(\S+)", app_stage())
    assert match, f"{name} is not set in the app stage"
    return match.group(1)


def test_the_app_stage_has_nvcc_of_torchs_cuda_major() -> None:
    torch_pin = re.search(r"(?m)^torch==(\S+)$", (ROOT / "requirements.txt").read_text())
    assert torch_pin
    assert torch_pin.group(1) in TORCH_CUDA_MAJOR, "a new torch pin: check its CUDA major and the base image"
    base = re.search(r"FROM (\S+)", app_stage())
    assert base
    image, tag = base.group(1).split(":")
    assert image == "nvidia/cuda"
    assert "-devel-" in tag  # devel images carry nvcc and the CUDA headers; runtime images do not
    assert tag.split(".")[0] == TORCH_CUDA_MAJOR[torch_pin.group(1)]


def test_the_app_stage_has_a_host_compiler_and_python_headers() -> None:
    install = re.search(r"apt-get install[^\n]*", app_stage())
    assert install
    assert "build-essential" in install.group(0)
    assert "python3-dev" in install.group(0)


def test_marlin_sources_are_generated_at_build_time_as_root() -> None:
    stage = app_stage()
    generate = stage.index("_ensure_generated_marlin_kernels")
    assert stage.index("pip install -r requirements.txt") < generate < stage.index("USER ")


def test_compiled_kernels_and_gptqmodel_caches_are_writable_by_the_app_user_and_persist() -> None:
    stage = app_stage()
    kernels = env_value("GPTQMODEL_TORCH_EXTENSIONS_DIR")
    volumes = re.search(r'VOLUME \[(.*)\]', stage)
    assert volumes
    assert any(kernels.startswith(v.strip(' "') + "/") for v in volumes.group(1).split(","))
    chown = re.search(r"chown -R atelier:atelier ([^\n]*)", stage)
    assert chown
    owned = chown.group(1).split()
    assert any(kernels.startswith(path + "/") for path in owned)
    assert env_value("GPTQMODEL_CACHE_DIR") in owned


@pytest.mark.skipif(shutil.which("hadolint") is None, reason="hadolint is not installed (requirements.txt has it)")
def test_hadolint_is_clean() -> None:
    result = subprocess.run(["hadolint", str(ROOT / "Dockerfile")], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
