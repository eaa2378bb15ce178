"""The scratch-folder sweep: old files and folders go, young ones and those in use stay."""

from __future__ import annotations

import os
import time
from pathlib import Path

from services.tempfiles import sweep

HOUR = 3600.0


def cached(root: Path, name: str, age_s: float = 0) -> str:
    """A file as Gradio caches it: <root>/<hash>/<name>, its modification time `age_s` in the past."""
    path = root / f"hash-{name}" / name
    path.parent.mkdir(parents=True)
    path.write_bytes(b"x")
    past = time.time() - age_s
    os.utime(path, (past, past))
    return str(path.resolve())


def test_old_files_go_and_files_in_use_stay(tmp_path: Path) -> None:
    old, shown = cached(tmp_path, "old.png"), cached(tmp_path, "shown.png")
    result = sweep(tmp_path, HOUR, keep={shown}, now=time.time() + 2 * HOUR)
    assert result.removed == [old]
    assert result.kept_in_use == 1
    assert not os.path.exists(old)
    assert os.path.exists(shown)


def test_a_file_written_just_now_stays_even_with_an_old_modification_time(tmp_path: Path) -> None:
    # shutil.copy2 (Gradio's cache copy) keeps the source's mtime: the copy's own change time makes it young.
    copied = cached(tmp_path, "copied.png", age_s=30 * 86400)
    result = sweep(tmp_path, HOUR)
    assert result.removed == []
    assert result.kept_young == 1
    assert os.path.exists(copied)


def test_empty_folders_go_only_once_they_are_old(tmp_path: Path) -> None:
    fresh = tmp_path / "hash-fresh"
    fresh.mkdir()  # made a moment ago: a writer may be about to put its file in
    assert sweep(tmp_path, HOUR).removed_dirs == 0
    assert fresh.exists()
    past = time.time() - 2 * HOUR
    os.utime(fresh, (past, past))
    assert sweep(tmp_path, HOUR).removed_dirs == 1
    assert not fresh.exists()
    assert tmp_path.exists()  # the root itself always stays


def test_a_missing_folder_is_nothing_to_sweep(tmp_path: Path) -> None:
    result = sweep(tmp_path / "absent", HOUR)
    assert result.removed == []
    assert result.removed_dirs == 0
