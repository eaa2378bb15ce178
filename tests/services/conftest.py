"""Services over a fresh data dir, with the session's tiny model linked in (built once, not per test)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from services.container import Services, build_services
from settings import Settings


def tiny_settings(data_dir: Path, tiny_sd_dir: Path, tiny_r1_gptq_dir: Path | None = None,
                  **overrides: Any) -> Settings:
    """Tiny-profile settings whose models folder already holds the tiny models built for the session."""
    models = data_dir / "models"
    models.mkdir(parents=True, exist_ok=True)
    for name, built in (("tiny-sd", tiny_sd_dir), ("tiny-r1-gptq", tiny_r1_gptq_dir)):
        link = models / name
        if built is not None and not link.exists():
            link.symlink_to(built, target_is_directory=True)
    return Settings(profile="tiny", data_dir=data_dir, warmup=False, **overrides)


@pytest.fixture(scope="module")
def services(tmp_path_factory: pytest.TempPathFactory, tiny_sd_dir: Path, module_database_url: str) -> Services:
    """One set of services per test module and database (the model loads once for each)."""
    return build_services(tiny_settings(tmp_path_factory.mktemp("data"), tiny_sd_dir,
                                        database_url=module_database_url))
