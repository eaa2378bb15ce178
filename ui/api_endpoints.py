"""The named Gradio API's endpoints that no tab shows: `/history`, `/chat`, `/conversations`, `/conversation`,
`/png_info`, `/models`, `/loras`, `/choices`, `/search_history` and `/search_conversations`. (The jobs a tab runs,
`/generate_image`, `/img2img`, `/inpaint` and `/assist_prompt`, are the tabs' own events.)

Each is an event on hidden components rather than gr.api, whose endpoints take no validator: the validators refuse
a bad value before anything is queued, naming the field. They are registered outside gr.Tabs, since API-only
endpoints have no place in a layout, and in this order, which fixes their fn_index.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import gradio as gr

from contracts import InvalidRequest, choices
from services.admission import QueueQuota
from services.chat import MAX_PAGE as MAX_CONVERSATIONS
from services.container import Services
from services.controlnet import modules as controlnet_modules
from services.history import MAX_PAGE as MAX_JOBS
from ui import controlnet_panel
from ui.chat_tab import OPTION_NAMES, option_values
from ui.common import (
    RAW_INPUTS,
    checked_by_validator,
    error_toast,
    hand_to_handler,
    job_context,
    read_api,
    scope_of,
    type_errors,
    user_of,
    verdicts,
    whole,
)
from ui.image_form import BUILTIN_UPSCALERS
from ui.pnginfo_tab import read_info

# The paged listings' descriptions for API clients (Gradio reads the Args from them).
HISTORY_DOC = """Your recent image jobs with their settings and files, newest first; pass `next_before` from one page as
`before` for the next.

Args:
    limit: how many jobs, 1 to 200
    before: a job id from the last page's next_before; empty for the newest
"""
CONVERSATIONS_DOC = """Your conversations, most recently active first; pass `next_before` as `before` for the next page.

Args:
    limit: how many conversations, 1 to 200
    before: a conversation id from the last page's next_before; empty for the newest
"""


def register_all(services: Services, quota: QueueQuota) -> None:
    """Every API-only endpoint, in the order of their fn_index."""
    register_history(services)
    register_chat(services, quota)
    register_png_info()
    register_catalog(services)
    controlnet_panel.register_preview(services)
    register_search(services)


def register_history(services: Services) -> None:
    """`/history`: your image jobs, a page at a time."""
    history_api = page_reader(services, services.history.list_jobs, "history_api", HISTORY_DOC)
    with gr.Row(visible=False):
        fields = page_fields(MAX_JOBS)
    read_api(history_api, "history", fields, optional=["before"])


def page_fields(most: int) -> dict[str, gr.components.Component]:
    """A paged listing's `limit` (1 to `most`, 20 by default) and `before` (empty: the newest), on hidden fields."""
    return {"limit": gr.Number(20, precision=0, minimum=1, maximum=most),
            "before": gr.Number(None, precision=0, minimum=1)}


def page_reader(services: Services, list_page: Callable[..., dict[str, Any]], name: str, doc: str
                ) -> Callable[..., dict[str, Any]]:
    """An endpoint's function for a page of the asker's items, `list_page(scope, limit=, before=)`, documented by
    `doc` (its Args describe the parameters to API clients); a bad limit or before is refused with its message."""

    def read_page(limit: int = 20, before: int | None = None, request: gr.Request = None) -> dict[str, Any]:
        try:
            return list_page(scope_of(services, request), limit=whole(limit), before=whole(before))
        except ValueError as err:
            raise error_toast(str(err)) from None

    read_page.__name__ = read_page.__qualname__ = name
    read_page.__doc__ = doc
    return read_page


def chat_fields(services: Services) -> dict[str, gr.components.Component]:
    """/chat's parameters, on hidden components. Their ranges only describe a field in the message for a value of the
    wrong type: the chat service checks the numbers."""
    defaults, top = services.chat.defaults, services.chat.limits.max_new_tokens
    return {
        "message": gr.Textbox(),
        "conversation_id": gr.Number(None, precision=0, minimum=1),
        "temperature": gr.Number(defaults.temperature, minimum=0, maximum=2),
        "top_p": gr.Number(defaults.top_p, minimum=0, maximum=1),
        "max_new_tokens": gr.Number(defaults.max_new_tokens, precision=0, minimum=1, maximum=top),
        # Empty keeps the server's default budget; 0 lifts it.
        "thinking_budget": gr.Number(None, precision=0, minimum=0, maximum=top),
    }


def chat_validator(services: Services, quota: QueueQuota, fields: dict[str, gr.components.Component]
                   ) -> Callable[..., list[Any]]:
    """The `/chat` validator on the hidden `fields` (types, ranges, the conversation's owner, the queue quota)."""
    chat = services.chat

    def validate_chat(message: str, conversation_id: float | None, temperature: float | None,
                      top_p: float | None, max_new_tokens: float | None, thinking_budget: float | None,
                      request: gr.Request) -> list[Any]:
        """Runs before the reply is queued: types, then the service's ranges, then the conversation's owner."""
        values = dict(zip(fields, (message, conversation_id, temperature, top_p, max_new_tokens, thinking_budget),
                          strict=True))
        wrong = type_errors(fields, values, optional=["conversation_id", *OPTION_NAMES])
        options = [None if name in wrong else values[name] for name in OPTION_NAMES]
        cid = None if "conversation_id" in wrong else whole(conversation_id)
        req, errors = chat.check(None if "message" in wrong else message, cid, **option_values(*options))
        errors = {**errors, **wrong}
        if "conversation_id" not in errors and cid is not None and chat.get_conversation(cid, user_of(request)) is None:
            errors["conversation_id"] = (f"conversation {cid} does not exist; conversation_id must be one of yours, "
                                         "or empty for a new one.")
        if problem := quota.problem(request):
            errors["message"] = problem
        if not errors:
            hand_to_handler(request, req)
        return verdicts(list(fields), errors)

    return validate_chat


def register_chat(services: Services, quota: QueueQuota) -> None:
    """`/chat` (a reply, streamed), `/conversations` and `/conversation`."""
    chat = services.chat
    with gr.Row(visible=False):
        fields = chat_fields(services)
        result = gr.JSON()
        trigger = gr.Button()
        pages = page_fields(MAX_CONVERSATIONS)
        one = {"conversation_id": gr.Number(None, precision=0, minimum=1)}

    validate_chat = chat_validator(services, quota, fields)

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
        try:
            with job_context(request):
                handle = chat.start(checked_by_validator(request), user=user_of(request))
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
    register_conversations(services, pages, one)


def register_conversations(services: Services, pages: dict[str, gr.Number], one: dict[str, gr.Number]) -> None:
    """`/conversations` (a page of yours) and `/conversation` (one, with its messages) on the given hidden fields."""
    chat = services.chat

    conversations_api = page_reader(services, chat.list_conversations, "conversations_api", CONVERSATIONS_DOC)

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


def register_png_info() -> None:
    """`/png_info`: the generation settings a PNG carries."""

    def png_info(image: dict[str, Any] | None) -> dict[str, Any]:
        """The generation settings stored in a PNG (Atelier's or AUTOMATIC1111's `parameters`), as JSON in
        AUTOMATIC1111's API names, with the raw text under "parameters".

        Args:
            image: a PNG, JPEG or WebP image made by Atelier or AUTOMATIC1111
        """
        return read_info(image)

    with gr.Row(visible=False):
        fields = {"image": gr.Image(type="filepath")}
    read_api(png_info, "png_info", fields)


def register_catalog(services: Services) -> None:
    """`/models`, `/loras` and `/choices`: what the model folders hold and what a request may choose."""
    catalog = services.catalog

    def models() -> dict[str, Any]:
        """Checkpoints, VAEs, hires upscalers and ControlNet models by the names /generate_image, /img2img and
        /inpaint take, and the ControlNet preprocessors (modules) with their sliders, as sd-webui-controlnet lists
        them; `families` says each checkpoint's and ControlNet's family (sd15, sd2, sdxl; null: unknown until loaded)
        and the default checkpoint's ("default")."""
        return {"models": catalog.models(), "vaes": catalog.vaes(),
                "upscalers": [*BUILTIN_UPSCALERS, *catalog.upscalers()],
                "controlnets": list(catalog.controlnets()), **controlnet_modules(),
                "families": catalog.families()}

    def loras() -> dict[str, Any]:
        """LoRA names for the prompt's <lora:name:weight> tags."""
        return {"loras": catalog.loras()}

    def choice_lists() -> dict[str, Any]:
        """The choices a job may make, with their labels: modes, samplers, resize modes, masked content, mask modes
        (numbered as AUTOMATIC1111's API numbers them), and the hires upscalers (built-in, then this server's); and
        `defaults`, the size, steps, CFG scale and sampler that suit this server's image model (its profile's)."""
        return {**choices(catalog.upscalers()), "defaults": dict(services.images.defaults)}

    with gr.Row(visible=False):
        read_api(models, "models", {})
        read_api(loras, "loras", {})
        read_api(choice_lists, "choices", {})


def _given(**values: Any) -> dict[str, Any]:
    """The filters a caller set (empty text, None and False are not filters)."""
    return {name: value for name, value in values.items() if value not in (None, "", False)}


def register_search(services: Services) -> None:
    """`/search_history` and `/search_conversations`: your own image jobs and conversations, searched (issue 25)."""
    register_history_search(services)
    register_conversation_search(services)


def _refused(err: InvalidRequest) -> gr.Error:
    return error_toast("; ".join(f"{k}: {m}" for k, m in err.errors.items()))


TEXTS = ["q", "since", "until", "model", "mode", "sampler", "lora", "order", "cursor"]


def register_history_search(services: Services) -> None:
    """`/search_history`: your image jobs by the words of their prompts and by filters."""
    search = services.search

    # Defaults of None make the text parameters optional in the clients (Gradio reads them off the signature).
    def search_history(q: str | None = None, since: str | None = None, until: str | None = None,
                       model: str | None = None, mode: str | None = None, sampler: str | None = None,
                       seed: int | None = None, lora: str | None = None, favourite: bool = False,
                       collection_id: int | None = None, order: str | None = None, cursor: str | None = None,
                       limit: int = 20, request: gr.Request = None) -> dict[str, Any]:
        """Search your image jobs by the words of their prompts (all must match; "a phrase", pref*, -word, a OR b)
        and by filters; the matched words marked, `next_cursor` for the next page.

        Args:
            q: the words to find; empty lists by the filters, newest first
            since: made at or after this ISO date or time
            until: made before this ISO date or time
            model: the model that ran, or the checkpoint asked for
            mode: txt2img, img2img or inpaint
            sampler: the sampler's name
            seed: the seed of the job or of one of its images
            lora: a LoRA the prompt names
            favourite: only your favourites
            collection_id: only the jobs of this collection of yours
            order: relevance, newest or oldest
            cursor: next_cursor of the previous page
            limit: how many jobs, 1 to 200
        """
        filters = _given(since=since, until=until, model=model, mode=mode, sampler=sampler, seed=whole(seed),
                         lora=lora, favourite=favourite, collection_id=whole(collection_id))
        try:
            return search.images(user_of(request), q or "", order=order or None, cursor=cursor or None,
                                 limit=whole(limit), **filters)
        except InvalidRequest as err:
            raise _refused(err) from None

    with gr.Row(visible=False):
        fields = {**{name: gr.Textbox(max_length=1000) for name in ("q", "since", "until", "model", "mode", "sampler")},
                  "seed": gr.Number(None, precision=0, minimum=0), "lora": gr.Textbox(max_length=255),
                  "favourite": gr.Checkbox(False), "collection_id": gr.Number(None, precision=0, minimum=1),
                  "order": gr.Textbox(max_length=16), "cursor": gr.Textbox(max_length=512),
                  "limit": gr.Number(20, precision=0, minimum=1, maximum=MAX_JOBS)}
    read_api(search_history, "search_history", fields, optional=[*TEXTS, "seed", "collection_id"])


def register_conversation_search(services: Services) -> None:
    """`/search_conversations`: your conversations by the words of any message and their titles."""
    search = services.search

    def search_conversations(q: str | None = None, reasoning: bool = True, since: str | None = None,
                             until: str | None = None, favourite: bool = False, order: str | None = None,
                             cursor: str | None = None, limit: int = 20, request: gr.Request = None) -> dict[str, Any]:
        """Search your conversations by the words of any message and their titles; each with its marked title and
        best message's snippet, `next_cursor` for the next page.

        Args:
            q: the words to find; empty lists the latest first
            reasoning: search the model's reasoning too
            since: active at or after this ISO date or time
            until: active before this ISO date or time
            favourite: only your favourites
            order: relevance, newest or oldest
            cursor: next_cursor of the previous page
            limit: how many conversations, 1 to 200
        """
        try:
            return search.conversations(user_of(request), q or "", reasoning=reasoning is not False,
                                        since=since or None, until=until or None, favourite=favourite or None,
                                        order=order or None, cursor=cursor or None, limit=whole(limit))
        except InvalidRequest as err:
            raise _refused(err) from None

    with gr.Row(visible=False):
        fields = {"q": gr.Textbox(max_length=1000), "reasoning": gr.Checkbox(True),
                  "since": gr.Textbox(max_length=64), "until": gr.Textbox(max_length=64),
                  "favourite": gr.Checkbox(False), "order": gr.Textbox(max_length=16),
                  "cursor": gr.Textbox(max_length=512),
                  "limit": gr.Number(20, precision=0, minimum=1, maximum=MAX_CONVERSATIONS)}
    read_api(search_conversations, "search_conversations", fields, optional=TEXTS)
