import * as React from "react";
import { cn } from "@/lib/utils";

/** A determinate bar (value 0..100), or an indeterminate one when value is null. */
function Progress({ className, value, ...props }: React.ComponentProps<"div"> & { value: number | null }) {
  const clamped = value == null ? null : Math.max(0, Math.min(100, value));
  return (
    <div
      data-slot="progress"
      role="progressbar"
      aria-valuemin={0}
      aria-valuemax={100}
      aria-valuenow={clamped ?? undefined}
      className={cn("relative h-2 w-full overflow-hidden rounded-full bg-primary/20", className)}
      {...props}
    >
      <div
        data-slot="progress-indicator"
        className={cn("h-full bg-primary transition-all", clamped == null && "w-1/3 animate-pulse")}
        style={clamped == null ? undefined : { width: `${clamped}%` }}
      />
    </div>
  );
}

export { Progress };
