"""The History tab's search and actions on image jobs: the search box with its filters (date range, model, mode,
sampler, seed, LoRA, favourites, a collection), pages by cursor, the selected job's favourite mark and collections,
and a streamed zip of the selected job, the search's results, a collection or everything, with its progress.

The handlers are methods of HistorySearch so that tests call them as the UI does, with a request naming the user."""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr

from contracts import InvalidRequest
from services.container import Services
from ui import history_collections
from ui.common import PRIVATE, error_toast, info_toast, scope_of, user_of

PAGE = 48
ORDERS = ["relevance", "newest", "oldest"]
MODES = ["txt2img", "img2img", "inpaint"]
EXPORT_WAYS = ["the selected job", "every result of this search", "the chosen collection", "all my images"]
SYNTAX = ("Words must all match; `\"a phrase\"`, `pref*`, `-word` or `NOT word`, `a OR b`. "
          "Case and word endings do not matter.")
PROGRESS_EVERY_S = 0.5  # how often an export's status line is redrawn


def refused(error: InvalidRequest) -> gr.Error:
    """A service's refusal as a toast that names each field."""
    return error_toast("; ".join(f"{field}: {message}" for field, message in error.errors.items()))


def marked(segments: list[dict[str, Any]] | None, text: str) -> str:
    """A prompt with its matched words between « and » (as text: a prompt may hold markup), cut to 80 chars."""
    if not segments:
        return text[:80]
    return "".join(f"«{s['text']}»" if s["match"] else s["text"] for s in segments)[:100]


def export_folder() -> Path:
    """Where a zip is written before Gradio hands it to the user: Gradio's own temp folder, swept by the janitor."""
    folder = Path(os.environ.get("GRADIO_TEMP_DIR") or tempfile.gettempdir()) / "exports"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def size(n: int) -> str:
    """A byte count for people: kB under a megabyte, MB above."""
    return f"{n / 1e3:.1f} kB" if n < 1e6 else f"{n / 1e6:.1f} MB"


def stream_to_file(export: Any) -> Iterator[tuple[str, str | None]]:
    """Write a streamed Export to a file, yielding (status line, None) as it goes and (last line, path) at the end;
    a half-written file is removed, so nothing partial is ever offered."""
    target = Path(tempfile.mkdtemp(dir=export_folder())) / export.filename
    shown = 0.0
    try:
        with target.open("wb") as out:
            for chunk in export.chunks:
                out.write(chunk)
                if time.monotonic() - shown > PROGRESS_EVERY_S:
                    shown = time.monotonic()
                    yield f"Exporting… {export.done} of {export.total} jobs, {size(out.tell())}", None
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    gone = f" ({len(export.missing)} image(s) had gone from the store)" if export.missing else ""
    yield f"Exported {export.total} job(s): {size(target.stat().st_size)}{gone}.", str(target)


def status(job: dict[str, Any]) -> str:
    """The job's status; a failed one's with its reason (in full under "Selected job")."""
    reason = job.get("error") or ""
    if not reason:
        return job["status"]
    return f"{job['status']}: {reason if len(reason) <= 160 else reason[:159] + '…'}"


def given(since: str, until: str, model: str | None, mode: str | None, sampler: str | None, seed: str | None,
          lora: str, favourites: bool, collection: int | None) -> dict[str, Any]:
    """The filters the user set, as the search service takes them (it checks each and names a bad one)."""
    filters = {"since": since, "until": until, "model": model, "mode": mode, "sampler": sampler,
               "seed": (seed or "").strip(), "lora": lora, "favourite": True if favourites else None,
               "collection_id": collection}
    return {name: value for name, value in filters.items() if value not in (None, "")}


@dataclass
class SearchPanel:
    """The search box, its filters and the buttons that act on the jobs found."""

    query: gr.Textbox
    since: gr.Textbox
    until: gr.Textbox
    model: gr.Dropdown
    mode: gr.Dropdown
    sampler: gr.Dropdown
    seed: gr.Textbox
    lora: gr.Textbox
    favourites: gr.Checkbox
    collection: gr.Dropdown
    order: gr.Radio
    search_btn: gr.Button
    next_btn: gr.Button
    status: gr.Markdown
    cursor: gr.State  # the next page's cursor of the search shown
    favourite_btn: gr.Button
    collection_name: gr.Textbox
    add_btn: gr.Button
    remove_btn: gr.Button
    export_way: gr.Radio
    export_btn: gr.Button
    export_status: gr.Markdown
    export_file: gr.File
    delete_btn: gr.Button
    sure: gr.Checkbox
    collections: history_collections.CollectionButtons

    def filters(self) -> list[Any]:
        """The inputs of a search, in HistorySearch.find's order."""
        return [self.query, self.since, self.until, self.model, self.mode, self.sampler, self.seed, self.lora,
                self.favourites, self.collection, self.order]


def layout() -> SearchPanel:
    """The search row and its filters (above the results)."""
    with gr.Row():
        query = gr.Textbox(label="Search prompts", placeholder='cat "red hat" -dog', scale=4, max_length=1000,
                           elem_id="history-search", info=SYNTAX)
        order = gr.Radio(ORDERS, value="relevance", label="Order", scale=2)
        search_btn = gr.Button("Search", variant="primary", scale=1, elem_id="history-search-btn")
    with gr.Accordion("Filters", open=False):
        with gr.Row():
            since = gr.Textbox(label="From (date)", placeholder="2026-01-31", max_length=64)
            until = gr.Textbox(label="Before (date)", placeholder="2026-02-28", max_length=64)
            model = gr.Dropdown([], label="Model", allow_custom_value=True, value=None)
            mode = gr.Dropdown(MODES, label="Mode", value=None)
        with gr.Row():
            sampler = gr.Dropdown([], label="Sampler", allow_custom_value=True, value=None)
            seed = gr.Textbox(label="Seed", max_length=20)  # a Number would send 0 when empty
            lora = gr.Textbox(label="LoRA", max_length=255)
            favourites = gr.Checkbox(label="Favourites only", elem_id="history-favourites-only")
            collection = gr.Dropdown([], label="Collection", value=None, elem_id="history-collection")
    with gr.Row():
        status = gr.Markdown(elem_id="history-search-status")
        next_btn = gr.Button("Next page", size="sm", visible=False)
    return SearchPanel(query, since, until, model, mode, sampler, seed, lora, favourites, collection, order,
                       search_btn, next_btn, status, gr.State(None), *_actions())


def _actions() -> tuple[Any, ...]:
    """The buttons for the selected job and the export (below the selected job)."""
    with gr.Accordion("Organise and export", open=True):
        with gr.Row():
            favourite_btn = gr.Button("Favourite / unfavourite", size="sm", elem_id="history-favourite")
            collection_name = gr.Textbox(label="Collection name", placeholder="new or existing; or a new name",
                                         max_length=200, scale=2, elem_id="history-collection-name")
            add_btn = gr.Button("Add to collection", size="sm", elem_id="history-add")
            remove_btn = gr.Button("Take out of collection", size="sm")
        collections = history_collections.layout()
        with gr.Row():
            export_way = gr.Radio(EXPORT_WAYS, value=EXPORT_WAYS[1], label="Export as a zip (PNGs + manifest.json), "
                                  "or delete, with their images", scale=3)
            with gr.Column(min_width=160):
                export_btn = gr.Button("Export images", size="sm", elem_id="history-export")
                delete_btn = gr.Button("Delete them", variant="stop", size="sm", elem_id="history-delete-many")
                sure = gr.Checkbox(label="Yes, delete them", elem_id="history-delete-sure")
        export_status = gr.Markdown(elem_id="history-export-status")
        export_file = gr.File(label="Download", interactive=False, elem_id="history-export-file")
    return (favourite_btn, collection_name, add_btn, remove_btn, export_way, export_btn, export_status, export_file,
            delete_btn, sure, collections)


class HistorySearch:
    """The handlers: every call is the asking user's own (search is never across users, an admin's included)."""

    def __init__(self, services: Services) -> None:
        self.services = services

    def find(self, query: str, since: str, until: str, model: str | None, mode: str | None, sampler: str | None,
             seed: str | None, lora: str, favourites: bool, collection: int | None, order: str,
             request: gr.Request, cursor: str | None = None) -> tuple[Any, ...]:
        """One page of jobs: (thumbnails, table rows, their job ids, a status line, the next cursor, Next's
        visibility). Nothing to search for: the newest jobs, as the tab always showed."""
        filters = given(since, until, model, mode, sampler, seed, lora, favourites, collection)
        if not (query or "").strip() and not filters and cursor is None:
            page = self.services.history.list_jobs(scope_of(self.services, request), limit=PAGE)
            return (*self.shown(page["jobs"]), f"The {len(page['jobs'])} newest jobs.", None, gr.Button(visible=False))
        try:
            page = self.services.search.images(user_of(request), query or "", order=order, cursor=cursor,
                                               limit=PAGE, **filters)
        except InvalidRequest as error:
            raise refused(error) from None
        more = page["next_cursor"] is not None
        return (*self.shown(page["jobs"]), self.describe(page), page["next_cursor"], gr.Button(visible=more))

    def next_page(self, query: str, since: str, until: str, model: str | None, mode: str | None,
                  sampler: str | None, seed: str | None, lora: str, favourites: bool, collection: int | None,
                  order: str, cursor: str | None, request: gr.Request) -> tuple[Any, ...]:
        """The next page of the search shown."""
        return self.find(query, since, until, model, mode, sampler, seed, lora, favourites, collection, order,
                         request, cursor=cursor)

    def shown(self, jobs: list[dict[str, Any]]) -> tuple[list[Any], list[list[Any]], list[int]]:
        """Thumbnails (one per job), table rows with the matched words marked, and the thumbnails' job ids."""
        images, ids, rows = [], [], []
        for j in jobs:
            if j["files"]:
                images.append((str(self.services.history.file_path(j["files"][0]["file"])), f"#{j['job_id']}"))
                ids.append(j["job_id"])
            prompt = marked(j.get("highlight", {}).get("prompt"), j["prompt"])
            rows.append([j["job_id"], (j["created_at"] or "")[:19].replace("T", " "), status(j),
                         ("★ " if j.get("favourite") else "") + prompt, f"{j['width']}×{j['height']}", j["steps"],
                         j["sampler"], j["seed_used"], j["duration_s"]])
        return images, rows, ids

    @staticmethod
    def describe(page: dict[str, Any]) -> str:
        """The status line of a search: how many on this page, what was left out of the query, the order note."""
        parts = [f"{len(page['jobs'])} job(s) on this page" + (", more on the next." if page["next_cursor"] else ".")]
        if page["query"].get("truncated"):
            parts.append("The search was cut to its first terms.")
        if page.get("note"):
            parts.append(page["note"])
        return " ".join(parts)

    def filter_choices(self, request: gr.Request) -> tuple[Any, Any, Any]:
        """The filters' choices from the user's own jobs and collections."""
        user = user_of(request)
        facets = self.services.search.facets(user)
        mine = history_collections.collection_choices(self.services, user)
        return gr.Dropdown(choices=facets["models"]), gr.Dropdown(choices=facets["samplers"]), gr.Dropdown(
            choices=mine)

    def toggle_favourite(self, job: dict[str, Any] | None, request: gr.Request) -> dict[str, Any]:
        """Mark the selected job as a favourite, or unmark it; the job's details as they are now."""
        if not job:
            raise error_toast("Select a job first.")
        value = not job.get("favourite", False)
        if not self.services.history.set_favourite(job["job_id"], user_of(request), value):
            raise error_toast(f"Job {job['job_id']} is not one of yours.")
        info_toast(f"Job {job['job_id']} {'is a favourite' if value else 'is no longer a favourite'}.")
        return {**job, "favourite": value}

    def collect(self, job: dict[str, Any] | None, name: str, request: gr.Request, take_out: bool = False) -> Any:
        """Add the selected job to the named collection (made if new), or take it out; the collections' choices."""
        if not job:
            raise error_toast("Select a job first.")
        user, service = user_of(request), self.services.collections
        found = next((c for c in service.list(user) if c["name"] == " ".join((name or "").split())), None)
        try:
            if take_out:
                if found is None:
                    raise error_toast(f"You have no collection named {name!r}.")
                service.remove(user, found["collection_id"], [job["job_id"]])
            else:
                made = None if found else service.create(user, name or "")
                found = found or made
                try:
                    service.add(user, found["collection_id"], [job["job_id"]])
                except InvalidRequest:
                    if made:  # a refused add leaves nothing behind, not even the new collection
                        service.delete(user, made["collection_id"])
                    raise
        except InvalidRequest as error:
            raise refused(error) from None
        info_toast(f"Job {job['job_id']} {'taken out of' if take_out else 'added to'} {found['name']!r}.")
        return self.filter_choices(request)[2]

    def take_out(self, job: dict[str, Any] | None, name: str, request: gr.Request) -> Any:
        """Take the selected job out of the named collection."""
        return self.collect(job, name, request, take_out=True)

    def chosen_jobs(self, way: str, job: dict[str, Any] | None, query: str, filters: dict[str, Any],
                    request: gr.Request, doing: str = "exported") -> list[int]:
        """The user's job ids that `way` names (the selected job, the search's results, the chosen collection or
        all); a toast naming what is missing or refused, and none when nothing matches."""
        chosen: dict[str, Any] = {"everything": True}
        if way == EXPORT_WAYS[0]:
            if not job:
                raise error_toast("Select a job first.")
            chosen = {"job_ids": [job["job_id"]]}
        elif way == EXPORT_WAYS[2]:
            if filters.get("collection_id") is None:
                raise error_toast("Choose a collection in the filters first.")
            chosen = {"collection_id": filters["collection_id"]}
        elif way == EXPORT_WAYS[1]:
            chosen = {"query": {"q": query or "", **filters}}
        try:
            ids = self.services.exports.job_ids(user_of(request), **chosen)
        except InvalidRequest as error:
            # The service words its refusal for an export; a delete refused so has deleted nothing either.
            raise refused(InvalidRequest({field: message.replace("nothing was exported", f"nothing was {doing}")
                                          for field, message in error.errors.items()})) from None
        if not ids:
            raise error_toast("No job matches.")
        return ids

    def export(self, way: str, job: dict[str, Any] | None, query: str, since: str, until: str, model: str | None,
               mode: str | None, sampler: str | None, seed: str | None, lora: str, favourites: bool,
               collection: int | None, order: str, request: gr.Request) -> Iterator[tuple[str, str | None]]:
        """The zip named by `way`, written as it streams with a status line, then offered for download."""
        filters = given(since, until, model, mode, sampler, seed, lora, favourites, collection)
        ids = self.chosen_jobs(way, job, query, filters, request)
        yield from stream_to_file(self.services.exports.images_zip(user_of(request), ids))

    def delete_chosen(self, sure: bool, way: str, job: dict[str, Any] | None, query: str, since: str, until: str,
               model: str | None, mode: str | None, sampler: str | None, seed: str | None, lora: str,
               favourites: bool, collection: int | None, order: str, request: gr.Request) -> tuple[str, bool]:
        """Delete the jobs `way` names, with their files (and S3 objects), once the user ticked that they mean it;
        the status line, and the tick cleared."""
        if not sure:
            raise error_toast("Tick “Yes, delete them” first: deleted jobs and their images cannot come back.")
        filters = given(since, until, model, mode, sampler, seed, lora, favourites, collection)
        ids = self.chosen_jobs(way, job, query, filters, request, doing="deleted")
        done = self.services.history.delete_jobs(ids, user_of(request))
        return f"Deleted {len(done['deleted'])} job(s) and their images.", False


def wire(services: Services, panel: SearchPanel, outputs: list[Any], details: gr.JSON, tab: gr.Tab) -> HistorySearch:
    """The panel's events; `outputs` are the tab's thumbnails, table and their job ids."""
    handlers = HistorySearch(services)
    found = [*outputs, panel.status, panel.cursor, panel.next_btn]
    for trigger in (panel.search_btn.click, panel.query.submit):
        trigger(handlers.find, inputs=panel.filters(), outputs=found, **PRIVATE)
    panel.next_btn.click(handlers.next_page, inputs=[*panel.filters(), panel.cursor], outputs=found, **PRIVATE)
    tab.select(handlers.filter_choices, outputs=[panel.model, panel.sampler, panel.collection], **PRIVATE)
    panel.favourite_btn.click(handlers.toggle_favourite, inputs=[details], outputs=[details], **PRIVATE).success(
        handlers.find, inputs=panel.filters(), outputs=found, **PRIVATE)
    # Events whose outputs are inputs too show no progress: a refusal would leave Gradio's error mark over them.
    quiet = {"show_progress": "hidden", **PRIVATE}
    panel.add_btn.click(handlers.collect, inputs=[details, panel.collection_name], outputs=[panel.collection], **quiet)
    panel.remove_btn.click(handlers.take_out,
                           inputs=[details, panel.collection_name], outputs=[panel.collection], **quiet)
    panel.export_btn.click(handlers.export, inputs=[panel.export_way, details, *panel.filters()],
                           outputs=[panel.export_status, panel.export_file], **PRIVATE)
    panel.delete_btn.click(handlers.delete_chosen, inputs=[panel.sure, panel.export_way, details, *panel.filters()],
                           outputs=[panel.export_status, panel.sure], **quiet).success(
        handlers.find, inputs=panel.filters(), outputs=found, **PRIVATE)
    history_collections.wire(services, panel.collections, panel.collection, panel.collection_name,
                             after={"fn": handlers.find, "inputs": panel.filters(), "outputs": found, **PRIVATE},
                             quiet=quiet)
    return handlers
