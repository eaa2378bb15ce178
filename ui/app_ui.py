"""Assembles the tabs into one Blocks."""

from __future__ import annotations

from collections.abc import Callable

import gradio as gr

from services.container import Services
from services.shared_state import JobLedger
from ui import account_tab, catalog_api, chat_tab, history_tab, image_tab, img2img_tab, inpaint_tab, pnginfo_tab
from ui.common import PlaceTeller, QueueQuota

# System fonts only: the default theme would fetch Google Fonts, and Atelier makes no outside requests.
THEME = gr.themes.Default(
    font=["ui-sans-serif", "system-ui", "sans-serif"],
    font_mono=["ui-monospace", "SFMono-Regular", "monospace"],
)


def build_ui(services: Services, enforce_quota: bool, jobs: Callable[[gr.Blocks], dict[str, set[str]]],
             ledger: JobLedger | None = None, tell_place: PlaceTeller | None = None) -> gr.Blocks:
    """A fresh Blocks wired to `services` (one per app: Blocks hold per-app state); `jobs(blocks)` lists each
    user's queued and running jobs, `ledger` adds those on other replicas, for the per-user quota; `tell_place`
    shows a running image job its place in the batcher's line."""
    quota = QueueQuota(services.settings.user_queue_quota, jobs, enforced=enforce_quota, ledger=ledger,
                       tell_place=tell_place)
    with gr.Blocks(title="Atelier", analytics_enabled=False) as blocks:
        gr.Markdown("## Atelier")
        with gr.Tabs() as tabs:
            image = image_tab.render(services, quota)
            img2img = img2img_tab.render(services, quota)
            inpaint = inpaint_tab.render(services, quota)
            chat_tab.render(services, quota)
            history_tab.render(services, image, tabs)
            pnginfo_tab.render(tabs, image, img2img, inpaint)
            account_tab.render(services)
        history_tab.register_api(services)
        chat_tab.register_api(services, quota)
        pnginfo_tab.register_api()
        catalog_api.register_api(services)
    quota.blocks = blocks
    return blocks
