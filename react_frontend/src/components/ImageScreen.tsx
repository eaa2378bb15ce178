import { useEffect, useRef, useState } from "react";
import { Brush, Dices, Download, ImageIcon, ImageUp, Loader2, RotateCcw, Sparkles, Square, Wand2 } from "lucide-react";
import { Badge } from "@/components/ui/badge";
import { Button } from "@/components/ui/button";
import { Card, CardContent, CardDescription, CardHeader, CardTitle } from "@/components/ui/card";
import { Input } from "@/components/ui/input";
import { Progress } from "@/components/ui/progress";
import { Tabs, TabsList, TabsTrigger } from "@/components/ui/tabs";
import { Textarea } from "@/components/ui/textarea";
import { CheckField, ChoiceField, SliderField } from "@/components/Controls";
import { ControlNetPanel, ControlUnitsSummary, reuseControlUnits, useControlNet, type SetUnits } from "@/components/ControlNetPanel";
import { ErrorAlert } from "@/components/ErrorAlert";
import { Field } from "@/components/Field";
import { InitImageInput, loadInitImage, type InitImage } from "@/components/InitImageInput";
import { MaskEditor, type MaskEditorHandle } from "@/components/MaskEditor";
import { NumberInput } from "@/components/NumberInput";
import { OptionsSection } from "@/components/OptionsSection";
import { RefinerPanel, RefinerSummary } from "@/components/RefinerPanel";
import { imageCall, named, offered, upscalerChoices } from "@/lib/api";
import { errorFromException, type AppError } from "@/lib/errors";
import { downloadName, formatSeconds } from "@/lib/format";
import type { ControlUnit } from "@/lib/controlnet";
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
import type { ChoiceLists, ImageSettings, Mode, ModelCatalog } from "@/lib/types";

// "stop-sent": Stop was pressed and the server did not confirm it in time; the job may still finish there.
type Phase = "idle" | "running" | "stopping" | "done" | "cancelled" | "stop-sent" | "error";

interface Props {
  conn: AtelierConnection;
  settings: ImageSettings;
  onSettings: (update: (previous: ImageSettings) => ImageSettings) => void;
  mode: Mode;
  onMode: (mode: Mode) => void;
  /** The init image of img2img and inpaint (kept across modes, as A1111's "send to inpaint" does). */
  initImage: InitImage | null;
  onInitImage: (image: InitImage | null) => void;
  /** What /models lists (empty until it answered). */
  catalog: ModelCatalog;
  /** What /choices lists: samplers, resize modes, masked content, mask modes, upscalers (empty until it answered). */
  choices: ChoiceLists;
  /** The ControlNet units (sent when enabled), kept by the app so that Reuse and PNG Info can fill them in. */
  controlUnits: ControlUnit[];
  onControlUnits: SetUnits;
  onJobFinished?: () => void;
}

const MODE_LABELS: Record<Mode, string> = { txt2img: "txt2img", img2img: "img2img", inpaint: "Inpaint" };
const options = <T extends string | number>(labels: readonly string[], values?: readonly T[]) =>
  labels.map((label, index) => ({ label, value: (values ? values[index] : index) as T }));

/** A size the server takes: a multiple of 8 from 64 to 2048, nearest below the image's own. */
export function fitSize(pixels: number): number {
  return Math.min(2048, Math.max(64, Math.floor(pixels / 8) * 8));
}

export function ImageScreen({ conn, settings, onSettings, mode, onMode, initImage, onInitImage, catalog, choices, controlUnits, onControlUnits, onJobFinished }: Props) {
  const [phase, setPhase] = useState<Phase>("idle");
  const [view, setView] = useState<ImageJobView>(EMPTY_IMAGE_VIEW);
  const [progress, setProgress] = useState<JobProgress>(INITIAL_PROGRESS);
  const [previews, setPreviews] = useState(0);
  const [error, setError] = useState<AppError | null>(null);
  const job = useRef<RunningJob | null>(null);
  const maskEditor = useRef<MaskEditorHandle>(null);
  const controlnet = useControlNet(conn, controlUnits);

  const [idea, setIdea] = useState("");
  const [assisting, setAssisting] = useState(false);
  const [assistError, setAssistError] = useState<AppError | null>(null);
  const assistJob = useRef<RunningJob | null>(null);

  useEffect(() => () => job.current?.stop(), []);

  const set = <K extends keyof ImageSettings>(key: K, value: ImageSettings[K]) => onSettings((s) => ({ ...s, [key]: value }));
  const fieldError = (name: keyof ImageSettings | "init_image" | "mask") => (error?.kind === "validation" || error?.kind === "quota" ? error.fields[name] : undefined);
  const busy = phase === "running" || phase === "stopping";

  async function generate() {
    if (busy) return;
    setError(null);
    let mask: Blob | null = null;
    try {
      mask = mode === "inpaint" ? ((await maskEditor.current?.toPng()) ?? null) : null;
    } catch (err) {
      setError(errorFromException(err));
      return;
    }
    const control = await controlnet.prepare();
    if (!control) return; // a unit's picture could not be sent: the unit says why
    const call = imageCall(mode, settings, { initImage: initImage?.file ?? null, mask, controlnet: control.payload });
    if ("error" in call) {
      setError(call.error); // nothing was sent: the alert and the field say what is missing
      return;
    }
    setView(EMPTY_IMAGE_VIEW);
    setProgress(INITIAL_PROGRESS);
    setPreviews(0);
    setPhase("running");
    let stoppedThere = false; // stopped by someone else (an admin, the account screen): the server's last word says so
    const running = conn.stream(call.endpoint, call.payload, {
      onData: (data) => {
        stoppedThere ||= (data[3] as { status?: string } | null)?.status === "cancelled";
        if (!isUnchanged(data[0]) && (data[0] as { url?: string } | null)?.url) setPreviews((n) => n + 1);
        setView((previous) => reduceImage(previous, data));
      },
      onProgress: setProgress,
    });
    job.current = running;
    const outcome = await running.done;
    job.current = null;
    if (outcome.kind === "error") {
      setError(controlnet.refused(outcome.error, control.sent));
      // Refused before it started (validation, limits, a full queue): nothing ran, the alert says why.
      setPhase(outcome.data === null ? "idle" : "error");
    } else {
      const unconfirmed = outcome.kind === "cancelled" && outcome.unconfirmed && !stoppedThere;
      setPhase(unconfirmed ? "stop-sent" : outcome.kind === "cancelled" || stoppedThere ? "cancelled" : "done");
    }
    onJobFinished?.();
    if (outcome.kind === "complete") controlnet.afterJob(); // the first job may have built the tiny ControlNets
  }

  /** A1111's "Send to img2img / inpaint": a result becomes the init image of the next job. */
  async function sendResult(url: string, name: string, target: Mode) {
    try {
      const response = await fetch(url, { credentials: "include" });
      if (!response.ok) throw new Error(`Could not fetch the result (${response.status}).`);
      const image = await loadInitImage(await response.blob(), name);
      onInitImage(image);
      onSettings((s) => ({ ...s, width: fitSize(image.width), height: fitSize(image.height) }));
      onMode(target);
    } catch (err) {
      setError(errorFromException(err));
    }
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
            <Tabs value={mode} onValueChange={(v) => onMode(v as Mode)}>
              <TabsList className="w-full">
                {(Object.keys(MODE_LABELS) as Mode[]).map((m) => (
                  <TabsTrigger key={m} value={m} data-testid={`mode-${m}`}>
                    {MODE_LABELS[m]}
                  </TabsTrigger>
                ))}
              </TabsList>
            </Tabs>
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

        {mode !== "txt2img" ? (
          <Card data-testid="init-image-card">
            <CardHeader>
              <CardTitle>{mode === "inpaint" ? "Image and mask" : "Init image"}</CardTitle>
              <CardDescription>
                {mode === "inpaint" ? "Paint over what the model should repaint; the rest comes back untouched." : "The image to start from; denoising strength says how far to move away from it."}
              </CardDescription>
            </CardHeader>
            <CardContent className="grid grid-cols-2 gap-4">
              <div className="col-span-2">
                <InitImageInput
                  id="init-image"
                  image={initImage}
                  error={fieldError("init_image")}
                  onImage={(image) => {
                    onInitImage(image);
                    // A1111's habit: the output size follows the init image until changed.
                    if (image) onSettings((s) => ({ ...s, width: fitSize(image.width), height: fitSize(image.height) }));
                  }}
                />
              </div>
              {mode === "inpaint" && initImage ? (
                <div className="col-span-2 grid gap-1.5">
                  <MaskEditor ref={maskEditor} src={initImage.url} width={initImage.width} height={initImage.height} />
                  {fieldError("mask") ? (
                    <p className="text-xs text-destructive" data-testid="mask-error">
                      {fieldError("mask")}
                    </p>
                  ) : null}
                </div>
              ) : null}
              <SliderField id="denoising-strength" label="Denoising strength" className="col-span-2" min={0} max={1} step={0.01} integer={false} value={settings.denoising_strength} onValue={(v) => set("denoising_strength", v)} error={fieldError("denoising_strength")} />
              <ChoiceField id="resize-mode" label="Resize mode" value={settings.resize_mode} options={offered(choices.resize_modes, settings.resize_mode)} onValue={(v) => set("resize_mode", v)} error={fieldError("resize_mode")} />
              {mode === "inpaint" ? (
                <>
                  <ChoiceField
                    id="mask-mode"
                    label="Mask mode"
                    value={settings.inpainting_mask_invert}
                    options={offered(choices.mask_modes, settings.inpainting_mask_invert)}
                    onValue={(v) => set("inpainting_mask_invert", v)}
                    error={fieldError("inpainting_mask_invert")}
                  />
                  <SliderField id="mask-blur" label="Mask blur" min={0} max={64} step={1} value={settings.mask_blur} onValue={(v) => set("mask_blur", v)} error={fieldError("mask_blur")} hint={`${settings.mask_blur} px`} />
                  <ChoiceField id="masked-content" label="Masked content" value={settings.inpainting_fill} options={offered(choices.inpainting_fills, settings.inpainting_fill)} onValue={(v) => set("inpainting_fill", v)} error={fieldError("inpainting_fill")} />
                  <ChoiceField
                    id="inpaint-area"
                    label="Inpaint area"
                    value={settings.inpaint_full_res ? "masked" : "whole"}
                    options={options<string>(["Whole picture", "Only masked"], ["whole", "masked"])}
                    onValue={(v) => set("inpaint_full_res", v === "masked")}
                    error={fieldError("inpaint_full_res")}
                  />
                  <SliderField
                    id="inpaint-padding"
                    label="Only masked padding"
                    min={0}
                    max={256}
                    step={4}
                    value={settings.inpaint_full_res_padding}
                    onValue={(v) => set("inpaint_full_res_padding", v)}
                    error={fieldError("inpaint_full_res_padding")}
                    hint={`${settings.inpaint_full_res_padding} px`}
                  />
                </>
              ) : null}
            </CardContent>
          </Card>
        ) : null}

        <Card>
          <CardHeader>
            <CardTitle>Settings</CardTitle>
          </CardHeader>
          <CardContent className="grid grid-cols-2 gap-4">
            <ChoiceField
              id="model"
              label="Checkpoint"
              value={settings.model}
              options={[{ value: "", label: "Default" }, ...catalog.models.map((name) => ({ value: name, label: name }))]}
              onValue={(v) => set("model", v)}
              error={fieldError("model")}
            />
            <ChoiceField
              id="vae"
              label="VAE"
              value={settings.vae}
              options={[{ value: "", label: "The checkpoint's own" }, ...catalog.vaes.map((name) => ({ value: name, label: name }))]}
              onValue={(v) => set("vae", v)}
              error={fieldError("vae")}
            />
            <Field id="width" label="Width" error={fieldError("width")} hint="px, ×8">
              <NumberInput id="width" min={64} max={2048} step={8} value={settings.width} onValue={(v) => set("width", v)} aria-invalid={!!fieldError("width")} />
            </Field>
            <Field id="height" label="Height" error={fieldError("height")} hint="px, ×8">
              <NumberInput id="height" min={64} max={2048} step={8} value={settings.height} onValue={(v) => set("height", v)} aria-invalid={!!fieldError("height")} />
            </Field>
            <SliderField id="steps" label="Steps" className="col-span-2 sm:col-span-1" min={1} max={150} step={1} value={settings.steps} onValue={(v) => set("steps", v)} error={fieldError("steps")} />
            <SliderField id="cfg" label="CFG scale" className="col-span-2 sm:col-span-1" min={0} max={30} step={0.5} integer={false} value={settings.cfg_scale} onValue={(v) => set("cfg_scale", v)} error={fieldError("cfg_scale")} />
            <ChoiceField id="sampler" label="Sampler" value={settings.sampler} options={offered(named(choices.samplers), settings.sampler)} onValue={(v) => set("sampler", v)} error={fieldError("sampler")} />
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
            {mode === "txt2img" ? (
              <OptionsSection
                defaultOpen={settings.enable_hr}
                toggleTestId="hires-toggle"
                header={<CheckField id="enable-hr" label="Hires. fix" checked={settings.enable_hr} onChecked={(v) => set("enable_hr", v)} />}
              >
                <ChoiceField
                  id="hr-upscaler"
                  label="Upscaler"
                  value={settings.hr_upscaler}
                  options={offered(named(upscalerChoices(choices, catalog)), settings.hr_upscaler)}
                  onValue={(v) => set("hr_upscaler", v)}
                  error={fieldError("hr_upscaler")}
                />
                <SliderField id="hr-scale" label="Upscale by" min={1} max={4} step={0.05} integer={false} value={settings.hr_scale} onValue={(v) => set("hr_scale", v)} error={fieldError("hr_scale")} hint={`${settings.hr_scale}× → ${fitSize(settings.width * settings.hr_scale)}×${fitSize(settings.height * settings.hr_scale)}`} />
                <SliderField id="hr-steps" label="Hires steps" min={0} max={150} step={1} value={settings.hr_second_pass_steps} onValue={(v) => set("hr_second_pass_steps", v)} error={fieldError("hr_second_pass_steps")} hint={settings.hr_second_pass_steps ? String(settings.hr_second_pass_steps) : "same as steps"} />
                <SliderField id="hr-denoising" label="Denoising strength" min={0} max={1} step={0.01} integer={false} value={settings.denoising_strength} onValue={(v) => set("denoising_strength", v)} error={fieldError("denoising_strength")} />
              </OptionsSection>
            ) : null}
            <RefinerPanel mode={mode} settings={settings} catalog={catalog} set={set} fieldError={fieldError} />
          </CardContent>
        </Card>

        <ControlNetPanel conn={conn} state={controlnet} units={controlUnits} onUnits={onControlUnits} mode={mode} checkpoint={settings.model} width={settings.width} height={settings.height} initImage={initImage} />
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
                  {phase === "stop-sent" ? (
                    <span data-testid="cancelled-note">
                      Stop sent, but the server has not confirmed it: the job may still finish. History shows how it ended.
                    </span>
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
                <ControlUnitsSummary value={info.controlnet} />
                <RefinerSummary record={info} />
              </div>
              <Button variant="outline" size="sm" onClick={() => {
                  onSettings((s) => ({ ...s, ...settingsFromInfo(info) }));
                  void reuseControlUnits(info.controlnet, conn.root, onControlUnits);
                }} data-testid="reuse-settings">
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
                        {item.image.url
                          ? (["img2img", "inpaint"] as const).map((target) => (
                              <Button
                                key={target}
                                variant="ghost"
                                size="icon"
                                className="size-7"
                                title={`Send to ${target}`}
                                aria-label={`Send to ${target}`}
                                onClick={() => void sendResult(item.image.url!, downloadName(item.image.url, `atelier-${info.job_id}-${index}.png`), target)}
                                data-testid={`send-result-${target}`}
                              >
                                {target === "img2img" ? <ImageUp /> : <Brush />}
                              </Button>
                            ))
                          : null}
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
            : phase === "stop-sent"
              ? "Stop sent"
              : "Failed";
  const variant =
    phase === "done" ? "success" : phase === "error" ? "destructive" : phase === "cancelled" || phase === "stop-sent" ? "warning" : "secondary";
  return (
    <Badge variant={variant} data-testid="job-status" data-phase={phase}>
      {label}
    </Badge>
  );
}
