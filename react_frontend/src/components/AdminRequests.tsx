import { useCallback, useEffect, useState } from "react";
import { Badge } from "@/components/ui/badge";
import { Button } from "@/components/ui/button";
import { Label } from "@/components/ui/label";
import { AdminCard, AdminForm, AdminInput, AdminTable, useAction } from "@/components/AdminCommon";
import { findRequests, type RequestFilters, type RequestRow } from "@/lib/admin";
import { formatSeconds } from "@/lib/format";

const KINDS = ["", "image", "chat", "read", "login", "upload", "admin"];
const STATUSES = ["", "done", "failed", "refused", "cancelled"];
const PAGE = 50;

function Choice({ id, label, value, options, onChange }: { id: string; label: string; value: string; options: string[]; onChange: (v: string) => void }) {
  return (
    <div className="grid gap-1">
      <Label htmlFor={id}>{label}</Label>
      <select id={id} className="h-9 rounded-md border bg-background px-2 text-sm" value={value} onChange={(e) => onChange(e.target.value)}>
        {options.map((option) => (
          <option key={option} value={option}>
            {option || "any"}
          </option>
        ))}
      </select>
    </div>
  );
}

/** The request log, newest first, filtered by who, kind, status, route or request id, a page at a time. */
export function AdminRequests({ root }: { root: string }) {
  const [filters, setFilters] = useState<RequestFilters>({ user: "", kind: "", status: "", route: "", request_id: "" });
  const [rows, setRows] = useState<RequestRow[]>([]);
  const [next, setNext] = useState<number | null>(null);
  const action = useAction(useCallback(() => undefined, []));

  const search = (before: number | null) =>
    void action.act(async () => {
      const page = await findRequests(root, { ...filters, limit: PAGE, before });
      setRows(page.requests);
      setNext(page.next_before);
    });
  useEffect(() => search(null), [root]);
  const text = (key: keyof RequestFilters, label: string) => (
    <AdminInput id={`admin-requests-${key}`} label={label} className="w-40" value={String(filters[key] ?? "")} onChange={(value) => setFilters({ ...filters, [key]: value })} />
  );

  return (
    <AdminCard title="Request log" description="Every request and job, however it came in: who, from where, how it ended and how long it took." action={action}>
        <AdminForm onSubmit={() => search(null)}>
          {text("user", "User")}
          <Choice id="admin-requests-kind" label="Kind" value={filters.kind ?? ""} options={KINDS} onChange={(kind) => setFilters({ ...filters, kind })} />
          <Choice id="admin-requests-status" label="Status" value={filters.status ?? ""} options={STATUSES} onChange={(status) => setFilters({ ...filters, status })} />
          {text("route", "Route")}
          {text("request_id", "Request id")}
          <Button type="submit" disabled={action.busy}>
            Search
          </Button>
          <Button type="button" variant="outline" disabled={action.busy || next === null} onClick={() => search(next)}>
            Older
          </Button>
        </AdminForm>
        <AdminTable
          testId="admin-requests"
          headers={["Time", "User", "Client", "Route", "Kind", "Status", "Reason", "HTTP", "Took", "Request id"]}
          rows={rows}
          rowKey={(r) => r.id}
          empty="No request matches."
          cells={(r) => [
            <span className="whitespace-nowrap">{r.started_at.slice(0, 19).replace("T", " ")}</span>,
            r.user,
            r.client,
            <code className="text-xs">{r.route}</code>,
            r.kind,
            <Badge variant={r.status === "done" ? "secondary" : r.status === "refused" ? "outline" : "destructive"}>{r.status}</Badge>,
            <span className="break-words">{r.reason}</span>,
            r.http_status ?? "",
            formatSeconds(r.duration_s),
            <code className="text-xs">{r.request_id}</code>,
          ]}
        />
    </AdminCard>
  );
}
