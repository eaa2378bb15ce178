"""The History tab's account section: the whole account as one archive (streamed to a file with its progress), the
import of such an archive (all or nothing), and how long the user's work is kept (retention)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr

from contracts import InvalidRequest
from services.container import Services
from ui.common import PRIVATE, error_toast, is_file, user_of
from ui.history_search import refused, stream_to_file

MAX_DAYS = 36_500


@dataclass
class AccountPanel:
    """Export, import and retention."""

    export_btn: gr.Button
    export_status: gr.Markdown
    export_file: gr.File
    archive: gr.File
    import_btn: gr.Button
    import_status: gr.Markdown
    retention: gr.Markdown
    days: gr.Number
    save_btn: gr.Button


def layout() -> AccountPanel:
    """The Account accordion (inside the History tab)."""
    with gr.Accordion("Your account: archive, import, retention", open=False, elem_id="history-account"):
        with gr.Row():
            with gr.Column():
                export_btn = gr.Button("Export my whole account", elem_id="account-export")
                export_status = gr.Markdown(elem_id="account-export-status")
                export_file = gr.File(label="Account archive", interactive=False, elem_id="account-export-file")
            with gr.Column():
                archive = gr.File(label="An account archive (.zip) to import", file_types=[".zip"],
                                  elem_id="account-import-file")
                import_btn = gr.Button("Import into my account", elem_id="account-import")
                import_status = gr.Markdown(elem_id="account-import-status")
        with gr.Row():
            retention = gr.Markdown()
            days = gr.Number(label="Delete my images and conversations after (days; empty or 0: the server's rule)",
                             value=None, precision=0, minimum=0, maximum=MAX_DAYS)
            save_btn = gr.Button("Save", size="sm")
    return AccountPanel(export_btn, export_status, export_file, archive, import_btn, import_status, retention, days,
                        save_btn)


class AccountActions:
    """The handlers, on the asking user's own account."""

    def __init__(self, services: Services) -> None:
        self.services = services

    def export(self, request: gr.Request) -> Iterator[tuple[str, str | None]]:
        """The account archive, written as it streams with a status line, then offered for download."""
        yield from stream_to_file(self.services.archive.export(user_of(request)))

    def import_archive(self, archive: Any, request: gr.Request) -> str:
        """Bring an archive into the user's account: all of it, or (refused, saying why) nothing."""
        path = archive.get("path") if is_file(archive) else archive
        if not isinstance(path, str | Path):
            raise error_toast("Choose an account archive (.zip) first.")
        try:
            counts = self.services.archive.import_archive(user_of(request), Path(path))
        except InvalidRequest as error:
            raise refused(error) from None
        return ("Imported " + ", ".join(f"{n} {what}" for what, n in counts.items()) + ".")

    def retention(self, request: gr.Request) -> tuple[str, Any]:
        """The retention line and the user's own days."""
        rule = self.services.retention.describe(user_of(request))
        server = f"deletes work after {rule['server_days']} days" if rule["server_days"] else "keeps everything"
        mine = f"{rule['user_days']} days" if rule["user_days"] else "not set"
        effective = (f"your images and conversations go after {rule['effective_days']} days (favourites and jobs in "
                     "a collection are kept)" if rule["effective_days"] else "nothing of yours is deleted")
        line = f"The server {server}; your own limit: {mine}. So {effective}."
        return line, rule["user_days"]

    def save_retention(self, days: float | None, request: gr.Request) -> tuple[str, Any]:
        """Set the user's retention days (empty or 0 clears them: a Number box sends 0 when empty)."""
        try:
            self.services.user_settings.set(user_of(request), "retention_days", int(days) if days else None)
        except InvalidRequest as error:
            raise refused(error) from None
        return self.retention(request)


def wire(services: Services, panel: AccountPanel, tab: gr.Tab) -> AccountActions:
    """The panel's events; the retention line is drawn when the tab opens."""
    actions = AccountActions(services)
    panel.export_btn.click(actions.export, outputs=[panel.export_status, panel.export_file], **PRIVATE)
    # Raw (preprocess off): the archive service reads the file itself and decodes each image through the upload
    # checks; one import at a time, as each decodes every image it holds.
    panel.import_btn.click(actions.import_archive, inputs=[panel.archive], outputs=[panel.import_status],
                           preprocess=False, concurrency_limit=1, concurrency_id="account-import", **PRIVATE)
    tab.select(actions.retention, outputs=[panel.retention, panel.days], **PRIVATE)
    panel.save_btn.click(actions.save_retention, inputs=[panel.days], outputs=[panel.retention, panel.days],
                         show_progress="hidden", **PRIVATE)  # a refusal's mark would cover the days box
    return actions
