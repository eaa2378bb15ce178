"""The History tab's collection buttons: rename or delete the collection chosen in the filters (its jobs stay in
history). Always the asking user's own collection: another user's id is refused as one that does not exist.

The handlers are methods of CollectionActions so that tests call them as the UI does, with a request naming the user."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gradio as gr

from contracts import InvalidRequest
from services.container import Services
from ui.common import error_toast, info_toast, user_of


@dataclass
class CollectionButtons:
    """Rename (to the name in the "Collection name" box) and delete (once ticked) the collection in the filters."""

    rename_btn: gr.Button
    delete_btn: gr.Button
    sure: gr.Checkbox


def layout() -> CollectionButtons:
    """The row of collection buttons (inside "Organise and export", below the add/take-out row)."""
    with gr.Row():
        rename_btn = gr.Button("Rename the chosen collection", size="sm", elem_id="history-collection-rename")
        delete_btn = gr.Button("Delete the chosen collection", size="sm", variant="stop",
                               elem_id="history-collection-delete")
        sure = gr.Checkbox(label="Yes, delete the collection (its jobs stay)", elem_id="history-collection-sure")
    return CollectionButtons(rename_btn, delete_btn, sure)


def collection_choices(services: Services, user: str) -> list[tuple[str, int]]:
    """The user's collections as drop-down choices: "name (jobs)", by id."""
    return [(f"{c['name']} ({c['jobs']})", c["collection_id"]) for c in services.collections.list(user)]


def _chosen(collection: int | None) -> int:
    if collection is None:
        raise error_toast("Choose a collection in the filters first.")
    return collection


class CollectionActions:
    """Rename and delete, the asking user's collections only."""

    def __init__(self, services: Services) -> None:
        self.services = services

    def choices(self, user: str, value: int | None) -> Any:
        """The filters' collection drop-down as it is now, with `value` chosen."""
        return gr.Dropdown(choices=collection_choices(self.services, user), value=value)

    def rename(self, collection: int | None, name: str, request: gr.Request) -> Any:
        """Give the chosen collection the name in the box; a toast naming the field when refused (an empty or taken
        name, or a collection not the user's)."""
        user, chosen = user_of(request), _chosen(collection)
        try:
            renamed = self.services.collections.rename(user, chosen, name or "")
        except InvalidRequest as error:
            raise error_toast("; ".join(f"{field}: {message}" for field, message in error.errors.items())) from None
        info_toast(f"The collection is now named {renamed['name']!r}.")
        return self.choices(user, chosen)

    def delete(self, sure: bool, collection: int | None, request: gr.Request) -> tuple[Any, bool]:
        """Delete the chosen collection once the user ticked that they mean it (its jobs stay); the drop-down with
        nothing chosen, and the tick cleared."""
        chosen = _chosen(collection)
        if not sure:
            raise error_toast("Tick “Yes, delete the collection” first.")
        user = user_of(request)
        if not self.services.collections.delete(user, chosen):
            raise error_toast(f"collection_id: collection {chosen} does not exist.")
        info_toast("The collection is deleted; its jobs are still in your history.")
        return self.choices(user, None), False


def wire(services: Services, buttons: CollectionButtons, collection: gr.Dropdown, name: gr.Textbox,
         after: dict[str, Any], quiet: dict[str, Any]) -> CollectionActions:
    """The buttons' events; `after` is the search to run again once a collection is deleted (its filter gone)."""
    actions = CollectionActions(services)
    buttons.rename_btn.click(actions.rename, inputs=[collection, name], outputs=[collection], **quiet)
    buttons.delete_btn.click(actions.delete, inputs=[buttons.sure, collection], outputs=[collection, buttons.sure],
                             **quiet).success(**after)
    return actions
