"""The History tab: recent image jobs with thumbnails and settings, searched and filtered; reuse, delete, favourites,
collections, exports (ui/history_search.py), conversations (ui/history_conversations.py) and the account archive
(ui/history_account.py)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gradio as gr

from services.container import Services
from ui import history_account, history_conversations, history_search
from ui.common import PRIVATE, error_toast, info_toast, scope_of
from ui.txt2img_tab import Txt2ImgTab, settings_values

COLUMNS = ["job", "when", "status", "prompt", "size", "steps", "sampler", "seed", "seconds"]


@dataclass
class HistoryTab:
    """The tab's components: thumbnails and the table of jobs, and the selected job with its images."""

    tab: gr.Tab
    refresh_btn: gr.Button
    thumbs: gr.Gallery
    table: gr.Dataframe
    job_ids: gr.State  # job id of each thumbnail, in gallery order
    selected: gr.State
    details: gr.JSON
    files: gr.Gallery
    reuse_btn: gr.Button
    delete_btn: gr.Button
    search: history_search.SearchPanel
    conversations: history_conversations.ConversationsPanel
    account: history_account.AccountPanel


def layout() -> HistoryTab:
    """Build the tab's components inside the current Blocks."""
    with gr.Tab("History", id="history") as tab:
        search = history_search.layout()
        with gr.Row():
            refresh_btn = gr.Button("Refresh", size="sm")
        thumbs = gr.Gallery(label="Recent images", columns=8, height="auto", allow_preview=False,
                            elem_id="history-gallery")
        table = gr.Dataframe(headers=COLUMNS, label="Jobs", interactive=False, elem_id="history-table",
                             wrap=True)
        job_ids = gr.State([])
        selected = gr.State(None)
        with gr.Row():
            with gr.Column(scale=3):
                details = gr.JSON(label="Selected job", elem_id="history-details")
            with gr.Column(scale=2):
                files = gr.Gallery(label="Its images", columns=2, height="auto")
                with gr.Row():
                    reuse_btn = gr.Button("Reuse settings", variant="primary", size="sm", elem_id="history-reuse")
                    delete_btn = gr.Button("Delete", variant="stop", size="sm")
        conversations, account = history_conversations.layout(), history_account.layout()
    return HistoryTab(tab, refresh_btn, thumbs, table, job_ids, selected, details, files, reuse_btn, delete_btn,
                      search, conversations, account)


def render(services: Services, txt2img: Txt2ImgTab, tabs: gr.Tabs) -> gr.Tab:
    """Build the tab inside the current Blocks and wire its events."""
    history = services.history
    view = layout()

    def show(job_id: int | None, request: gr.Request) -> tuple[Any, Any, Any]:
        job = history.get_job(job_id, scope_of(services, request)) if job_id is not None else None
        if job is None:
            return None, [], None
        paths = [(str(history.file_path(f["file"])), f"seed {f['seed']}") for f in job["files"]]
        return job, paths, job_id

    def delete(job_id: int | None, request: gr.Request) -> None:
        if job_id is None:
            raise error_toast("Select a job first.")
        if not history.delete_job(job_id, scope_of(services, request)):
            raise error_toast(f"Job {job_id} does not exist (or was already deleted).")
        info_toast(f"Deleted job {job_id} and its files.")

    def reuse(job: dict[str, Any] | None) -> list[Any]:
        """The selected job's settings for the Image tab, which opens."""
        if not job:
            raise error_toast("Select a job first.")
        return [*settings_values(services, job), gr.Tabs(selected="image")]

    finder = history_search.wire(services, view.search, [view.thumbs, view.table, view.job_ids], view.details,
                                 view.tab)

    # Named `load`, as before the search: other tests find the private events by their functions' names.
    def load(query: str, since: str, until: str, model: str | None, mode: str | None, sampler: str | None,
             seed: str | None, lora: str, favourites: bool, collection: int | None, order: str,
             request: gr.Request) -> tuple[Any, ...]:
        """The search shown, or the newest jobs."""
        return finder.find(query, since, until, model, mode, sampler, seed, lora, favourites, collection, order,
                           request)

    history_conversations.wire(services, view.conversations)
    history_account.wire(services, view.account, view.tab)
    wire(view, txt2img, tabs, load, show, delete, reuse)
    return view.tab


def wire(view: HistoryTab, txt2img: Txt2ImgTab, tabs: gr.Tabs, load: Callable[..., Any], show: Callable[..., Any],
         delete: Callable[..., Any], reuse: Callable[..., Any]) -> None:
    """The tab's events: refresh (also on opening and after a job), select a thumbnail or a row, reuse, delete."""
    outputs = [view.thumbs, view.table, view.job_ids, view.search.status, view.search.cursor, view.search.next_btn]
    found = {"inputs": view.search.filters(), "outputs": outputs, **PRIVATE}
    shown = [view.details, view.files, view.selected]
    view.refresh_btn.click(load, **found)
    view.tab.select(load, **found)
    txt2img.generate_event.then(load, **found)
    view.thumbs.select(pick_thumb, inputs=[view.job_ids], outputs=[view.selected], **PRIVATE).then(
        show, inputs=[view.selected], outputs=shown, **PRIVATE)
    view.table.select(pick_row, outputs=[view.selected], **PRIVATE).then(
        show, inputs=[view.selected], outputs=shown, **PRIVATE)
    view.reuse_btn.click(reuse, inputs=[view.details], outputs=[*txt2img.inputs(), tabs], **PRIVATE)
    view.delete_btn.click(delete, inputs=[view.selected], **PRIVATE).success(
        lambda: (None, [], None), outputs=shown, **PRIVATE).then(load, **found)


def pick_thumb(ids: list[int], evt: gr.SelectData) -> int | None:
    """The job id of the selected thumbnail."""
    return ids[evt.index] if 0 <= evt.index < len(ids) else None


def pick_row(evt: gr.SelectData) -> int | None:
    """The job id of the selected row of the table."""
    row = evt.row_value if hasattr(evt, "row_value") else None
    return int(row[0]) if row else None
