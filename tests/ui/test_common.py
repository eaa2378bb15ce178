"""What a validator checked reaches its event's handler over the same HTTP request, once."""

from __future__ import annotations

from types import SimpleNamespace

import gradio as gr
import pytest

from ui.common import CHECKED_STATE_KEY, checked_by_validator, hand_to_handler


def test_the_handler_takes_what_its_validator_checked_once() -> None:
    http = SimpleNamespace(scope={"state": {"atelier_job_ticket": "t1"}})
    request = SimpleNamespace(request=http, username="alice")
    hand_to_handler(request, "the checked request")
    assert http.scope["state"] == {"atelier_job_ticket": "t1", CHECKED_STATE_KEY: "the checked request"}
    assert checked_by_validator(request) == "the checked request"
    assert http.scope["state"] == {"atelier_job_ticket": "t1"}  # taken: a decoded image is not kept past its job
    with pytest.raises(gr.Error, match="not checked before it ran"):
        checked_by_validator(request)


def test_a_handler_run_without_its_validator_is_refused_with_a_message() -> None:
    with pytest.raises(gr.Error, match="send it again"):
        checked_by_validator(SimpleNamespace(request=SimpleNamespace(scope={})))
    with pytest.raises(gr.Error):
        checked_by_validator(None)
