"""The ecosystem's own clients against a real `python app.py` on loopback (tiny profile, accounts, keys): the
official `openai` SDK (sync and async, streaming and not, chat and images), the `webuiapi` package and the `mcp`
SDK's client; and, between Alice and Bob, that a key of Bob's can see, fetch, watch or stop nothing of Alice's, and
that the queue quota counts one user's jobs across the APIs and the UI together."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import webuiapi
from gradio_client import Client
from PIL import Image

from tests.live.replica import Replica, run_cli

PASSWORDS = {"alice": "correct horse battery", "bob": "battery staple horse"}
TEXT_MODEL = "tiny-gptq"
QUICK = {"width": 64, "height": 64, "steps": 2}


@dataclass
class Atelier:
    """The server and what the tests need of it."""

    url: str
    keys: dict[str, str]

    def get(self, path: str, user: str, **kwargs: Any) -> httpx.Response:
        return httpx.get(self.url + path, headers={"Authorization": f"Bearer {self.keys[user]}"}, timeout=60,
                         **kwargs)

    def post(self, path: str, user: str, **kwargs: Any) -> httpx.Response:
        return httpx.post(self.url + path, headers={"Authorization": f"Bearer {self.keys[user]}"}, timeout=120,
                          **kwargs)

    def openai(self, user: str) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.url + "/v1", api_key=self.keys[user], max_retries=0)

    def webui(self, user: str) -> webuiapi.WebUIApi:
        return webuiapi.WebUIApi(baseurl=self.url + "/sdapi/v1", username=user, password=self.keys[user])


@pytest.fixture(scope="module")
def atelier(tmp_path_factory: pytest.TempPathFactory, tiny_sd_dir: Path, tiny_r1_gptq_dir: Path) -> Iterator[Atelier]:
    root = tmp_path_factory.mktemp("clients")
    data = root / "data"
    models = data / "models"
    models.mkdir(parents=True)
    for name, built in (("tiny-sd", tiny_sd_dir), ("tiny-r1-gptq", tiny_r1_gptq_dir), ("tiny-sd-b", tiny_sd_dir)):
        (models / name).symlink_to(built, target_is_directory=True)
    # One job at a time per user, so that the quota can be met across the APIs; generous rate limits (the tests
    # send many requests); every step's preview, so that progress can show one.
    env = {"ATELIER_PROFILE": "tiny", "ATELIER_USER_QUEUE_QUOTA": "1", "ATELIER_LIMIT_IMAGE_JOBS": "1000/minute",
           "ATELIER_LIMIT_CHAT_MESSAGES": "1000/minute", "ATELIER_LIMIT_READS": "10000/minute",
           "ATELIER_PREVIEW_EVERY": "1", "ATELIER_STREAM_INTERVAL_S": "0"}
    for user, password in PASSWORDS.items():
        run_cli(["users", "add", user], env, data, stdin=f"{password}\n{password}\n")
    keys = {user: run_cli(["users", "key", "create", user, "--name", "tests"], env, data).stdout.strip()
            for user in PASSWORDS}
    replica = Replica("clients", data, env)
    replica.start()
    try:
        wait_ready(replica.url)
        yield Atelier(replica.url, keys)
    finally:
        replica.stop()


def wait_ready(url: str, timeout_s: float = 240) -> None:
    """Until both tiny models are loaded (the server warms them up at start)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        models = httpx.get(url + "/api/health", timeout=10).json()["models"]
        if all(m["state"] == "ready" for m in models.values()):
            return
        time.sleep(0.5)
    raise AssertionError(f"the models did not load: {models}")


def png_parameters(data: bytes) -> str:
    with Image.open(io.BytesIO(data)) as image:
        return str(image.info.get("parameters", ""))


def in_background(fn: Callable[[], Any]) -> tuple[threading.Thread, dict[str, Any]]:
    """Run `fn` in a thread; its result (or error) lands in the dict."""
    out: dict[str, Any] = {}

    def run() -> None:
        try:
            out["result"] = fn()
        except Exception as err:
            out["error"] = err

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, out


def slow_job(atelier: Atelier, user: str) -> tuple[threading.Thread, dict[str, Any], dict[str, Any]]:
    """A long txt2img of `user` through /sdapi, running once this returns: (thread, its result, the running job)."""
    thread, out = in_background(lambda: atelier.post("/sdapi/v1/txt2img", user, json={
        "prompt": f"a slow {user}", "width": 256, "height": 256, "steps": 400, "seed": 7}))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        jobs = atelier.get("/api/jobs", user).json()["jobs"]
        if jobs and jobs[0]["step"] > 0:
            return thread, out, jobs[0]
        time.sleep(0.05)
    raise AssertionError("the slow job did not start")


# --- the openai SDK --------------------------------------------------------------------------------------------
def test_openai_chat_is_a_conversation_with_the_reasoning_apart(atelier: Atelier) -> None:
    client = atelier.openai("alice")
    reply = client.chat.completions.create(
        model=TEXT_MODEL, messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}],
        max_completion_tokens=64, temperature=0, seed=1)
    message = reply.choices[0].message
    reasoning = message.model_extra["reasoning_content"]
    assert reasoning
    assert message.model_extra["reasoning"] == reasoning
    assert reply.choices[0].finish_reason in ("stop", "length")
    assert reply.usage.completion_tokens > 0
    assert reply.usage.completion_tokens_details.reasoning_tokens > 0
    stored = atelier.get(f"/api/conversations/{reply.model_extra['conversation_id']}", "alice").json()
    assert [m["role"] for m in stored["messages"]] == ["system", "user", "assistant"]
    assert stored["messages"][-1]["content"] == message.content
    assert stored["messages"][-1]["reasoning"] == reasoning
    assert atelier.get(f"/api/conversations/{reply.model_extra['conversation_id']}", "bob").status_code == 404


def stream_text(stream: Any) -> tuple[str, str, str | None, Any]:
    """(answer, reasoning, finish_reason, usage) from a stream of chunks."""
    answer, reasoning, reason, usage = "", "", None, None
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            delta = choice.delta
            extra = delta.model_extra or {}
            assert extra.get("reasoning_content") == extra.get("reasoning")  # DeepSeek's name and vLLM's
            reasoning += extra.get("reasoning_content") or ""
            answer += delta.content or ""
            reason = choice.finish_reason or reason
    return answer, reasoning, reason, usage


def test_openai_streams_reasoning_then_answer_and_stops_before_a_stop_sequence(atelier: Atelier) -> None:
    client = atelier.openai("alice")
    ask = {"model": TEXT_MODEL, "messages": [{"role": "user", "content": "count"}], "temperature": 0, "seed": 3,
           "max_completion_tokens": 96}
    first = client.chat.completions.create(**ask).choices[0]
    whole = first.message.content
    answer, reasoning, reason, usage = stream_text(client.chat.completions.create(
        **ask, stream=True, stream_options={"include_usage": True}))
    assert (answer, reason) == (whole, first.finish_reason)  # greedy: the stream says what the whole reply said
    assert reasoning == first.message.model_extra["reasoning_content"]
    assert usage.completion_tokens > 0
    # Greedy on the tiny model's fixed weights: always the same answer, long enough to hold a stop sequence inside.
    assert len(whole) >= 6, f"the pinned question's answer is too short to hold a stop sequence: {whole!r}"
    stop = whole[3:6]
    cut = whole[:whole.index(stop)]
    stopped = client.chat.completions.create(**ask, stop=[stop, "\x00never"])
    assert stopped.choices[0].message.content == cut
    assert stopped.choices[0].finish_reason == "stop"
    answer, _, reason, _ = stream_text(client.chat.completions.create(**ask, stop=stop, stream=True))
    assert answer == cut
    assert stop not in answer
    assert reason == "stop"


def test_closing_the_stream_stops_the_reply_which_is_kept_as_stopped(atelier: Atelier) -> None:
    # Greedy, so the tiny model's reply is the same every run: one that runs to max_tokens, never to an early end
    # of text (sampled, it sometimes ended by itself before the close was noticed, and was kept as done).
    body = {"model": TEXT_MODEL, "messages": [{"role": "user", "content": "go on and on"}], "stream": True,
            "max_tokens": 4000, "thinking_budget": 0, "temperature": 0, "seed": 3}
    headers = {"Authorization": f"Bearer {atelier.keys['alice']}"}
    whole = httpx.post(atelier.url + "/v1/chat/completions", json={**body, "stream": False, "max_tokens": 1000},
                       headers=headers, timeout=120).json()
    assert whole["choices"][0]["finish_reason"] == "length"  # the pinned reply goes on past 1,000 tokens
    with httpx.stream("POST", atelier.url + "/v1/chat/completions", json=body, headers=headers, timeout=60) as reply:
        lines = reply.iter_lines()
        first = json.loads(next(line for line in lines if line.startswith("data: "))[6:])
        next(line for line in lines if "reasoning_content" in line)  # it is writing
    conversation = first["conversation_id"]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        messages = atelier.get(f"/api/conversations/{conversation}", "alice").json()["messages"]
        if len(messages) == 2:
            break
        time.sleep(0.1)
    assert messages[-1]["status"] == "cancelled", messages[-1]  # stopped long before its 4,000 tokens, kept
    assert messages[-1]["completion_tokens"] < 4000
    assert atelier.get("/api/jobs", "alice").json()["jobs"] == []


def test_openai_async_client_streams_chat_and_makes_images(atelier: Atelier) -> None:
    async def main() -> tuple[str, list[Any]]:
        client = openai.AsyncOpenAI(base_url=atelier.url + "/v1", api_key=atelier.keys["alice"], max_retries=0)
        parts = []
        async for chunk in await client.chat.completions.create(
                model=TEXT_MODEL, messages=[{"role": "user", "content": "hi"}], stream=True, max_tokens=40):
            parts.extend(c.delta.content or "" for c in chunk.choices)
        images = await client.images.generate(prompt="a red kite", n=2, size="64x64", extra_body={"steps": 2})
        await client.close()
        return "".join(parts), images.data

    _, data = asyncio.run(main())
    assert len(data) == 2
    assert all("Steps: 2" in png_parameters(base64.b64decode(d.b64_json)) for d in data)


def test_openai_images_as_stored_pngs_and_expiring_links(atelier: Atelier) -> None:
    client = atelier.openai("alice")
    made = client.images.generate(prompt="a lighthouse", size="64x64", response_format="url",
                                  extra_body={"steps": 2, "seed": 11, "negative_prompt": "fog"})
    url = made.data[0].url
    fetched = httpx.get(url, timeout=30)  # an expiring link works without a key, as OpenAI's do
    assert fetched.headers["content-type"] == "image/png"
    assert "Negative prompt: fog" in png_parameters(fetched.content)
    assert "Seed: 11" in png_parameters(fetched.content)
    signature = url.split("signature=")[1]
    forged = url.replace(signature, ("1" if signature[0] != "1" else "2") + signature[1:])
    assert httpx.get(forged, timeout=30).status_code == 404
    job = atelier.get("/api/history?limit=1", "alice").json()["jobs"][0]
    assert job["prompt"] == "a lighthouse"
    assert job["negative_prompt"] == "fog"


def test_openai_image_edit_repaints_the_transparent_part(atelier: Atelier) -> None:
    picture = Image.new("RGB", (64, 64), (0, 0, 255))
    mask = Image.new("RGBA", (64, 64), (0, 0, 0, 255))
    mask.paste((0, 0, 0, 0), (16, 16, 48, 48))  # transparent: repaint
    files = {}
    for name, image in (("image", picture), ("mask", mask)):
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        files[name] = (f"{name}.png", buffer.getvalue(), "image/png")
    edited = atelier.openai("alice").images.edit(image=files["image"], mask=files["mask"], prompt="a sun",
                                                 extra_body={"steps": 2, "seed": 5})
    result = Image.open(io.BytesIO(base64.b64decode(edited.data[0].b64_json))).convert("RGB")
    assert result.size == (64, 64)
    assert result.getpixel((2, 2)) == (0, 0, 255)  # kept (opaque in the mask) ...
    assert result.getpixel((32, 32)) != (0, 0, 255)  # ... repainted (transparent in the mask)
    assert atelier.get("/api/history?limit=1", "alice").json()["jobs"][0]["mode"] == "inpaint"


# --- webuiapi --------------------------------------------------------------------------------------------------
def test_webuiapi_txt2img_gives_the_stored_png_and_its_infotext(atelier: Atelier) -> None:
    api = atelier.webui("alice")
    first = api.txt2img(prompt="a cat", seed=21, **QUICK)
    assert first.image.size == (64, 64)
    assert first.info["all_seeds"] == [21]
    assert first.info["infotexts"][0] == first.image.info["parameters"]
    assert "Seed: 21" in first.info["infotexts"][0]
    again = api.txt2img(prompt="a cat", seed=21, **QUICK)  # the same job: from the result cache
    assert again.info["cached"]
    assert again.info["job_id"] != first.info["job_id"]
    assert first.info["job_id"] in [j["job_id"] for j in atelier.get("/api/history", "alice").json()["jobs"]]
    read_back = api.png_info(first.image)  # PNG Info of the image it made: the same infotext and its fields
    assert read_back.info == first.info["infotexts"][0]
    assert (read_back.parameters["Seed"], read_back.parameters["Size-1"]) == ("21", "64")


def test_webuiapi_controlnet_units_run_unchanged(atelier: Atelier) -> None:
    api = atelier.webui("alice")
    plain = api.txt2img(prompt="a dancer", seed=9, **QUICK)  # loads the model, which builds the tiny ControlNets
    picture = Image.new("RGB", (64, 64), "black")
    picture.paste((255, 255, 255), (16, 16, 48, 48))
    unit = webuiapi.ControlNetUnit(image=picture, module="canny", model="tiny-cn-sd15", weight=0.9)
    made = api.txt2img(prompt="a dancer", seed=9, controlnet_units=[unit], **QUICK)
    assert 'ControlNet 0: "Module: canny, Model: tiny-cn-sd15 [' in made.info["infotexts"][0]
    assert made.image.tobytes() != plain.image.tobytes()


def test_webuiapi_img2img_with_a_mask_inpaints(atelier: Atelier) -> None:
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (8, 8, 40, 40))
    result = atelier.webui("alice").img2img(images=[Image.new("RGB", (64, 64), "green")], mask_image=mask,
                                            prompt="a flower", denoising_strength=0.6, seed=3, **QUICK)
    infotext = result.info["infotexts"][0]
    assert "Denoising strength: 0.6" in infotext
    assert "Mask blur: 4" in infotext
    assert result.image.size == (64, 64)


def test_webuiapi_sets_the_model_for_its_own_user_only(atelier: Atelier) -> None:
    alice, bob = atelier.webui("alice"), atelier.webui("bob")
    titles = [m["title"] for m in alice.get_sd_models()]
    default = titles[0]
    assert "tiny-sd-b" in titles
    assert {"model_name", "hash", "sha256", "filename"} <= set(alice.get_sd_models()[0])
    assert all(m["filename"].startswith("<data>/models/") for m in alice.get_sd_models())  # no server paths
    alice.util_set_model("tiny-sd-b")
    try:
        assert alice.util_get_current_model() == "tiny-sd-b"
        assert bob.util_get_current_model() == default
        made = alice.txt2img(prompt="a switch", seed=1, **QUICK)
        assert 'Model: tiny-sd-b' in made.info["infotexts"][0]
    finally:
        alice.set_options({"sd_model_checkpoint": default})
    assert alice.util_get_current_model() == default


def test_webuiapi_progress_and_interrupt_see_your_own_job(atelier: Atelier) -> None:
    api = atelier.webui("alice")
    thread, out = in_background(lambda: api.txt2img(prompt="a long walk", width=256, height=256, steps=400, seed=9))
    deadline = time.monotonic() + 60
    progress = api.get_progress()
    while progress["state"]["sampling_step"] < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
        progress = api.get_progress()
    assert progress["state"]["job_count"] == 1
    assert 0 < progress["progress"] < 1
    assert Image.open(io.BytesIO(base64.b64decode(progress["current_image"]))).size[0] > 0
    assert api.get_progress()["current_image"] is not None
    api.interrupt()
    thread.join(60)
    result = out["result"]
    assert result.info["interrupted"]
    assert result.images == []
    assert atelier.webui("alice").get_progress()["state"]["job_count"] == 0
    job = atelier.get("/api/history?limit=1", "alice").json()["jobs"][0]
    assert job["status"] == "cancelled"
    assert job["prompt"] == "a long walk"


# --- the MCP SDK's client -------------------------------------------------------------------------------------
def mcp_call(atelier: Atelier, user: str | None, work: Callable[[Any], Any], transport: str = "http") -> Any:
    from mcp import ClientSession
    from mcp.client.sse import sse_client
    from mcp.client.streamable_http import streamablehttp_client

    headers = {"Authorization": f"Bearer {atelier.keys[user]}"} if user else {}

    async def main() -> Any:
        opened = streamablehttp_client(atelier.url + "/gradio_api/mcp/", headers=headers) if transport == "http" \
            else sse_client(atelier.url + "/gradio_api/mcp/sse", headers=headers)
        async with opened as streams, ClientSession(streams[0], streams[1]) as session:
            await session.initialize()
            return await work(session)

    return asyncio.run(main())


def test_mcp_tools_make_images_as_image_content_for_the_keys_user(atelier: Atelier) -> None:
    async def work(session: Any) -> Any:
        tools = {t.name: t for t in (await session.list_tools()).tools}
        made = await session.call_tool("generate_image", {"prompt": "a comet", "seed": 4, **QUICK})
        history = await session.call_tool("history", {"limit": 1})
        return tools, made, history

    tools, made, history = mcp_call(atelier, "alice", work)
    assert {"generate_image", "img2img", "inpaint", "png_info", "chat", "history"} <= set(tools)
    generate = tools["generate_image"]
    assert generate.description.startswith("Generate images")
    assert "multiple of 8" in generate.inputSchema["properties"]["width"]["description"]
    assert generate.inputSchema["required"] == ["prompt"]
    assert not made.isError
    images = [c for c in made.content if c.type == "image"]
    assert len(images) == 1
    assert images[0].mimeType == "image/png"
    assert Image.open(io.BytesIO(base64.b64decode(images[0].data))).size == (64, 64)
    info = json.loads(next(c.text for c in made.content if c.type == "text" and c.text.startswith("{")))
    assert info["seed"] == 4
    assert info["prompt"] == "a comet"
    listed = json.loads(history.content[0].text)["jobs"]
    assert listed[0]["job_id"] == info["job_id"]  # it ran as alice: her history has it
    assert atelier.get(f"/api/history?limit=1&before={info['job_id'] + 1}", "bob").json()["jobs"] == [] or \
        atelier.get("/api/history?limit=200", "bob").json()["jobs"][0]["job_id"] != info["job_id"]


def test_mcp_needs_a_key_for_everything_and_serves_sse_too(atelier: Atelier) -> None:
    answer = httpx.post(atelier.url + "/gradio_api/mcp/", json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
                        headers={"accept": "application/json, text/event-stream"}, timeout=30)
    assert answer.status_code == 401
    assert "API key" in answer.json()["error"]["message"]
    assert httpx.get(atelier.url + "/gradio_api/mcp/sse", timeout=30).status_code == 401
    with pytest.raises(Exception):  # noqa: PT011 - the SDK wraps the 401 in its own task group error
        mcp_call(atelier, None, lambda session: session.list_tools())

    async def names(session: Any) -> list[str]:
        return [t.name for t in (await session.list_tools()).tools]

    assert "generate_image" in mcp_call(atelier, "bob", names, transport="sse")


# --- Alice and Bob ---------------------------------------------------------------------------------------------
def test_bobs_key_sees_fetches_watches_and_stops_nothing_of_alices(atelier: Atelier) -> None:
    own = atelier.webui("alice").txt2img(prompt="alice's own", seed=2, **QUICK)
    file_id = own.info["file_ids"][0]
    assert atelier.get(f"/api/images/{file_id}", "alice").status_code == 200
    assert atelier.get(f"/api/images/{file_id}", "bob").status_code == 404
    assert httpx.get(f"{atelier.url}/v1/images/files/{file_id}?expires=9999999999&signature={'0' * 64}",
                     timeout=30).status_code == 404
    thread, out, running = slow_job(atelier, "alice")
    try:
        bob = atelier.webui("bob")
        assert bob.get_progress()["state"]["job_count"] == 0
        bob.interrupt()
        assert atelier.post("/sdapi/v1/skip", "bob").status_code == 200
        assert atelier.get("/api/jobs", "bob").json()["jobs"] == []
        assert atelier.post(f"/api/jobs/{running['ref']}/stop", "bob").status_code == 404
        bobs = [j["job_id"] for j in atelier.get("/api/history?limit=200", "bob").json()["jobs"]]

        async def history(session: Any) -> Any:
            return json.loads((await session.call_tool("history", {"limit": 200})).content[0].text)["jobs"]

        bobs += [j["job_id"] for j in mcp_call(atelier, "bob", history)]  # his MCP history: his jobs only
        assert running["job_id"] not in bobs
        assert own.info["job_id"] not in bobs
        assert atelier.webui("alice").get_progress()["state"]["job_count"] == 1  # still running
        # Alice's Gradio UI and API see her API job running in her history, and a Stop from REST reaches it.
        ui = Client(atelier.url + "/", auth=("alice", PASSWORDS["alice"]), verbose=False, download_files=False)
        listed = ui.predict(limit=5, api_name="/history")["jobs"]
        assert next(j for j in listed if j["job_id"] == running["job_id"])["status"] == "running"
        assert atelier.post(f"/api/jobs/{running['ref']}/stop", "alice").json() == {"stopped": running["ref"]}
    finally:
        atelier.post("/sdapi/v1/interrupt", "alice")
        thread.join(60)
    assert json.loads(out["result"].json()["info"])["interrupted"]


def test_the_quota_counts_one_users_jobs_across_the_apis_and_the_ui(atelier: Atelier) -> None:
    thread, out, _ = slow_job(atelier, "alice")  # the quota is 1 job: this one, through /sdapi
    try:
        refused = atelier.post("/v1/images/generations", "alice", json={"prompt": "one more", "size": "64x64"})
        assert refused.status_code == 429
        assert refused.headers["retry-after"]
        assert "the limit is 1" in refused.json()["error"]["message"]
        chat = atelier.post("/v1/chat/completions", "alice", json={"model": TEXT_MODEL, "messages": [
            {"role": "user", "content": "hi"}]})
        assert chat.status_code == 429
        assert atelier.post("/sdapi/v1/txt2img", "alice", json={"prompt": "and one more", **QUICK}).status_code == 429
        ui = Client(atelier.url + "/", auth=("alice", PASSWORDS["alice"]), verbose=False, download_files=False)
        with pytest.raises(Exception, match="the limit is 1"):
            ui.predict(prompt="from the UI", negative_prompt="", width=64, height=64, steps=2, cfg_scale=7, seed=1,
                       sampler="Euler a", batch_count=1, api_name="/generate_image")
        # Another user is not held up by her quota.
        assert atelier.webui("bob").txt2img(prompt="bob's turn", seed=1, **QUICK).image.size == (64, 64)
    finally:
        atelier.post("/sdapi/v1/interrupt", "alice")
        thread.join(60)
    assert out["result"].status_code == 200
    assert atelier.post("/v1/images/generations", "alice", json={"prompt": "now", "size": "64x64",
                                                                 "steps": 2}).status_code == 200


def test_the_client_examples_run_against_the_server(atelier: Atelier, tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[1] / "examples"
    env = {**os.environ, "ATELIER_API_KEY": atelier.keys["alice"], "ATELIER_USER": "alice"}
    runs = [("openai_sdk.py", ["--image", "a kite", "--steps", "2", "--out", str(tmp_path / "openai.png")]),
            ("openai_sdk.py", ["hello"]),
            ("webuiapi_txt2img.py", ["a kite", "--steps", "2", "--size", "64", "--out", str(tmp_path / "a1111.png")]),
            ("mcp_client.py", ["a kite", "--steps", "2", "--out", str(tmp_path / "mcp.png")])]
    for name, args in runs:
        done = subprocess.run([sys.executable, str(root / name), *args, "--url", atelier.url], env=env,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, f"{name}: {done.stdout}\n{done.stderr}"
    assert "Steps: 2" in png_parameters((tmp_path / "openai.png").read_bytes())
    assert "Steps: 2" in png_parameters((tmp_path / "a1111.png").read_bytes())
    assert Image.open(tmp_path / "mcp.png").size[0] > 0
    config = json.loads((root / "mcp" / "claude_desktop_config.json").read_text())
    assert config["mcpServers"]["atelier"]["args"][1].endswith("/gradio_api/mcp/")
