"""--compile / ATELIER_COMPILE reach the diffusers backend, with the profile's size as the warm-up shape."""

from __future__ import annotations

from pathlib import Path

import pytest

from app import parse_args
from pipelines.compile import CompileOptions
from services.container import _image_slot
from settings import Profile, Settings


def test_flag_and_env_turn_compile_on(monkeypatch: pytest.MonkeyPatch) -> None:
    assert parse_args(["--compile"]) == {"compile": True}
    assert parse_args(["--no-compile"]) == {"compile": False}
    assert "compile" not in parse_args([])
    monkeypatch.setenv("ATELIER_COMPILE", "1")
    monkeypatch.setenv("ATELIER_COMPILE_MODE", "max-autotune")
    settings = Settings()
    assert settings.compile is True
    assert settings.compile_mode == "max-autotune"


def test_off_by_default_on_every_profile() -> None:
    for profile in Profile:
        assert Settings(profile=profile).compile is False


def test_bad_compile_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="compile_mode"):
        Settings(compile_mode="fastest")


def test_the_backend_gets_the_options_and_the_profile_size(tmp_path: Path) -> None:
    settings = Settings(profile=Profile.TINY, data_dir=tmp_path, compile=True, compile_backend="aot_eager",
                        compile_scope="full", compile_dynamic=False)
    backend = _image_slot(settings).backend
    assert backend.loaded.compile_options == CompileOptions(enabled=True, mode="default", scope="full",
                                                     backend="aot_eager", dynamic=False)
    assert backend.loaded.compile_warmup == (256, 256, 7.0)
    assert backend.describe()["compile"]["state"] == "off"  # nothing is compiled before load
