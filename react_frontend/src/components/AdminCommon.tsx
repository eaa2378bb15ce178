import { useCallback, useState, type ReactNode } from "react";
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
