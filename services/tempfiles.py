"""The sweep of a scratch folder (Gradio's file cache): old files go, files still in use stay."""

from __future__ import annotations

import os
import time
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class SweepResult:
    """What one sweep removed and what it kept, for the log and for the caller's own bookkeeping."""

    removed: list[str] = field(default_factory=list)
    kept_in_use: int = 0
    kept_young: int = 0
    removed_dirs: int = 0


def sweep(root: Path, max_age_s: float, keep: Collection[str] = (), now: float | None = None) -> SweepResult:
    """Delete files under `root` untouched for `max_age_s` seconds, except those in `keep` (resolved paths).

    A file's age counts from its last modification or status change: Gradio touches a cached file when it hands
    it out again, so a file still being given out stays young. Folders left empty go once they are old too,
    so a folder made a moment ago for a file about to be written is never pulled away.
    """
    now = time.time() if now is None else now
    cutoff = now - max_age_s
    keep_set = set(keep)
    result = SweepResult()
    if not root.is_dir():
        return result
    # Deepest first, so a folder is looked at after the files in it.
    for folder, _dirs, files in os.walk(root, topdown=False):
        for name in files:
            path = os.path.join(folder, name)
            try:
                st = os.lstat(path)
            except OSError:  # gone already
                continue
            if max(st.st_mtime, st.st_ctime) > cutoff:
                result.kept_young += 1
            elif path in keep_set:
                result.kept_in_use += 1
            else:
                try:
                    os.unlink(path)
                except OSError:
                    continue
                result.removed.append(path)
        if folder == str(root):
            continue
        try:
            if not os.listdir(folder) and os.lstat(folder).st_mtime <= cutoff:
                os.rmdir(folder)
                result.removed_dirs += 1
        except OSError:  # not empty any more, or gone: leave it
            continue
    return result
