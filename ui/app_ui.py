"""Assembles the tabs into one Blocks."""

from __future__ import annotations

import gradio as gr

from services.container import Services
from ui import chat_tab, history_tab, image_tab
from ui.common import QueueQuota

# System fonts only: the default theme would fetch Google Fonts, and Atelier makes no outside requests.
THEME = gr.themes.Default(
    font=["ui-sans-serif", "system-ui", "sans-serif"],
    font_mono=["ui-monospace", "SFMono-Regular", "monospace"],
)


def build_ui(services: Services, enforce_quota: bool) -> gr.Blocks:
    """A fresh Blocks wired to `services` (one per app: Blocks hold per-app state)."""
    quota = QueueQuota(services.settings.user_queue_quota, enforced=enforce_quota)
    with gr.Blocks(title="Atelier", analytics_enabled=False) as blocks:
        gr.Markdown("## Atelier")
        with gr.Tabs() as tabs:
            image = image_tab.render(services, quota)
            chat_tab.render(services, quota)
            history_tab.render(services, image, tabs)
        history_tab.register_api(services)
        chat_tab.register_api(services, quota)
    quota.blocks = blocks
    return blocks
