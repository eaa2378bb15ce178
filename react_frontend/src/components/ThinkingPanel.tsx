import { useEffect, useRef, useState } from "react";
import { Brain, ChevronDown, Loader2 } from "lucide-react";
import { Collapsible, CollapsibleContent, CollapsibleTrigger } from "@/components/ui/collapsible";
import { isThinking, thinkingLabel } from "@/lib/stream";
import { cn } from "@/lib/utils";

interface Props {
  reasoning: string;
  status: string;
  reasoningS: number | null;
  /** When the thinking started (ms since epoch), for the live timer. */
  startedAt?: number | null;
}

/**
 * DeepSeek-R1's reasoning, set apart from its answer: open with a spinner while it thinks, folded away
 * with its duration once the answer starts (unless the reader opened or closed it themselves).
 */
export function ThinkingPanel({ reasoning, status, reasoningS, startedAt }: Props) {
  const pending = isThinking(status);
  const [open, setOpen] = useState(pending);
  const touched = useRef(false);
  const [now, setNow] = useState(() => Date.now());

  useEffect(() => {
    if (!touched.current) setOpen(pending);
  }, [pending]);

  useEffect(() => {
    if (!pending || !startedAt) return;
    const timer = window.setInterval(() => setNow(Date.now()), 500);
    return () => window.clearInterval(timer);
  }, [pending, startedAt]);

  if (!pending && !reasoning) return null;
  const elapsed = pending && startedAt ? Math.max(0, (now - startedAt) / 1000) : undefined;
  return (
    <Collapsible
      open={open}
      onOpenChange={(value) => {
        touched.current = true;
        setOpen(value);
      }}
      className="rounded-lg border border-dashed bg-muted/40"
      data-testid="thinking-panel"
      data-pending={pending ? "true" : "false"}
    >
      <CollapsibleTrigger className="flex w-full items-center gap-2 px-3 py-2 text-left text-sm text-muted-foreground hover:text-foreground">
        {pending ? <Loader2 className="size-4 animate-spin" aria-label="thinking" /> : <Brain className="size-4" />}
        <span data-testid="thinking-label">{thinkingLabel(status, reasoningS, elapsed)}</span>
        <ChevronDown className={cn("ml-auto size-4 transition-transform", open && "rotate-180")} />
      </CollapsibleTrigger>
      <CollapsibleContent>
        <div
          className="max-h-72 overflow-y-auto px-3 pb-3 text-sm leading-relaxed whitespace-pre-wrap text-muted-foreground italic"
          data-testid="thinking-text"
        >
          {reasoning || "…"}
        </div>
      </CollapsibleContent>
    </Collapsible>
  );
}
