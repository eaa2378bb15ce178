import { useCallback, useEffect, useState } from "react";
import { Button } from "@/components/ui/button";
import { AdminCard, AdminForm, AdminInput, AdminTable, useAction } from "@/components/AdminCommon";
import { usage, type UsageFigures, type UsageReport } from "@/lib/admin";

/** Every user's jobs, images, tokens and GPU seconds over the last days, most GPU seconds first, and the total. */
export function AdminUsage({ root }: { root: string }) {
  const [days, setDays] = useState("30");
  const [report, setReport] = useState<UsageReport | null>(null);
  const action = useAction(useCallback(() => undefined, []));
  const load = useCallback(() => void action.act(async () => setReport(await usage(root, Number(days)))), [action, root, days]);
  useEffect(() => load(), [root]);
  const rows: UsageFigures[] = report ? [...report.users, ...(report.total ? [{ ...report.total, user: "everyone" }] : [])] : [];

  return (
    <AdminCard title="Usage" description="Jobs that ran (done, failed or stopped), from the request log: as far back as its retention." action={action}>
        <AdminForm onSubmit={load}>
          <AdminInput id="admin-usage-days" label="Last days" className="w-24" inputMode="decimal" value={days} onChange={setDays} />
          <Button type="submit" variant="outline" disabled={action.busy}>
            Show usage
          </Button>
        </AdminForm>
        {report ? <p className="text-xs text-muted-foreground">From {report.since.slice(0, 19)} until {report.until.slice(0, 19)} (UTC).</p> : null}
        <AdminTable
          testId="admin-usage"
          headers={["User", "Jobs", "Failed", "Stopped", "Images", "Chat replies", "Tokens in", "Tokens out", "GPU s"]}
          rows={rows}
          rowKey={(u) => u.user ?? "(no account)"}
          empty="No jobs in this period."
          cells={(u) => [u.user ?? "(no account)", u.jobs, u.failed, u.cancelled, u.images, u.chat_replies, u.prompt_tokens, u.completion_tokens, u.gpu_seconds]}
        />
    </AdminCard>
  );
}
