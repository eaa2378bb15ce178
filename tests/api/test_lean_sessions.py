"""What a session costs: Gradio's per-session state holds what the session changed, not the whole app's config,
and an output skipped with gr.skip() costs nothing. Small Blocks for the semantics, the real app for the work."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gradio as gr
import pytest
from gradio.blocks import BlocksConfig
from gradio.routes import App
from gradio.state_holder import SessionState
from gradio_client import Client
from starlette.routing import Mount

from api import gradio_internals
from tests.server import serve
from tests.services.conftest import tiny_settings

PARAMS: dict[str, Any] = {"prompt": "a lighthouse", "negative_prompt": "", "width": 64, "height": 64, "steps": 2,
                          "cfg_scale": 7.0, "seed": 7, "sampler": "Euler a", "batch_count": 1}


class Spy:
    """Counts the calls of a function it replaces."""

    def __init__(self, original: Any) -> None:
        self.original = original
        self.calls = 0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        return self.original(*args, **kwargs)


@pytest.fixture
def small() -> tuple[gr.Blocks, dict[str, Any]]:
    """A Blocks whose events update a component's properties, a gr.State and three outputs, one skipped."""
    with gr.Blocks() as demo:
        pick = gr.Dropdown(["a"], value="a", allow_custom_value=False)
        memory = gr.State(0)
        text, image, info = gr.Textbox(), gr.Image(), gr.JSON()
        refresh = gr.Button()
        refresh.click(lambda n: (gr.Dropdown(choices=["a", "b"]), n + 1), [memory], [pick, memory])
        stream = gr.Button()
        stream.click(lambda: ("hello", gr.skip(), {"k": 1}), None, [text, image, info])
    demo.queue()
    App.create_app(demo)
    parts = {"pick": pick, "memory": memory, "text": text, "image": image, "info": info,
             "refresh": demo.fns[0], "stream": demo.fns[1]}
    return demo, parts


def run(demo: gr.Blocks, fn: Any, inputs: list[Any], session: str) -> Any:
    """One event of `session` through Gradio's own processing (preprocess, the function, postprocess)."""
    state = demo.state_holder[session]
    return asyncio.run(demo.process_api(fn, inputs, state))


def test_a_new_session_builds_no_config(monkeypatch: pytest.MonkeyPatch,
                                        small: tuple[gr.Blocks, dict[str, Any]]) -> None:
    demo, _ = small
    gradio_internals.lean_sessions(demo)
    spy = Spy(BlocksConfig.config_for_block)
    monkeypatch.setattr(BlocksConfig, "config_for_block", staticmethod(spy))
    state = demo.state_holder["tab"]
    assert isinstance(state, SessionState)
    assert state.config_values == {}
    assert spy.calls == 0  # Gradio's own SessionState builds one per component, ~370 KiB for Atelier's
    # Nor does it copy the app's components and events (Gradio copies both dicts for every session).
    for mine, apps in ((state.blocks_config.blocks, demo.default_config.blocks),
                       (state.blocks_config.fns, demo.default_config.fns)):
        assert isinstance(mine, gradio_internals.CopyOnWrite)
        assert dict(mine) == apps
        assert mine._data is apps


def test_a_copy_on_write_map_copies_at_its_first_change_only() -> None:
    app = {1: "a", 2: "b"}
    session = gradio_internals.CopyOnWrite(app)
    assert session[1] == "a"
    assert 2 in session
    assert len(session) == 2
    assert session._data is app  # reading copies nothing
    session[3] = "c"
    del session[1]
    assert dict(session) == {2: "b", 3: "c"}
    assert app == {1: "a", 2: "b"}  # the app's own map is never changed


def test_what_a_session_changed_is_kept_for_its_next_events(small: tuple[gr.Blocks, dict[str, Any]]) -> None:
    demo, parts = small
    gradio_internals.lean_sessions(demo)
    gradio_internals.cheap_skips(demo)
    run(demo, parts["refresh"], [None], "tab")
    state = demo.state_holder["tab"]
    # Its own copy of the updated dropdown (a returning browser's next event is checked against the new choices)
    # and its gr.State value; another session sees neither.
    assert [value for _, value in state[parts["pick"]._id].choices] == ["a", "b"]
    assert state[parts["memory"]._id] == 1
    assert [value for _, value in demo.state_holder["other"][parts["pick"]._id].choices] == ["a"]
    assert demo.state_holder["other"][parts["memory"]._id] == 0
    run(demo, parts["refresh"], [None], "tab")
    assert state[parts["memory"]._id] == 2


def test_a_skipped_output_sends_an_empty_update_and_keeps_nothing(monkeypatch: pytest.MonkeyPatch,
                                                                 small: tuple[gr.Blocks, dict[str, Any]]) -> None:
    demo, parts = small
    gradio_internals.lean_sessions(demo)
    gradio_internals.cheap_skips(demo)
    built = Spy(gr.Image.__init__)
    monkeypatch.setattr(gr.Image, "__init__", built)
    answer = run(demo, parts["stream"], [], "tab")
    assert answer["data"][1] == {"__type__": "update"}  # what Gradio sends for gr.skip()
    assert answer["data"][0] == "hello"
    assert getattr(answer["data"][2], "root", None) == {"k": 1}
    assert built.calls == 0  # Gradio rebuilt the component (and its API schema) for every skip
    state = demo.state_holder["tab"]
    assert state[parts["image"]._id] is parts["image"]  # no copy of the skipped component
    # Only the outputs sent have a last value (the janitor reads them for the files a session shows).
    assert set(state.config_values) == {parts["text"]._id, parts["info"]._id}
    assert state.config_values[parts["text"]._id] == {"props": {"value": "hello"}}
    assert getattr(state.config_values[parts["info"]._id]["props"]["value"], "root", None) == {"k": 1}


def test_a_deep_link_still_gets_every_component_with_the_last_values(small: tuple[gr.Blocks, dict[str, Any]]) -> None:
    demo, parts = small
    gradio_internals.lean_sessions(demo)
    run(demo, parts["stream"], [], "tab")
    run(demo, parts["refresh"], [None], "tab")
    configs = {c["id"]: c for c in demo.state_holder["tab"].components}
    plain = SessionState(demo)  # Gradio's own, built the costly way
    plain_ids = {c["id"] for c in plain.components}
    assert set(configs) == plain_ids
    assert configs[parts["text"]._id]["props"]["value"] == "hello"
    assert [c[1] for c in configs[parts["pick"]._id]["props"]["choices"]] == ["a", "b"]


def test_check_refuses_a_session_state_with_fields_it_does_not_know(monkeypatch: pytest.MonkeyPatch,
                                                                     small: tuple[gr.Blocks, dict[str, Any]]) -> None:
    demo, _ = small
    original = SessionState.__init__

    def with_a_new_field(self: SessionState, blocks: gr.Blocks) -> None:
        original(self, blocks)
        self.deep_link_values = {}

    monkeypatch.setattr(SessionState, "__init__", with_a_new_field)
    with pytest.raises(SystemExit, match=r"SessionState fields"):
        gradio_internals.check(demo, demo.app)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, tiny_sd_dir: Path) -> Iterator[tuple[str, gr.Blocks]]:
    apps: list[Any] = []
    with serve(tiny_settings(tmp_path_factory.mktemp("data"), tiny_sd_dir, cache_enabled=False), apps) as url:
        gradio_app = next(r.app for r in apps[0].routes if isinstance(r, Mount) and r.path == "")
        yield url, gradio_app.get_blocks()


def test_a_job_from_a_fresh_script_session_builds_no_config_and_copies_no_component(
        monkeypatch: pytest.MonkeyPatch, served: tuple[str, gr.Blocks]) -> None:
    url, blocks = served
    spy = Spy(BlocksConfig.config_for_block)
    monkeypatch.setattr(BlocksConfig, "config_for_block", staticmethod(spy))
    client = Client(url, verbose=False, download_files=False)
    try:
        job = client.submit(**PARAMS, api_name="/generate_image")
        *_, gallery, info = job.result(timeout=120)
        assert info["seed"] == 7
        assert gallery
        # The stream skipped the gallery until the end: clients got Gradio's empty update for it.
        assert job.outputs()[0][2] == {"__type__": "update"}
        state = blocks.state_holder.session_data[client.session_hash]
        # Neither the session (Gradio's builds every component's config) nor a skipped output built a config...
        assert spy.calls == 0
        # ...nor a component: the session's components are the app's own.
        assert all(state.blocks_config.blocks[key] is block for key, block in blocks.blocks.items())
        assert all(set(value) == {"props"} for value in state.config_values.values())
    finally:
        client.close()
