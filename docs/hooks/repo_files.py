"""MkDocs hook: files of the repository that the pages link to but that live outside docs/ (the benchmark results
in bench/results/) are added to the site under the same path, so the links work and `--strict` checks them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parents[2]
SHARED = ["bench/results"]


def on_files(files: Files, config: Any, **_: Any) -> Files:
    """Add every file of the shared folders, at its repository path (bench/results/x.json)."""
    for folder in SHARED:
        for path in sorted((ROOT / folder).rglob("*")):
            if path.is_file():
                files.append(File(str(path.relative_to(ROOT)), str(ROOT), config["site_dir"],
                                  config["use_directory_urls"]))
    return files
