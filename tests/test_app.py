"""The whole app through its public surfaces: gradio_client against a live server, and REST."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from gradio_client import Client
from PIL import Image

from api.server import create_app
from app import parse_args
from settings import Settings
from storage.files import parse_parameters, read_parameters
from tests.server import serve
from tests.services.conftest import tiny_settings

PARAMS: dict[str, Any] = {"prompt": "a lighthouse at dusk", "negative_prompt": "blurry", "width": 64, "height": 64,
                          "steps": 4, "cfg_scale": 7.0, "seed": 42, "sampler": "Euler a", "batch_count": 1}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, tiny_sd_dir: Path) -> Iterator[str]:
    # No result cache: the same-seed test must compute twice (tests/services/test_cache.py covers the cache).
    # Every step streamed (stream_interval_s=0): the preview test counts them; tests/ui covers the coalescing.
    settings = tiny_settings(tmp_path_factory.mktemp("data"), tiny_sd_dir, preview_every=1, cache_enabled=False,
                             stream_interval_s=0)
    with serve(settings) as url:
        yield url


@pytest.fixture(scope="module")
def client(server: str) -> Client:
    return Client(server, verbose=False, download_files=False)


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.status == 200
        return json.loads(response.read())


def generate(client: Client, **overrides: Any) -> tuple[list[Any], Any]:
    job = client.submit(**{**PARAMS, **overrides}, api_name="/generate_image")
    result = job.result(timeout=120)
    return job.outputs(), result


def test_health_reports_each_model(server: str) -> None:
    health = get_json(server + "api/health")
    assert health["status"] == "ok"
    assert health["profile"] == "tiny"
    assert health["models"]["image"]["state"] in {"not loaded", "loading", "ready"}


def test_generate_streams_previews_and_returns_the_stored_png(client: Client, server: str) -> None:
    outputs, (_, progress, gallery, info) = generate(client)
    previews = [o[0] for o in outputs if o[0]]
    assert len(previews) >= 3  # preview_every=1 over 4 steps: the stream carries the previews
    assert info["seed"] == 42
    assert {"job_id", "seed", "width", "height", "steps", "sampler", "model", "duration_s"} <= set(info)
    assert (info["width"], info["height"], info["steps"], info["sampler"]) == (64, 64, 4, "Euler a")
    assert "done" in progress
    (item,) = gallery
    path = Path(item["image"]["path"])
    # The file handed back is the stored PNG itself, metadata intact (not a re-encoded copy).
    assert path.name == Path(info["files"][0]).name
    parameters = parse_parameters(read_parameters(path))
    assert parameters["Seed"] == "42"
    assert parameters["Prompt"] == PARAMS["prompt"]
    assert parameters["Negative prompt"] == "blurry"
    # The UI's health line now says ready.
    image = get_json(server + "api/health")["models"]["image"]
    assert image["state"] == "ready"
    assert image["message"] == f"✅ {image['model']} is ready."  # the Gradio page's status line reads it here


def test_same_seed_twice_gives_identical_pixels(client: Client) -> None:
    _, (*_, gallery_a, info_a) = generate(client, width=128, height=64, seed=1234)
    _, (*_, gallery_b, info_b) = generate(client, width=128, height=64, seed=1234)
    assert (info_a["cached"], info_b["cached"]) == (False, False)  # computed twice, not one file linked twice
    a = np.asarray(Image.open(gallery_a[0]["image"]["path"]))
    b = np.asarray(Image.open(gallery_b[0]["image"]["path"]))
    assert a.shape == (64, 128, 3)
    assert np.array_equal(a, b)


def test_bad_input_is_refused_before_queueing_with_the_allowed_range(client: Client, server: str) -> None:
    before = get_json(server + "api/health")
    with pytest.raises(Exception, match="multiple of 8 between"):
        client.predict(**{**PARAMS, "width": 100}, api_name="/generate_image")
    with pytest.raises(Exception, match="sampler 'Nope' is unknown"):
        client.predict(**{**PARAMS, "sampler": "Nope"}, api_name="/generate_image")
    assert get_json(server + "api/health")["status"] == before["status"]


def test_history_lists_jobs_newest_first_with_paging(client: Client, server: str) -> None:
    _, (*_, info) = generate(client, prompt="for history", seed=5)
    page = client.predict(limit=1, api_name="/history")
    assert [j["job_id"] for j in page["jobs"]] == [info["job_id"]]
    assert page["jobs"][0]["prompt"] == "for history"
    assert page["jobs"][0]["seed_used"] == 5
    assert page["jobs"][0]["status"] == "done"
    assert page["jobs"][0]["files"][0]["file"] == info["files"][0]
    # A default client (download_files=True) must not mistake history entries for files to fetch.
    assert Client(server, verbose=False).predict(limit=1, api_name="/history") == page
    older = client.predict(limit=50, before=page["next_before"], api_name="/history")
    assert all(j["job_id"] < info["job_id"] for j in older["jobs"])


def test_search_history_finds_a_job_by_its_prompt_through_gradio_client(client: Client) -> None:
    _, (*_, info) = generate(client, prompt="a searchable albatross", seed=6)
    page = client.predict(q="albatrosses -gull", api_name="/search_history")
    assert [j["job_id"] for j in page["jobs"]] == [info["job_id"]]
    assert [s["text"] for s in page["jobs"][0]["highlight"]["prompt"] if s["match"]] == ["albatross"]
    assert client.predict(q="", seed=6, api_name="/search_history")["jobs"][0]["job_id"] == info["job_id"]
    with pytest.raises(Exception, match="since:"):
        client.predict(q="albatross", since="last week", api_name="/search_history")
    assert client.predict(q="albatross", api_name="/search_conversations")["conversations"] == []


def test_cancel_stops_the_job_frees_the_queue_and_records_it_cancelled(client: Client) -> None:
    job = client.submit(**{**PARAMS, "prompt": "very long", "steps": 400, "seed": 9}, api_name="/generate_image")
    deadline = time.monotonic() + 60
    while len(job.outputs()) < 3:  # a few steps in
        assert time.monotonic() < deadline, "the long job never started"
        time.sleep(0.05)
    job.cancel()
    started = time.monotonic()
    _, (*_, info) = generate(client, prompt="right after", steps=1)
    assert info["steps"] == 1
    assert time.monotonic() - started < 60  # did not wait for 400 steps (a sanity bound, not a benchmark)
    jobs = client.predict(limit=5, api_name="/history")["jobs"]
    cancelled = next(j for j in jobs if j["prompt"] == "very long")
    assert cancelled["status"] == "cancelled"
    assert cancelled["files"] == []


def test_nothing_bypasses_the_queue(server: str) -> None:
    request = urllib.request.Request(server + "gradio_api/run/generate_image", method="POST",
                                     data=json.dumps({"data": list(PARAMS.values())}).encode(),
                                     headers={"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=10)
    assert caught.value.code in {403, 404, 405}


def test_default_profile_offline_stays_up_and_says_how_to_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from fastapi.testclient import TestClient
    from huggingface_hub import constants

    # An empty Hugging Face cache, whatever this machine's own cache holds (huggingface_hub read the variables
    # at import, so its constants are set too).
    hf_home = tmp_path / "hf-home"
    monkeypatch.setenv("HF_HOME", str(hf_home))
    monkeypatch.setenv("HF_HUB_CACHE", str(hf_home / "hub"))
    monkeypatch.setattr(constants, "HF_HOME", str(hf_home))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(hf_home / "hub"))

    settings = Settings(profile="cpu", data_dir=tmp_path / "data", warmup=True)
    with TestClient(create_app(settings)) as http:
        deadline = time.monotonic() + 60
        while (image := http.get("/api/health").json()["models"]["image"])["state"] != "failed":
            assert time.monotonic() < deadline, image
            time.sleep(0.1)
        assert image["model"] == "stabilityai/sd-turbo"
        assert "--profile tiny" in image["reason"]
        assert "--image-model" in image["reason"]
        # In Atelier's words: the command that fetches it, not diffusers' advice to programmers.
        assert "hf download stabilityai/sd-turbo" in image["reason"]
        assert "local_files_only" not in image["reason"]
        assert "stacktrace" not in image["reason"]
        page = http.get("/")
        assert page.status_code == 200


def test_flags_override_settings() -> None:
    assert parse_args(["--profile", "tiny", "--port", "9000", "--memory-mode", "model-offload"]) == {
        "profile": "tiny", "port": 9000, "memory_mode": "model-offload"}
    assert parse_args(["--text-model", "/models/r1", "--idle-policy", "unload", "--keep-alive", "60"]) == {
        "text_model": "/models/r1", "idle_policy": "unload", "keep_alive_s": 60.0}
    with pytest.raises(SystemExit):
        parse_args(["--profile", "huge"])


def test_an_unreachable_share_server_leaves_one_clear_line(monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    from gradio import networking

    from api.server import open_share_link

    seen: list[Any] = []

    def refuse(*args: Any) -> str:
        seen.append(args)
        raise RuntimeError("Could not get share link from Gradio API Server.")

    monkeypatch.setattr(networking, "setup_tunnel", refuse)
    settings = Settings(profile="tiny", share=True, share_server_address="share.example.com:7000")
    assert open_share_link(settings) is None
    assert seen[0][3] == "share.example.com:7000"  # a self-hosted share server is passed through
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["Share link unavailable (RuntimeError: Could not get share link from Gradio API Server.); "
                   "Atelier keeps running locally."]


def test_exposing_the_server_without_accounts_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="users add"):
        create_app(Settings(profile="tiny", data_dir=tmp_path, host="0.0.0.0", warmup=False))


def test_python_app_py_users_dispatches_to_the_users_command(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[1]
    data = ["--data-dir", str(tmp_path)]
    added = subprocess.run([sys.executable, "app.py", "users", "add", "erin", "--admin", *data], cwd=root,
                           input="s3cret-pass\ns3cret-pass\n", capture_output=True, text=True, check=True)
    assert added.stdout.startswith("Added erin (admin).")
    listed = subprocess.run([sys.executable, "app.py", "users", "list", *data], cwd=root, capture_output=True,
                            text=True, check=True)
    assert listed.stdout.startswith("erin (admin)  since ")
    missing = subprocess.run([sys.executable, "app.py", "users", "passwd", *data], cwd=root, capture_output=True,
                             text=True)
    assert missing.returncode == 1
    assert missing.stderr.strip() == "users passwd needs a NAME."


def test_a_job_waiting_in_the_batcher_streams_its_place_in_line(tmp_path: Path, tiny_sd_dir: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """With batching on, several jobs are past Gradio's queue at once: the one waiting in the batcher hears its
    place and ETA as Gradio's own queue estimation (what the Gradio UI and the React client show), after the job
    started in Gradio's terms, and its progress text says so; once it runs, its messages say running again."""
    import threading

    import httpx

    from pipelines.diffusers_backend import DiffusersBackend

    gate, started = threading.Event(), threading.Event()
    original = DiffusersBackend.generate_batch

    def gated(self: Any, items: Any) -> Any:
        if not started.is_set():  # the first call holds the pipeline until the test lets it go
            started.set()
            assert gate.wait(120)
        return original(self, items)

    monkeypatch.setattr(DiffusersBackend, "generate_batch", gated)
    settings = tiny_settings(tmp_path / "data", tiny_sd_dir, cache_enabled=False, max_batch_images=2)
    with serve(settings) as url:
        client = Client(url, verbose=False, download_files=False)
        blocker = client.submit(**{**PARAMS, "steps": 1}, api_name="/generate_image")
        assert started.wait(120)
        config = httpx.get(url + "config", timeout=10).json()
        fn_index = next(d["id"] for d in config["dependencies"] if d.get("api_name") == "generate_image")
        session = "batcher-place-test"
        values = [PARAMS[n] for n in ("prompt", "negative_prompt")] + [96, 96, 2, 7.0, 1, "Euler a", 1,
                                                                       False, 2.0, "Latent", 0, 0.75, "", ""]
        joined = httpx.post(url + "gradio_api/queue/join", timeout=10, json={
            "data": values, "fn_index": fn_index, "session_hash": session, "event_data": None, "trigger_id": None})
        assert joined.status_code == 200
        messages: list[dict[str, Any]] = []
        with httpx.stream("GET", url + f"gradio_api/queue/data?session_hash={session}", timeout=120) as stream:
            for line in stream.iter_lines():
                if not line.startswith("data:"):
                    continue
                message = json.loads(line.removeprefix("data:"))
                messages.append(message)
                if message["msg"] == "estimation" and any(m["msg"] == "process_starts" for m in messages):
                    gate.set()  # it told its place while the pipeline was held: let everything run
                if message["msg"] == "process_completed":
                    break
        assert blocker.result(timeout=120)
    kinds = [m["msg"] for m in messages]
    assert messages[-1]["success"], messages[-1]
    place_at = next(i for i, m in enumerate(messages)
                    if m["msg"] == "estimation" and i > kinds.index("process_starts"))
    assert messages[place_at]["rank"] == 0
    assert messages[place_at]["queue_size"] == 1
    texts = [m["output"]["data"][1] for m in messages[:place_at] if m["msg"] == "process_generating"]
    assert texts
    assert "in line, next in line" in json.dumps(texts[-1])  # the text, or Gradio's diff that sets it
    # After its place, a data message puts the clients back to "running" before the result.
    assert "process_generating" in kinds[place_at + 1:-1]
