"""`/models`, `/loras` and `/choices`: what the model folders hold and what a request may choose, for scripts and the
React client."""

from __future__ import annotations

from typing import Any

import gradio as gr

from contracts import choices
from services.container import Services
from ui.common import read_api
from ui.image_form import BUILTIN_UPSCALERS


def register_api(services: Services) -> None:
    """The endpoints; called outside gr.Tabs because API-only endpoints have no place in a layout."""
    catalog = services.catalog

    def models() -> dict[str, Any]:
        """Checkpoints, VAEs and hires upscalers by the names /generate_image, /img2img and /inpaint take."""
        return {"models": catalog.models(), "vaes": catalog.vaes(),
                "upscalers": [*BUILTIN_UPSCALERS, *catalog.upscalers()]}

    def loras() -> dict[str, Any]:
        """LoRA names for the prompt's <lora:name:weight> tags."""
        return {"loras": catalog.loras()}

    def choice_lists() -> dict[str, Any]:
        """The choices a job may make, with their labels: modes, samplers, resize modes, masked content, mask modes
        (numbered as AUTOMATIC1111's API numbers them), and the hires upscalers (built-in, then this server's)."""
        return choices(catalog.upscalers())

    with gr.Row(visible=False):
        read_api(models, "models", {})
        read_api(loras, "loras", {})
        read_api(choice_lists, "choices", {})
