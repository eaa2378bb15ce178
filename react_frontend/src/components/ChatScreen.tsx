import { useCallback, useEffect, useMemo, useRef, useState } from "react";
import { ChevronDown, Loader2, MessageSquarePlus, Send, SlidersHorizontal, Square } from "lucide-react";
import { Button } from "@/components/ui/button";
import { Card, CardContent } from "@/components/ui/card";
import { Collapsible, CollapsibleContent, CollapsibleTrigger } from "@/components/ui/collapsible";
import { Slider } from "@/components/ui/slider";
import { Textarea } from "@/components/ui/textarea";
import { ChatMessage, type ChatTurnView } from "@/components/ChatMessage";
import { ErrorAlert } from "@/components/ErrorAlert";
import { Field } from "@/components/Field";
import { ChatListSearch, Marked } from "@/components/HistorySearch";
import { OptionalNumberInput } from "@/components/NumberInput";
import { errorFromException, type AppError } from "@/lib/errors";
import { formatWhen } from "@/lib/format";
import { conversationsPage } from "@/lib/history";
import type { AtelierConnection, RunningJob } from "@/lib/gradio";
import { chatUpdateFrom, describeQueue, INITIAL_PROGRESS, isThinking, type JobProgress } from "@/lib/stream";
import type { ChatUpdate, Conversation, ConversationSummary, StoredMessage } from "@/lib/types";
import { cn } from "@/lib/utils";

interface LiveReply {
  userText: string;
  update: ChatUpdate;
  thinkingSince: number | null;
  stopping: boolean;
}

/** Sampling options; null sends no value, so the server uses its own default (the profile's reply length). */
export interface ChatOptions {
  temperature: number | null;
  top_p: number | null;
  max_new_tokens: number | null;
  /** Reasoning tokens before the server closes the thinking; 0 lifts the server's default budget. */
  thinking_budget: number | null;
}

/** DeepSeek's advice for R1, which is also the server's default. */
const RECOMMENDED = { temperature: 0.6, top_p: 0.95 };

const PAGE = 30;

function storedToTurns(messages: StoredMessage[]): ChatTurnView[] {
  return messages.map((m, index) => ({
    key: `m${m.id ?? index}`,
    role: m.role,
    content: m.content,
    reasoning: m.reasoning ?? "",
    status: m.status ?? "done",
    reasoningS: m.reasoning_s ?? null,
    error: m.error,
  }));
}

function statusLine(live: LiveReply | null, progress: JobProgress): string {
  if (!live) return "";
  if (live.stopping) return "Stopping…";
  if (progress.phase !== "running" && live.update.status === "waiting") return describeQueue(progress);
  if (live.update.status === "loading") return "Loading the model…";
  if (isThinking(live.update.status)) return "Thinking…";
  if (live.update.status === "answering") return "Answering…";
  return "";
}

interface Props {
  conn: AtelierConnection;
  /** Open this conversation (set from History); `nonce` makes the same id open again. */
  openRequest: { id: number; nonce: number } | null;
  onReplyFinished?: () => void;
}

export function ChatScreen({ conn, openRequest, onReplyFinished }: Props) {
  const [conversationId, setConversationId] = useState<number | null>(null);
  const [title, setTitle] = useState<string>("");
  const [messages, setMessages] = useState<StoredMessage[]>([]);
  const [live, setLive] = useState<LiveReply | null>(null);
  const [progress, setProgress] = useState<JobProgress>(INITIAL_PROGRESS);
  const [lastNote, setLastNote] = useState("");
  const [error, setError] = useState<AppError | null>(null);
  const [text, setText] = useState("");
  const [options, setOptions] = useState<ChatOptions>({
    temperature: null,
    top_p: null,
    max_new_tokens: null,
    thinking_budget: null,
  });
  const [list, setList] = useState<ConversationSummary[]>([]);
  const [nextBefore, setNextBefore] = useState<number | string | null>(null);
  const [listQuery, setListQuery] = useState("");  // the sidebar's search; empty: the latest conversations
  const listTicket = useRef(0);
  const [listError, setListError] = useState<AppError | null>(null);
  const [loadingConversation, setLoadingConversation] = useState(false);
  const job = useRef<RunningJob | null>(null);
  const messagesBox = useRef<HTMLDivElement | null>(null);
  const streaming = live !== null;

  const loadList = useCallback(
    async (before: number | string | null = null) => {
      const ticket = ++listTicket.current;
      try {
        const page = await conversationsPage(conn, listQuery, before, PAGE);
        if (ticket !== listTicket.current) return;  // a newer list (another search) was asked for meanwhile
        setList((previous) => (before == null ? page.conversations : [...previous, ...page.conversations]));
        setNextBefore(page.next);
        setListError(null);
      } catch (err) {
        setListError(errorFromException(err));
      }
    },
    [conn, listQuery],
  );

  const openConversation = useCallback(
    async (id: number) => {
      setLoadingConversation(true);
      setError(null);
      try {
        const conversation = await conn.call<Conversation>("/conversation", { conversation_id: id });
        setConversationId(conversation.conversation_id);
        setTitle(conversation.title);
        setMessages(conversation.messages);
        setLastNote("");
      } catch (err) {
        setError(errorFromException(err));
      } finally {
        setLoadingConversation(false);
      }
    },
    [conn],
  );

  useEffect(() => {
    void loadList();
  }, [loadList]);

  useEffect(() => {
    if (openRequest) void openConversation(openRequest.id);
  }, [openRequest, openConversation]);

  useEffect(() => () => job.current?.stop(), []);

  // Follow the newest text inside the messages box only, whose height is fixed: scrolling the page (or a box that
  // grows) pushed the message field and the Stop button down while a reply streamed, out of the window and moving.
  useEffect(() => {
    const box = messagesBox.current;
    if (box) box.scrollTop = box.scrollHeight;
  }, [messages, live?.update.answer, live?.update.reasoning]);

  function newChat() {
    setConversationId(null);
    setTitle("");
    setMessages([]);
    setError(null);
    setLastNote("");
  }

  async function send() {
    const message = text.trim();
    if (!message || streaming) return;
    setError(null);
    setLastNote("");
    setText("");
    setProgress(INITIAL_PROGRESS);
    const first: ChatUpdate = {
      conversation_id: conversationId,
      status: "waiting",
      reasoning: "",
      answer: "",
      reasoning_s: null,
      message_id: null,
      usage: {},
    };
    setLive({ userText: message, update: first, thinkingSince: null, stopping: false });
    let last: ChatUpdate = first;
    const running = conn.stream(
      "/chat",
      { message, conversation_id: conversationId, ...options },
      {
        onData: (data) => {
          const update = chatUpdateFrom(data);
          if (!update) return;
          last = update;
          if (update.conversation_id != null) setConversationId(update.conversation_id);
          setLive((previous) =>
            previous
              ? {
                  ...previous,
                  update,
                  thinkingSince: previous.thinkingSince ?? (update.status === "thinking" ? Date.now() : null),
                }
              : previous,
          );
        },
        onProgress: setProgress,
      },
    );
    job.current = running;
    const outcome = await running.done;
    job.current = null;

    if (outcome.kind === "error" && last.status === "waiting") {
      // Refused before anything was written (validation, limits, a full queue): give the text back.
      setError(outcome.error);
      setText(message);
      setLive(null);
      return;
    }
    const status =
      outcome.kind === "complete"
        ? last.status
        : outcome.kind === "cancelled"
          ? outcome.unconfirmed
            ? "stop-sent"
            : "cancelled"
          : "failed";
    const reply: StoredMessage = {
      id: last.message_id ?? undefined,
      role: "assistant",
      content: last.answer,
      reasoning: last.reasoning,
      status,
      reasoning_s: last.reasoning_s,
      error: outcome.kind === "error" ? outcome.error.message : null,
    };
    setMessages((previous) => [...previous, { role: "user", content: message, reasoning: "", status: "done" }, reply]);
    setLive(null);
    if (outcome.kind === "error") setError(outcome.error);
    const tokens = (last.usage?.completion_tokens as number | undefined) ?? null;
    setLastNote(
      status === "cancelled"
        ? "Stopped: the partial reply is kept."
        : status === "stop-sent"
          ? "Stop sent, but the server has not confirmed it: the reply may still be finishing."
        : status === "done"
          ? `Done${tokens != null ? ` · ${tokens} tokens` : ""}${last.cached ? " · from cache" : ""}`
          : "",
    );
    if (!title) setTitle(message.slice(0, 60));
    void loadList();
    onReplyFinished?.();
  }

  function stop() {
    if (!job.current) return;
    setLive((previous) => (previous ? { ...previous, stopping: true } : previous));
    job.current.stop();
  }

  const stored = useMemo(() => storedToTurns(messages), [messages]);
  const turns = [...stored];
  if (live) {
    turns.push({ key: "live-user", role: "user", content: live.userText, reasoning: "", status: "done", reasoningS: null });
    turns.push({
      key: "live-reply",
      role: "assistant",
      content: live.update.answer,
      reasoning: live.update.reasoning,
      status: live.update.status,
      reasoningS: live.update.reasoning_s,
      thinkingSince: live.thinkingSince,
      live: true,
    });
  }

  return (
    <div className="grid gap-4 md:grid-cols-[16rem_minmax(0,1fr)]">
      <Card className="h-fit gap-2 py-3">
        <CardContent className="grid gap-2 px-3">
          <Button onClick={newChat} disabled={streaming} variant="outline" data-testid="new-chat">
            <MessageSquarePlus />
            New chat
          </Button>
          <ChatListSearch onSearch={setListQuery} />
          <ErrorAlert error={listError} />
          <nav className="grid max-h-[22rem] gap-0.5 overflow-y-auto md:max-h-[60vh]" aria-label="Conversations" data-testid="conversation-list">
            {list.length === 0 && !listError ? (
              <p className="px-2 py-1 text-sm text-muted-foreground">{listQuery.trim() ? "No conversation matches." : "No conversations yet."}</p>
            ) : null}
            {list.map((c) => (
              <button
                key={c.conversation_id}
                disabled={streaming}
                onClick={() => void openConversation(c.conversation_id)}
                className={cn(
                  "grid rounded-md px-2 py-1.5 text-left text-sm hover:bg-accent disabled:opacity-60",
                  c.conversation_id === conversationId && "bg-accent font-medium",
                )}
                data-testid="conversation-item"
              >
                <span className="truncate">
                  <Marked segments={c.title_highlight} text={c.title || `Conversation ${c.conversation_id}`} />
                </span>
                {c.match ? (
                  <span className="truncate text-xs" data-testid="chat-search-snippet">
                    <Marked segments={c.match.snippet} text="" />
                  </span>
                ) : null}
                <span className="text-xs text-muted-foreground">
                  {formatWhen(c.updated_at)} · {c.messages} messages
                </span>
              </button>
            ))}
            {nextBefore != null ? (
              <Button variant="ghost" size="sm" onClick={() => void loadList(nextBefore)}>
                Load more
              </Button>
            ) : null}
          </nav>
        </CardContent>
      </Card>

      <Card className="min-h-[60vh] gap-0 py-0">
        <div className="flex items-center justify-between gap-2 border-b px-4 py-3">
          <h2 className="truncate font-semibold" data-testid="chat-title">
            {title || "New chat"}
          </h2>
          <span className="text-xs text-muted-foreground">DeepSeek-R1</span>
        </div>
        <div ref={messagesBox} className="h-[60vh] overflow-y-auto px-4 py-4" data-testid="chat-messages">
          {loadingConversation ? <Loader2 className="mx-auto size-6 animate-spin text-muted-foreground" /> : null}
          {!loadingConversation && turns.length === 0 ? (
            <p className="py-16 text-center text-sm text-muted-foreground">Ask anything. The model thinks first; its reasoning shows apart from the answer.</p>
          ) : null}
          <div className="grid gap-4">
            {turns.map((turn) => (
              <ChatMessage key={turn.key} turn={turn} />
            ))}
          </div>
        </div>
        <div className="grid gap-2 border-t px-4 py-3">
          <ErrorAlert error={error} onDismiss={() => setError(null)} />
          <Textarea
            id="chat-input"
            aria-label="Message"
            rows={2}
            placeholder="Ask anything… (Enter sends, Shift+Enter: new line)"
            value={text}
            aria-invalid={!!error?.fields.message}
            onChange={(e) => setText(e.target.value)}
            onKeyDown={(e) => {
              if (e.key === "Enter" && !e.shiftKey && !e.nativeEvent.isComposing) {
                e.preventDefault();
                void send();
              }
            }}
          />
          <div className="flex flex-wrap items-center gap-2">
            <Button onClick={() => void send()} disabled={streaming || !text.trim()} data-testid="chat-send">
              {streaming ? <Loader2 className="animate-spin" /> : <Send />}
              Send
            </Button>
            <Button variant="destructive" onClick={stop} disabled={!streaming || live?.stopping} data-testid="chat-stop">
              <Square />
              Stop
            </Button>
            <span className="text-sm text-muted-foreground" data-testid="chat-status" aria-live="polite">
              {statusLine(live, progress) || lastNote}
            </span>
          </div>
          <Collapsible>
            <CollapsibleTrigger className="flex items-center gap-1.5 text-xs text-muted-foreground hover:text-foreground">
              <SlidersHorizontal className="size-3.5" /> Sampling <ChevronDown className="size-3.5" />
            </CollapsibleTrigger>
            <CollapsibleContent>
              <div className="grid gap-4 pt-3 sm:grid-cols-4">
                <Field id="temperature" label="Temperature" hint={(options.temperature ?? RECOMMENDED.temperature).toFixed(2)} error={error?.fields.temperature}>
                  <Slider aria-label="Temperature" min={0} max={2} step={0.05} value={[options.temperature ?? RECOMMENDED.temperature]} onValueChange={([v]) => setOptions((o) => ({ ...o, temperature: v }))} />
                </Field>
                <Field id="top-p" label="Top p" hint={(options.top_p ?? RECOMMENDED.top_p).toFixed(2)} error={error?.fields.top_p}>
                  <Slider aria-label="Top p" min={0.05} max={1} step={0.01} value={[options.top_p ?? RECOMMENDED.top_p]} onValueChange={([v]) => setOptions((o) => ({ ...o, top_p: v }))} />
                </Field>
                <Field id="max-new-tokens" label="Max new tokens" hint={options.max_new_tokens == null ? "server default" : undefined} error={error?.fields.max_new_tokens}>
                  <OptionalNumberInput
                    id="max-new-tokens"
                    min={16}
                    step={16}
                    value={options.max_new_tokens}
                    onValue={(value) => setOptions((o) => ({ ...o, max_new_tokens: value }))}
                  />
                </Field>
                <Field id="thinking-budget" label="Thinking budget" hint={options.thinking_budget === 0 ? "no limit" : undefined} error={error?.fields.thinking_budget}>
                  <OptionalNumberInput
                    id="thinking-budget"
                    min={0}
                    step={64}
                    value={options.thinking_budget}
                    onValue={(value) => setOptions((o) => ({ ...o, thinking_budget: value }))}
                  />
                </Field>
              </div>
            </CollapsibleContent>
          </Collapsible>
        </div>
      </Card>
    </div>
  );
}
