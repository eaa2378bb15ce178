import { useCallback, useEffect, useState } from "react";
import { Card, CardContent, CardDescription, CardHeader, CardTitle } from "@/components/ui/card";
import { ErrorAlert } from "@/components/ErrorAlert";
import { useAction } from "@/components/AdminCommon";
import { myUsage, type UsageFigures } from "@/lib/admin";

const PERIODS = [1, 7, 30, 90];

/** Your own usage (the figures an admin sees for you): jobs, images, tokens and GPU seconds over a period. */
export function UsageCard({ root, refreshKey }: { root: string; refreshKey: number }) {
  const [days, setDays] = useState(30);
  const [figures, setFigures] = useState<UsageFigures | null>(null);
  const action = useAction(useCallback(() => undefined, []));
  const { act } = action;
  useEffect(() => {
    void act(async () => setFigures((await myUsage(root, days)).users[0] ?? null));
  }, [act, root, days, refreshKey]);
  const shown: [string, number | undefined][] = [
    ["Jobs", figures?.jobs],
    ["Failed", figures?.failed],
    ["Stopped", figures?.cancelled],
    ["Images", figures?.images],
    ["Chat replies", figures?.chat_replies],
    ["Tokens in", figures?.prompt_tokens],
    ["Tokens out", figures?.completion_tokens],
    ["GPU seconds", figures?.gpu_seconds],
  ];

  return (
    <Card>
      <CardHeader className="flex flex-row items-start justify-between gap-2">
        <div className="grid gap-1.5">
          <CardTitle>Your usage</CardTitle>
          <CardDescription>Jobs that ran (done, failed or stopped), as an admin sees them for you.</CardDescription>
        </div>
        <select
          aria-label="Period"
          className="h-9 rounded-md border bg-background px-2 text-sm"
          value={days}
          onChange={(e) => setDays(Number(e.target.value))}
        >
          {PERIODS.map((d) => (
            <option key={d} value={d}>
              last {d} day{d === 1 ? "" : "s"}
            </option>
          ))}
        </select>
      </CardHeader>
      <CardContent className="grid gap-2">
        <ErrorAlert error={action.error} onDismiss={() => action.setError(null)} />
        <dl className="grid grid-cols-2 gap-x-4 gap-y-1 text-sm sm:grid-cols-4" data-testid="my-usage">
          {shown.map(([label, value]) => (
            <div key={label} className="flex justify-between gap-2 border-b py-1">
              <dt className="text-muted-foreground">{label}</dt>
              <dd className="font-medium tabular-nums">{value ?? "–"}</dd>
            </div>
          ))}
        </dl>
      </CardContent>
    </Card>
  );
}
