"""The Admin tab (issue 26), shown to admins only: users (create, disable, enable, reset a password, grant or take back
the admin role, delete with their data) and their API keys, their limits, usage per user, the live queue, the models
and the request log (ui/admin_views.py builds the last four). The same use cases as the REST routes under
/api/admin, through services/admin.py.

Every event here checks that its user is an admin before it does anything (a non-admin calling one through the API by
its index gets an error and nothing changes), and leaves a request log row of kind `admin` saying what it did.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gradio as gr

from services.admin import AdminError
from services.container import Services
from ui import admin_views
from ui.admin_common import ADMIN_EVENT, Handler, Said, admin_only, first_cell, name_of
from ui.common import PRIVATE, user_of

USER_COLUMNS = ["name", "admin", "disabled", "created", "limits overridden", "API keys"]
KEY_COLUMNS = ["name", "key", "created", "last used"]
@dataclass
class UsersView:
    """The users section's components."""

    table: gr.Dataframe
    refresh: gr.Button
    name: gr.Textbox
    status: gr.Markdown
    new_name: gr.Textbox
    new_password: gr.Textbox
    new_admin: gr.Checkbox
    create: gr.Button
    disable: gr.Button
    enable: gr.Button
    grant: gr.Button
    revoke_admin: gr.Button
    password: gr.Textbox
    reset: gr.Button
    confirm: gr.Checkbox
    delete: gr.Button
    keys: gr.Dataframe
    key_name: gr.Textbox
    revoke_key: gr.Button


def users_layout() -> UsersView:
    """The users section: the accounts, what to do with the one selected, its API keys."""
    table = gr.Dataframe(headers=USER_COLUMNS, label="Accounts (select a row)", interactive=False,
                         elem_id="admin-users")
    with gr.Row():
        refresh = gr.Button("Refresh", size="sm")
        name = gr.Textbox(label="User", placeholder="select a row, or type a name", elem_id="admin-user")
    status = gr.Markdown(elem_id="admin-status")
    with gr.Row():
        disable, enable = gr.Button("Disable", size="sm", variant="stop"), gr.Button("Enable", size="sm")
        grant, revoke_admin = gr.Button("Make admin", size="sm"), gr.Button("Take back admin", size="sm")
    with gr.Row():
        password = gr.Textbox(label="New password", type="password", elem_id="admin-new-password")
        reset = gr.Button("Reset password", size="sm")
    with gr.Row():
        confirm = gr.Checkbox(label="Delete their images, conversations, limits and keys too (cannot be undone)",
                              elem_id="admin-confirm-delete")
        delete = gr.Button("Delete user", variant="stop", size="sm", elem_id="admin-delete")
    with gr.Accordion("Their API keys", open=False):
        keys = gr.Dataframe(headers=KEY_COLUMNS, label="API keys", interactive=False)
        with gr.Row():
            key_name = gr.Textbox(label="Key name")
            revoke_key = gr.Button("Revoke key", size="sm", variant="stop")
    with gr.Accordion("New user", open=False):
        with gr.Row():
            new_name = gr.Textbox(label="Name", elem_id="admin-new-name")
            new_password = gr.Textbox(label="Password", type="password", elem_id="admin-new-user-password")
            new_admin = gr.Checkbox(label="Admin")
        create = gr.Button("Create user", variant="primary", size="sm", elem_id="admin-create")
    return UsersView(table, refresh, name, status, new_name, new_password, new_admin, create, disable, enable, grant,
                     revoke_admin, password, reset, confirm, delete, keys, key_name, revoke_key)


def user_rows(users: list[dict[str, Any]]) -> list[list[Any]]:
    """The accounts as table rows."""
    return [[u["name"], "yes" if u["admin"] else "", "disabled" if u["disabled"] else "", str(u["created_at"])[:10],
             "yes" if u["limits_overridden"] else "", "" if u["keys"] is None else u["keys"]] for u in users]


def key_rows(keys: list[dict[str, Any]]) -> list[list[Any]]:
    """A user's keys as table rows."""
    return [[k["name"], k["prefix"], str(k.get("created_at") or "")[:19], str(k.get("last_used_at") or "")[:19]]
            for k in keys]


def wire_users(services: Services, view: UsersView) -> None:
    """The users section's events."""
    admin = services.admin
    guard = functools.partial(admin_only, services)

    @guard("viewed the users")
    async def load(request: gr.Request) -> list[list[Any]]:
        return user_rows(await asyncio.to_thread(admin.users))

    @guard("created a user")
    async def create(name: str, password: str, make_admin: bool, request: gr.Request) -> Said:
        await asyncio.to_thread(admin.create_user, name.strip(), password, make_admin)
        return Said((f"Created {name.strip()}.", "", ""), f"created {name.strip()}{' (admin)' if make_admin else ''}")

    def change(**fields: Any) -> Handler:
        @guard("changed a user")
        async def changed(name: str, request: gr.Request) -> Said:
            done = await admin.update_user(name_of(name), user_of(request), **fields)
            return Said(" ".join(f"{d[:1].upper()}{d[1:]}." for d in done), "; ".join(done))

        return changed

    @guard("reset a password")
    async def reset(name: str, password: str, request: gr.Request) -> Said:
        done = await admin.update_user(name_of(name), user_of(request), password=password)
        return Said((f"{done[0][:1].upper()}{done[0][1:]}.", ""), done[0])

    @guard("deleted a user")
    async def delete(name: str, confirmed: bool, request: gr.Request) -> Said:
        if not confirmed:
            raise AdminError("Tick the box to confirm that their data goes too.")
        gone = await admin.delete_user(name_of(name), user_of(request))
        text = (f"deleted {gone['user']}: {gone['image_jobs']} image job(s), {gone['conversations']} "
                f"conversation(s), {gone['keys']} key(s); stopped {gone['stopped_jobs']} job(s)")
        return Said((f"{text[:1].upper()}{text[1:]}.", "", False), text)

    @guard("viewed a user's API keys")
    async def keys(name: str, request: gr.Request) -> list[list[Any]]:
        return key_rows(await asyncio.to_thread(admin.user_keys, name_of(name))) if name.strip() else []

    @guard("revoked an API key")
    async def revoke(name: str, key: str, request: gr.Request) -> Said:
        await asyncio.to_thread(admin.revoke_key, name_of(name), key.strip())
        return Said((f"Revoked {key.strip()!r} of {name.strip()}.", ""), f"revoked the API key {key!r} of {name}")

    _wire_user_events(view, load, create, change, reset, delete, keys, revoke)


def _wire_user_events(view: UsersView, load: Handler, create: Handler, change: Callable[..., Handler],
                      reset: Handler, delete: Handler, keys: Handler, revoke: Handler) -> None:
    reload = {"fn": load, "outputs": [view.table], **ADMIN_EVENT}
    view.refresh.click(**reload)
    view.table.select(first_cell, outputs=[view.name], **PRIVATE).then(
        keys, inputs=[view.name], outputs=[view.keys], **ADMIN_EVENT)
    view.create.click(create, inputs=[view.new_name, view.new_password, view.new_admin],
                      outputs=[view.status, view.new_name, view.new_password], **ADMIN_EVENT).success(**reload)
    for button, fields in ((view.disable, {"disabled": True}), (view.enable, {"disabled": False}),
                           (view.grant, {"admin": True}), (view.revoke_admin, {"admin": False})):
        button.click(change(**fields), inputs=[view.name], outputs=[view.status], **ADMIN_EVENT).success(**reload)
    view.reset.click(reset, inputs=[view.name, view.password], outputs=[view.status, view.password], **ADMIN_EVENT)
    view.delete.click(delete, inputs=[view.name, view.confirm], outputs=[view.status, view.name, view.confirm],
                      **ADMIN_EVENT).success(**reload)
    view.revoke_key.click(revoke, inputs=[view.name, view.key_name], outputs=[view.status, view.key_name],
                          **ADMIN_EVENT).success(keys, inputs=[view.name], outputs=[view.keys], **ADMIN_EVENT)


def render(services: Services) -> gr.Accordion:
    """The admin panel below the tabs, hidden; the app shows it to admins when their page loads (show_to_admins).
    Not a tab: Gradio 6.31 draws a tab made visible after the page loaded, but a click on it selects nothing."""
    with gr.Accordion("Admin", open=True, visible=False, elem_id="admin-tab") as tab, gr.Tabs():
        with gr.Tab("Users"):
            users = users_layout()
        with gr.Tab("Limits"):
            limits = admin_views.limits_layout()
        with gr.Tab("Usage"):
            usage = admin_views.usage_layout()
        with gr.Tab("Queue"):
            queue = admin_views.queue_layout()
        with gr.Tab("Models"):
            models = admin_views.models_layout()
        with gr.Tab("Requests"):
            requests = admin_views.requests_layout()
    wire_users(services, users)
    admin_views.wire(services, limits, usage, queue, models, requests)
    return tab


def show_to_admins(services: Services, blocks: gr.Blocks, tab: gr.Accordion) -> None:
    """Show the admin panel on the page of an admin, and only there."""

    def visible(request: gr.Request) -> gr.Accordion:
        return gr.Accordion(visible=services.accounts.viewer(user_of(request)).admin)

    blocks.load(visible, outputs=[tab], **PRIVATE)
