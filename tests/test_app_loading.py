"""Loading never breaks the other model, through the public API: a chat and an image job sent together while
the app warms both models up, and again while both reload after the idle policy unloaded them (tiny models,
the two loads overlapped at the point where a text model used to get meta-device weights)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from gradio_client import Client

from tests.load_hooks import WAIT_S, overlap_loads
from tests.server import serve
from tests.services.conftest import tiny_settings

IMAGE: dict[str, Any] = {"prompt": "a lighthouse", "negative_prompt": "", "width": 64, "height": 64, "steps": 2,
                         "cfg_scale": 7.0, "seed": 5, "sampler": "Euler", "batch_count": 1}
CHAT: dict[str, Any] = {"temperature": 0.0, "top_p": 0.95, "max_new_tokens": 8}


def chat_and_picture_at_once(client: Client) -> None:
    """Send a chat and an image job together; both must finish with a result."""
    chat = client.submit(message="What is two plus two?", conversation_id=None, **CHAT, api_name="/chat")
    image = client.submit(**IMAGE, api_name="/generate_image")
    _, _, gallery, _ = image.result(timeout=WAIT_S)  # first, so that no job is left running on a failed chat
    reply = chat.result(timeout=WAIT_S)
    assert (reply["status"], reply.get("error", "")) == ("done", "")
    assert reply["usage"]["completion_tokens"] > 0
    assert len(gallery) == 1


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory, tiny_sd_dir: Path, tiny_r1_gptq_dir: Path, tiny_sdxl_dir: Path,
        tiny_cn_sd15: Path, tiny_cn_sdxl: Path) -> Iterator[tuple[Client, Any]]:
    """A live app that warms both models up at start, with the two warm-up loads overlapped; its services."""
    data = tmp_path_factory.mktemp("data")
    # The tiny profile's other image models (tiny-sdxl, its ControlNets) are linked in, built already: the first load
    # would build them, and the load hooks would overlap the text load with those builds instead of the real load.
    controlnets = {"tiny-cn-sd15": tiny_cn_sd15, "tiny-cn-sdxl": tiny_cn_sdxl}
    settings = tiny_settings(data, tiny_sd_dir, tiny_r1_gptq_dir, tiny_sdxl_dir=tiny_sdxl_dir,
                             controlnets=controlnets).model_copy(update={"warmup": True})
    apps: list[Any] = []
    with pytest.MonkeyPatch.context() as monkeypatch:
        overlap_loads(monkeypatch)  # installed before the app's lifespan starts the warm-up
        with serve(settings, apps) as url:
            yield Client(url, verbose=False, download_files=False), apps[0].state.services


def test_a_chat_and_an_image_job_sent_during_warm_up_both_finish(app: tuple[Client, Any]) -> None:
    client, _ = app
    chat_and_picture_at_once(client)


def test_a_chat_and_an_image_job_while_both_models_reload_after_an_idle_unload(
    monkeypatch: pytest.MonkeyPatch, app: tuple[Client, Any]
) -> None:
    client, services = app
    for slot in (services.image_slot, services.text_slot):
        slot.ensure_loaded()  # warm-up finished (it may still be running when this test runs alone)
    services.residency.policy, services.residency.keep_alive_s = "unload", 0
    assert sorted(services.residency.sweep()) == ["image", "text"]
    overlap_loads(monkeypatch)  # the two reloads overlap
    chat_and_picture_at_once(client)
    assert services.text_slot.status().state.value == services.image_slot.status().state.value == "ready"
