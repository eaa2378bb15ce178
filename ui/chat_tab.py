"""The Chat tab: R1 replies streaming with the thinking apart, Stop, Regenerate, Edit, New chat, past chats.

Also the `/chat`, `/conversations` and `/conversation` API endpoints.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import gradio as gr

from services.chat import MAX_PAGE, ChatSnapshot
from services.container import Services
from services.limits import InvalidRequest
from ui.common import (
    PRIVATE,
    RAW_INPUTS,
    QueueQuota,
    error_toast,
    html_text,
    info_toast,
    read_api,
    scope_of,
    type_errors,
    user_of,
    verdicts,
    whole,
)

OPTION_NAMES = ("temperature", "top_p", "max_new_tokens", "thinking_budget")
THINKING = "💭 Thinking"


def thinking_message(reasoning: str, pending: bool, duration: float | None) -> dict[str, Any]:
    """The collapsible "Thinking" bubble: open with a spinner while it streams, closed with its duration after."""
    metadata: dict[str, Any] = {"title": THINKING, "status": "pending" if pending else "done"}
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


def render(services: Services, quota: QueueQuota) -> None:
    """Build the tab inside the current Blocks and wire its events."""
    chat = services.chat
    defaults = chat.defaults
    limits = chat.limits
    with gr.Tab("Chat", id="chat") as tab:
        model_status = gr.Markdown(html_text(services.text_slot.status().message()), elem_id="chat-model-status")
        with gr.Row():
            with gr.Column(scale=1, min_width=220):
                new_btn = gr.Button("＋ New chat", elem_id="chat-new")
                conversations = gr.Radio(label="Conversations", choices=[], elem_id="chat-conversations")
                delete_btn = gr.Button("Delete conversation", variant="stop", size="sm")
            with gr.Column(scale=4):
                chatbot = gr.Chatbot(label="DeepSeek-R1", height=520, elem_id="chatbot", feedback_options=None,
                                     group_consecutive_messages=False, buttons=["copy"])
                # lines=1 with max_lines > 1: Gradio's box sends on Enter and breaks the line on Shift+Enter (with
                # lines > 1 it does the opposite), and still grows to max_lines as the text does.
                message = gr.Textbox(placeholder="Ask anything… (Enter sends, Shift+Enter: new line)",
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
    conversation_id = gr.State(None)
    mode = gr.State("send")  # "edit" after "Edit last message"
    options = [temperature, top_p, max_new_tokens, thinking_budget]

    def conversation_choices(request: gr.Request) -> gr.Radio:
        page = chat.list_conversations(scope_of(services, request), limit=50)["conversations"]
        return gr.Radio(choices=[(c["title"] or f"#{c['conversation_id']}", c["conversation_id"]) for c in page])

    def open_conversation(cid: int | None, request: gr.Request) -> tuple[Any, Any, str, str]:
        if cid is None:
            return [], None, "send", ""
        conv = chat.get_conversation(int(cid), scope_of(services, request))
        if conv is None:
            raise error_toast(f"Conversation {cid} does not exist (or was deleted).")
        return stored_to_chatbot(conv["messages"]), conv["conversation_id"], "send", ""

    def validate_turn(text: str, cid: int | None, current_mode: str, t: float, p: float, n: float,
                      budget: float | None, request: gr.Request) -> list[Any]:
        """Runs before the reply is queued."""
        errors = chat.field_errors(text, **_option_values(t, p, n, budget))
        if problem := quota.problem(request):
            errors["message"] = problem
        return [gr.validate("message" not in errors, errors.get("message", "")),
                gr.validate(True, ""), gr.validate(True, ""),
                *[gr.validate(name not in errors, errors.get(name, "")) for name in OPTION_NAMES]]

    def validate_regenerate(cid: int | None, t: float, p: float, n: float, budget: float | None,
                            request: gr.Request) -> list[Any]:
        """Runs before a regenerate is queued."""
        errors = chat.field_errors(require_message=False, **_option_values(t, p, n, budget))
        if problem := quota.problem(request):
            errors["conversation_id"] = problem
        if cid is None:
            errors["conversation_id"] = "Nothing to regenerate yet: send a message first."
        return [gr.validate("conversation_id" not in errors, errors.get("conversation_id", "")),
                *[gr.validate(name not in errors, errors.get(name, "")) for name in OPTION_NAMES]]

    async def stream_reply(text: str | None, cid: int | None, turn_mode: str, opts: dict[str, Any],
                           request: gr.Request) -> AsyncIterator[tuple[Any, Any, str, str, str]]:
        user = user_of(request)
        try:
            handle = chat.start(text, cid, user=user, options=chat.options(**opts), mode=turn_mode)  # type: ignore[arg-type]
        except InvalidRequest as err:
            raise error_toast(str(err)) from None
        cid = handle.snapshot().conversation_id
        stored = chat.get_conversation(cid, user)["messages"]
        # Everything before the turn being answered; that turn is shown from what was sent.
        last_user = max(i for i, m in enumerate(stored) if m["role"] == "user")
        before = stored_to_chatbot(stored[:last_user])
        user_text = text if turn_mode == "edit" else stored[last_user]["content"]
        async for snap in handle.watch():
            yield live_to_chatbot(before, user_text, snap), cid, "", "send", snap.message

    async def send(text: str, cid: int | None, current_mode: str, t: float, p: float, n: float,
                   budget: float | None, request: gr.Request) -> AsyncIterator[tuple[Any, Any, str, str, str]]:
        turn_mode = "edit" if current_mode == "edit" and cid is not None else "send"
        async for update in stream_reply(text, cid, turn_mode, _option_values(t, p, n, budget), request):
            yield update

    async def regenerate(cid: int | None, t: float, p: float, n: float, budget: float | None,
                         request: gr.Request) -> AsyncIterator[tuple[Any, Any, str, str, str]]:
        async for update in stream_reply(None, cid, "regenerate", _option_values(t, p, n, budget), request):
            yield update

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

    turn_outputs = [chatbot, conversation_id, message, mode, status]
    # Queue position and ETA show on the status line while the chat itself streams untouched.
    common = {"concurrency_limit": chat.concurrency, "concurrency_id": "text", "show_progress": "full",
              "show_progress_on": [status]}
    send_inputs = [message, conversation_id, mode, *options]
    send_event = send_btn.click(send, inputs=send_inputs, outputs=turn_outputs, validator=validate_turn,
                                **common, **PRIVATE)
    submit_event = message.submit(send, inputs=send_inputs, outputs=turn_outputs, validator=validate_turn,
                                  **common, **PRIVATE)
    regen_event = regen_btn.click(regenerate, inputs=[conversation_id, *options], outputs=turn_outputs,
                                  validator=validate_regenerate, **common, **PRIVATE)
    stop_btn.click(None, cancels=[send_event, submit_event, regen_event], **PRIVATE)
    for event in (send_event, submit_event, regen_event):
        event.then(conversation_choices, outputs=[conversations], **PRIVATE).then(
            lambda cid: cid, inputs=[conversation_id], outputs=[conversations], **PRIVATE)
    edit_btn.click(start_edit, inputs=[conversation_id], outputs=[message, mode, status], **PRIVATE)
    new_btn.click(new_chat, outputs=[chatbot, conversation_id, mode, message, status], **PRIVATE).then(
        lambda: gr.Radio(value=None), outputs=[conversations], **PRIVATE)
    conversations.input(open_conversation, inputs=[conversations],
                        outputs=[chatbot, conversation_id, mode, status], **PRIVATE)
    delete_btn.click(delete, inputs=[conversation_id], **PRIVATE).success(
        new_chat, outputs=[chatbot, conversation_id, mode, message, status], **PRIVATE).then(
        conversation_choices, outputs=[conversations], **PRIVATE)
    timer = gr.Timer(1.0, active=True)

    def refresh_status() -> tuple[str, gr.Timer]:
        slot = services.text_slot.status()
        return html_text(slot.message()), gr.Timer(active=slot.state.value in ("loading", "not loaded"))

    timer.tick(refresh_status, outputs=[model_status, timer], concurrency_limit=None, show_progress="hidden",
               **PRIVATE)
    tab.select(conversation_choices, outputs=[conversations], **PRIVATE)


def register_api(services: Services, quota: QueueQuota) -> None:
    """`/chat`, `/conversations`, `/conversation`: outside gr.Tabs, on hidden inputs so that validators run first."""
    chat = services.chat
    defaults = chat.defaults
    top = chat.limits.max_new_tokens
    with gr.Row(visible=False):
        # Events on hidden components (not gr.api) so that their validators run before queueing. /chat's ranges
        # only describe a field in the message for a value of the wrong type (the service checks its numbers);
        # read_api checks /conversations' and /conversation's ranges from their components.
        fields = {
            "message": gr.Textbox(),
            "conversation_id": gr.Number(None, precision=0, minimum=1),
            "temperature": gr.Number(defaults.temperature, minimum=0, maximum=2),
            "top_p": gr.Number(defaults.top_p, minimum=0, maximum=1),
            "max_new_tokens": gr.Number(defaults.max_new_tokens, precision=0, minimum=1, maximum=top),
            # Empty keeps the server's default budget; 0 lifts it.
            "thinking_budget": gr.Number(None, precision=0, minimum=0, maximum=top),
        }
        result = gr.JSON()
        trigger = gr.Button()
        pages = {"limit": gr.Number(20, precision=0, minimum=1, maximum=MAX_PAGE),
                 "before": gr.Number(None, precision=0, minimum=1)}
        one = {"conversation_id": gr.Number(None, precision=0, minimum=1)}

    def validate_chat(message: str, conversation_id: float | None, temperature: float | None,
                      top_p: float | None, max_new_tokens: float | None, thinking_budget: float | None,
                      request: gr.Request) -> list[Any]:
        """Runs before the reply is queued: types, then the service's ranges, then the conversation's owner."""
        values = dict(zip(fields, (message, conversation_id, temperature, top_p, max_new_tokens, thinking_budget),
                          strict=True))
        wrong = type_errors(fields, values, optional=["conversation_id", *OPTION_NAMES])
        options = [None if name in wrong else values[name] for name in OPTION_NAMES]
        errors = {**chat.field_errors(None if "message" in wrong else message, **_option_values(*options)), **wrong}
        cid = whole(conversation_id)
        if "conversation_id" not in errors and cid is not None and chat.get_conversation(cid, user_of(request)) is None:
            errors["conversation_id"] = (f"conversation {cid} does not exist; conversation_id must be one of yours, "
                                         "or empty for a new one.")
        if problem := quota.problem(request):
            errors["message"] = problem
        return verdicts(list(fields), errors)

    # The None defaults make conversation_id and thinking_budget optional for API clients (Gradio reads them).
    async def chat_api(message: str, conversation_id: float | None = None, temperature: float | None = None,
                       top_p: float | None = None, max_new_tokens: float | None = None,
                       thinking_budget: float | None = None,
                       request: gr.Request = None) -> AsyncIterator[dict[str, Any]]:
        """Reply to `message` in `conversation_id` (empty: a new one), streaming reasoning and answer apart.

        Args:
            message: what to ask the model (DeepSeek-R1, which thinks before it answers)
            conversation_id: a conversation of yours to continue; empty starts a new one
            temperature: sampling temperature, 0 (greedy, repeatable) to 2; empty: 0.6, R1's recommendation
            top_p: nucleus sampling, above 0 and at most 1; empty: 0.95
            max_new_tokens: the most tokens the reply may take, reasoning included; empty: the server's default
            thinking_budget: reasoning tokens after which the model must answer; 0: no limit; empty: the default
        """
        cid = int(conversation_id) if conversation_id is not None else None
        try:
            opts = chat.options(**_option_values(temperature, top_p, max_new_tokens, thinking_budget))
            handle = chat.start(message, cid, user=user_of(request), options=opts)
        except InvalidRequest as err:
            raise error_toast(str(err)) from None
        async for snap in handle.watch():
            if snap.status == "failed":
                raise error_toast(snap.error or snap.message)
            yield {"conversation_id": snap.conversation_id, "status": snap.status, "reasoning": snap.reasoning,
                   "answer": snap.answer, "reasoning_s": snap.reasoning_s, "message_id": snap.message_id,
                   "usage": snap.usage, "cached": snap.cached}

    trigger.click(chat_api, inputs=list(fields.values()), outputs=[result], api_name="chat", validator=validate_chat,
                  concurrency_limit=chat.concurrency, concurrency_id="text", **RAW_INPUTS)

    def conversations_api(limit: int = 20, before: int | None = None,
                          request: gr.Request = None) -> dict[str, Any]:
        """Your conversations, most recently active first; pass `next_before` as `before` for the next page.

        Args:
            limit: how many conversations, 1 to 200
            before: a conversation id from the last page's next_before; empty for the newest
        """
        try:
            return chat.list_conversations(scope_of(services, request), limit=whole(limit), before=whole(before))
        except ValueError as err:
            raise error_toast(str(err)) from None

    def conversation_api(conversation_id: int, request: gr.Request = None) -> dict[str, Any]:
        """One conversation with its messages (each reply's reasoning apart from its answer).

        Args:
            conversation_id: the id of one of your conversations (from conversations or chat)
        """
        conv = chat.get_conversation(whole(conversation_id), scope_of(services, request))
        if conv is None:
            raise error_toast(f"conversation {conversation_id} does not exist.")
        return conv

    read_api(conversations_api, "conversations", pages, optional=["before"])
    read_api(conversation_api, "conversation", one)


def _option_values(t: float | None, p: float | None, n: float | None, budget: float | None) -> dict[str, Any]:
    """UI numbers as TextOptions overrides (None keeps a default; a thinking budget of 0 means no limit)."""
    return {
        "temperature": t, "top_p": p,
        "max_new_tokens": whole(n),
        "thinking_budget": whole(budget),
    }

