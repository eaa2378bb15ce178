"""Fixtures for the pipeline tests. The tiny model folders (``tiny_r1_dir``, ``tiny_r1_gptq_dir``,
``tiny_sd_dir``) are session fixtures in tests/conftest.py, shared with the service and app tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    # Imported lazily: torch and transformers take seconds, and most pipeline tests never need them.
    from pipelines.transformers_backend import TransformersTextBackend


@pytest.fixture(scope="session")
def tiny_text_backend(tiny_r1_gptq_dir: Path) -> Iterator[TransformersTextBackend]:
    """The transformers backend with the tiny GPTQ model loaded on the CPU (shared: do not unload it)."""
    from pipelines.transformers_backend import TransformersTextBackend

    backend = TransformersTextBackend(str(tiny_r1_gptq_dir), display_name="tiny-r1-gptq", device="cpu")
    backend.load(lambda phase: None)
    yield backend
    backend.unload()


# The tiny SDXL family (pipelines/tiny.py): built once per session, next to each other, for the SDXL and ControlNet
# tests; each build takes a few seconds on a CPU.
@pytest.fixture(scope="session")
def tiny_xl_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One folder for the session's tiny SDXL models, ControlNets and single files."""
    return tmp_path_factory.mktemp("xl-models")


@pytest.fixture(scope="session")
def tiny_sdxl_dir(tiny_xl_root: Path) -> Path:
    """The tiny random-weight SDXL pipeline folder."""
    from pipelines.tiny import ensure_tiny_sdxl

    return ensure_tiny_sdxl(tiny_xl_root / "tiny-sdxl")


@pytest.fixture(scope="session")
def tiny_sdxl_file(tiny_sdxl_dir: Path, tiny_xl_root: Path) -> Path:
    """The tiny SDXL written as one .safetensors file in the original (sgm) key layout."""
    from pipelines.checkpoints import write_single_file

    return write_single_file(tiny_sdxl_dir, tiny_xl_root / "models" / "tiny-sdxl.safetensors")


@pytest.fixture(scope="session")
def controlnet_dir(tiny_xl_root: Path) -> Path:
    """``<data>/controlnet`` holding the tiny ControlNets: tiny-cn-sd15 and tiny-cn-sdxl."""
    return tiny_xl_root / "controlnet"


@pytest.fixture(scope="session")
def tiny_cn_sd15(controlnet_dir: Path, tiny_sd_dir: Path) -> Path:
    """A tiny ControlNet for the tiny SD 1.5, as a diffusers folder under controlnet_dir."""
    from pipelines.tiny import ensure_tiny_controlnet

    return ensure_tiny_controlnet(controlnet_dir / "tiny-cn-sd15", tiny_sd_dir)


@pytest.fixture(scope="session")
def tiny_cn_sdxl(controlnet_dir: Path, tiny_sdxl_dir: Path) -> Path:
    """A tiny ControlNet for the tiny SDXL, as a diffusers folder under controlnet_dir."""
    from pipelines.tiny import ensure_tiny_controlnet

    return ensure_tiny_controlnet(controlnet_dir / "tiny-cn-sdxl", tiny_sdxl_dir)
