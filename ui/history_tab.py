"""The History tab: recent image jobs with thumbnails and settings; reuse, delete."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gradio as gr

from services.container import Services
from ui.common import PRIVATE, error_toast, info_toast, scope_of
from ui.txt2img_tab import Txt2ImgTab, settings_values

PAGE = 48
COLUMNS = ["job", "when", "status", "prompt", "size", "steps", "sampler", "seed", "seconds"]


def _status(job: dict[str, Any]) -> str:
    """The job's status; a failed one's with its reason (in full under "Selected job")."""
    reason = job.get("error") or ""
    if not reason:
        return job["status"]
    return f"{job['status']}: {reason if len(reason) <= 160 else reason[:159] + '…'}"


def _rows(jobs: list[dict[str, Any]]) -> list[list[Any]]:
    return [
        [j["job_id"], (j["created_at"] or "")[:19].replace("T", " "), _status(j), j["prompt"][:80],
         f"{j['width']}×{j['height']}", j["steps"], j["sampler"], j["seed_used"], j["duration_s"]]
        for j in jobs
    ]


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


def layout() -> HistoryTab:
    """Build the tab's components inside the current Blocks."""
    with gr.Tab("History", id="history") as tab:
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
    return HistoryTab(tab, refresh_btn, thumbs, table, job_ids, selected, details, files, reuse_btn, delete_btn)


def render(services: Services, txt2img: Txt2ImgTab, tabs: gr.Tabs) -> gr.Tab:
    """Build the tab inside the current Blocks and wire its events."""
    history = services.history
    view = layout()

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

    wire(view, txt2img, tabs, load, show, delete, reuse)
    return view.tab


def wire(view: HistoryTab, txt2img: Txt2ImgTab, tabs: gr.Tabs, load: Callable[..., Any], show: Callable[..., Any],
         delete: Callable[..., Any], reuse: Callable[..., Any]) -> None:
    """The tab's events: refresh (also on opening and after a job), select a thumbnail or a row, reuse, delete."""
    outputs = [view.thumbs, view.table, view.job_ids]
    shown = [view.details, view.files, view.selected]
    view.refresh_btn.click(load, outputs=outputs, **PRIVATE)
    view.tab.select(load, outputs=outputs, **PRIVATE)
    txt2img.generate_event.then(load, outputs=outputs, **PRIVATE)
    view.thumbs.select(pick_thumb, inputs=[view.job_ids], outputs=[view.selected], **PRIVATE).then(
        show, inputs=[view.selected], outputs=shown, **PRIVATE)
    view.table.select(pick_row, outputs=[view.selected], **PRIVATE).then(
        show, inputs=[view.selected], outputs=shown, **PRIVATE)
    view.reuse_btn.click(reuse, inputs=[view.details], outputs=[*txt2img.inputs(), tabs], **PRIVATE)
    view.delete_btn.click(delete, inputs=[view.selected], **PRIVATE).success(
        lambda: (None, [], None), outputs=shown, **PRIVATE).then(load, outputs=outputs, **PRIVATE)


def pick_thumb(ids: list[int], evt: gr.SelectData) -> int | None:
    """The job id of the selected thumbnail."""
    return ids[evt.index] if 0 <= evt.index < len(ids) else None


def pick_row(evt: gr.SelectData) -> int | None:
    """The job id of the selected row of the table."""
    row = evt.row_value if hasattr(evt, "row_value") else None
    return int(row[0]) if row else None
