"""Gradio renders a toast's message (gr.Error, gr.Warning, gr.Info) as HTML, and messages carry what users sent (a
sampler name from a PNG, a model or upscaler name a remote server echoes): every toast escapes its message, so
that it shows as the words it is. Validator messages are shown as text, so they stay as they are."""

from __future__ import annotations

import ast
import html
from pathlib import Path

import pytest

from ui.chat_tab import stored_to_chatbot
from ui.common import error_toast

UI = Path(__file__).resolve().parents[2] / "ui"
ATTACKS = ["<img src=x onerror=alert(1)>", "<a href='https://evil.example'>log in again</a>",
           "<style>*{display:none}</style>", "&lt;already escaped&gt;"]


@pytest.mark.parametrize("sent", ATTACKS)
def test_an_error_toast_shows_user_text_as_text(sent: str) -> None:
    text = f"sampler {sent!r} is unknown; write <lora:name:0.8>"
    message = error_toast(text).message
    assert "<" not in message
    assert ">" not in message
    assert html.unescape(message) == text  # what the toast shows: the words, exactly
    assert message.endswith("write &lt;lora:name:0.8&gt;")  # our own angle brackets survive the toast too


def toast_calls(path: Path) -> list[str]:
    """Each gr.Error, gr.Warning and gr.Info a ui/ module calls directly, by line."""
    calls = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in
                ("Error", "Warning", "Info") and isinstance(node.func.value, ast.Name) and node.func.value.id == "gr"):
            calls.append(f"{path.name}:{node.lineno} gr.{node.func.attr}")
    return calls


def test_every_toast_in_the_ui_goes_through_the_escaping_helpers() -> None:
    direct = [call for path in sorted(UI.glob("*.py")) if path.name != "common.py" for call in toast_calls(path)]
    assert direct == [], "use ui.common.error_toast / info_toast, which escape the message"
    assert len(toast_calls(UI / "common.py")) == 2  # the helpers themselves


def test_a_failed_chat_reply_shows_its_error_as_text() -> None:
    bubbles = stored_to_chatbot([{"role": "assistant", "content": "", "reasoning": "", "reasoning_s": None,
                              "status": "failed", "error": "the server said <img src=x onerror=alert(1)>"}])
    assert bubbles[-1]["content"] == "❌ the server said &lt;img src=x onerror=alert(1)&gt;"
