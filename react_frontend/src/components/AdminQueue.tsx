import { useCallback, useEffect, useState } from "react";
import { Square } from "lucide-react";
import { Badge } from "@/components/ui/badge";
import { Button } from "@/components/ui/button";
import { AdminCard, AdminTable, RefreshButton, useAction, usePolling } from "@/components/AdminCommon";
import { listQueue, stopJob, type QueueJob } from "@/lib/admin";
import { errorFromException } from "@/lib/errors";
import { formatSeconds } from "@/lib/format";

/** How often the queue is asked again while "Live" is on. */
export const LIVE_MS = 5_000;
/** After a Stop, the queue is asked again this often until the job has left it (a running one ends within a step). */
export const STOPPING_MS = 1_000;

/** Gradio's words for a waiting event, as a person says it. */
const WAITING = new Set(["pending", "waiting", "queued"]);

/** The live queue of this replica: whose jobs wait or run, for how long, and Stop for any of them. */
export function AdminQueue({ root }: { root: string }) {
  const [queue, setQueue] = useState<{ replica: string; jobs: QueueJob[] } | null>(null);
  const [live, setLive] = useState(false);
  // The jobs stopped here that are still listed: shown as stopping, and followed until they are gone.
  const [stopping, setStopping] = useState<Set<string>>(new Set());
  const refresh = useCallback(() => {
    listQueue(root).then((found) => {
      setQueue(found);
      setStopping((ids) => new Set(found.jobs.filter((job) => ids.has(job.id)).map((job) => job.id)));
    }, (err) => action.setError(errorFromException(err)));
  }, [root]);
  const action = useAction(refresh);
  useEffect(() => refresh(), [refresh]);
  usePolling(refresh, stopping.size > 0 ? STOPPING_MS : live ? LIVE_MS : null);

  function stop(job: QueueJob) {
    const whose = job.user || "an anonymous user";
    if (!window.confirm(`Stop ${whose}'s ${job.kind} job (${job.route || job.id})? A running job keeps what it made so far, marked as stopped.`)) return;
    void action.act(async () => {
      await stopJob(root, job.id);
      setStopping((ids) => new Set(ids).add(job.id));
      return `Stopped ${whose}'s ${job.kind} job.`;
    });
  }

  return (
    <AdminCard
      title="Queue"
      description={`The jobs waiting and running${queue?.replica ? ` on replica ${queue.replica}` : ""}, oldest first, from every way in (both UIs and the APIs). Stop ends any of them.`}
      action={action}
      saidId="admin-queue-said"
      aside={
        <span className="flex items-center gap-2">
          <label className="flex items-center gap-1 text-sm">
            <input type="checkbox" checked={live} onChange={(e) => setLive(e.target.checked)} /> Live
          </label>
          <RefreshButton label="Refresh the queue" onClick={refresh} />
        </span>
      }
    >
      <AdminTable
        testId="admin-queue"
        headers={["User", "Kind", "Route", "Status", "For", ""]}
        rows={queue?.jobs ?? []}
        rowKey={(job) => job.id}
        empty="Nothing is waiting or running."
        cells={(job) => [
          <span className="font-medium">{job.user || "(anonymous)"}</span>,
          job.kind,
          <code className="text-xs">{job.route}</code>,
          stopping.has(job.id) ? (
            <Badge variant="destructive">stopping</Badge>
          ) : (
            <Badge variant={WAITING.has(job.status) ? "outline" : "secondary"}>{WAITING.has(job.status) ? "waiting" : job.status}</Badge>
          ),
          formatSeconds(job.seconds),
          <Button size="sm" variant="destructive" disabled={action.busy || stopping.has(job.id)} onClick={() => stop(job)}>
            <Square /> Stop <span className="sr-only">{`${job.user || "anonymous"}'s ${job.kind} job`}</span>
          </Button>,
        ]}
      />
    </AdminCard>
  );
}
