"""The Chat tab: R1 replies streaming with the thinking apart, Stop, Regenerate, Edit, New chat, past chats. (The
`/chat`, `/conversations` and `/conversation` endpoints are in ui/api_endpoints.py.)"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import gradio as gr

from contracts import ChatMode, InvalidRequest
from services.admission import QueueQuota
from services.chat import ChatSnapshot
from services.container import Services
from ui.common import (
    PRIVATE,
    checked_by_validator,
    error_toast,
    hand_to_handler,
    html_text,
    info_toast,
    job_context,
    scope_of,
    user_of,
    whole,
)
from ui.model_status import keep_current

OPTION_NAMES = ("temperature", "top_p", "max_new_tokens", "thinking_budget")
NO_CONVERSATIONS = "None yet: your first message starts one."
# The bubble's title: in the present while the model thinks, in the past once it has (beside its duration).
THINKING = "Thinking"
THOUGHT = "Thought"


def thinking_message(reasoning: str, pending: bool, duration: float | None) -> dict[str, Any]:
    """The collapsible "Thinking" bubble: open with a spinner while it streams, closed as "Thought" with its
    duration after."""
    metadata: dict[str, Any] = {"title": THINKING if pending else THOUGHT, "status": "pending" if pending else "done"}
    if duration is not None and not pending:
        metadata["duration"] = round(duration, 1)
    return {"role": "assistant", "content": reasoning, "metadata": metadata}


def stored_to_chatbot(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Stored messages as Chatbot messages: each reply as its thinking bubble, then its answer."""
    out: list[dict[str, Any]] = []
    for m in messages:
        if m["role"] != "assistant":
            out.append({"role": m["role"], "content": m["content"]})
            continue
        if m["reasoning"]:
            out.append(thinking_message(m["reasoning"], pending=False, duration=m["reasoning_s"]))
        out.extend(_answer_bubbles(m["content"], m["status"], m["error"]))
    return out


def _answer_bubbles(answer: str, status: str, error: str | None) -> list[dict[str, Any]]:
    # A failed or stopped reply keeps what was written before it ended (a crash keeps its saved draft): show it.
    bubbles = [{"role": "assistant", "content": answer}] if answer else []
    if status == "failed":
        bubbles.append({"role": "assistant", "content": f"❌ {html_text(error or '')}"})  # the Chatbot renders HTML
    elif status == "cancelled":
        bubbles.append({"role": "assistant", "content": "⏹ _Stopped._"})
    return bubbles


def live_to_chatbot(before: list[dict[str, Any]], user_text: str, snap: ChatSnapshot) -> list[dict[str, Any]]:
    """The conversation while a reply streams: earlier turns, the user's turn, thinking, answer so far."""
    out = [*before, {"role": "user", "content": user_text}]
    thinking = snap.status in ("waiting", "loading", "thinking")
    if snap.reasoning or thinking:
        duration = snap.reasoning_s
        if duration is None and snap.thinking_since is not None:
            duration = time.perf_counter() - snap.thinking_since
        out.append(thinking_message(snap.reasoning or ("…" if snap.status == "thinking" else snap.message),
                                    pending=thinking, duration=duration))
    if snap.status in ("done", "cancelled", "failed"):
        out.extend(_answer_bubbles(snap.answer, snap.status, snap.error))
    elif snap.answer:
        out.append({"role": "assistant", "content": snap.answer})
    return out


@dataclass
class ChatTab:
    """The tab's components, and the states that say which conversation is open and whether Send edits."""

    tab: gr.Tab
    model_status: gr.Markdown
    new_btn: gr.Button
    conversations: gr.Radio
    delete_btn: gr.Button
    chatbot: gr.Chatbot
    message: gr.Textbox
    send_btn: gr.Button
    stop_btn: gr.Button
    regen_btn: gr.Button
    edit_btn: gr.Button
    status: gr.Markdown
    options: list[gr.components.Component]  # temperature, top_p, max_new_tokens, thinking_budget
    conversation_id: gr.State
    mode: gr.State  # "edit" after "Edit last message"

    def turn_outputs(self) -> list[gr.components.Component]:
        """What a streaming reply updates, in the order the handlers yield."""
        return [self.chatbot, self.conversation_id, self.message, self.mode, self.status]


def render(services: Services, quota: QueueQuota) -> ChatTab:
    """Build the tab inside the current Blocks and wire its events."""
    tab = layout(services)
    choices = conversation_choices(services)  # one handler, so that its events share one concurrency group
    wire_turns(services, quota, tab, choices)
    wire_conversations(services, tab, choices)
    with tab.tab:  # inside the tab: a component left in gr.Tabs itself shifts the later tabs' places (see layout)
        timer = gr.Timer(1.0, active=True)

    keep_current(tab.model_status, timer, "text")
    tab.tab.select(choices, outputs=[tab.conversations], **PRIVATE)
    return tab


def layout(services: Services) -> ChatTab:
    """The tab's components: past conversations on the left, the chat, its buttons and the sampling on the right."""
    defaults, limits = services.chat.defaults, services.chat.limits
    with gr.Tab("Chat", id="chat") as tab:
        model_status = gr.Markdown(html_text(services.text_slot.status().message()), elem_id="chat-model-status")
        with gr.Row():
            with gr.Column(scale=1, min_width=220):
                new_btn = gr.Button("New chat", elem_id="chat-new")
                conversations = gr.Radio(label="Conversations", choices=[], info=NO_CONVERSATIONS,
                                         elem_id="chat-conversations")
                delete_btn = gr.Button("Delete conversation", variant="stop", size="sm")
            with gr.Column(scale=4):
                chatbot = gr.Chatbot(label="DeepSeek-R1", height=520, elem_id="chatbot", feedback_options=None,
                                     group_consecutive_messages=False, buttons=["copy"])
                # lines=1 with max_lines > 1: Gradio's box sends on Enter and breaks the line on Shift+Enter (with
                # lines > 1 it does the opposite), and still grows to max_lines as the text does.
                # The label is not shown (the placeholder says it) but names the box for screen readers.
                message = gr.Textbox(label="Message", placeholder="Ask anything… (Enter sends, Shift+Enter: new line)",
                                     show_label=False, lines=1, max_lines=8, elem_id="chat-message")
                with gr.Row():
                    send_btn = gr.Button("Send", variant="primary", elem_id="chat-send")
                    stop_btn = gr.Button("Stop", variant="stop", elem_id="chat-stop")
                    regen_btn = gr.Button("Regenerate", elem_id="chat-regenerate")
                    edit_btn = gr.Button("Edit last message", elem_id="chat-edit")
                status = gr.Markdown(elem_id="chat-status")
                with gr.Accordion("Sampling", open=False):
                    with gr.Row():
                        temperature = gr.Slider(0, 2, value=defaults.temperature, step=0.05, label="Temperature")
                        top_p = gr.Slider(0.05, 1, value=defaults.top_p, step=0.01, label="Top p")
                    with gr.Row():
                        max_new_tokens = gr.Slider(16, limits.max_new_tokens, value=defaults.max_new_tokens, step=16,
                                                   label="Max new tokens")
                        thinking_budget = gr.Number(defaults.thinking_budget or 0, precision=0, minimum=0,
                                                    label="Thinking budget (tokens, 0 = no limit)")
        # In the tab, not after it: the browser places a tab by its index among gr.Tabs' children, so a state
        # between two tabs gave each later tab a second header on its first visit.
        conversation_id, mode = gr.State(None), gr.State("send")
    return ChatTab(tab, model_status, new_btn, conversations, delete_btn, chatbot, message, send_btn, stop_btn,
                   regen_btn, edit_btn, status, [temperature, top_p, max_new_tokens, thinking_budget],
                   conversation_id, mode)


def wire_turns(services: Services, quota: QueueQuota, tab: ChatTab, choices: Callable[..., Any]) -> None:
    """Send (button or Enter), Regenerate and Stop: each turn is checked by the chat service before it is queued."""
    chat = services.chat

    def validate_turn(text: str, cid: int | None, current_mode: str, t: float, p: float, n: float,
                      budget: float | None, request: gr.Request) -> list[Any]:
        """Runs before the reply is queued."""
        req, errors = chat.check(text, cid, _turn_mode(current_mode, cid), **option_values(t, p, n, budget))
        if problem := quota.problem(request):
            errors["message"] = problem
        if not errors:
            hand_to_handler(request, req)
        return [gr.validate("message" not in errors, errors.get("message", "")),
                gr.validate(True, ""), gr.validate(True, ""),
                *[gr.validate(name not in errors, errors.get(name, "")) for name in OPTION_NAMES]]

    def validate_regenerate(cid: int | None, t: float, p: float, n: float, budget: float | None,
                            request: gr.Request) -> list[Any]:
        """Runs before a regenerate is queued."""
        req, errors = chat.check(None, cid, "regenerate", **option_values(t, p, n, budget))
        if problem := quota.problem(request):
            errors["conversation_id"] = problem
        if cid is None:
            errors["conversation_id"] = "Nothing to regenerate yet: send a message first."
        if not errors:
            hand_to_handler(request, req)
        return [gr.validate("conversation_id" not in errors, errors.get("conversation_id", "")),
                *[gr.validate(name not in errors, errors.get(name, "")) for name in OPTION_NAMES]]

    async def send(text: str, cid: int | None, current_mode: str, t: float, p: float, n: float,
                   budget: float | None, request: gr.Request) -> AsyncIterator[tuple[Any, Any, str, str, str]]:
        async for update in stream_reply(services, request):
            yield update

    async def regenerate(cid: int | None, t: float, p: float, n: float, budget: float | None,
                         request: gr.Request) -> AsyncIterator[tuple[Any, Any, str, str, str]]:
        async for update in stream_reply(services, request):
            yield update

    # Queue position and ETA show on the status line while the chat itself streams untouched.
    common = {"concurrency_limit": chat.concurrency, "concurrency_id": "text", "show_progress": "full",
              "show_progress_on": [tab.status], "outputs": tab.turn_outputs(), **PRIVATE}
    send_inputs = [tab.message, tab.conversation_id, tab.mode, *tab.options]
    events = [tab.send_btn.click(send, inputs=send_inputs, validator=validate_turn, **common),
              tab.message.submit(send, inputs=send_inputs, validator=validate_turn, **common),
              tab.regen_btn.click(regenerate, inputs=[tab.conversation_id, *tab.options],
                                  validator=validate_regenerate, **common)]
    tab.stop_btn.click(None, cancels=events, **PRIVATE)
    for event in events:
        event.then(choices, outputs=[tab.conversations], **PRIVATE).then(
            lambda cid: cid, inputs=[tab.conversation_id], outputs=[tab.conversations], **PRIVATE)


async def stream_reply(services: Services, request: gr.Request) -> AsyncIterator[tuple[Any, Any, str, str, str]]:
    """Start the turn its validator checked and stream the conversation as it grows: what it showed before the turn
    (as the chat service planned it), the turn, then the reply."""
    try:
        with job_context(request):
            handle = services.chat.start(checked_by_validator(request), user=user_of(request))
    except InvalidRequest as err:  # the conversation is not (or no longer) the user's
        raise error_toast(str(err)) from None
    cid = handle.snapshot().conversation_id
    before = stored_to_chatbot(handle.turn.earlier)
    async for snap in handle.watch():
        yield live_to_chatbot(before, handle.turn.user_text, snap), cid, "", "send", snap.message


def conversation_choices(services: Services) -> Callable[[gr.Request], gr.Radio]:
    """A handler that lists the user's (or, for an admin, everyone's) recent conversations."""

    # Named as before the tabs were split: Gradio names a private event after its function.
    def conversation_choices(request: gr.Request) -> gr.Radio:
        page = services.chat.list_conversations(scope_of(services, request), limit=50)["conversations"]
        # An empty list says so, rather than nothing.
        return gr.Radio(choices=[(c["title"] or f"#{c['conversation_id']}", c["conversation_id"]) for c in page],
                        info="" if page else NO_CONVERSATIONS)

    return conversation_choices


def wire_conversations(services: Services, tab: ChatTab, choices: Callable[..., Any]) -> None:
    """Open a past conversation, start a new one, edit the last message, delete a conversation."""
    chat = services.chat

    def open_conversation(cid: int | None, request: gr.Request) -> tuple[Any, Any, str, str]:
        if cid is None:
            return [], None, "send", ""
        conv = chat.get_conversation(int(cid), scope_of(services, request))
        if conv is None:
            raise error_toast(f"Conversation {cid} does not exist (or was deleted).")
        return stored_to_chatbot(conv["messages"]), conv["conversation_id"], "send", ""

    def start_edit(cid: int | None, request: gr.Request) -> tuple[str, str, str]:
        conv = chat.get_conversation(int(cid), user_of(request)) if cid is not None else None
        users = [m for m in (conv or {"messages": []})["messages"] if m["role"] == "user"]
        if not users:
            raise error_toast("Nothing to edit yet: send a message first.")
        return users[-1]["content"], "edit", "✏️ Editing your last message: change it and press Send."

    def new_chat() -> tuple[list[Any], None, str, str, str]:
        return [], None, "send", "", ""

    def delete(cid: int | None, request: gr.Request) -> None:
        if cid is None or not chat.delete_conversation(int(cid), scope_of(services, request)):
            raise error_toast("Open a conversation first.")
        info_toast("Conversation deleted.")

    cleared = [tab.chatbot, tab.conversation_id, tab.mode, tab.message, tab.status]
    tab.edit_btn.click(start_edit, inputs=[tab.conversation_id], outputs=[tab.message, tab.mode, tab.status],
                       **PRIVATE)
    tab.new_btn.click(new_chat, outputs=cleared, **PRIVATE).then(
        lambda: gr.Radio(value=None), outputs=[tab.conversations], **PRIVATE)
    tab.conversations.input(open_conversation, inputs=[tab.conversations],
                            outputs=[tab.chatbot, tab.conversation_id, tab.mode, tab.status], **PRIVATE)
    tab.delete_btn.click(delete, inputs=[tab.conversation_id], **PRIVATE).success(
        new_chat, outputs=cleared, **PRIVATE).then(choices, outputs=[tab.conversations], **PRIVATE)


def _turn_mode(current_mode: str, cid: int | None) -> ChatMode:
    """Send, or edit the last message once "Edit last message" was pressed in an open conversation."""
    return "edit" if current_mode == "edit" and cid is not None else "send"


def option_values(t: float | None, p: float | None, n: float | None, budget: float | None) -> dict[str, Any]:
    """UI numbers as TextOptions overrides (None keeps a default; a thinking budget of 0 means no limit)."""
    return {
        "temperature": t, "top_p": p,
        "max_new_tokens": whole(n),
        "thinking_budget": whole(budget),
    }

