"""The History tab's conversations: searched by the words of any message (the reasoning too, or not), favourites only;
the selected one renamed, marked as a favourite, exported as Markdown, JSON or OpenAI messages, or deleted."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr

from contracts import InvalidRequest
from services.container import Services
from ui.common import PRIVATE, error_toast, info_toast, user_of
from ui.history_search import SYNTAX, export_folder, refused

PAGE = 50
COLUMNS = ["id", "title", "updated", "messages", "match"]
FORMATS = [("Markdown", "markdown"), ("JSON (lossless)", "json"), ("OpenAI messages", "openai")]


def snippet(conversation: dict[str, Any]) -> str:
    """The best message's snippet with its matched words between « and » (plain text)."""
    match = conversation.get("match") or {}
    segments = match.get("snippet") or []
    text = "".join(f"«{s['text']}»" if s["match"] else s["text"] for s in segments)
    return f"{'(reasoning) ' if match.get('field') == 'reasoning' else ''}{text}"[:160]


@dataclass
class ConversationsPanel:
    """The conversation search and the selected conversation's actions."""

    query: gr.Textbox
    reasoning: gr.Checkbox
    favourites: gr.Checkbox
    search_btn: gr.Button
    table: gr.Dataframe
    selected: gr.State  # the selected conversation's id
    title: gr.Textbox
    rename_btn: gr.Button
    favourite_btn: gr.Button
    delete_btn: gr.Button
    fmt: gr.Radio
    export_btn: gr.Button
    file: gr.File


def layout() -> ConversationsPanel:
    """The Conversations accordion (inside the History tab)."""
    with gr.Accordion("Conversations", open=False, elem_id="history-conversations"):
        with gr.Row():
            query = gr.Textbox(label="Search conversations", info=SYNTAX, scale=4, max_length=1000,
                               elem_id="conversation-search")
            reasoning = gr.Checkbox(label="Search the reasoning too", value=True)
            favourites = gr.Checkbox(label="Favourites only")
            search_btn = gr.Button("Search", scale=1, elem_id="conversation-search-btn")
        table = gr.Dataframe(headers=COLUMNS, interactive=False, wrap=True, elem_id="conversation-table")
        with gr.Row():
            title = gr.Textbox(label="Title of the selected conversation", max_length=200, scale=3,
                               elem_id="conversation-title")
            rename_btn = gr.Button("Rename", size="sm")
            favourite_btn = gr.Button("Favourite / unfavourite", size="sm")
            delete_btn = gr.Button("Delete", variant="stop", size="sm")
        with gr.Row():
            fmt = gr.Radio(FORMATS, value="markdown", label="Export as", scale=3)
            export_btn = gr.Button("Export conversation", size="sm", elem_id="conversation-export")
        file = gr.File(label="Download", interactive=False, elem_id="conversation-file")
    return ConversationsPanel(query, reasoning, favourites, search_btn, table, gr.State(None), title, rename_btn,
                              favourite_btn, delete_btn, fmt, export_btn, file)


class ConversationActions:
    """The handlers, each on the asking user's own conversations."""

    def __init__(self, services: Services) -> None:
        self.services = services

    def find(self, query: str, reasoning: bool, favourites: bool, request: gr.Request) -> list[list[Any]]:
        """The matching conversations (most recent first without words), one row each."""
        try:
            page = self.services.search.conversations(user_of(request), query or "", reasoning=reasoning,
                                                      favourite=True if favourites else None, limit=PAGE)
        except InvalidRequest as error:
            raise refused(error) from None
        return [[c["conversation_id"], ("★ " if c["favourite"] else "") + (c["title"] or ""),
                 (c["updated_at"] or "")[:16].replace("T", " "), c["messages"], snippet(c)]
                for c in page["conversations"]]

    @staticmethod
    def pick(evt: gr.SelectData) -> tuple[int | None, str]:
        """The selected row's conversation id and title (without the star)."""
        row = evt.row_value if hasattr(evt, "row_value") else None
        if not row:
            return None, ""
        return int(row[0]), str(row[1]).removeprefix("★ ")

    def rename(self, conversation_id: int | None, title: str, request: gr.Request) -> str:
        """Rename the selected conversation; the title as stored (spaces tidied)."""
        chosen = self._chosen(conversation_id)
        try:
            renamed = self.services.chat.rename_conversation(chosen, user_of(request), title or "")
        except InvalidRequest as error:
            raise refused(error) from None
        info_toast(f"Renamed to {renamed['title']!r}.")
        return str(renamed["title"])

    def toggle_favourite(self, conversation_id: int | None, request: gr.Request) -> None:
        """Mark the selected conversation as a favourite, or unmark it."""
        chosen = self._chosen(conversation_id)
        user = user_of(request)
        found = self.services.chat.get_conversation(chosen, user)
        if found is None or not self.services.chat.set_favourite(chosen, user, not found.get("favourite")):
            raise error_toast(f"Conversation {chosen} is not one of yours.")

    def delete_conversation(self, conversation_id: int | None, request: gr.Request) -> tuple[None, str]:
        """Delete the selected conversation with its messages."""
        chosen = self._chosen(conversation_id)
        if not self.services.chat.delete_conversations([chosen], user_of(request))["deleted"]:
            raise error_toast(f"Conversation {chosen} is not one of yours.")
        info_toast(f"Deleted conversation {chosen}.")
        return None, ""

    def export(self, conversation_id: int | None, fmt: str, request: gr.Request) -> str:
        """The selected conversation as a file in `fmt`, offered for download."""
        chosen = self._chosen(conversation_id)
        try:
            name, _, data = self.services.exports.conversation(user_of(request), chosen, fmt)
        except InvalidRequest as error:
            raise refused(error) from None
        target = Path(tempfile.mkdtemp(dir=export_folder())) / name
        target.write_bytes(data)
        return str(target)

    @staticmethod
    def _chosen(conversation_id: int | None) -> int:
        if conversation_id is None:
            raise error_toast("Select a conversation first.")
        return conversation_id


def wire(services: Services, panel: ConversationsPanel) -> ConversationActions:
    """The panel's events."""
    actions = ConversationActions(services)
    search = {"fn": actions.find, "inputs": [panel.query, panel.reasoning, panel.favourites],
              "outputs": [panel.table], **PRIVATE}
    panel.search_btn.click(**search)
    panel.query.submit(**search)
    panel.table.select(actions.pick, outputs=[panel.selected, panel.title], **PRIVATE)
    # No progress mark: after a refused title Gradio would leave its error mark over the title box.
    panel.rename_btn.click(actions.rename, inputs=[panel.selected, panel.title], outputs=[panel.title],
                           show_progress="hidden", **PRIVATE).success(**search)
    panel.favourite_btn.click(actions.toggle_favourite, inputs=[panel.selected], **PRIVATE).success(**search)
    panel.delete_btn.click(actions.delete_conversation, inputs=[panel.selected], outputs=[panel.selected, panel.title],
                           **PRIVATE).success(**search)
    panel.export_btn.click(actions.export, inputs=[panel.selected, panel.fmt], outputs=[panel.file], **PRIVATE)
    return actions
