import { useCallback, useEffect, useState } from "react";
import { Check, Copy, KeyRound, Loader2, RefreshCw, Square, Trash2 } from "lucide-react";
import { Badge } from "@/components/ui/badge";
import { Button } from "@/components/ui/button";
import { Card, CardContent, CardDescription, CardHeader, CardTitle } from "@/components/ui/card";
import { Input } from "@/components/ui/input";
import { Label } from "@/components/ui/label";
import { ErrorAlert } from "@/components/ErrorAlert";
import { createKey, listJobs, listKeys, revokeKey, stopJob, type ApiKey, type CreatedKey, type RunningJob } from "@/lib/account";
import { errorFromException, type AppError } from "@/lib/errors";
import { formatWhen } from "@/lib/format";

interface Props {
  root: string;
  /** Who is logged in; null in single-user mode, where keys are not needed. */
  username: string | null;
  refreshKey: number;
}

const SOURCES: Record<string, string> = { web: "UI", openai: "OpenAI API", a1111: "A1111 API" };

/** Your API keys (made, shown once, copied; listed with their last use; revoked) and your running jobs (stopped). */
export function AccountScreen({ root, username, refreshKey }: Props) {
  const [keys, setKeys] = useState<ApiKey[]>([]);
  const [jobs, setJobs] = useState<RunningJob[]>([]);
  const [name, setName] = useState("");
  const [created, setCreated] = useState<CreatedKey | null>(null);
  const [copied, setCopied] = useState(false);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<AppError | null>(null);

  const refresh = useCallback(async () => {
    try {
      const [foundKeys, foundJobs] = await Promise.all([username ? listKeys(root) : Promise.resolve([]), listJobs(root)]);
      setKeys(foundKeys);
      setJobs(foundJobs);
      setError(null);
    } catch (err) {
      setError(errorFromException(err));
    }
  }, [root, username]);

  useEffect(() => {
    void refresh();
  }, [refresh, refreshKey]);

  async function act(action: () => Promise<void>) {
    setBusy(true);
    try {
      await action();
      setError(null);
    } catch (err) {
      setError(errorFromException(err));
    } finally {
      setBusy(false);
      void refresh();
    }
  }

  return (
    <div className="grid gap-4 lg:grid-cols-2">
      {error ? <ErrorAlert error={error} className="lg:col-span-2" /> : null}
      <Card>
        <CardHeader>
          <CardTitle className="flex items-center gap-2">
            <KeyRound className="size-4" /> API keys
          </CardTitle>
          <CardDescription>
            A key stands for you on the OpenAI-compatible <code>/v1</code>, the AUTOMATIC1111-compatible <code>/sdapi/v1</code>, MCP and{" "}
            <code>/api</code>: send <code>Authorization: Bearer &lt;key&gt;</code>. It is shown once.
          </CardDescription>
        </CardHeader>
        <CardContent className="grid gap-3">
          {username ? (
            <form
              className="flex items-end gap-2"
              onSubmit={(event) => {
                event.preventDefault();
                void act(async () => {
                  setCreated(await createKey(root, name));
                  setCopied(false);
                  setName("");
                });
              }}
            >
              <div className="grid flex-1 gap-1">
                <Label htmlFor="key-name">Name of a new key</Label>
                <Input id="key-name" data-testid="key-name" placeholder="laptop" value={name} maxLength={64} onChange={(e) => setName(e.target.value)} />
              </div>
              <Button type="submit" disabled={busy} data-testid="key-create">
                {busy ? <Loader2 className="animate-spin" /> : null} Create key
              </Button>
            </form>
          ) : (
            <p className="text-sm text-muted-foreground" data-testid="no-accounts">
              This server has no accounts, so its APIs need no key here (it serves this machine only).
            </p>
          )}
          {created ? (
            <div className="grid gap-1 rounded-md border border-primary/40 bg-primary/5 p-3" data-testid="key-shown">
              <span className="text-sm">Your new key {created.name}: copy it now, it is not shown again.</span>
              <div className="flex items-center gap-2">
                <code className="flex-1 break-all text-xs" data-testid="key-value">
                  {created.key}
                </code>
                <Button
                  variant="outline"
                  size="sm"
                  aria-label="Copy the key"
                  onClick={() => void navigator.clipboard?.writeText(created.key).then(() => setCopied(true))}
                >
                  {copied ? <Check /> : <Copy />} {copied ? "Copied" : "Copy"}
                </Button>
              </div>
            </div>
          ) : null}
          <ul className="grid gap-2" data-testid="key-list">
            {keys.map((key) => (
              <li key={key.name} className="flex items-center justify-between gap-2 rounded-md border p-2 text-sm">
                <div className="grid">
                  <span className="font-medium">{key.name}</span>
                  <span className="text-xs text-muted-foreground">
                    {key.prefix} · made {formatWhen(key.created_at)} · last used {key.last_used_at ? formatWhen(key.last_used_at) : "never"}
                  </span>
                </div>
                <Button
                  variant="ghost"
                  size="sm"
                  aria-label={`Revoke ${key.name}`}
                  disabled={busy}
                  onClick={() => void act(() => revokeKey(root, key.name))}
                >
                  <Trash2 /> Revoke
                </Button>
              </li>
            ))}
            {username && keys.length === 0 ? <li className="text-sm text-muted-foreground">No keys yet.</li> : null}
          </ul>
        </CardContent>
      </Card>
      <Card>
        <CardHeader className="flex flex-row items-start justify-between gap-2">
          <div className="grid gap-1.5">
            <CardTitle>Running jobs</CardTitle>
            <CardDescription>Your jobs running now, from this app, the Gradio UI or the APIs; stop any of them here.</CardDescription>
          </div>
          <Button variant="ghost" size="icon" aria-label="Refresh" onClick={() => void refresh()}>
            <RefreshCw />
          </Button>
        </CardHeader>
        <CardContent>
          <ul className="grid gap-2" data-testid="job-list">
            {jobs.map((job) => (
              <li key={job.ref} className="flex items-center justify-between gap-2 rounded-md border p-2 text-sm">
                <div className="grid min-w-0">
                  <span className="truncate font-medium">{job.description || job.kind}</span>
                  <span className="flex items-center gap-1 text-xs text-muted-foreground">
                    <Badge variant="secondary">{job.kind}</Badge>
                    <Badge variant="outline">{SOURCES[job.source] ?? job.source}</Badge>
                    {job.status} · {Math.round(job.progress * 100)} %
                  </span>
                </div>
                <Button variant="destructive" size="sm" disabled={busy} onClick={() => void act(() => stopJob(root, job.ref))}>
                  <Square /> Stop
                </Button>
              </li>
            ))}
            {jobs.length === 0 ? <li className="text-sm text-muted-foreground">Nothing running.</li> : null}
          </ul>
        </CardContent>
      </Card>
    </div>
  );
}
