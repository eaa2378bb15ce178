"""The model's status line above the image and chat forms ("✅ … is ready", "⏳ loading …"), kept current in the
browser.

The line is refreshed by a browser function that reads `/api/health`, not by a Python event. Gradio's page rewrites
the loading status of every component an earlier event updated whenever it sends any event to the server, and that
wipes the validation messages shown on those components: a Checkpoint refused after "Refresh list" (or a field filled
by "Reuse settings") lost its message at the status timer's next tick, a second after it appeared. A browser-only
event sends nothing to the queue, so nothing is wiped, and `tests/ui/test_app_ui.py` keeps every timer so."""

from __future__ import annotations

from typing import Any, Literal

import gradio as gr

from ui.common import PRIVATE

# The states in which the line can change by itself (a load under way, or one another client may start): the timer
# ticks only in these; a ready, parked or failed model changes only through a job, after which the line is read again.
POLLED_STATES = ("loading", "not loaded")

_JS = """async (current) => {
  try {
    const answer = await fetch("api/health", {cache: "no-store"});
    const slot = (await answer.json()).models.%(kind)s;
    // The message may carry a remote server's words, and the Markdown renders HTML: as html_text() on the server.
    const text = slot.message.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
    return [text, {__type__: "update", active: %(polled)s.includes(slot.state)}];
  } catch (err) {
    return [current, {__type__: "update", active: true}];  // a server restarting: keep the line, ask again
  }
}"""


def status_js(kind: Literal["image", "text"]) -> str:
    """The browser function that sets the line from `/api/health` and keeps its timer ticking only while needed."""
    return _JS % {"kind": kind, "polled": list(POLLED_STATES)}


def keep_current(line: gr.Markdown, timer: gr.Timer, kind: Literal["image", "text"], *after: Any) -> None:
    """Refresh `line` in the browser on each tick of `timer` and once each event in `after` has ended."""
    js = status_js(kind)
    wiring: dict[str, Any] = {"inputs": [line], "outputs": [line, timer], "show_progress": "hidden", **PRIVATE}
    timer.tick(None, js=js, **wiring)
    for event in after:  # a job may have loaded (or failed to load) the model
        event.then(None, js=js, **wiring)
