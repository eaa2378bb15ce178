"""The pieces of the MCP adaptation: tool results as content, parameter descriptions from docstrings, optional text
parameters, and when MCP is served."""

from __future__ import annotations

import json
from typing import Any

import pytest

from api.mcp_gate import describe_parameters, mcp_enabled, optional_texts, tool_names, tool_outputs
from settings import Settings

FILE = {"path": "/tmp/gradio/abc/0.png", "url": "http://x/gradio_api/file=/tmp/gradio/abc/0.png",
        "meta": {"_type": "gradio.FileData"}}


def test_an_image_jobs_result_is_its_images_and_its_info() -> None:
    preview = {**FILE, "path": "/tmp/gradio/p.jpeg"}
    gallery = [{"image": FILE, "caption": "seed 1"}, [{**FILE, "path": "/tmp/gradio/abc/1.png"}, "seed 2"]]
    out = tool_outputs("/generate_image", [(preview, "Job 3: done", gallery, {"job_id": 3})])
    assert out[:2] == [FILE, {**FILE, "path": "/tmp/gradio/abc/1.png"}]  # the stored PNGs, not the preview
    assert json.loads(out[2]) == {"job_id": 3}
    assert tool_outputs("/generate_image", [{"__type__": "update"}, "x", [], {"job_id": 4}]) == ['{"job_id": 4}']


def test_other_tools_give_json_text() -> None:
    assert tool_outputs("/history", [{"jobs": [], "next_before": None}]) == ['{"jobs": [], "next_before": null}']
    assert tool_outputs("/chat", ["plain text"]) == ["plain text"]


def test_parameters_are_described_from_the_docstrings_args_even_for_kwargs_handlers() -> None:
    doc = "Make images.\n\nArgs:\n    prompt: what the image shows\n    steps: sampling steps\nReturns:\n    x: y"
    found = describe_parameters(doc, {"request": "", "values": ""}, ["prompt", "steps", "seed"])
    assert found == {"request": "", "values": "", "prompt": "what the image shows", "steps": "sampling steps"}
    assert describe_parameters("No args here.", {"a": "kept"}, ["a"]) == {"a": "kept"}


def test_text_parameters_after_the_first_are_optional_and_tools_take_the_endpoints_names() -> None:
    info: dict[str, Any] = {"named_endpoints": {"/generate_image": {"parameters": [
        {"parameter_name": "prompt", "component": "Textbox", "parameter_has_default": False},
        {"parameter_name": "negative_prompt", "component": "Textbox", "parameter_has_default": False},
        {"parameter_name": "init_image", "component": "Image", "parameter_has_default": False}]}}}
    amended = optional_texts(info)
    prompt, negative, image = amended["named_endpoints"]["/generate_image"]["parameters"]
    assert not prompt["parameter_has_default"]
    assert (negative["parameter_has_default"], negative["parameter_default"]) == (True, "")
    assert not image["parameter_has_default"]
    assert not info["named_endpoints"]["/generate_image"]["parameters"][1]["parameter_has_default"]  # a copy
    assert tool_names({"run": "/generate_image", "run_1": "/img2img"}) == {"generate_image": "/generate_image",
                                                                          "img2img": "/img2img"}


@pytest.mark.parametrize(("mode", "host", "share", "users", "served"), [
    ("auto", "127.0.0.1", False, False, True), ("auto", "0.0.0.0", False, False, False),
    ("auto", "0.0.0.0", False, True, True), ("auto", "127.0.0.1", True, False, False),
    ("off", "127.0.0.1", False, True, False), ("on", "0.0.0.0", False, False, True),
])
def test_mcp_is_served_where_accounts_guard_it_or_only_this_machine_reaches_it(
        mode: str, host: str, share: bool, users: bool, served: bool) -> None:
    settings = Settings(mcp=mode, host=host, share=share, insecure_no_auth=True)
    assert mcp_enabled(settings, users) is served
