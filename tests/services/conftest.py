"""Services over a fresh data dir, with the session's tiny model linked in (built once, not per test)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from services.container import Services, build_services
from settings import Settings


def tiny_settings(data_dir: Path, tiny_sd_dir: Path, **overrides: Any) -> Settings:
    """Tiny-profile settings whose models folder already holds the tiny Stable Diffusion."""
    models = data_dir / "models"
    models.mkdir(parents=True, exist_ok=True)
    link = models / "tiny-sd"
    if not link.exists():
        link.symlink_to(tiny_sd_dir, target_is_directory=True)
    return Settings(profile="tiny", data_dir=data_dir, warmup=False, **overrides)


@pytest.fixture(scope="module")
def services(tmp_path_factory: pytest.TempPathFactory, tiny_sd_dir: Path) -> Services:
    """One set of services per test module (the model loads once)."""
    return build_services(tiny_settings(tmp_path_factory.mktemp("data"), tiny_sd_dir))
