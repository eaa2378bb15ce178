import { memo } from "react";
import { Ban, TriangleAlert } from "lucide-react";
import { ThinkingPanel } from "@/components/ThinkingPanel";
import { cn } from "@/lib/utils";

export interface ChatTurnView {
  key: string;
  role: string;
  content: string;
  reasoning: string;
  status: string;
  reasoningS: number | null;
  error?: string | null;
  thinkingSince?: number | null;
  live?: boolean;
}

/** One message: the user's on the right; a reply as its Thinking panel, then its answer; a system prompt as a note. */
export const ChatMessage = memo(function ChatMessage({ turn }: { turn: ChatTurnView }) {
  if (turn.role === "system") {
    // A conversation made through the OpenAI-compatible API may open with the client's system prompt.
    return (
      <div className="rounded-md border border-dashed px-3 py-2 text-xs whitespace-pre-wrap text-muted-foreground" data-testid="chat-system-message">
        <span className="font-medium">System: </span>
        {turn.content}
      </div>
    );
  }
  if (turn.role === "user") {
    return (
      <div className="flex justify-end" data-testid="chat-user-message">
        <div className="max-w-[85%] rounded-2xl rounded-br-sm bg-primary px-4 py-2 text-sm whitespace-pre-wrap text-primary-foreground">{turn.content}</div>
      </div>
    );
  }
  return (
    <div className="grid max-w-[95%] gap-2" data-testid="chat-assistant-message" data-status={turn.status} data-live={turn.live ? "true" : "false"}>
      <ThinkingPanel reasoning={turn.reasoning} status={turn.status} reasoningS={turn.reasoningS} startedAt={turn.thinkingSince} />
      {turn.content ? (
        <div className={cn("text-sm leading-relaxed break-words whitespace-pre-wrap", turn.live && "after:ml-0.5 after:animate-pulse after:content-['▍']")} data-testid="chat-answer">
          {turn.content}
        </div>
      ) : null}
      {turn.status === "cancelled" ? (
        <p className="flex items-center gap-1.5 text-xs text-muted-foreground" data-testid="chat-stopped">
          <Ban className="size-3.5" /> Stopped.
        </p>
      ) : null}
      {turn.status === "stop-sent" ? (
        <p className="flex items-center gap-1.5 text-xs text-muted-foreground" data-testid="chat-stopped">
          <Ban className="size-3.5" /> Stop sent, not confirmed: open the conversation again to see how the reply ended.
        </p>
      ) : null}
      {turn.status === "failed" ? (
        <p className="flex items-center gap-1.5 text-xs text-destructive">
          <TriangleAlert className="size-3.5" /> {turn.error || "The reply failed."}
        </p>
      ) : null}
    </div>
  );
});
