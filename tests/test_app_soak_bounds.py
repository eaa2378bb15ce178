"""A long-running server stays bounded: ended sessions are forgotten, cached files go unless a live session shows
them. Real app, real gradio_client sessions."""

from __future__ import annotations

import asyncio
import gc
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from gradio.state_holder import StateHolder
from gradio_client import Client
from starlette.routing import Mount

from tests.server import serve
from tests.services.conftest import tiny_settings

PARAMS: dict[str, Any] = {"prompt": "a lighthouse", "negative_prompt": "", "width": 64, "height": 64, "steps": 2,
                          "cfg_scale": 7.0, "sampler": "Euler a", "batch_count": 1}


def result_file(client: Client, seed: int) -> Path:
    """Run one image job; the server-side cached file of its result."""
    _, _, gallery, _ = client.predict(**PARAMS, seed=seed, api_name="/generate_image")
    return Path(gallery[0]["image"]["path"])


def fetch(url: str, path: Path) -> int:
    """The status of fetching a cached file as a browser does."""
    try:
        with urllib.request.urlopen(f"{url}gradio_api/file={path}", timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as err:
        return err.code


def test_a_closed_session_is_forgotten_and_only_its_files_go(tmp_path: Path, tiny_sd_dir: Path) -> None:
    # Every file is old at once and a quiet session has no grace; the test runs the sweep itself.
    settings = tiny_settings(tmp_path / "data", tiny_sd_dir, session_grace_s=0, temp_max_age_s=0,
                             temp_sweep_every_s=3600)
    apps: list[Any] = []
    with serve(settings, apps) as url:
        janitor = apps[0].state.janitor
        gradio_app = next(r.app for r in apps[0].routes if isinstance(r, Mount) and r.path == "")
        held = gradio_app.get_blocks().state_holder.session_data
        live = Client(url, verbose=False, download_files=False)
        gone = Client(url, verbose=False, download_files=False)
        try:
            live_file, gone_file = result_file(live, 1), result_file(gone, 2)
            assert {live.session_hash, gone.session_hash} <= set(held)
            gone.close()
            deadline = time.monotonic() + 30
            while janitor.live(gone.session_hash) and time.monotonic() < deadline:
                time.sleep(0.05)  # the server notices the heartbeat went
            result = asyncio.run(janitor.sweep_once())
            assert live.session_hash in held
            assert gone.session_hash not in held
            # Nor in any other of Gradio's state holders (its validators once ran through a second App).
            assert not [h for h in gc.get_objects() if issubclass(type(h), StateHolder) and gone.session_hash in h]
            assert gone.session_hash not in janitor.held()  # nothing of it is left to renew a claim for
            assert live_file.exists()  # the live session still shows it: a fetch must still work
            assert not gone_file.exists()
            assert str(gone_file.resolve()) in result.removed
            _, _, gallery, _ = live.predict(**PARAMS, seed=1, api_name="/generate_image")
            assert Path(gallery[0]["image"]["path"]).exists()
        finally:
            live.close()
            gone.close()
