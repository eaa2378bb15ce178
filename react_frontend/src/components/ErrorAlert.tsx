import { useEffect, useState } from "react";
import { AlertCircle, Clock, ServerCrash, WifiOff, X } from "lucide-react";
import { Alert, AlertDescription, AlertTitle } from "@/components/ui/alert";
import { Button } from "@/components/ui/button";
import type { AppError } from "@/lib/errors";

const ICONS = { rate_limit: Clock, busy: ServerCrash, connection: WifiOff } as const;

/** One clear error: what happened and, for limits and a full queue, when to try again. */
export function ErrorAlert({ error, onDismiss, className }: { error: AppError | null; onDismiss?: () => void; className?: string }) {
  const [left, setLeft] = useState<number | null>(error?.retryAfterS ?? null);

  useEffect(() => {
    setLeft(error?.retryAfterS ?? null);
    if (!error?.retryAfterS) return;
    const started = Date.now();
    const timer = window.setInterval(() => {
      const remaining = Math.max(0, (error.retryAfterS ?? 0) - Math.floor((Date.now() - started) / 1000));
      setLeft(remaining);
      if (remaining === 0) window.clearInterval(timer);
    }, 1000);
    return () => window.clearInterval(timer);
  }, [error]);

  if (!error) return null;
  const Icon = ICONS[error.kind as keyof typeof ICONS] ?? AlertCircle;
  const variant = error.kind === "rate_limit" || error.kind === "busy" || error.kind === "quota" ? "warning" : "destructive";
  return (
    <Alert variant={variant} className={className} data-testid="error-alert" data-kind={error.kind}>
      <Icon />
      <AlertTitle className="pr-6">{error.title}</AlertTitle>
      <AlertDescription>
        <p>{error.message}</p>
        {left != null && left > 0 && error.kind !== "rate_limit" ? <p>Try again in {left} s.</p> : null}
        {left === 0 ? <p>You can try again now.</p> : null}
      </AlertDescription>
      {onDismiss ? (
        <Button variant="ghost" size="icon" className="absolute top-1.5 right-1.5 size-7" onClick={onDismiss} aria-label="Dismiss">
          <X />
        </Button>
      ) : null}
    </Alert>
  );
}
