"""The lean sessions and cheap skips change nothing a user sees: the same /generate_image through a stock Gradio
session and through Atelier's gives the same messages, previews, PNG bytes and history."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from gradio_client import Client

from api import gradio_internals
from tests.server import serve
from tests.services.conftest import tiny_settings

PARAMS: dict[str, Any] = {"prompt": "a lighthouse", "negative_prompt": "", "width": 64, "height": 64, "steps": 4,
                          "cfg_scale": 7.0, "seed": 7, "sampler": "Euler a", "batch_count": 1}
# What differs between any two runs of one job: where its files lie (a stored PNG's name is random; its bytes are
# compared through history), how long it took.
TIMES = re.compile(r"\d+(\.\d+)? s\b")
STORED = re.compile(r"\d{4}-\d\d-\d\d/[0-9a-f]{32}\.png")
VOLATILE = {"duration_s", "created_at", "finished_at", "started_at"}


def shown(value: Any) -> Any:
    """An output as a user gets it: a file as its bytes, times blanked."""
    if isinstance(value, dict) and "path" in value and "url" in value:
        return ("file", Path(value["path"]).read_bytes())
    if isinstance(value, dict):
        return {k: None if k in VOLATILE else shown(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [shown(v) for v in value]
    return STORED.sub("stored.png", TIMES.sub("… s", value)) if isinstance(value, str) else value


def one_job(data_dir: Path, tiny_sd_dir: Path) -> dict[str, Any]:
    """Serve the app, run one job from a fresh script session; what the user saw and what history keeps."""
    apps: list[Any] = []
    # A message per step and a preview per step, so that the previews are compared too.
    settings = tiny_settings(data_dir, tiny_sd_dir, cache_enabled=False, stream_interval_s=0, preview_every=1)
    with serve(settings, apps) as url:
        client = Client(url, verbose=False, download_files=False)
        try:
            job = client.submit(**PARAMS, api_name="/generate_image")
            job.result(timeout=120)
            messages = [shown(list(output)) for output in job.outputs()]
            history = apps[0].state.services.history
            jobs = history.list_jobs(user=None)["jobs"]
            for row in jobs:  # a stored file's name is random: its bytes are what the user gets
                row["files"] = [{**f, "file": history.file_path(f["file"]).read_bytes()} for f in row["files"]]
            jobs = shown(jobs)
        finally:
            client.close()
    return {"messages": messages, "history": jobs}


def test_a_job_looks_the_same_with_lean_sessions_and_cheap_skips_as_with_gradios_own(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, tiny_sd_dir: Path) -> None:
    with monkeypatch.context() as stock:
        stock.setattr(gradio_internals, "lean_sessions", lambda blocks: None)
        stock.setattr(gradio_internals, "cheap_skips", lambda blocks: None)
        gradios = one_job(tmp_path / "stock", tiny_sd_dir)
    ours = one_job(tmp_path / "lean", tiny_sd_dir)
    assert ours["history"] == gradios["history"]  # the same rows, their PNGs byte for byte
    final = ours["messages"][-1]
    assert final == gradios["messages"][-1]  # the last preview, the text, the gallery's PNG bytes and the info
    assert final[2][0]["image"][1].startswith(b"\x89PNG")
    # How many steps became messages depends on the machine's pace; a step both runs sent is the same message.
    by_text = {m[1]: m for m in gradios["messages"]}
    same_step = [m for m in ours["messages"] if m[1] in by_text and "step" in m[1]]
    assert all(m == by_text[m[1]] for m in same_step)
    previews = [m[0] for m in ours["messages"] if isinstance(m[0], tuple)]
    assert previews
    assert all(p[1].startswith(b"\xff\xd8") for p in previews)  # JPEG previews, as before
