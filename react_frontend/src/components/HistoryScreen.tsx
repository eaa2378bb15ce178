import { useCallback, useEffect, useState } from "react";
import { Download, Loader2, MessageSquare, RefreshCw, RotateCcw } from "lucide-react";
import { Badge } from "@/components/ui/badge";
import { Button } from "@/components/ui/button";
import { Card, CardContent, CardDescription, CardHeader, CardTitle } from "@/components/ui/card";
import { Tabs, TabsContent, TabsList, TabsTrigger } from "@/components/ui/tabs";
import { ErrorAlert } from "@/components/ErrorAlert";
import { errorFromException, type AppError } from "@/lib/errors";
import { formatSeconds, formatWhen } from "@/lib/format";
import type { AtelierConnection } from "@/lib/gradio";
import type { ConversationPage, ConversationSummary, HistoryJob, HistoryPage, ImageSettings } from "@/lib/types";

const PAGE = 12;

function statusVariant(status: string) {
  if (status === "done") return "success" as const;
  if (status === "cancelled") return "warning" as const;
  if (status === "failed") return "destructive" as const;
  return "secondary" as const;
}

/** A paged list read through one of the API's `{items, next_before}` endpoints. */
function usePaged<T>(load: (before: number | null) => Promise<{ items: T[]; next: number | null }>, refreshKey: number) {
  const [items, setItems] = useState<T[]>([]);
  const [next, setNext] = useState<number | null>(null);
  const [loading, setLoading] = useState(false);
  const [error, setError] = useState<AppError | null>(null);

  const fetchPage = useCallback(
    async (before: number | null) => {
      setLoading(true);
      try {
        const page = await load(before);
        setItems((previous) => (before == null ? page.items : [...previous, ...page.items]));
        setNext(page.next);
        setError(null);
      } catch (err) {
        setError(errorFromException(err));
      } finally {
        setLoading(false);
      }
    },
    [load],
  );

  useEffect(() => {
    void fetchPage(null);
  }, [fetchPage, refreshKey]);

  return { items, next, loading, error, refresh: () => fetchPage(null), more: () => next != null && fetchPage(next) };
}

interface Props {
  conn: AtelierConnection;
  refreshKey: number;
  onReuse: (settings: Partial<ImageSettings>) => void;
  onOpenConversation: (id: number) => void;
}

export function HistoryScreen({ conn, refreshKey, onReuse, onOpenConversation }: Props) {
  const loadJobs = useCallback(
    async (before: number | null) => {
      const page = await conn.call<HistoryPage>("/history", { limit: PAGE, before });
      return { items: page.jobs, next: page.next_before };
    },
    [conn],
  );
  const loadConversations = useCallback(
    async (before: number | null) => {
      const page = await conn.call<ConversationPage>("/conversations", { limit: PAGE, before });
      return { items: page.conversations, next: page.next_before };
    },
    [conn],
  );
  const jobs = usePaged<HistoryJob>(loadJobs, refreshKey);
  const conversations = usePaged<ConversationSummary>(loadConversations, refreshKey);

  return (
    <Tabs defaultValue="images">
      <div className="flex items-center justify-between gap-2">
        <TabsList>
          <TabsTrigger value="images" data-testid="history-images-tab">
            Images
          </TabsTrigger>
          <TabsTrigger value="conversations" data-testid="history-conversations-tab">
            Conversations
          </TabsTrigger>
        </TabsList>
        <Button
          variant="outline"
          size="sm"
          onClick={() => {
            void jobs.refresh();
            void conversations.refresh();
          }}
          data-testid="history-refresh"
        >
          {jobs.loading || conversations.loading ? <Loader2 className="animate-spin" /> : <RefreshCw />}
          Refresh
        </Button>
      </div>

      <TabsContent value="images" className="grid gap-3">
        <ErrorAlert error={jobs.error} />
        {jobs.items.length === 0 && !jobs.loading && !jobs.error ? <p className="text-sm text-muted-foreground">No image jobs yet.</p> : null}
        <div className="grid gap-3 sm:grid-cols-2 xl:grid-cols-3" data-testid="history-jobs">
          {jobs.items.map((job) => (
            <JobCard key={job.job_id} job={job} conn={conn} onReuse={onReuse} />
          ))}
        </div>
        {jobs.next != null ? (
          <Button variant="outline" onClick={() => void jobs.more()} disabled={jobs.loading} data-testid="history-more">
            Load more
          </Button>
        ) : null}
      </TabsContent>

      <TabsContent value="conversations" className="grid gap-3">
        <ErrorAlert error={conversations.error} />
        {conversations.items.length === 0 && !conversations.loading && !conversations.error ? (
          <p className="text-sm text-muted-foreground">No conversations yet.</p>
        ) : null}
        <div className="grid gap-2" data-testid="history-conversations">
          {conversations.items.map((c) => (
            <Card key={c.conversation_id} className="py-3" data-testid="history-conversation">
              <CardContent className="flex items-center justify-between gap-3">
                <div className="grid min-w-0">
                  <span className="truncate font-medium">{c.title || `Conversation ${c.conversation_id}`}</span>
                  <span className="text-xs text-muted-foreground">
                    {formatWhen(c.updated_at)} · {c.messages} messages
                  </span>
                </div>
                <Button variant="outline" size="sm" onClick={() => onOpenConversation(c.conversation_id)}>
                  <MessageSquare />
                  Open
                </Button>
              </CardContent>
            </Card>
          ))}
        </div>
        {conversations.next != null ? (
          <Button variant="outline" onClick={() => void conversations.more()} disabled={conversations.loading}>
            Load more
          </Button>
        ) : null}
      </TabsContent>
    </Tabs>
  );
}

function JobCard({ job, conn, onReuse }: { job: HistoryJob; conn: AtelierConnection; onReuse: (settings: Partial<ImageSettings>) => void }) {
  const seed = job.seed_used ?? job.seed;
  return (
    <Card className="gap-3 py-3" data-testid="history-job" data-status={job.status}>
      <CardHeader className="px-3">
        <div className="flex items-center justify-between gap-2">
          <CardTitle className="text-sm">Job {job.job_id}</CardTitle>
          <div className="flex gap-1">
            {job.cached ? <Badge variant="outline">cached</Badge> : null}
            <Badge variant={statusVariant(job.status)} data-testid="history-job-status">
              {job.status}
            </Badge>
          </div>
        </div>
        <CardDescription className="line-clamp-2" title={job.prompt}>
          {job.prompt || <em>no prompt</em>}
        </CardDescription>
      </CardHeader>
      <CardContent className="grid gap-2 px-3">
        {job.files.length > 0 ? (
          <div className="grid grid-cols-4 gap-1.5">
            {job.files.map((file) => (
              <a key={file.id} href={conn.imageUrl(file.id)} download={file.file.split("/").pop()} title={`seed ${file.seed} · download`} className="group relative">
                <img src={conn.imageUrl(file.id)} alt={`Job ${job.job_id}, seed ${file.seed}`} loading="lazy" className="aspect-square w-full rounded border object-cover [image-rendering:pixelated]" data-testid="history-thumb" />
                <Download className="absolute right-1 bottom-1 size-3.5 text-white opacity-0 drop-shadow group-hover:opacity-100" />
              </a>
            ))}
          </div>
        ) : null}
        <p className="text-xs text-muted-foreground">
          {formatWhen(job.created_at)} · {job.width}×{job.height} · {job.steps} steps · {job.sampler} · CFG {job.cfg_scale}
          {seed != null ? ` · seed ${seed}` : ""}
          {job.duration_s != null ? ` · ${formatSeconds(job.duration_s)}` : ""}
        </p>
        {job.error ? <p className="text-xs text-destructive">{job.error}</p> : null}
        <Button
          variant="outline"
          size="sm"
          className="justify-self-start"
          onClick={() =>
            onReuse({
              prompt: job.prompt,
              negative_prompt: job.negative_prompt,
              width: job.width,
              height: job.height,
              steps: job.steps,
              cfg_scale: job.cfg_scale,
              seed: seed ?? -1,
              sampler: job.sampler,
              batch_count: job.batch_count,
            })
          }
          data-testid="history-reuse"
        >
          <RotateCcw />
          Reuse settings
        </Button>
      </CardContent>
    </Card>
  );
}
