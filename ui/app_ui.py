"""Assembles the tabs into one Blocks."""

from __future__ import annotations

from collections.abc import Callable

import gradio as gr

from services.container import Services
from ui import catalog_api, chat_tab, history_tab, image_tab, img2img_tab, inpaint_tab, pnginfo_tab
from ui.common import QueueQuota

# System fonts only: the default theme would fetch Google Fonts, and Atelier makes no outside requests.
THEME = gr.themes.Default(
    font=["ui-sans-serif", "system-ui", "sans-serif"],
    font_mono=["ui-monospace", "SFMono-Regular", "monospace"],
)


def build_ui(services: Services, enforce_quota: bool, count_jobs: Callable[[gr.Blocks, str], int]) -> gr.Blocks:
    """A fresh Blocks wired to `services` (one per app: Blocks hold per-app state); `count_jobs(blocks, user)`
    counts a user's queued and running jobs, for the per-user quota."""
    quota = QueueQuota(services.settings.user_queue_quota, count_jobs, enforced=enforce_quota)
    with gr.Blocks(title="Atelier", analytics_enabled=False) as blocks:
        gr.Markdown("## Atelier")
        with gr.Tabs() as tabs:
            image = image_tab.render(services, quota)
            img2img = img2img_tab.render(services, quota)
            inpaint = inpaint_tab.render(services, quota)
            chat_tab.render(services, quota)
            history_tab.render(services, image, tabs)
            pnginfo_tab.render(tabs, image, img2img, inpaint)
        history_tab.register_api(services)
        chat_tab.register_api(services, quota)
        pnginfo_tab.register_api()
        catalog_api.register_api(services)
    quota.blocks = blocks
    return blocks
