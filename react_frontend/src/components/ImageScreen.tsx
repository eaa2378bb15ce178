import { useEffect, useRef, useState } from "react";
import { Dices, Download, ImageIcon, Loader2, RotateCcw, Sparkles, Square, Wand2 } from "lucide-react";
import { Badge } from "@/components/ui/badge";
import { Button } from "@/components/ui/button";
import { Card, CardContent, CardDescription, CardHeader, CardTitle } from "@/components/ui/card";
import { Input } from "@/components/ui/input";
import { Progress } from "@/components/ui/progress";
import { Select, SelectContent, SelectItem, SelectTrigger, SelectValue } from "@/components/ui/select";
import { Slider } from "@/components/ui/slider";
import { Textarea } from "@/components/ui/textarea";
import { ErrorAlert } from "@/components/ErrorAlert";
import { Field } from "@/components/Field";
import { NumberInput } from "@/components/NumberInput";
import type { AppError } from "@/lib/errors";
import { downloadName, formatSeconds } from "@/lib/format";
import type { AtelierConnection, RunningJob } from "@/lib/gradio";
import {
  describeQueue,
  EMPTY_IMAGE_VIEW,
  INITIAL_PROGRESS,
  isUnchanged,
  parseStep,
  percentDone,
  reduceImage,
  seedOf,
  settingsFromInfo,
  type ImageJobView,
  type JobProgress,
} from "@/lib/stream";
import { SAMPLERS, type ImageSettings } from "@/lib/types";

type Phase = "idle" | "running" | "stopping" | "done" | "cancelled" | "error";

interface Props {
  conn: AtelierConnection;
  settings: ImageSettings;
  onSettings: (update: (previous: ImageSettings) => ImageSettings) => void;
  onJobFinished?: () => void;
}

export function ImageScreen({ conn, settings, onSettings, onJobFinished }: Props) {
  const [phase, setPhase] = useState<Phase>("idle");
  const [view, setView] = useState<ImageJobView>(EMPTY_IMAGE_VIEW);
  const [progress, setProgress] = useState<JobProgress>(INITIAL_PROGRESS);
  const [previews, setPreviews] = useState(0);
  const [error, setError] = useState<AppError | null>(null);
  const job = useRef<RunningJob | null>(null);

  const [idea, setIdea] = useState("");
  const [assisting, setAssisting] = useState(false);
  const [assistError, setAssistError] = useState<AppError | null>(null);
  const assistJob = useRef<RunningJob | null>(null);

  useEffect(() => () => job.current?.stop(), []);

  const set = <K extends keyof ImageSettings>(key: K, value: ImageSettings[K]) => onSettings((s) => ({ ...s, [key]: value }));
  const fieldError = (name: keyof ImageSettings) => (error?.kind === "validation" || error?.kind === "quota" ? error.fields[name] : undefined);
  const busy = phase === "running" || phase === "stopping";

  async function generate() {
    if (busy) return;
    setError(null);
    setView(EMPTY_IMAGE_VIEW);
    setProgress(INITIAL_PROGRESS);
    setPreviews(0);
    setPhase("running");
    const running = conn.stream("/generate_image", { ...settings }, {
      onData: (data) => {
        if (!isUnchanged(data[0]) && (data[0] as { url?: string } | null)?.url) setPreviews((n) => n + 1);
        setView((previous) => reduceImage(previous, data));
      },
      onProgress: setProgress,
    });
    job.current = running;
    const outcome = await running.done;
    job.current = null;
    if (outcome.kind === "error") {
      setError(outcome.error);
      // Refused before it started (validation, limits, a full queue): nothing ran, the alert says why.
      setPhase(outcome.data === null ? "idle" : "error");
    } else {
      setPhase(outcome.kind === "cancelled" ? "cancelled" : "done");
    }
    onJobFinished?.();
  }

  function stop() {
    if (!job.current) return;
    setPhase("stopping");
    job.current.stop();
  }

  async function assist() {
    if (assisting) {
      assistJob.current?.stop();
      return;
    }
    setAssistError(null);
    setAssisting(true);
    const running = conn.stream("/assist_prompt", { idea }, {
      onData: ([prompt, negative]) =>
        onSettings((s) => ({
          ...s,
          prompt: typeof prompt === "string" ? prompt : s.prompt,
          negative_prompt: typeof negative === "string" ? negative : s.negative_prompt,
        })),
    });
    assistJob.current = running;
    const outcome = await running.done;
    assistJob.current = null;
    if (outcome.kind === "error") setAssistError(outcome.error);
    setAssisting(false);
  }

  const stepInfo = parseStep(view.progressText);
  const percent = phase === "done" ? 100 : percentDone(progress, view.progressText);
  const shown = view.gallery[0]?.image ?? view.preview;
  const info = view.info;

  return (
    <div className="grid gap-4 lg:grid-cols-[minmax(0,5fr)_minmax(0,6fr)]">
      <div className="grid content-start gap-4">
        <Card>
          <CardHeader>
            <CardTitle>Prompt</CardTitle>
            <CardDescription>Describe the image; or write an idea and let the text model write the prompt.</CardDescription>
          </CardHeader>
          <CardContent className="grid gap-4">
            <form
              className="flex gap-2"
              onSubmit={(e) => {
                e.preventDefault();
                void assist();
              }}
            >
              <Input id="idea" placeholder="Idea: a fox in the snow" value={idea} onChange={(e) => setIdea(e.target.value)} aria-label="Idea" />
              <Button type="submit" variant="secondary" disabled={!assisting && !idea.trim()} data-testid="assist">
                {assisting ? <Loader2 className="animate-spin" /> : <Wand2 />}
                {assisting ? "Stop" : "Write prompt"}
              </Button>
            </form>
            <ErrorAlert error={assistError} onDismiss={() => setAssistError(null)} />
            <Field id="prompt" label="Prompt" error={fieldError("prompt")}>
              <Textarea
                id="prompt"
                rows={3}
                placeholder="a watercolor fox in a misty forest"
                value={settings.prompt}
                aria-invalid={!!fieldError("prompt")}
                onChange={(e) => set("prompt", e.target.value)}
                onKeyDown={(e) => {
                  if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) void generate();
                }}
              />
            </Field>
            <Field id="negative-prompt" label="Negative prompt" error={fieldError("negative_prompt")}>
              <Textarea id="negative-prompt" rows={2} placeholder="blurry, low quality" value={settings.negative_prompt} onChange={(e) => set("negative_prompt", e.target.value)} />
            </Field>
            <div className="flex flex-wrap gap-2">
              <Button onClick={() => void generate()} disabled={busy} data-testid="generate" className="min-w-32 flex-1 sm:flex-none">
                {busy ? <Loader2 className="animate-spin" /> : <Sparkles />}
                Generate
              </Button>
              <Button variant="destructive" onClick={stop} disabled={phase !== "running"} data-testid="stop">
                <Square />
                Stop
              </Button>
            </div>
          </CardContent>
        </Card>

        <Card>
          <CardHeader>
            <CardTitle>Settings</CardTitle>
          </CardHeader>
          <CardContent className="grid grid-cols-2 gap-4">
            <Field id="width" label="Width" error={fieldError("width")} hint="px, ×8">
              <NumberInput id="width" min={64} max={2048} step={8} value={settings.width} onValue={(v) => set("width", v)} aria-invalid={!!fieldError("width")} />
            </Field>
            <Field id="height" label="Height" error={fieldError("height")} hint="px, ×8">
              <NumberInput id="height" min={64} max={2048} step={8} value={settings.height} onValue={(v) => set("height", v)} aria-invalid={!!fieldError("height")} />
            </Field>
            <Field id="steps" label="Steps" error={fieldError("steps")} hint={String(settings.steps)} className="col-span-2 sm:col-span-1">
              <div className="flex items-center gap-3">
                <Slider aria-label="Steps" min={1} max={150} step={1} value={[Math.min(150, settings.steps)]} onValueChange={([v]) => set("steps", v)} />
                <NumberInput id="steps" className="w-24" min={1} step={1} value={settings.steps} onValue={(v) => set("steps", v)} aria-invalid={!!fieldError("steps")} />
              </div>
            </Field>
            <Field id="cfg" label="CFG scale" error={fieldError("cfg_scale")} hint={String(settings.cfg_scale)} className="col-span-2 sm:col-span-1">
              <div className="flex items-center gap-3">
                <Slider aria-label="CFG scale" min={0} max={30} step={0.5} value={[settings.cfg_scale]} onValueChange={([v]) => set("cfg_scale", v)} />
                <NumberInput id="cfg" className="w-24" integer={false} min={0} step={0.5} value={settings.cfg_scale} onValue={(v) => set("cfg_scale", v)} aria-invalid={!!fieldError("cfg_scale")} />
              </div>
            </Field>
            <Field id="sampler" label="Sampler" error={fieldError("sampler")}>
              <Select value={settings.sampler} onValueChange={(v) => set("sampler", v)}>
                <SelectTrigger id="sampler" aria-invalid={!!fieldError("sampler")}>
                  <SelectValue />
                </SelectTrigger>
                <SelectContent>
                  {SAMPLERS.map((name) => (
                    <SelectItem key={name} value={name}>
                      {name}
                    </SelectItem>
                  ))}
                </SelectContent>
              </Select>
            </Field>
            <Field id="batch-count" label="Batch count" error={fieldError("batch_count")}>
              <NumberInput id="batch-count" min={1} step={1} value={settings.batch_count} onValue={(v) => set("batch_count", v)} aria-invalid={!!fieldError("batch_count")} />
            </Field>
            <Field id="seed" label="Seed" error={fieldError("seed")} hint="-1 = random" className="col-span-2">
              <div className="flex gap-2">
                <NumberInput id="seed" min={-1} step={1} value={settings.seed} onValue={(v) => set("seed", v)} aria-invalid={!!fieldError("seed")} />
                <Button variant="outline" onClick={() => set("seed", -1)} title="Random seed" aria-label="Random seed">
                  <Dices />
                </Button>
              </div>
            </Field>
          </CardContent>
        </Card>
      </div>

      <div className="grid content-start gap-4">
        <ErrorAlert error={error} onDismiss={() => setError(null)} />
        <Card>
          <CardHeader className="flex-row items-center justify-between">
            <CardTitle>Live preview</CardTitle>
            <StatusBadge phase={phase} progress={progress} cached={!!info.cached} />
          </CardHeader>
          <CardContent className="grid gap-3">
            <div
              className="flex aspect-square max-h-[28rem] w-full items-center justify-center overflow-hidden rounded-lg border bg-muted/40"
              data-testid="preview-area"
              data-preview-count={previews}
            >
              {shown?.url ? (
                <img
                  src={shown.url}
                  alt={view.gallery.length ? "Result" : "Live preview"}
                  data-testid="preview"
                  data-kind={view.gallery.length ? "result" : "live"}
                  className="h-full w-full object-contain [image-rendering:pixelated]"
                />
              ) : (
                <div className="flex flex-col items-center gap-2 text-sm text-muted-foreground">
                  {busy ? <Loader2 className="size-8 animate-spin" /> : <ImageIcon className="size-8" />}
                  {busy ? describeQueue(progress) : "Your image appears here."}
                </div>
              )}
            </div>
            {phase !== "idle" ? (
              <div className="grid gap-1.5">
                <Progress value={busy && percent == null ? null : percent ?? 0} />
                <div className="flex flex-wrap justify-between gap-2 text-sm text-muted-foreground">
                  <span data-testid="progress-text">{view.progressText || (busy && progress.phase !== "queued" ? describeQueue(progress) : "")}</span>
                  {busy && progress.phase === "queued" ? <span data-testid="queue-position">{describeQueue(progress)}</span> : null}
                  {phase === "cancelled" ? (
                    <span data-testid="cancelled-note">Stopped{stepInfo ? ` at step ${stepInfo.step}/${stepInfo.total}` : ""}.</span>
                  ) : null}
                </div>
              </div>
            ) : null}
          </CardContent>
        </Card>

        {view.gallery.length > 0 ? (
          <Card data-testid="results" data-job-id={info.job_id}>
            <CardHeader className="flex-row flex-wrap items-center justify-between gap-2">
              <div className="grid gap-1">
                <CardTitle>Result</CardTitle>
                <CardDescription>
                  Job {info.job_id} · seed {info.seed} · {info.width}×{info.height}, {info.steps} steps, {info.sampler}
                  {info.duration_s != null ? ` · ${formatSeconds(info.duration_s)}` : ""}
                </CardDescription>
              </div>
              <Button variant="outline" size="sm" onClick={() => onSettings((s) => ({ ...s, ...settingsFromInfo(info) }))} data-testid="reuse-settings">
                <RotateCcw />
                Reuse settings
              </Button>
            </CardHeader>
            <CardContent className="grid grid-cols-2 gap-3 sm:grid-cols-3">
              {view.gallery.map((item, index) => {
                const seed = seedOf(info, index, item.caption);
                return (
                  <figure key={item.image.url ?? index} className="grid gap-2" data-testid="result-item">
                    <img src={item.image.url ?? ""} alt={item.caption ?? `Result ${index + 1}`} className="aspect-square w-full rounded-md border object-cover [image-rendering:pixelated]" data-testid="result-image" />
                    <figcaption className="flex flex-wrap items-center justify-between gap-1 text-xs text-muted-foreground">
                      <span data-testid="result-seed">seed {seed ?? "?"}</span>
                      <span className="flex gap-1">
                        {seed != null ? (
                          <Button variant="ghost" size="sm" className="h-7 px-2" onClick={() => set("seed", seed)} title="Use this seed">
                            <Dices />
                            Use seed
                          </Button>
                        ) : null}
                        <Button variant="ghost" size="icon" className="size-7" asChild>
                          <a href={item.image.url ?? ""} download={downloadName(item.image.url, `atelier-${info.job_id}-${index}.png`)} title="Download PNG" aria-label="Download PNG" data-testid="download">
                            <Download />
                          </a>
                        </Button>
                      </span>
                    </figcaption>
                  </figure>
                );
              })}
            </CardContent>
          </Card>
        ) : null}
      </div>
    </div>
  );
}

function StatusBadge({ phase, progress, cached }: { phase: Phase; progress: JobProgress; cached: boolean }) {
  if (phase === "idle") return null;
  const label =
    phase === "running"
      ? progress.phase === "queued"
        ? "Queued"
        : progress.phase === "connecting"
          ? "Sending"
          : "Running"
      : phase === "stopping"
        ? "Stopping…"
        : phase === "done"
          ? cached
            ? "Done (from cache)"
            : "Done"
          : phase === "cancelled"
            ? "Cancelled"
            : "Failed";
  const variant = phase === "done" ? "success" : phase === "error" ? "destructive" : phase === "cancelled" ? "warning" : "secondary";
  return (
    <Badge variant={variant} data-testid="job-status" data-phase={phase}>
      {label}
    </Badge>
  );
}
