"""Chat with the text model: conversations that persist, streaming with the reasoning apart, a real Stop."""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import threading
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from contracts import (
    MAX_IDEA_CHARS,
    ChatMode,
    ChatRequest,
    InvalidRequest,
    PromptAssistRequest,
    TextLimits,
    TextOptions,
    check_messages,
    check_text_options,
)
from pipelines.messages import hide_paths
from pipelines.text_base import TextBackend, TextUsage, history_for_model
from services import metrics
from services.cache import ResultCache, cache_key
from services.history import ID_CHUNK, check_ids
from services.jobs import JobHandle
from services.model_slots import ModelSlot, ModelUnavailableError
from services.request_log import RequestLog, RequestRecord
from services.running import RunningJobs
from storage.connections import database, for_update
from storage.models import Conversation, Message, ReplyDraft, owned_by, utcnow

log = logging.getLogger(__name__)

MAX_PAGE = 200
TITLE_CHARS = 60
MAX_TITLE_CHARS = 200  # a title the user gives (the column holds 255)
# How often a streaming reply's text so far is saved: what a crash (kill -9, power loss) can lose at most.
DRAFT_EVERY_S = 1.0
INTERRUPTED = "interrupted: the server stopped while this reply was being written; the partial reply is kept."
_STATUS_TEXT = {"done": "Done in {duration:.1f} s", "cancelled": "Stopped: the partial reply is kept.",
                "failed": "❌ {error}"}
# R1 takes no system prompt (DeepSeek's advice): the instructions go into the user turn.
ASSIST_INSTRUCTION = (
    "Turn this idea into a Stable Diffusion prompt: {idea}\n\n"
    "Answer with exactly two lines and nothing else:\n"
    "Prompt: <comma-separated phrases: subject, details, style, lighting, composition, quality>\n"
    "Negative prompt: <comma-separated things to avoid>"
)


@dataclass
class ChatSnapshot:
    """What a watcher sees of a reply at one moment."""

    version: int
    status: str  # waiting | loading | thinking | answering | done | cancelled | failed
    message: str
    conversation_id: int | None = None
    reasoning: str = ""
    answer: str = ""
    reasoning_s: float | None = None  # how long the thinking took, once it ended
    thinking_since: float | None = None  # perf_counter when the thinking began, while it runs
    message_id: int | None = None  # the stored assistant message, once stored
    usage: dict[str, Any] = field(default_factory=dict)
    error: str = ""
    cached: bool = False  # answered from an identical earlier request (temperature 0)
    model: str = ""  # the model that wrote the reply, once it ended


@dataclass(frozen=True)
class ChatTurn:
    """What the conversation shows before the reply that answers it: the stored messages before the turn being
    answered (as message_to_dict gives them), and that turn's text (for an edit, the new one)."""

    earlier: list[dict[str, Any]] = field(default_factory=list)
    user_text: str = ""


class ChatHandle(JobHandle[ChatSnapshot]):
    """A reply being generated; `turn` is what its conversation shows before it (what ChatService.start planned)."""

    def __init__(self, conversation_id: int | None, turn: ChatTurn | None = None) -> None:
        super().__init__(ChatSnapshot(version=0, status="waiting", message="Waiting for the text model…",
                                      conversation_id=conversation_id))
        self.turn = turn or ChatTurn()


@dataclass
class _Plan:
    """What one reply will do to its conversation, decided before the model runs."""

    history: list[dict[str, str]]  # what the model sees
    options: TextOptions
    # None for a reply that is not part of a conversation (prompt assist): nothing is stored.
    conversation: Conversation | None = None
    mode: ChatMode = "send"
    user_message: Message | None = None  # the turn being answered
    new_user_text: str | None = None  # edit: the new text of that turn, written when the reply is stored
    draft_id: int | None = None  # the ReplyDraft saved while the reply streams
    turn: ChatTurn | None = None  # what the conversation shows before the reply
    stop: tuple[str, ...] = ()  # stop sequences: the answer ends before the first of them (OpenAI's `stop`)


def message_to_dict(m: Message) -> dict[str, Any]:
    """A stored message as JSON-ready data."""
    return {
        "id": m.id, "position": m.position, "role": m.role, "content": m.content, "reasoning": m.reasoning,
        "status": m.status, "error": m.error or None, "finish_reason": m.finish_reason or None,
        "model": m.model or None, "params": m.params_dict(), "prompt_tokens": m.prompt_tokens,
        "completion_tokens": m.completion_tokens, "reasoning_tokens": m.reasoning_tokens,
        "reasoning_s": m.reasoning_s, "duration_s": m.duration_s, "cached": bool(m.cached),
        "created_at": m.created_at.isoformat() if m.created_at else None,
    }


class ChatService:
    """The chat use cases: validate, reply (one at a time), keep every conversation."""

    def __init__(self, slot: ModelSlot[TextBackend], limits: TextLimits, defaults: TextOptions,
                 cache: ResultCache | None = None, concurrency: int = 1, replica: str = "",
                 request_log: RequestLog | None = None, running: RunningJobs | None = None) -> None:
        self.slot = slot
        self.request_log = request_log  # each finished reply's row (None: metrics only)
        self.running = running or RunningJobs()  # every reply this process writes, by user (services/running.py)
        self.replica = replica  # this process's name among replicas, recorded on each reply it streams
        self.cache = cache or ResultCache(enabled=False)
        self.limits = limits
        self.defaults = defaults
        # In process, one reply at a time per loaded model; a remote server (vLLM) batches several at once.
        self.concurrency = concurrency
        self._run_lock = threading.BoundedSemaphore(concurrency)

    # 1. Validation -------------------------------------------------------------------------------
    def field_errors(self, message: str | None = None, require_message: bool = True,
                     **options: Any) -> dict[str, str]:
        """{field: message} for a bad message or bad sampling options."""
        errors: dict[str, str] = {}
        if require_message:
            if message is None or not str(message).strip():
                errors["message"] = "message must not be empty: ask the model something."
            elif len(message) > self.limits.max_message_chars:
                errors["message"] = (f"message is {len(message)} characters; at most "
                                     f"{self.limits.max_message_chars} are allowed.")
        try:
            opts = self._with_overrides(options)
        except Exception as err:
            from pydantic import ValidationError

            if not isinstance(err, ValidationError):
                raise
            errors.update({str(e["loc"][0]): f"{e['loc'][0]}: {e['msg']}" for e in err.errors()})
            return errors
        errors.update(check_text_options(opts, self.limits))
        return errors

    def options(self, **overrides: Any) -> TextOptions:
        """The defaults with `overrides` applied (None keeps a default, a thinking budget of 0 lifts the limit);
        InvalidRequest when out of range."""
        errors = self.field_errors(require_message=False, **overrides)
        if errors:
            raise InvalidRequest(errors)
        return self._with_overrides(overrides)

    def _with_overrides(self, overrides: dict[str, Any]) -> TextOptions:
        update = {k: v for k, v in overrides.items() if v is not None}
        # 0 is the UI's and the API's "no limit"; None would keep a default budget (the tiny profile has one).
        if update.get("thinking_budget") == 0:
            update["thinking_budget"] = None
        return TextOptions.model_validate(self.defaults.model_copy(update=update).model_dump())

    def check(self, message: str | None, conversation_id: int | None = None, mode: ChatMode = "send",
              options: TextOptions | None = None, **overrides: Any) -> tuple[ChatRequest | None, dict[str, str]]:
        """The checked turn, or None and {field: message} for each bad value: the message (send and edit), the
        conversation a regenerate or an edit needs, the sampling (`options`, else the defaults, with `overrides`: None
        keeps a default, a thinking budget of 0 lifts the limit). Whether the conversation is the user's is checked
        when the turn starts, in the transaction that writes it."""
        errors = self.field_errors(message, require_message=mode != "regenerate", **overrides)
        if options is not None:
            errors |= check_text_options(options, self.limits)
        if mode != "send" and conversation_id is None:
            errors["conversation_id"] = f"{mode} needs a conversation_id."
        if errors:
            return None, errors
        return ChatRequest(message=None if mode == "regenerate" else message, conversation_id=conversation_id,
                           mode=mode, options=options or self._with_overrides(overrides)), {}

    def validate(self, message: str | None, conversation_id: int | None = None, mode: ChatMode = "send",
                 options: TextOptions | None = None, **overrides: Any) -> ChatRequest:
        """As check(), raising InvalidRequest with one message per bad field."""
        request, errors = self.check(message, conversation_id, mode, options, **overrides)
        if request is None:
            raise InvalidRequest(errors)
        return request

    # 2. Replying ---------------------------------------------------------------------------------
    def start(self, request: ChatRequest, user: str = "", source: str = "web", ref: str | None = None) -> ChatHandle:
        """Plan the checked turn (the conversation must be the user's), then generate in a worker thread; return at
        once, with the handle's `turn` holding what the conversation shows before the reply. The reply is listed among
        the user's running jobs (on the quota reservation `ref` when an API took one)."""
        plan = self._plan(request, user)
        return self._launch(plan, user, source, ref, plan.history[-1]["content"])

    def _launch(self, plan: _Plan, user: str, source: str, ref: str | None, description: str) -> ChatHandle:
        handle = ChatHandle(plan.conversation.id if plan.conversation else None, plan.turn)
        self.running.add(handle, user, "chat", source, description, ref)
        handle.start(self._run, plan, handle, name="chat-reply")
        return handle

    def _plan(self, request: ChatRequest, user: str) -> _Plan:
        mode, message = request.mode, request.message
        with database.atomic():
            conversation = self._conversation_for(request, user)
            turns = list(conversation.messages.order_by(Message.position))
            last_user = next((m for m in reversed(turns) if m.role == "user"), None)
            if mode == "send":
                # The user's words are finished the moment they are sent: store them now.
                position = turns[-1].position + 1 if turns else 0
                last_user = Message.create(conversation=conversation, position=position, role="user",
                                           content=message)
                conversation.updated_at = utcnow()
                conversation.save()
                turns.append(last_user)
            elif last_user is None:
                raise InvalidRequest({"conversation_id": f"conversation {conversation.id} has no message to "
                                                         f"{'regenerate' if mode == 'regenerate' else 'edit'}."})
            # Recorded with the turn it answers, so that a crash from here on leaves a trace (see recover()).
            draft = ReplyDraft.create(conversation=conversation, answers=last_user, mode=mode,
                                      params=json.dumps(request.options.model_dump()), replica=self.replica)
        new_user_text = message if mode == "edit" else None
        earlier = [m for m in turns if m.position < last_user.position]
        history = [h for h in map(as_model_turn, earlier) if h is not None]
        user_text = new_user_text if new_user_text is not None else last_user.content
        history.append({"role": "user", "content": user_text})
        turn = ChatTurn(earlier=[message_to_dict(m) for m in earlier], user_text=user_text)
        return _Plan(history, request.options, conversation, mode, last_user, new_user_text, draft.id, turn)

    @staticmethod
    def _conversation_for(request: ChatRequest, user: str) -> Conversation:
        """A new conversation titled after the message, or the user's conversation locked until the turn is planned
        (two sends at once must not both take the next position); InvalidRequest when it is not the user's."""
        if request.conversation_id is None:
            return Conversation.create(user=user, title=_title(request.message or ""))
        conversation = for_update(Conversation.select().where((Conversation.id == request.conversation_id)
                                                              & (Conversation.user == user))).first()
        if conversation is None:
            raise InvalidRequest({"conversation_id": f"conversation {request.conversation_id} does not exist."})
        return conversation

    def _run(self, plan: _Plan, handle: ChatHandle) -> None:
        started = time.perf_counter()
        try:
            with self._run_lock:
                handle.update(status="loading", message=self.slot.status().message())
                with self.slot.use() as backend:
                    self._generate(plan, handle, backend, started)
        except ModelUnavailableError as err:
            self._fail(plan, handle, started, str(err))
        except Exception as err:  # never leave a watcher hanging, whatever went wrong
            log.exception("chat reply failed")
            self._fail(plan, handle, started, f"{type(err).__name__}: {err}")
        self._observe(plan, handle)

    def _observe(self, plan: _Plan, handle: ChatHandle) -> None:
        """The finished reply's metrics and request log row."""
        snap, meter = handle.snapshot(), handle.meter
        model = snap.model or self.slot.status().model
        status = snap.status if snap.status in ("done", "failed", "cancelled") else "failed"
        prompt, completion = int(snap.usage.get("prompt_tokens", 0)), int(snap.usage.get("completion_tokens", 0))
        duration = meter.elapsed()
        metrics.job_done("chat", status, model, duration, meter.queue_wait_s, meter.device_s)
        if not snap.cached:  # a cached reply's tokens were written before
            metrics.produced_tokens(model, prompt, completion, int(snap.usage.get("reasoning_tokens", 0)))
        if self.request_log is not None:
            self.request_log.record(RequestRecord.of_job(
                "chat", status, meter, user=plan.conversation.user if plan.conversation is not None else None,
                reason=snap.error, model=model, prompt_tokens=prompt, completion_tokens=completion,
                replica=self.replica, job_id=snap.message_id))

    def _fail(self, plan: _Plan, handle: ChatHandle, started: float, error: str) -> None:
        """Record a failed reply; when even that cannot be written (disk full), still end the watcher's wait."""
        error = hide_paths(error)  # no absolute path of this machine in what the user reads
        try:
            self._store(plan, handle, started, status="failed", error=error, model=self.slot.status().model)
        except Exception as err:
            # The draft stays behind: the next start-up turns it into a failed reply (recover()).
            log.exception("could not record a failed chat reply")
            error = f"{error} (and the reply could not be saved: {type(err).__name__}: {hide_paths(str(err))})"
            handle.update(status="failed", message=f"❌ {error}", error=error)

    def _generate(self, plan: _Plan, handle: ChatHandle, backend: TextBackend, started: float) -> None:
        key = None
        if plan.conversation is not None and plan.options.temperature == 0:  # only greedy replies repeat
            key = cache_key("chat", backend.model_name, backend.revision, plan.history,
                            plan.options.model_dump(exclude={"seed"}), *([list(plan.stop)] if plan.stop else []))
            if (hit := self.cache.find_reply(plan.conversation.user, key)) is not None:
                handle.meter.running()
                handle.update(reasoning=hit.reasoning, answer=hit.content, reasoning_s=hit.reasoning_s, cached=True)
                usage = TextUsage(hit.prompt_tokens, hit.completion_tokens, hit.reasoning_tokens,
                                  hit.finish_reason or "stop")
                self._store(plan, handle, started, status="done", model=hit.model, usage=usage)
                return
        handle.update(status="thinking", message="Thinking…", thinking_since=time.perf_counter())
        handle.meter.running()
        stream = backend.stream(plan.history, plan.options, handle.stop_event)
        began = time.perf_counter()
        try:
            reasoning_s, stopped = self._consume(plan, handle, backend.model_name, stream)
        finally:
            stream.close()  # joins the generation thread even if this loop was interrupted
            _measure_stream(handle, backend.model_name, stream.usage.completion_tokens, began)
        usage = stream.usage
        if stopped:  # a stop sequence ended the answer: a finished reply, not a stopped one
            usage = dataclasses.replace(usage, finish_reason="stop")
        cancelled = not stopped and (usage.finish_reason == "cancelled" or handle.stop_event.is_set())
        handle.update(reasoning_s=reasoning_s, thinking_since=None)
        self._store(plan, handle, started, status="cancelled" if cancelled else "done",
                    model=backend.model_name, usage=usage, key=None if cancelled else key)
        if key is not None and plan.conversation is not None:
            self.cache.trim(plan.conversation.user)

    def _consume(self, plan: _Plan, handle: ChatHandle, model: str, stream: Any) -> tuple[float, bool]:
        """Feed the stream's chunks into the handle, saving the draft now and then; (seconds of thinking, whether a
        stop sequence of the plan ended the answer, cut before it)."""
        thinking_since = time.perf_counter()
        reasoning_s: float | None = None
        saved_at: float | None = None  # the first chunk is saved at once, then one save per DRAFT_EVERY_S
        stopped = False
        for chunk in stream:
            if handle.meter.first_token_at is None:
                handle.meter.first_token_at = time.perf_counter()
            snap = handle.snapshot()
            if chunk.kind == "reasoning":
                handle.update(reasoning=snap.reasoning + chunk.text)
            else:
                if reasoning_s is None:
                    reasoning_s = round(time.perf_counter() - thinking_since, 2)
                answer, stopped = cut_at_stop(snap.answer, chunk.text, plan.stop)
                handle.update(status="answering", message="Answering…", answer=answer, reasoning_s=reasoning_s,
                              thinking_since=None)
            if plan.draft_id is not None and (saved_at is None or time.perf_counter() - saved_at >= DRAFT_EVERY_S):
                saved_at = time.perf_counter()
                _save_draft(plan.draft_id, handle.snapshot(), model)
            if stopped:
                break
        if reasoning_s is None:
            reasoning_s = round(time.perf_counter() - thinking_since, 2)
        return reasoning_s, stopped

    def _store(self, plan: _Plan, handle: ChatHandle, started: float, status: str, model: str,
               error: str = "", usage: TextUsage | None = None, key: str | None = None) -> None:
        """Write the reply, and the edit or replacement it stands for, in one transaction."""
        snap = handle.snapshot()
        duration = round(time.perf_counter() - started, 3)
        usage_dict = asdict(usage) if usage else {}
        if plan.conversation is None or plan.user_message is None or (status == "failed" and plan.mode != "send"):
            # Prompt assist keeps nothing; a failed regenerate or edit changes nothing (the earlier reply stays).
            if plan.draft_id is not None:
                ReplyDraft.delete().where(ReplyDraft.id == plan.draft_id).execute()
            handle.update(status=status, message=_STATUS_TEXT[status].format(duration=duration, error=error),
                          usage=usage_dict, error=error, model=model)
            return
        with database.atomic():
            # Locked while the reply replaces what follows its turn (another reply of this conversation waits);
            # first of all, since those replaced turns take other replies' drafts with them.
            alive = for_update(Conversation.select(Conversation.id).where(Conversation.id == plan.conversation.id)
                               ).first() is not None
            ReplyDraft.delete().where(ReplyDraft.id == plan.draft_id).execute()
            if not alive:
                # Deleted while the reply ran: there is nothing left to add the reply to.
                error = (f"conversation {plan.conversation.id} was deleted while this reply was written; "
                         "the reply was not kept.")
                handle.update(status="failed", message=f"❌ {error}", usage=usage_dict, error=error)
                return
            user_message = plan.user_message
            if plan.new_user_text is not None:
                user_message.content = plan.new_user_text
                user_message.save()
            # Replies after the answered turn are replaced by this one (regenerate, edit).
            Message.delete().where((Message.conversation == plan.conversation)
                                   & (Message.position > user_message.position)).execute()
            reply = Message.create(
                conversation=plan.conversation, position=user_message.position + 1, role="assistant",
                content=snap.answer, reasoning=snap.reasoning, status=status, error=error,
                model=model, params=json.dumps(plan.options.model_dump()), reasoning_s=snap.reasoning_s,
                duration_s=duration, cache_key=key, cached=snap.cached, **(asdict(usage) if usage else {}),
            )
            Conversation.update(updated_at=utcnow()).where(Conversation.id == plan.conversation.id).execute()
        handle.update(status=status, message=_STATUS_TEXT[status].format(duration=duration, error=error),
                      message_id=reply.id, usage=usage_dict, error=error, model=model)

    # 3. Start-up housekeeping -------------------------------------------------------------------
    def recover(self, only_replica: str | None = None) -> int:
        """Turn replies left unfinished by a crash (every replica's, or only `only_replica`'s while others run) into
        failed replies that keep their partial text; return how many. A regenerate or edit cut short changes
        nothing, like one that failed (the earlier reply stays)."""
        recovered = 0
        query = ReplyDraft.select()
        if only_replica is not None:
            query = query.where(ReplyDraft.replica == only_replica)
        with database.atomic():
            drafts = list(query.order_by(ReplyDraft.id))  # read once: the delete below takes exactly these
            for draft in drafts:
                answered = Message.get_or_none(Message.id == draft.answers_id)
                position = answered.position + 1 if answered else None
                if draft.mode == "send" and answered is not None and not Message.select().where(
                        (Message.conversation == draft.conversation_id) & (Message.position == position)).exists():
                    Message.create(conversation=draft.conversation_id, position=position, role="assistant",
                                   content=draft.content, reasoning=draft.reasoning, status="failed",
                                   error=INTERRUPTED, model=draft.model, params=draft.params)
                    recovered += 1
            ReplyDraft.delete().where(ReplyDraft.id.in_([d.id for d in drafts])).execute()
        return recovered

    @staticmethod
    def drafting_replicas() -> set[str]:
        """The replicas recorded on replies still being written (their drafts)."""
        return {draft.replica for draft in ReplyDraft.select(ReplyDraft.replica).distinct()}

    def check_idea(self, idea: str | None,
                   options: TextOptions | None = None) -> tuple[PromptAssistRequest | None, dict[str, str]]:
        """The checked prompt-assist request, or None and {field: message} for a bad idea."""
        if idea is None or not idea.strip():
            return None, {"idea": "idea must not be empty: describe the picture in a few words."}
        if len(idea) > MAX_IDEA_CHARS:
            return None, {"idea": f"idea is {len(idea)} characters; at most {MAX_IDEA_CHARS} are allowed."}
        return PromptAssistRequest(idea=idea.strip(), options=options), {}

    def validate_idea(self, idea: str | None, options: TextOptions | None = None) -> PromptAssistRequest:
        """As check_idea(), raising InvalidRequest."""
        request, errors = self.check_idea(idea, options)
        if request is None:
            raise InvalidRequest(errors)
        return request

    def start_prompt_assist(self, request: PromptAssistRequest) -> ChatHandle:
        """Ask the model for an image prompt and negative prompt for the checked idea; nothing is stored."""
        plan = _Plan([{"role": "user", "content": ASSIST_INSTRUCTION.format(idea=request.idea)}],
                     request.options or self.defaults)
        handle = ChatHandle(None)
        handle.start(self._run, plan, handle, name="prompt-assist")
        return handle

    def start_messages(self, messages: list[dict[str, str]], user: str = "", options: TextOptions | None = None,
                       source: str = "web", ref: str | None = None, stop: tuple[str, ...] = ()) -> ChatHandle:
        """A new conversation holding `messages` (a whole exchange as OpenAI's clients send one: system, user and
        assistant turns, the last the user's), then a reply to its last turn, as start() gives one. Reasoning in the
        assistant turns is dropped, as R1's template requires; the answer ends before the first of `stop` (which is
        never part of it); InvalidRequest for a malformed exchange."""
        if errors := check_messages(messages, self.limits):
            raise InvalidRequest(errors)
        history = history_for_model(messages)
        options = options or self.defaults
        with database.atomic():
            first = next(m["content"] for m in history if m["role"] == "user")
            conversation = Conversation.create(user=user, title=_title(first))
            turns = [Message.create(conversation=conversation, position=i, role=m["role"], content=m["content"])
                     for i, m in enumerate(history)]
            draft = ReplyDraft.create(conversation=conversation, answers=turns[-1], mode="send",
                                      params=json.dumps(options.model_dump()), replica=self.replica)
        plan = _Plan(history, options, conversation, "send", user_message=turns[-1], draft_id=draft.id,
                     stop=tuple(s for s in stop if s))
        return self._launch(plan, user, source, ref, history[-1]["content"])

    # 4. Conversations ----------------------------------------------------------------------------
    def list_conversations(self, user: str | None = "", limit: int = 20, before: int | None = None) -> dict[str, Any]:
        """Most recently active first; `before` is a conversation id from the previous page's `next_before`."""
        if not 1 <= limit <= MAX_PAGE:
            raise ValueError(f"limit must be between 1 and {MAX_PAGE}, got {limit}")
        query = Conversation.select().where(owned_by(Conversation.user, user))
        if before is not None:
            anchor = Conversation.get_or_none((Conversation.id == before) & owned_by(Conversation.user, user))
            if anchor is None:
                raise ValueError(f"before: conversation {before} does not exist")
            query = query.where((Conversation.updated_at < anchor.updated_at)
                                | ((Conversation.updated_at == anchor.updated_at) & (Conversation.id < anchor.id)))
        rows = list(query.order_by(Conversation.updated_at.desc(), Conversation.id.desc()).limit(limit + 1))
        page, more = rows[:limit], len(rows) > limit
        return {
            "conversations": [
                {"conversation_id": c.id, "title": c.title, "created_at": c.created_at.isoformat(),
                 "updated_at": c.updated_at.isoformat(), "messages": c.messages.count(),
                 "favourite": bool(c.favourite)}
                for c in page
            ],
            "next_before": page[-1].id if more and page else None,
        }

    def get_conversation(self, conversation_id: int, user: str | None = "") -> dict[str, Any] | None:
        """One conversation with its messages in order, or None."""
        c = Conversation.get_or_none((Conversation.id == conversation_id) & owned_by(Conversation.user, user))
        if c is None:
            return None
        return {
            "conversation_id": c.id, "title": c.title, "created_at": c.created_at.isoformat(),
            "updated_at": c.updated_at.isoformat(), "favourite": bool(c.favourite),
            "messages": [message_to_dict(m) for m in c.messages.order_by(Message.position)],
        }

    def delete_conversation(self, conversation_id: int, user: str | None = "") -> bool:
        """Delete a conversation and its messages; False when there is no such conversation for this user."""
        return bool(self.delete_conversations([conversation_id], user)["deleted"])

    def delete_conversations(self, conversation_ids: Iterable[int], user: str | None = "") -> dict[str, list[int]]:
        """Delete many conversations and their messages in one transaction; {"deleted": ids, "missing": ids that
        are not this user's}. A reply still being written to one of them finds it gone and keeps nothing."""
        wanted = list(dict.fromkeys(check_ids(conversation_ids, "conversation_ids")))
        deleted: list[int] = []
        with database.atomic():
            for at in range(0, len(wanted), ID_CHUNK):
                # Locked first, as a reply being stored locks its conversation first: the same order, never a
                # deadlock.
                ids = [c.id for c in for_update(Conversation.select(Conversation.id).where(
                    Conversation.id.in_(wanted[at:at + ID_CHUNK]) & owned_by(Conversation.user, user))
                    .order_by(Conversation.id))]
                Message.delete().where(Message.conversation.in_(ids)).execute()
                Conversation.delete().where(Conversation.id.in_(ids)).execute()
                deleted += ids
        gone = set(deleted)
        return {"deleted": deleted, "missing": [i for i in wanted if i not in gone]}

    def set_favourite(self, conversation_id: int, user: str, favourite: bool = True) -> bool:
        """Mark (or unmark) one of the user's conversations as a favourite; False when it is not theirs."""
        check_ids([conversation_id], "conversation_id")
        return bool(Conversation.update(favourite=bool(favourite)).where(
            (Conversation.id == conversation_id) & (Conversation.user == user)).execute())

    def rename_conversation(self, conversation_id: int, user: str, title: str) -> dict[str, Any]:
        """Give one of the user's conversations a new title (spaces tidied, at most MAX_TITLE_CHARS); the renamed
        conversation's summary. InvalidRequest for an empty or overlong title or a conversation not theirs."""
        check_ids([conversation_id], "conversation_id")
        tidy = " ".join(title.split()) if isinstance(title, str) else ""
        if not tidy:
            raise InvalidRequest({"title": "title must not be empty."})
        if len(tidy) > MAX_TITLE_CHARS:
            raise InvalidRequest({"title": f"title is {len(tidy)} characters; at most {MAX_TITLE_CHARS} are "
                                           "allowed."})
        if not Conversation.update(title=tidy).where((Conversation.id == conversation_id)
                                                     & (Conversation.user == user)).execute():
            raise InvalidRequest({"conversation_id": f"conversation {conversation_id} does not exist."})
        return {"conversation_id": conversation_id, "title": tidy}


def _measure_stream(handle: ChatHandle, model: str, tokens: int, began: float) -> None:
    """A reply's time to first token and decode speed for the metrics, and its seconds on the model."""
    ended, first_at = time.perf_counter(), handle.meter.first_token_at
    handle.meter.device_s += ended - began
    if first_at is not None:
        metrics.first_token(model, first_at - handle.meter.started)
        metrics.decode_speed(model, tokens, ended - first_at)


def cut_at_stop(before: str, new: str, stops: tuple[str, ...]) -> tuple[str, bool]:
    """`before` + `new`, cut before the first stop sequence that now appears in it (also one spanning the two), and
    whether one did; `before` holds none (its reply would have ended)."""
    text = before + new
    found = [i for stop in stops if (i := text.find(stop, max(0, len(before) - len(stop) + 1))) >= 0]
    return (text[:min(found)], True) if found else (text, False)


def _save_draft(draft_id: int, snap: ChatSnapshot, model: str) -> None:
    """Save a streaming reply's text so far (a no-op once its conversation was deleted)."""
    ReplyDraft.update(content=snap.answer, reasoning=snap.reasoning, model=model, updated_at=utcnow()).where(
        ReplyDraft.id == draft_id).execute()


def _title(message: str) -> str:
    first_line = " ".join(message.split())
    return first_line if len(first_line) <= TITLE_CHARS else first_line[: TITLE_CHARS - 1] + "…"


def as_model_turn(m: Message) -> dict[str, str] | None:
    """A stored turn as the model should see it: answers only; failed or empty replies are left out."""
    if m.role == "assistant" and (m.status == "failed" or not m.content.strip()):
        return None
    # Reasoning lives in its own column and is never sent back (DeepSeek's guidance for R1).
    return {"role": m.role, "content": m.content}


def split_prompt_answer(answer: str) -> tuple[str, str]:
    """(prompt, negative prompt) from a prompt-assist answer, tolerant of what a model really writes."""
    label = r"\s*(?:\*\*)?\s*:\s*(?:\*\*)?"  # "Prompt:", "**Prompt:**", "**Prompt**:"
    text = answer.strip()
    marker = re.search(r"(?im)^[\s*#>-]*negative prompt" + label, text)
    prompt, negative = (text[: marker.start()], text[marker.end():]) if marker else (text, "")
    prompt = re.sub(r"(?is)^[\s*#>-]*prompt" + label, "", prompt.strip())
    return _unquote(prompt), _unquote(negative)


def _unquote(text: str) -> str:
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        text = text[1:-1].strip()
    return text
