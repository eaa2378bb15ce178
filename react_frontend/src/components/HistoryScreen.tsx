import { useCallback, useEffect, useRef, useState } from "react";
import { Download, Loader2, MessageSquare, RefreshCw, RotateCcw } from "lucide-react";
import { Badge } from "@/components/ui/badge";
import { Button } from "@/components/ui/button";
import { Card, CardContent, CardDescription, CardHeader, CardTitle } from "@/components/ui/card";
import { Tabs, TabsContent, TabsList, TabsTrigger } from "@/components/ui/tabs";
import { ControlUnitsSummary } from "@/components/ControlNetPanel";
import { ErrorAlert } from "@/components/ErrorAlert";
import { RefinerSummary } from "@/components/RefinerPanel";
import { CollectionsPanel, SelectionBar, useCollections } from "@/components/Collections";
import { AccountArchive, ConversationExportLinks, ImagesExport } from "@/components/HistoryExport";
import { HistoryFilters, useFacets } from "@/components/HistoryFilters";
import { DeleteShown, FavouriteButton, Marked, RenameConversation, SearchBar } from "@/components/HistorySearch";
import { errorFromException, type AppError } from "@/lib/errors";
import { formatSeconds, formatWhen } from "@/lib/format";
import type { AtelierConnection } from "@/lib/gradio";
import { isSearch, searchConversations, searchJobs, type JobQuery } from "@/lib/history";
import { refinerFromRecord } from "@/lib/refiner";
import type { ConversationPage, ConversationSummary, HistoryJob, HistoryPage, ImageSettings } from "@/lib/types";

const PAGE = 12;

function statusVariant(status: string) {
  if (status === "done") return "success" as const;
  if (status === "cancelled") return "warning" as const;
  if (status === "failed") return "destructive" as const;
  return "secondary" as const;
}

/** Where the next page starts: a job or conversation id (`next_before`), or a search's opaque cursor. */
type PageKey = number | string;

/** A paged list read through one of the API's `{items, next_before}` endpoints, or a search's `next_cursor`. */
function usePaged<T>(load: (before: PageKey | null) => Promise<{ items: T[]; next: PageKey | null }>, refreshKey: number) {
  const [items, setItems] = useState<T[]>([]);
  const [next, setNext] = useState<PageKey | null>(null);
  const [loading, setLoading] = useState(false);
  const [error, setError] = useState<AppError | null>(null);

  // Each load is numbered: an answer that arrives after a newer load began (the newest list answering after a search
  // was typed) is dropped, never shown over the newer one's.
  const latest = useRef(0);
  const fetchPage = useCallback(
    async (before: PageKey | null) => {
      const ticket = ++latest.current;
      setLoading(true);
      try {
        const page = await load(before);
        if (ticket !== latest.current) return;
        setItems((previous) => (before == null ? page.items : [...previous, ...page.items]));
        setNext(page.next);
        setError(null);
      } catch (err) {
        if (ticket === latest.current) setError(errorFromException(err));
      } finally {
        if (ticket === latest.current) setLoading(false);
      }
    },
    [load],
  );

  useEffect(() => {
    void fetchPage(null);
  }, [fetchPage, refreshKey]);

  /** Change one item in place (a favourite marked), without reading the page again. */
  const update = (match: (item: T) => boolean, change: (item: T) => T) =>
    setItems((previous) => previous.map((item) => (match(item) ? change(item) : item)));
  /** Take items out of the list (deleted), without reading the page again. */
  const remove = (match: (item: T) => boolean) => setItems((previous) => previous.filter((item) => !match(item)));
  return { items, next, loading, error, setError, update, remove, refresh: () => fetchPage(null), more: () => next != null && fetchPage(next) };
}

interface Props {
  conn: AtelierConnection;
  refreshKey: number;
  onReuse: (settings: Partial<ImageSettings>, controlnet?: unknown[]) => void;
  onOpenConversation: (id: number) => void;
}

export function HistoryScreen({ conn, refreshKey, onReuse, onOpenConversation }: Props) {
  // The searches applied (each search box applies its own on Enter); none: the newest, as the named API lists them.
  const [jobQuery, setJobQuery] = useState<JobQuery>({ q: "", favourite: false });
  const [chatQuery, setChatQuery] = useState({ q: "", favourite: false, reasoning: true });
  const loadJobs = useCallback(
    async (before: PageKey | null) => {
      if (isSearch(jobQuery)) {
        const found = await searchJobs(conn.root, jobQuery, before == null ? null : String(before), PAGE);
        return { items: found.jobs, next: found.next_cursor };
      }
      const page = await conn.call<HistoryPage>("/history", { limit: PAGE, before });
      return { items: page.jobs, next: page.next_before };
    },
    [conn, jobQuery],
  );
  const loadConversations = useCallback(
    async (before: PageKey | null) => {
      if (isSearch(chatQuery)) {
        const found = await searchConversations(conn.root, chatQuery, before == null ? null : String(before), PAGE);
        return { items: found.conversations, next: found.next_cursor };
      }
      const page = await conn.call<ConversationPage>("/conversations", { limit: PAGE, before });
      return { items: page.conversations, next: page.next_before };
    },
    [conn, chatQuery],
  );
  const jobs = usePaged<HistoryJob>(loadJobs, refreshKey);
  const conversations = usePaged<ConversationSummary>(loadConversations, refreshKey);
  const facets = useFacets(conn.root, refreshKey);
  const collections = useCollections(conn.root, refreshKey, jobs.setError);
  // The jobs ticked on their cards, kept across searches until added, taken out, deleted or unselected.
  const [selected, setSelected] = useState<number[]>([]);
  const [selectionNote, setSelectionNote] = useState("");
  const browsingId = jobQuery.filters?.collection_id ?? null;
  const browsing = collections.list.find((c) => c.collection_id === browsingId) ?? null;
  // What the last add or take-out did, said until the search changes or a collection is made, renamed or deleted.
  useEffect(() => setSelectionNote(""), [jobQuery]);
  const browse = (id: number | null) => setJobQuery((q) => ({ ...q, filters: { ...q.filters, collection_id: id } }));

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
          <TabsTrigger value="account" data-testid="history-account-tab">
            Account
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
        <SearchBar query={jobQuery} onSearch={(words) => setJobQuery((q) => ({ ...q, ...words }))} placeholder="Search prompts" testId="history-search" busy={jobs.loading} />
        <HistoryFilters query={jobQuery} facets={facets} collections={collections.list} onApply={(change) => setJobQuery((q) => ({ ...q, ...change }))} />
        <CollectionsPanel
          root={conn.root}
          collections={collections.list}
          browsing={browsingId}
          onBrowse={browse}
          onChanged={(list) => {
            collections.setList(list);
            setSelectionNote("");
          }}
          onError={jobs.setError}
        />
        <SelectionBar
          root={conn.root}
          selected={selected}
          collections={collections.list}
          browsing={browsing}
          onDone={(message, removed) => {
            setSelectionNote(message);
            setSelected([]);
            if (removed.length) jobs.remove((job) => removed.includes(job.job_id));
            void collections.reload();
          }}
          onClear={() => setSelected([])}
          onError={jobs.setError}
        />
        {selectionNote ? (
          <p className="text-sm text-muted-foreground" role="status" data-testid="selection-note">
            {selectionNote}
          </p>
        ) : null}
        <div className="flex flex-wrap items-start gap-2">
          <ImagesExport root={conn.root} query={jobQuery} />
          <DeleteShown
            root={conn.root}
            jobIds={jobs.items.map((job) => job.job_id)}
            onDeleted={(deleted) => {
              jobs.remove((job) => deleted.includes(job.job_id));
              setSelected((ids) => ids.filter((id) => !deleted.includes(id)));
              void collections.reload();
            }}
            onError={jobs.setError}
          />
        </div>
        <ErrorAlert error={jobs.error} />
        {jobs.items.length === 0 && !jobs.loading && !jobs.error ? (
          <p className="text-sm text-muted-foreground">{isSearch(jobQuery) ? "No image job matches." : "No image jobs yet."}</p>
        ) : null}
        <div className="grid gap-3 sm:grid-cols-2 xl:grid-cols-3" data-testid="history-jobs">
          {jobs.items.map((job) => (
            <JobCard
              key={job.job_id}
              job={job}
              conn={conn}
              onReuse={onReuse}
              selected={selected.includes(job.job_id)}
              onSelect={(on) => {
                setSelectionNote("");
                setSelected((ids) => (on ? [...ids.filter((id) => id !== job.job_id), job.job_id] : ids.filter((id) => id !== job.job_id)));
              }}
              onFavourite={(value) => jobs.update((j) => j.job_id === job.job_id, (j) => ({ ...j, favourite: value }))}
              onError={jobs.setError}
            />
          ))}
        </div>
        {jobs.next != null ? (
          <Button variant="outline" onClick={() => void jobs.more()} disabled={jobs.loading} data-testid="history-more">
            Load more
          </Button>
        ) : null}
      </TabsContent>

      <TabsContent value="conversations" className="grid gap-3">
        <SearchBar
          query={chatQuery}
          onSearch={(query) => setChatQuery({ ...chatQuery, ...query })}
          placeholder="Search conversations"
          testId="conversation-search"
          busy={conversations.loading}
        />
        <ErrorAlert error={conversations.error} />
        {conversations.items.length === 0 && !conversations.loading && !conversations.error ? (
          <p className="text-sm text-muted-foreground">{isSearch(chatQuery) ? "No conversation matches." : "No conversations yet."}</p>
        ) : null}
        <div className="grid gap-2" data-testid="history-conversations">
          {conversations.items.map((c) => (
            <Card key={c.conversation_id} className="py-3" data-testid="history-conversation">
              <CardContent className="flex items-center justify-between gap-3">
                <div className="flex min-w-0 items-center gap-2">
                  <FavouriteButton
                    root={conn.root}
                    kind="conversation"
                    id={c.conversation_id}
                    value={Boolean(c.favourite)}
                    onChange={(value) =>
                      conversations.update((x) => x.conversation_id === c.conversation_id, (x) => ({ ...x, favourite: value }))
                    }
                    onError={conversations.setError}
                  />
                  <div className="grid min-w-0">
                    <span className="truncate font-medium">
                      <Marked segments={c.title_highlight} text={c.title || `Conversation ${c.conversation_id}`} />
                    </span>
                    <span className="flex flex-wrap items-center gap-2 text-xs text-muted-foreground">
                      {formatWhen(c.updated_at)} · {c.messages} messages
                      <ConversationExportLinks root={conn.root} id={c.conversation_id} />
                    </span>
                    {c.match ? (
                      <span className="line-clamp-2 text-xs" data-testid="conversation-snippet">
                        {c.match.field === "reasoning" ? <em>reasoning: </em> : null}
                        <Marked segments={c.match.snippet} text="" />
                      </span>
                    ) : null}
                  </div>
                </div>
                <div className="flex items-center gap-1">
                <RenameConversation
                  root={conn.root}
                  id={c.conversation_id}
                  title={c.title}
                  onRenamed={(title) =>
                    conversations.update((x) => x.conversation_id === c.conversation_id, (x) => ({ ...x, title, title_highlight: undefined }))
                  }
                  onError={conversations.setError}
                />
                <Button variant="outline" size="sm" onClick={() => onOpenConversation(c.conversation_id)}>
                  <MessageSquare />
                  Open
                </Button>
                </div>
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

      <TabsContent value="account" className="grid gap-3">
        <AccountArchive
          root={conn.root}
          onImported={() => {
            void jobs.refresh();
            void conversations.refresh();
          }}
        />
      </TabsContent>
    </Tabs>
  );
}

interface JobCardProps {
  job: HistoryJob;
  conn: AtelierConnection;
  onReuse: (settings: Partial<ImageSettings>, controlnet?: unknown[]) => void;
  onFavourite: (value: boolean) => void;
  onError: (error: AppError) => void;
  selected: boolean;
  onSelect: (selected: boolean) => void;
}

function JobCard({ job, conn, onReuse, onFavourite, onError, selected, onSelect }: JobCardProps) {
  const seed = job.seed_used ?? job.seed;
  return (
    <Card className={`gap-3 py-3 ${selected ? "ring-2 ring-primary" : ""}`} data-testid="history-job" data-status={job.status} data-selected={selected}>
      <CardHeader className="px-3">
        <div className="flex items-center justify-between gap-2">
          <div className="flex items-center gap-1">
            <input
              type="checkbox"
              className="size-4 accent-primary"
              checked={selected}
              onChange={(event) => onSelect(event.target.checked)}
              aria-label={`Select job ${job.job_id}`}
              data-testid="history-job-select"
            />
            <FavouriteButton root={conn.root} kind="job" id={job.job_id} value={Boolean(job.favourite)} onChange={onFavourite} onError={onError} />
            <CardTitle className="text-sm">Job {job.job_id}</CardTitle>
          </div>
          <div className="flex gap-1">
            {job.cached ? <Badge variant="outline">cached</Badge> : null}
            <Badge variant={statusVariant(job.status)} data-testid="history-job-status">
              {job.status}
            </Badge>
          </div>
        </div>
        <CardDescription className="line-clamp-2" title={job.prompt}>
          {job.prompt ? <Marked segments={job.highlight?.prompt} text={job.prompt} /> : <em>no prompt</em>}
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
        <ControlUnitsSummary value={job.controlnet} />
        <RefinerSummary record={job} />
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
              ...refinerFromRecord({ ...job }),
            }, job.controlnet)
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
