"""The Admin tab's other sections (ui/admin_tab.py builds the tab and its users section): per-user limits, usage per
user over a period, the live queue, the models and the request log."""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
from dataclasses import dataclass
from typing import Any

import gradio as gr

from services.admin import AdminError
from services.container import Services
from services.metrics import KINDS, STATUSES
from services.user_limits import OVERRIDABLE
from ui.admin_common import ADMIN_EVENT, Said, admin_only, first_cell, name_of
from ui.common import PRIVATE, user_of

USAGE_COLUMNS = ["user", "jobs", "done", "failed", "cancelled", "image jobs", "chat replies", "images",
                 "prompt tokens", "completion tokens", "GPU seconds"]
QUEUE_COLUMNS = ["id", "user", "route", "kind", "status", "seconds"]
MODEL_COLUMNS = ["kind", "model", "backend", "state", "phase", "reason"]
REQUEST_COLUMNS = ["id", "time", "user", "client", "route", "kind", "status", "reason", "HTTP", "seconds", "wait",
                   "model", "images", "tokens in", "tokens out", "GPU s", "replica", "request id"]
LIMIT_LABELS = {"image_jobs": "Image jobs", "chat_messages": "Chat messages", "uploads": "Uploads",
                "reads": "Reads", "queue_quota": "Queue quota"}


@dataclass
class LimitsView:
    """A user's limits: one field per limit, saved or reset together."""

    name: gr.Textbox
    load: gr.Button
    fields: list[gr.Textbox | gr.Number]
    note: gr.Markdown
    save: gr.Button
    reset: gr.Button
    table: gr.JSON


def limits_layout() -> LimitsView:
    """The limits section."""
    with gr.Row():
        name = gr.Textbox(label="User", elem_id="admin-limits-user")
        load = gr.Button("Show", size="sm")
    note = gr.Markdown("An empty field keeps the server's setting. A rate is written like 10/minute or 100/hour.")
    with gr.Row():
        fields: list[gr.Textbox | gr.Number] = [gr.Textbox(label=LIMIT_LABELS[f], elem_id=f"admin-limit-{f}")
                                                for f in OVERRIDABLE if f != "queue_quota"]
        fields.append(gr.Number(label=LIMIT_LABELS["queue_quota"], precision=0, elem_id="admin-limit-queue_quota"))
    with gr.Row():
        save = gr.Button("Save limits", variant="primary", size="sm", elem_id="admin-limits-save")
        reset = gr.Button("Back to the defaults", size="sm")
    table = gr.JSON(label="Defaults and every user's own limits")
    return LimitsView(name, load, fields, note, save, reset, table)


@dataclass
class UsageView:
    """Usage per user over a period."""

    days: gr.Number
    since: gr.Textbox
    until: gr.Textbox
    refresh: gr.Button
    table: gr.Dataframe
    period: gr.Markdown


def usage_layout() -> UsageView:
    """The usage section (the user's own usage tab shares its period fields: period_fields)."""
    days, since, until = period_fields()
    refresh = gr.Button("Show usage", size="sm", elem_id="admin-usage-refresh")
    period = gr.Markdown()
    table = gr.Dataframe(headers=USAGE_COLUMNS, label="Usage per user (the last row: everyone)", interactive=False,
                         elem_id="admin-usage")
    return UsageView(days, since, until, refresh, table, period)


def period_fields() -> tuple[gr.Number, gr.Textbox, gr.Textbox]:
    """The period's fields: the last N days, or from/until (ISO dates or times, UTC)."""
    with gr.Row():
        days = gr.Number(label="Last days", value=30, minimum=0, precision=None)
        since = gr.Textbox(label="From (instead of days)", placeholder="2026-01-01 or 2026-01-01T08:00")
        until = gr.Textbox(label="Until", placeholder="empty: now")
    return days, since, until


def read_period(days: float | None, since: str, until: str) -> dict[str, Any]:
    """The period's fields as services/usage.period() takes them; AdminError naming a field that does not parse."""
    found: dict[str, Any] = {}
    for label, text in (("since", since), ("until", until)):
        if (text or "").strip():
            try:
                found[label] = dt.datetime.fromisoformat(text.strip())
            except ValueError:
                raise AdminError(f"{label}: {text.strip()!r} is not a date or time (2026-01-01, "
                                 "2026-01-01T08:00).") from None
    if "since" not in found and days:
        found["days"] = float(days)
    return found


def usage_rows(usage: dict[str, Any]) -> list[list[Any]]:
    """Usage figures as table rows, the total last when there is one."""
    people = [*usage["users"], *([{**usage["total"], "user": "everyone"}] if "total" in usage else [])]
    return [[u["user"] or "(no account)", u["jobs"], u["done"], u["failed"], u["cancelled"], u["image_jobs"],
             u["chat_replies"], u["images"], u["prompt_tokens"], u["completion_tokens"], u["gpu_seconds"]]
            for u in people]


@dataclass
class QueueView:
    """The live queue: its jobs, and one to stop."""

    table: gr.Dataframe
    refresh: gr.Button
    job: gr.Textbox
    stop: gr.Button
    status: gr.Markdown


def queue_layout() -> QueueView:
    """The queue section."""
    table = gr.Dataframe(headers=QUEUE_COLUMNS, label="Waiting and running on this replica (select a row)",
                         interactive=False, elem_id="admin-queue")
    with gr.Row():
        refresh = gr.Button("Refresh", size="sm", elem_id="admin-queue-refresh")
        job = gr.Textbox(label="Job id", elem_id="admin-queue-job")
        stop = gr.Button("Stop job", variant="stop", size="sm", elem_id="admin-queue-stop")
    return QueueView(table, refresh, job, stop, gr.Markdown())


@dataclass
class ModelsView:
    """The models of this replica and what to do with one."""

    table: gr.Dataframe
    kind: gr.Radio
    buttons: dict[str, gr.Button]
    refresh: gr.Button


def models_layout() -> ModelsView:
    """The models section."""
    table = gr.Dataframe(headers=MODEL_COLUMNS, label="Models of this replica", interactive=False,
                         elem_id="admin-models")
    with gr.Row():
        kind = gr.Radio(["image", "text"], value="image", label="Model")
        buttons = {action: gr.Button(label, size="sm") for action, label in
                   (("load", "Load now"), ("offload", "Offload to CPU memory"), ("unload", "Unload"))}
        refresh = gr.Button("Refresh", size="sm")
    return ModelsView(table, kind, buttons, refresh)


@dataclass
class RequestsView:
    """The request log with its filters and paging."""

    filters: list[Any]
    search: gr.Button
    older: gr.Button
    table: gr.Dataframe
    next_before: gr.State
    first: gr.State  # None: the search starts from the newest row


def requests_layout() -> RequestsView:
    """The request log section."""
    with gr.Row():
        filters: list[Any] = [gr.Textbox(label="User"), gr.Dropdown(["", *KINDS], value="", label="Kind"),
                              gr.Dropdown(["", *STATUSES], value="", label="Status"), gr.Textbox(label="Route"),
                              gr.Textbox(label="Request id"), gr.Textbox(label="From"), gr.Textbox(label="Until")]
    with gr.Row():
        search = gr.Button("Search", variant="primary", size="sm", elem_id="admin-requests-search")
        older = gr.Button("Older", size="sm")
    table = gr.Dataframe(headers=REQUEST_COLUMNS, label="Newest first", interactive=False, wrap=True,
                         elem_id="admin-requests")
    return RequestsView(filters, search, older, table, gr.State(None), gr.State(None))


def request_rows(rows: list[dict[str, Any]]) -> list[list[Any]]:
    """Request log rows as table rows."""
    return [[r["id"], str(r["started_at"])[:19].replace("T", " "), r["user"], r["client"], r["route"], r["kind"],
             r["status"], r["reason"], r["http_status"], r["duration_s"], r["queue_wait_s"], r["model"], r["images"],
             r["prompt_tokens"], r["completion_tokens"], r["gpu_s"], r["replica"], r["request_id"]] for r in rows]


def wire(services: Services, limits: LimitsView, usage: UsageView, queue: QueueView, models: ModelsView,
         requests: RequestsView) -> None:
    """The sections' events."""
    wire_limits(services, limits)
    wire_usage(services, usage)
    wire_queue(services, queue)
    wire_models(services, models)
    wire_requests(services, requests)


def wire_limits(services: Services, view: LimitsView) -> None:
    """Show, save and reset one user's limits."""
    admin, guard = services.admin, functools.partial(admin_only, services)

    def shown(found: dict[str, Any]) -> list[Any]:
        own = set(found.get("overridden", ()))
        return [found[f] if f in own else None for f in OVERRIDABLE] + [
            f"Overridden: {', '.join(sorted(own)) or 'none'} (empty fields keep the server's setting)."]

    @guard("viewed a user's limits")
    async def show(name: str, request: gr.Request) -> list[Any]:
        return [*shown(await asyncio.to_thread(admin.user_limits, name_of(name))), admin.all_limits()]

    @guard("set a user's limits")
    async def save(name: str, image_jobs: str, chat_messages: str, uploads: str, reads: str,
                   queue_quota: float | None, request: gr.Request) -> Said:
        values = (image_jobs, chat_messages, uploads, reads, queue_quota)
        # An empty field keeps the server's setting; the quota's number box shows an empty value as 0, never a quota.
        changes = {f: (None if v in (None, "") or (f == "queue_quota" and not v)
                       else (int(v) if f == "queue_quota" else str(v).strip()))
                   for f, v in zip(OVERRIDABLE, values, strict=True)}
        found = await asyncio.to_thread(admin.set_limits, name_of(name), user_of(request), changes)
        said = ", ".join(f"{k}={v if v is not None else 'default'}" for k, v in changes.items())
        return Said([*shown(found), admin.all_limits()], f"set the limits of {name_of(name)}: {said}")

    @guard("reset a user's limits")
    async def reset(name: str, request: gr.Request) -> Said:
        found = await asyncio.to_thread(admin.clear_limits, name_of(name))
        return Said([*shown(found), admin.all_limits()], f"returned {name_of(name)} to the default limits")

    outputs = [*view.fields, view.note, view.table]
    view.load.click(show, inputs=[view.name], outputs=outputs, **ADMIN_EVENT)
    view.save.click(save, inputs=[view.name, *view.fields], outputs=outputs, **ADMIN_EVENT)
    view.reset.click(reset, inputs=[view.name], outputs=outputs, **ADMIN_EVENT)


def wire_usage(services: Services, view: UsageView) -> None:
    """Usage per user over the period asked."""

    @functools.partial(admin_only, services)("viewed usage")
    async def show(days: float | None, since: str, until: str, request: gr.Request) -> tuple[str, list[list[Any]]]:
        usage = await asyncio.to_thread(services.admin.usage, **read_period(days, since, until))
        return f"From {usage['since'][:19]} until {usage['until'][:19]} (UTC).", usage_rows(usage)

    view.refresh.click(show, inputs=[view.days, view.since, view.until], outputs=[view.period, view.table],
                       **ADMIN_EVENT)


def wire_queue(services: Services, view: QueueView) -> None:
    """List the live queue; stop any job."""
    guard = functools.partial(admin_only, services)

    @guard("viewed the queue")
    async def show(request: gr.Request) -> list[list[Any]]:
        return [[j[c] for c in QUEUE_COLUMNS] for j in services.admin.queue()]

    @guard("stopped a job")
    async def stop(job: str, request: gr.Request) -> Said:
        job = (job or "").strip()
        owner = next((j["user"] for j in services.admin.queue() if j["id"] == job), "")
        await services.admin.stop_job(job)
        return Said(("", f"Stopped job {job}."), f"stopped job {job} of {owner or 'anonymous'}")

    view.refresh.click(show, outputs=[view.table], **ADMIN_EVENT)
    view.table.select(first_cell, outputs=[view.job], **PRIVATE)
    view.stop.click(stop, inputs=[view.job], outputs=[view.job, view.status], **ADMIN_EVENT).success(
        show, outputs=[view.table], **ADMIN_EVENT)


def wire_models(services: Services, view: ModelsView) -> None:
    """Show the models; load, offload or unload one now."""
    guard = functools.partial(admin_only, services)

    def rows() -> list[list[Any]]:
        return [[m[c] or "" for c in MODEL_COLUMNS] for m in services.admin.models()]

    @guard("viewed the models")
    async def show(request: gr.Request) -> list[list[Any]]:
        return rows()

    def act(action: str) -> Any:
        @guard(f"asked a model to {action}")
        async def acted(kind: str, request: gr.Request) -> Said:
            await asyncio.to_thread(services.admin.model_action, kind, action)
            return Said(rows(), f"asked the {kind} model to {action}")

        return acted

    view.refresh.click(show, outputs=[view.table], **ADMIN_EVENT)
    for action, button in view.buttons.items():
        button.click(act(action), inputs=[view.kind], outputs=[view.table], **ADMIN_EVENT)


def wire_requests(services: Services, view: RequestsView) -> None:
    """Search the request log; page back."""

    @functools.partial(admin_only, services)("searched the request log")
    async def search(user: str, kind: str, status: str, route: str, request_id: str, since: str, until: str,
                     before: int | None, request: gr.Request) -> tuple[list[list[Any]], int | None]:
        period = read_period(None, since, until)
        found = await asyncio.to_thread(
            services.admin.requests, start=period.get("since"), end=period.get("until"), user=user.strip() or None,
            kind=kind or None, status=status or None, route=route.strip() or None,
            request_id=request_id.strip() or None, before=before)
        return request_rows(found["requests"]), found["next_before"]

    outputs = [view.table, view.next_before]
    view.search.click(search, inputs=[*view.filters, view.first], outputs=outputs, **ADMIN_EVENT)
    view.older.click(search, inputs=[*view.filters, view.next_before], outputs=outputs, **ADMIN_EVENT)
