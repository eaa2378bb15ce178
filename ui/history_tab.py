"""The History tab: recent image jobs with thumbnails and settings; reuse, delete; the `/history` API."""

from __future__ import annotations

from typing import Any

import gradio as gr

from services.container import Services
from services.history import MAX_PAGE
from ui.common import PRIVATE, error_toast, info_toast, read_api, scope_of, whole
from ui.image_tab import ImageTab, settings_values

PAGE = 48
COLUMNS = ["job", "when", "status", "prompt", "size", "steps", "sampler", "seed", "seconds"]


def _rows(jobs: list[dict[str, Any]]) -> list[list[Any]]:
    return [
        [j["job_id"], (j["created_at"] or "")[:19].replace("T", " "), j["status"], j["prompt"][:80],
         f"{j['width']}×{j['height']}", j["steps"], j["sampler"], j["seed_used"], j["duration_s"]]
        for j in jobs
    ]


def render(services: Services, image_tab: ImageTab, tabs: gr.Tabs) -> gr.Tab:
    """Build the tab inside the current Blocks and wire its events."""
    history = services.history
    with gr.Tab("History", id="history") as tab:
        with gr.Row():
            refresh_btn = gr.Button("Refresh", size="sm")
        thumbs = gr.Gallery(label="Recent images", columns=8, height="auto", allow_preview=False,
                            elem_id="history-gallery")
        table = gr.Dataframe(headers=COLUMNS, label="Jobs", interactive=False, elem_id="history-table",
                             wrap=True)
        job_ids = gr.State([])  # job id of each thumbnail, in gallery order
        selected = gr.State(None)
        with gr.Row():
            with gr.Column(scale=3):
                details = gr.JSON(label="Selected job")
            with gr.Column(scale=2):
                files = gr.Gallery(label="Its images", columns=2, height="auto")
                with gr.Row():
                    reuse_btn = gr.Button("Reuse settings", variant="primary", size="sm")
                    delete_btn = gr.Button("Delete", variant="stop", size="sm")

    def load(request: gr.Request) -> tuple[list[Any], list[list[Any]], list[int]]:
        jobs = history.list_jobs(scope_of(services, request), limit=PAGE)["jobs"]
        images, ids = [], []
        for job in jobs:
            if job["files"]:
                images.append((str(history.file_path(job["files"][0]["file"])), f"#{job['job_id']}"))
                ids.append(job["job_id"])
        return images, _rows(jobs), ids

    def show(job_id: int | None, request: gr.Request) -> tuple[Any, Any, Any]:
        job = history.get_job(job_id, scope_of(services, request)) if job_id is not None else None
        if job is None:
            return None, [], None
        paths = [(str(history.file_path(f["file"])), f"seed {f['seed']}") for f in job["files"]]
        return job, paths, job_id

    def pick_thumb(ids: list[int], evt: gr.SelectData) -> int | None:
        return ids[evt.index] if 0 <= evt.index < len(ids) else None

    def pick_row(evt: gr.SelectData) -> int | None:
        row = evt.row_value if hasattr(evt, "row_value") else None
        return int(row[0]) if row else None

    def reuse(job: dict[str, Any] | None) -> list[Any]:
        if not job:
            raise error_toast("Select a job first.")
        return [*settings_values(job), gr.Tabs(selected="image")]

    def delete(job_id: int | None, request: gr.Request) -> None:
        if job_id is None:
            raise error_toast("Select a job first.")
        if not history.delete_job(job_id, scope_of(services, request)):
            raise error_toast(f"Job {job_id} does not exist (or was already deleted).")
        info_toast(f"Deleted job {job_id} and its files.")

    outputs = [thumbs, table, job_ids]
    refresh_btn.click(load, outputs=outputs, **PRIVATE)
    tab.select(load, outputs=outputs, **PRIVATE)
    image_tab.generate_event.then(load, outputs=outputs, **PRIVATE)
    thumbs.select(pick_thumb, inputs=[job_ids], outputs=[selected], **PRIVATE).then(
        show, inputs=[selected], outputs=[details, files, selected], **PRIVATE)
    table.select(pick_row, outputs=[selected], **PRIVATE).then(
        show, inputs=[selected], outputs=[details, files, selected], **PRIVATE)
    reuse_btn.click(reuse, inputs=[details], outputs=[*image_tab.inputs(), tabs], **PRIVATE)
    delete_btn.click(delete, inputs=[selected], **PRIVATE).success(
        lambda: (None, [], None), outputs=[details, files, selected], **PRIVATE).then(
        load, outputs=outputs, **PRIVATE)

    return tab


def register_api(services: Services) -> None:
    """The `/history` endpoint; called outside gr.Tabs because API-only endpoints have no place in a layout."""
    history = services.history

    def history_api(limit: int = 20, before: int | None = None, request: gr.Request = None) -> dict[str, Any]:
        """Your recent image jobs with their settings and files, newest first; pass `next_before` from one page as
        `before` for the next.

        Args:
            limit: how many jobs, 1 to 200
            before: a job id from the last page's next_before; empty for the newest
        """
        try:
            return history.list_jobs(scope_of(services, request), limit=whole(limit), before=whole(before))
        except ValueError as err:
            raise error_toast(str(err)) from None

    with gr.Row(visible=False):
        fields = {"limit": gr.Number(20, precision=0, minimum=1, maximum=MAX_PAGE),
                  "before": gr.Number(None, precision=0, minimum=1)}
    read_api(history_api, "history", fields, optional=["before"])
