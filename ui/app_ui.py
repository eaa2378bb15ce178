"""Assembles the tabs into one Blocks."""

from __future__ import annotations

import gradio as gr

from services.admission import QueueQuota
from services.container import Services
from ui import (
    account_tab,
    admin_tab,
    api_endpoints,
    chat_tab,
    history_tab,
    img2img_tab,
    inpaint_tab,
    pnginfo_tab,
    txt2img_tab,
    usage_tab,
)

# System fonts only: the default theme would fetch Google Fonts, and Atelier makes no outside requests.
THEME = gr.themes.Default(
    font=["ui-sans-serif", "system-ui", "sans-serif"],
    font_mono=["ui-monospace", "SFMono-Regular", "monospace"],
)

# A field's refusal (a validator's message): Gradio lays it over the field, where a long one covered a short field's
# label and was cut off (the Checkpoint's "model … is not available; choose one of: …"). In the flow instead, above
# the label, whole: the field grows to hold it.
CSS = """
.block > .wrap:has(> .validation-error) {
  position: static !important; height: auto; overflow: visible; background: none; margin-bottom: var(--spacing-md);
}
.block > .wrap > .validation-error { position: static; }
/* The History table is for reading: a click selects the job (its row lights up), without the framed cell that
   looked like an edit box. */
#history-table .cell-selected, #history-table .cell-selected * {
  outline: none !important; box-shadow: none !important;
}
#history-table .body-cell { cursor: pointer; }
"""


def build_ui(services: Services, quota: QueueQuota) -> gr.Blocks:
    """A fresh Blocks wired to `services` (one per app: Blocks hold per-app state), its jobs admitted by `quota`
    (which reads the Blocks' queue once they exist)."""
    with gr.Blocks(title="Atelier", analytics_enabled=False) as blocks:
        gr.Markdown("## Atelier")
        with gr.Tabs() as tabs:
            image = txt2img_tab.render(services, quota)
            img2img = img2img_tab.render(services, quota)
            inpaint = inpaint_tab.render(services, quota)
            chat_tab.render(services, quota)
            history_tab.render(services, image, tabs)
            pnginfo_tab.render(services, tabs, image, img2img, inpaint)
            usage_tab.render(services)  # issue 26: your own usage
            account_tab.render(services)
        admin_tab.show_to_admins(services, blocks, admin_tab.render(services))  # issue 26: shown to admins only
        api_endpoints.register_all(services, quota)
    quota.blocks = blocks
    return blocks
