"""The Usage tab: your own jobs, images, tokens and GPU seconds over a period, the figures an admin sees for you
(GET /api/usage gives the same)."""

from __future__ import annotations

import asyncio
from typing import Any

import gradio as gr

from services.admin import AdminError
from services.container import Services
from ui.admin_views import USAGE_COLUMNS, period_fields, read_period, usage_rows
from ui.common import PRIVATE, error_toast, user_of


def render(services: Services) -> gr.Tab:
    """The tab inside the current Blocks, its figures shown when it opens and on Refresh."""
    with gr.Tab("Usage", id="usage") as tab:
        days, since, until = period_fields()
        refresh = gr.Button("Refresh", size="sm", elem_id="usage-refresh")
        period = gr.Markdown()
        table = gr.Dataframe(headers=USAGE_COLUMNS[1:], label="Your usage (jobs that ran: done, failed or stopped)",
                             interactive=False, elem_id="usage-table")

    async def show(days_: float | None, since_: str, until_: str, request: gr.Request) -> tuple[str, Any]:
        try:
            usage = await asyncio.to_thread(services.admin.usage, **read_period(days_, since_, until_),
                                            user=user_of(request))
        except AdminError as err:
            raise error_toast(str(err)) from None
        return f"From {usage['since'][:19]} until {usage['until'][:19]} (UTC).", [r[1:] for r in usage_rows(usage)]

    for event in (refresh.click, tab.select):
        event(show, inputs=[days, since, until], outputs=[period, table], **PRIVATE)
    return tab
