import { useCallback, useEffect, useState, type ComponentProps, type ReactNode } from "react";
import { RefreshCw } from "lucide-react";
import { Button } from "@/components/ui/button";
import { Card, CardContent, CardDescription, CardHeader, CardTitle } from "@/components/ui/card";
import { Input } from "@/components/ui/input";
import { Label } from "@/components/ui/label";
import { ErrorAlert } from "@/components/ErrorAlert";
import { errorFromException, type AppError } from "@/lib/errors";

/** Run an admin action: busy while it runs, its error (the server's words) kept to show, `after` run either way. */
export function useAction(after: () => void) {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<AppError | null>(null);
  const [said, setSaid] = useState<string | null>(null);
  const act = useCallback(
    async (action: () => Promise<string | void>) => {
      setBusy(true);
      try {
        const words = await action();
        setSaid(words || null);
        setError(null);
      } catch (err) {
        setError(errorFromException(err));
        setSaid(null);
      } finally {
        setBusy(false);
        after();
      }
    },
    [after],
  );
  return { busy, error, said, setError, act };
}

/** Call `refresh` every `ms` milliseconds while `ms` is not null: a section that follows what changes on the server. */
export function usePolling(refresh: () => void, ms: number | null) {
  useEffect(() => {
    if (ms === null) return;
    const timer = window.setInterval(refresh, ms);
    return () => window.clearInterval(timer);
  }, [ms, refresh]);
}

/** A plain table of rows: headers, one row per item, the cells as `cells(item)` gives them. */
export function AdminTable<T>({ headers, rows, cells, testId, rowKey, empty }: {
  headers: string[];
  rows: T[];
  cells: (row: T) => ReactNode[];
  rowKey: (row: T) => string | number;
  testId: string;
  empty: string;
}) {
  return (
    <div className="overflow-x-auto rounded-md border">
      <table className="w-full text-left text-sm" data-testid={testId}>
        <thead className="bg-muted/50 text-xs text-muted-foreground">
          <tr>
            {headers.map((header) => (
              <th key={header} scope="col" className="px-2 py-1.5 font-medium whitespace-nowrap">
                {header}
              </th>
            ))}
          </tr>
        </thead>
        <tbody>
          {rows.map((row) => (
            <tr key={rowKey(row)} className="border-t">
              {cells(row).map((cell, i) => (
                <td key={i} className="px-2 py-1.5 align-top">
                  {cell}
                </td>
              ))}
            </tr>
          ))}
          {rows.length === 0 ? (
            <tr>
              <td colSpan={headers.length} className="px-2 py-3 text-muted-foreground">
                {empty}
              </td>
            </tr>
          ) : null}
        </tbody>
      </table>
    </div>
  );
}

/** An admin section: a card with its title, what it does, an optional button beside the title, the last action's
 * error (the server's words) or what it did, and the section's forms and tables. */
export function AdminCard({ title, description, action, aside, saidId, children }: {
  title: string;
  description: ReactNode;
  action: { error: AppError | null; said: string | null; setError: (error: AppError | null) => void };
  aside?: ReactNode;
  /** The test id of the line that says what the last action did. */
  saidId?: string;
  children: ReactNode;
}) {
  return (
    <Card>
      <CardHeader className="flex flex-row items-start justify-between gap-2">
        <div className="grid gap-1.5">
          <CardTitle>{title}</CardTitle>
          <CardDescription>{description}</CardDescription>
        </div>
        {aside}
      </CardHeader>
      <CardContent className="grid gap-3">
        <ErrorAlert error={action.error} onDismiss={() => action.setError(null)} />
        {action.said ? (
          <p className="text-sm" role="status" data-testid={saidId}>
            {action.said}
          </p>
        ) : null}
        {children}
      </CardContent>
    </Card>
  );
}

/** A row of labelled fields and buttons that submits on Enter (the page does not reload). */
export function AdminForm({ onSubmit, children, className }: { onSubmit: () => void; children: ReactNode; className?: string }) {
  return (
    <form
      className={className ?? "flex flex-wrap items-end gap-2"}
      onSubmit={(event) => {
        event.preventDefault();
        onSubmit();
      }}
    >
      {children}
    </form>
  );
}

/** A text field with its label above it. */
export function AdminInput({ id, label, value, onChange, className, ...rest }: {
  id: string;
  label: string;
  value: string;
  onChange: (value: string) => void;
  className?: string;
} & Omit<ComponentProps<"input">, "id" | "value" | "onChange" | "className">) {
  return (
    <div className="grid gap-1">
      <Label htmlFor={id}>{label}</Label>
      <Input id={id} className={className} value={value} onChange={(e) => onChange(e.target.value)} {...rest} />
    </div>
  );
}

/** A refresh button for a section's header. */
export function RefreshButton({ label, onClick }: { label: string; onClick: () => void }) {
  return (
    <Button variant="ghost" size="icon" aria-label={label} onClick={onClick}>
      <RefreshCw />
    </Button>
  );
}
