"""Fixtures for the pipeline tests. The tiny model folders (``tiny_r1_dir``, ``tiny_r1_gptq_dir``, ``tiny_sd_dir``,
the tiny SDXL and ControlNets) are session fixtures in tests/conftest.py, shared with the service and app tests."""

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
