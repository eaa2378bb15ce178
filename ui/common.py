"""Small helpers shared by the tabs."""

from __future__ import annotations

from typing import Any

import gradio as gr

# Internal UI events: not part of the public API and not callable by client libraries.
PRIVATE: dict[str, Any] = {"api_visibility": "private"}


def user_of(request: gr.Request | None) -> str:
    """The logged-in user's name, or '' in single-user mode."""
    return (getattr(request, "username", None) or "") if request is not None else ""
