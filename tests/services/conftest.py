"""Services over a fresh data dir, with the session's tiny model linked in (built once, not per test)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from services.container import Services, build_services
from settings import Settings


def tiny_settings(data_dir: Path, tiny_sd_dir: Path, tiny_r1_gptq_dir: Path | None = None,
                  tiny_sdxl_dir: Path | None = None, controlnets: dict[str, Path] | None = None,
                  **overrides: Any) -> Settings:
    """Tiny-profile settings whose models folder already holds the tiny models built for the session (and the
    tiny SDXL and ControlNets when given; else the first load builds them)."""
    models = data_dir / "models"
    links = [(models / "tiny-sd", tiny_sd_dir), (models / "tiny-r1-gptq", tiny_r1_gptq_dir),
             (models / "tiny-sdxl", tiny_sdxl_dir),
             *((data_dir / "controlnet" / name, path) for name, path in (controlnets or {}).items())]
    for link, built in links:
        link.parent.mkdir(parents=True, exist_ok=True)
        if built is not None and not link.exists():
            link.symlink_to(built, target_is_directory=True)
    return Settings(profile="tiny", data_dir=data_dir, warmup=False, **overrides)


@pytest.fixture(scope="module")
def services(tmp_path_factory: pytest.TempPathFactory, tiny_sd_dir: Path, module_database_url: str) -> Services:
    """One set of services per test module and database (the model loads once for each)."""
    return build_services(tiny_settings(tmp_path_factory.mktemp("data"), tiny_sd_dir,
                                        database_url=module_database_url))
