import { useRef, useState } from "react";
import { Download, FileArchive, Loader2, Upload } from "lucide-react";
import { Button } from "@/components/ui/button";
import { Card, CardContent, CardDescription, CardHeader, CardTitle } from "@/components/ui/card";
import { Input } from "@/components/ui/input";
import { Progress } from "@/components/ui/progress";
import { ErrorAlert } from "@/components/ErrorAlert";
import { errorFromException, type AppError } from "@/lib/errors";
import {
  accountExportUrl,
  conversationExportUrl,
  downloadStream,
  imagesExportBody,
  isSearch,
  importArchive,
  type JobQuery,
  type Received,
} from "@/lib/history";

function megabytes(bytes: number): string {
  return bytes < 1e6 ? `${(bytes / 1e3).toFixed(1)} kB` : `${(bytes / 1e6).toFixed(1)} MB`;
}

/** Hand a Blob to the browser as a download. */
function save(blob: Blob, name: string): void {
  const url = URL.createObjectURL(blob);
  const link = document.createElement("a");
  link.href = url;
  link.download = name;
  link.click();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}

/** Export the search shown (every result) or, without a search, every image, as one zip, with its progress. */
export function ImagesExport({ root, query, fetchImpl }: { root: string; query: JobQuery; fetchImpl?: typeof fetch }) {
  const [received, setReceived] = useState<Received | null>(null);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<AppError | null>(null);
  const run = async () => {
    setBusy(true);
    setError(null);
    setReceived({ bytes: 0, jobs: null });
    try {
      const { blob, name } = await downloadStream(new URL("api/history/export", root).href, imagesExportBody(query), setReceived, fetchImpl);
      save(blob, name);
    } catch (err) {
      setError(errorFromException(err));
      setReceived(null);
    } finally {
      setBusy(false);
    }
  };
  return (
    <div className="grid gap-2">
      <div className="flex flex-wrap items-center gap-2">
        <Button variant="outline" size="sm" onClick={() => void run()} disabled={busy} data-testid="history-export">
          {busy ? <Loader2 className="animate-spin" /> : <FileArchive />}
          Export {isSearch(query) ? "these results" : "all images"} (.zip)
        </Button>
        {received ? (
          <span className="text-xs text-muted-foreground" data-testid="history-export-progress">
            {busy ? "Receiving" : "Saved"} {megabytes(received.bytes)}
            {received.jobs != null ? ` · ${received.jobs} job${received.jobs === 1 ? "" : "s"}` : ""}
          </span>
        ) : null}
      </div>
      {busy ? <Progress value={null} className="h-1" /> : null}
      <ErrorAlert error={error} onDismiss={() => setError(null)} />
    </div>
  );
}

/** A conversation's three export formats, as download links. */
export function ConversationExportLinks({ root, id }: { root: string; id: number }) {
  const formats = [
    ["markdown", "Markdown"],
    ["json", "JSON"],
    ["openai", "OpenAI"],
  ] as const;
  return (
    <span className="flex items-center gap-1 text-xs" data-testid="conversation-export">
      <Download className="size-3.5 text-muted-foreground" />
      {formats.map(([format, label]) => (
        <a key={format} href={conversationExportUrl(root, id, format)} download className="underline-offset-2 hover:underline">
          {label}
        </a>
      ))}
    </span>
  );
}

/** The whole account as one archive, and the import of one (from this server or another): all or nothing. */
export function AccountArchive({ root, onImported, fetchImpl }: { root: string; onImported: () => void; fetchImpl?: typeof fetch }) {
  const file = useRef<HTMLInputElement>(null);
  const [busy, setBusy] = useState(false);
  const [done, setDone] = useState<string | null>(null);
  const [error, setError] = useState<AppError | null>(null);
  const run = async () => {
    const chosen = file.current?.files?.[0];
    if (!chosen) {
      setError({ kind: "validation", title: "Choose a file", message: "Choose an account archive (.zip) first.", fields: {}, retryAfterS: null });
      return;
    }
    setBusy(true);
    setError(null);
    setDone(null);
    try {
      const counts = await importArchive(root, chosen, fetchImpl);
      setDone(`Imported ${Object.entries(counts).map(([what, n]) => `${n} ${what}`).join(", ")}.`);
      onImported();
    } catch (err) {
      setError(errorFromException(err));
    } finally {
      setBusy(false);
    }
  };
  return (
    <Card className="gap-3 py-3" data-testid="account-archive">
      <CardHeader className="px-3">
        <CardTitle className="text-sm">Your account</CardTitle>
        <CardDescription>Settings, images and conversations in one archive; import one from any Atelier into this account.</CardDescription>
      </CardHeader>
      <CardContent className="grid gap-2 px-3">
        <div className="flex flex-wrap items-center gap-2">
          <Button asChild variant="outline" size="sm">
            <a href={accountExportUrl(root)} download data-testid="account-export">
              <Download />
              Download my archive
            </a>
          </Button>
          <Input ref={file} type="file" accept=".zip,application/zip" aria-label="Account archive to import" className="max-w-72" data-testid="account-import-file" />
          <Button size="sm" onClick={() => void run()} disabled={busy} data-testid="account-import">
            {busy ? <Loader2 className="animate-spin" /> : <Upload />}
            Import
          </Button>
        </div>
        {done ? (
          <p className="text-xs text-muted-foreground" data-testid="account-import-done">
            {done}
          </p>
        ) : null}
        <ErrorAlert error={error} onDismiss={() => setError(null)} />
      </CardContent>
    </Card>
  );
}
