"""The Account tab: your API keys (create, shown once, copy; list with the last use; revoke) and your running jobs,
whichever way they came in (this UI, the OpenAI or AUTOMATIC1111 APIs, MCP), each of which you can stop here."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gradio as gr

from services.accounts import AccountError
from services.container import Services
from ui.common import PRIVATE, error_toast, info_toast, scope_of, user_of

KEY_COLUMNS = ["name", "key", "created", "last used"]
JOB_COLUMNS = ["ref", "kind", "via", "status", "progress", "job / conversation", "what"]
NO_ACCOUNTS = ("This server has no accounts, so its APIs need no key on this machine (they are served on "
               "loopback only). Add an account with `python app.py users add NAME` to use keys.")


def _when(value: str | None) -> str:
    return (value or "never")[:19].replace("T", " ")


def key_rows(keys: list[dict[str, Any]]) -> list[list[Any]]:
    """The keys as table rows (never the key itself: its first characters only)."""
    return [[k["name"], k["prefix"], _when(k["created_at"]), _when(k["last_used_at"])] for k in keys]


def job_rows(jobs: list[dict[str, Any]]) -> list[list[Any]]:
    """The running jobs as table rows."""
    return [[j["ref"], j["kind"], j["source"], j["status"], f"{round(100 * j['progress'])} %",
             j["job_id"] or j["conversation_id"] or "", j["description"]] for j in jobs]


def render(services: Services) -> None:
    """Build the tab inside the current Blocks and wire its events."""
    with gr.Tab("Account", id="account") as tab:
        list_keys, key_outputs = keys_section(services)
        list_jobs, job_outputs, refresh = jobs_section(services)
    for load in (tab.select, refresh.click):
        load(list_keys, outputs=key_outputs, **PRIVATE).then(list_jobs, outputs=job_outputs, **PRIVATE)


def _owner(request: gr.Request) -> str:
    """The account asking; a toast when the server has none (keys belong to accounts)."""
    name = user_of(request)
    if not name:
        raise error_toast(NO_ACCOUNTS)
    return name


def keys_section(services: Services) -> tuple[Callable[..., Any], list[Any]]:
    """The API keys accordion with its events; returns its loader and the loader's outputs."""
    keys = services.api_keys
    with gr.Accordion("API keys", open=True):
        gr.Markdown("A key stands for you on the OpenAI-compatible `/v1`, the AUTOMATIC1111-compatible "
                    "`/sdapi/v1`, MCP (`/gradio_api/mcp`) and `/api`: send `Authorization: Bearer <key>`. "
                    "It is shown once, when it is made.", elem_id="account-keys-help")
        with gr.Row():
            new_name = gr.Textbox(label="Name of a new key", placeholder="laptop", scale=3, elem_id="key-name")
            create = gr.Button("Create key", variant="primary", scale=1, elem_id="key-create")
        shown = gr.Textbox(label="Your new key: copy it now, it is not shown again", visible=False,
                           interactive=False, buttons=["copy"], elem_id="key-shown")
        table = gr.Dataframe(headers=KEY_COLUMNS, interactive=False, label="Your keys", elem_id="key-table")
        with gr.Row():
            pick = gr.Dropdown(label="Key", choices=[], scale=3, elem_id="key-pick")
            revoke = gr.Button("Revoke", variant="stop", scale=1, elem_id="key-revoke")

    def list_keys(request: gr.Request) -> tuple[Any, Any]:
        name = user_of(request)
        listed = keys.list(name) if name else []
        return key_rows(listed), gr.Dropdown(choices=[k["name"] for k in listed], value=None)

    def create_key(label: str, request: gr.Request) -> tuple[Any, Any, Any, str]:
        try:
            key, made = keys.create(_owner(request), label or "")
        except AccountError as err:
            raise error_toast(str(err)) from None
        info_toast(f"Created the key {made['name']!r}: copy it now.")
        rows, choices = list_keys(request)
        return gr.Textbox(value=key, visible=True), rows, choices, ""

    def revoke_key(label: str | None, request: gr.Request) -> tuple[Any, Any, Any]:
        if not label:
            raise error_toast("Choose a key to revoke.")
        if not keys.revoke(_owner(request), label):
            raise error_toast(f"You have no key named {label!r}.")
        info_toast(f"Revoked {label!r}: it no longer works.")
        return (gr.Textbox(value="", visible=False), *list_keys(request))

    create.click(create_key, inputs=[new_name], outputs=[shown, table, pick, new_name], **PRIVATE)
    revoke.click(revoke_key, inputs=[pick], outputs=[shown, table, pick], **PRIVATE)
    return list_keys, [table, pick]


def jobs_section(services: Services) -> tuple[Callable[..., Any], list[Any], gr.Button]:
    """The running jobs accordion with its Stop; returns its loader, the loader's outputs and the Refresh button."""
    running = services.running
    with gr.Accordion("Running jobs", open=True):
        jobs = gr.Dataframe(headers=JOB_COLUMNS, interactive=False, label="Your running jobs", elem_id="jobs-table")
        with gr.Row():
            job = gr.Dropdown(label="Job", choices=[], scale=3, elem_id="job-pick")
            stop = gr.Button("Stop", variant="stop", scale=1, elem_id="job-stop")
            refresh = gr.Button("Refresh", scale=1, elem_id="jobs-refresh")

    def list_jobs(request: gr.Request) -> tuple[Any, Any]:
        found = [j.describe() for j in running.of(scope_of(services, request))]
        return job_rows(found), gr.Dropdown(choices=[(f"{j['kind']} {j['ref'][:8]} · {j['description']}", j["ref"])
                                                     for j in found], value=None)

    def stop_job(ref: str | None, request: gr.Request) -> tuple[Any, Any]:
        if not ref or not running.stop(ref, scope_of(services, request)):
            raise error_toast("That job is not running (or not yours); refresh the list.")
        info_toast("Stopped: it ends as cancelled in your history.")
        return list_jobs(request)

    stop.click(stop_job, inputs=[job], outputs=[jobs, job], **PRIVATE)
    return list_jobs, [jobs, job], refresh
