/**
 * Pure stream handling, independent of the network: how Gradio's streamed messages become screen state.
 *
 * Each streamed `data` message replaces the previous value of every output, except outputs sent as
 * `{"__type__": "update"}` with no value (Gradio's "unchanged", from gr.skip()), which keep theirs.
 */
import { errorFromException, errorFromStatus, type AppError } from "./errors";
import { refinerFromRecord } from "./refiner";
import type { ChatUpdate, FileData, GalleryItem, ImageInfo, ImageSettings } from "./types";

export interface GradioMessage {
  type: string;
  stage?: string;
  data?: unknown;
  message?: unknown;
  code?: string | null;
  broken?: boolean;
  position?: number | null;
  size?: number | null;
  eta?: number | null;
  original_msg?: string;
  progress_data?: { index: number | null; length: number | null; progress: number | null; unit?: string | null; desc: string | null }[] | null;
}

export function isUnchanged(value: unknown): boolean {
  return (
    !!value &&
    typeof value === "object" &&
    (value as Record<string, unknown>).__type__ === "update" &&
    !("value" in (value as Record<string, unknown>))
  );
}

/** The next value of one output: the previous one when the update says "unchanged". */
export function nextValue<T>(previous: T, incoming: unknown): T {
  if (isUnchanged(incoming)) return previous;
  if (incoming && typeof incoming === "object" && (incoming as Record<string, unknown>).__type__ === "update") {
    return (incoming as { value: T }).value;
  }
  return incoming as T;
}

// ---------------------------------------------------------------------------------------------- progress

export type JobPhase = "connecting" | "queued" | "running";

export interface JobProgress {
  phase: JobPhase;
  /** Jobs ahead of this one (0: next in line). */
  position: number | null;
  queueSize: number | null;
  etaS: number | null;
  step: number | null;
  total: number | null;
  desc: string | null;
}

export const INITIAL_PROGRESS: JobProgress = {
  phase: "connecting",
  position: null,
  queueSize: null,
  etaS: null,
  step: null,
  total: null,
  desc: null,
};

/** Fold one Gradio status message into the job's progress (queue position, ETA, step counts). */
export function nextProgress(previous: JobProgress, status: GradioMessage): JobProgress {
  const progressData = status.progress_data?.[0];
  if (progressData && progressData.index != null) {
    return {
      ...previous,
      phase: "running",
      position: null,
      step: progressData.index,
      total: progressData.length ?? previous.total,
      desc: progressData.desc ?? previous.desc,
    };
  }
  if (status.stage === "generating" || status.stage === "streaming" || status.original_msg === "process_starts") {
    return { ...previous, phase: "running", position: null };
  }
  if (status.stage === "pending" && status.position != null) {
    return {
      ...previous,
      phase: "queued",
      position: status.position,
      queueSize: status.size ?? previous.queueSize,
      etaS: status.eta ?? previous.etaS,
    };
  }
  return previous;
}

/** "step 3/20" inside a progress line, e.g. "Job 3: step 3/20 · 2.0 s". */
export function parseStep(text: string | null | undefined): { step: number; total: number } | null {
  const match = /step (\d+)\s*\/\s*(\d+)/.exec(text ?? "");
  return match ? { step: Number(match[1]), total: Number(match[2]) } : null;
}

/** Percent done (0..100), or null while unknown. */
export function percentDone(progress: JobProgress, progressText?: string): number | null {
  const fromText = parseStep(progressText);
  const step = progress.step ?? fromText?.step ?? null;
  const total = progress.total ?? fromText?.total ?? null;
  if (step == null || !total) return null;
  return Math.round((100 * step) / total);
}

export function describeQueue(progress: JobProgress): string {
  if (progress.phase === "connecting") return "Sending…";
  if (progress.phase === "running") return "Running";
  const eta = progress.etaS != null && Number.isFinite(progress.etaS) ? ` · about ${Math.max(1, Math.round(progress.etaS))} s` : "";
  if (!progress.position) return `In queue: next in line${eta}`;
  return `In queue: ${progress.position} ${progress.position === 1 ? "job" : "jobs"} ahead${eta}`;
}

// -------------------------------------------------------------------------------------------- one job

export type JobOutcome =
  | { kind: "complete"; data: unknown[] | null }
  /** `unconfirmed`: the server had not ended the stream STOP_GRACE_MS after Stop, so the client closed it; the job may
   * still finish on the server. */
  | { kind: "cancelled"; data: unknown[] | null; unconfirmed?: boolean }
  | { kind: "error"; error: AppError; data: unknown[] | null };

export interface ConsumeOptions {
  onData?: (data: unknown[]) => void;
  onProgress?: (progress: JobProgress) => void;
  /** True once the user pressed Stop: an error or end after that is the cancellation, not a failure. */
  isCancelled?: () => boolean;
}

/** Read a submission's messages to the end; report data and progress as they come; say how it ended. */
export async function consume(messages: AsyncIterable<GradioMessage>, options: ConsumeOptions = {}): Promise<JobOutcome> {
  const cancelled = options.isCancelled ?? (() => false);
  let last: unknown[] | null = null;
  let progress = INITIAL_PROGRESS;
  try {
    for await (const message of messages) {
      if (message.type === "data") {
        if (cancelled()) continue; // late updates after Stop would only flicker
        last = Array.isArray(message.data) ? message.data : [message.data];
        options.onData?.(last);
      } else if (message.type === "status") {
        if (message.stage === "error") {
          if (cancelled()) return { kind: "cancelled", data: last };
          return { kind: "error", error: errorFromStatus(message), data: last };
        }
        if (message.stage === "complete") {
          return { kind: cancelled() ? "cancelled" : "complete", data: last };
        }
        progress = nextProgress(progress, message);
        options.onProgress?.(progress);
      }
    }
  } catch (err) {
    if (cancelled()) return { kind: "cancelled", data: last };
    return { kind: "error", error: errorFromException(err), data: last };
  }
  if (cancelled()) return { kind: "cancelled", data: last };
  if (last === null) return { kind: "error", error: errorFromException(new Error("Connection errored out. ")), data: null };
  return { kind: "complete", data: last };
}

// ----------------------------------------------------------------------------------------- image jobs

export interface ImageJobView {
  preview: FileData | null;
  progressText: string;
  gallery: GalleryItem[];
  info: ImageInfo;
}

export const EMPTY_IMAGE_VIEW: ImageJobView = { preview: null, progressText: "", gallery: [], info: {} };

/** One /generate_image update: [preview, progress markdown, gallery, info]. */
export function reduceImage(previous: ImageJobView, data: unknown[]): ImageJobView {
  const [preview, progressText, gallery, info] = data;
  const nextInfo = nextValue<ImageInfo | null>(previous.info, info);
  return {
    preview: nextValue<FileData | null>(previous.preview, preview) ?? null,
    progressText: nextValue<string | null>(previous.progressText, progressText) ?? "",
    gallery: normaliseGallery(nextValue<unknown>(previous.gallery, gallery)),
    // The first updates (model loading) carry {}: keep what we knew.
    info: nextInfo && Object.keys(nextInfo).length > 0 ? nextInfo : previous.info,
  };
}

function normaliseGallery(value: unknown): GalleryItem[] {
  if (!Array.isArray(value)) return [];
  return value
    .map((item): GalleryItem | null => {
      if (Array.isArray(item)) return { image: item[0] as FileData, caption: (item[1] as string) ?? null };
      if (item && typeof item === "object" && "image" in item) return item as GalleryItem;
      return null;
    })
    .filter((item): item is GalleryItem => item !== null && !!item.image);
}

/** The settings of a finished job, for "Reuse settings" (the seed actually used, never -1). */
export function settingsFromInfo(info: ImageInfo): Partial<ImageSettings> {
  const out: Partial<ImageSettings> = {};
  // Not `model`: the info names the model that made the image, which need not be a name /models lists.
  for (const key of [
    "prompt", "negative_prompt", "width", "height", "steps", "cfg_scale", "sampler", "batch_count", "enable_hr", "hr_scale", "hr_upscaler",
    "hr_second_pass_steps", "denoising_strength", "resize_mode", "mask_blur", "inpainting_fill", "inpaint_full_res", "inpaint_full_res_padding",
    "inpainting_mask_invert",
  ] as const) {
    if (info[key] !== undefined && info[key] !== null) (out as Record<string, unknown>)[key] = info[key];
  }
  if (typeof info.seed === "number") out.seed = info.seed;
  return { ...out, ...refinerFromRecord(info as Record<string, unknown>) };
}

/** The seed each result image was made with. */
export function seedOf(info: ImageInfo, index: number, caption?: string | null): number | null {
  if (info.seeds && info.seeds[index] !== undefined) return info.seeds[index];
  const match = /seed (\d+)/.exec(caption ?? "");
  return match ? Number(match[1]) : null;
}

// ------------------------------------------------------------------------------------------------ chat

/** One /chat update (a single dict output). */
export function chatUpdateFrom(data: unknown[]): ChatUpdate | null {
  const value = data[0];
  if (!value || typeof value !== "object" || isUnchanged(value)) return null;
  const record = value as Partial<ChatUpdate>;
  return {
    conversation_id: record.conversation_id ?? null,
    status: record.status ?? "thinking",
    reasoning: record.reasoning ?? "",
    answer: record.answer ?? "",
    reasoning_s: record.reasoning_s ?? null,
    message_id: record.message_id ?? null,
    usage: record.usage ?? {},
    cached: record.cached ?? false,
  };
}

/** Still thinking: the reasoning streams and its panel stays open with a spinner. */
export function isThinking(status: string): boolean {
  return status === "waiting" || status === "loading" || status === "thinking";
}

export function isFinished(status: string): boolean {
  return status === "done" || status === "cancelled" || status === "failed";
}

/** "Thought for 2.4 s" once done, "Thinking… 3 s" while it goes on. */
export function thinkingLabel(status: string, reasoningS: number | null, elapsedS?: number): string {
  if (status === "waiting") return "Waiting for the model…";
  if (status === "loading") return "Loading the model…";
  if (isThinking(status)) {
    return elapsedS != null ? `Thinking… ${Math.floor(elapsedS)} s` : "Thinking…";
  }
  if (reasoningS != null) return `Thought for ${reasoningS < 10 ? reasoningS.toFixed(1) : Math.round(reasoningS)} s`;
  return status === "cancelled" ? "Thinking (stopped)" : "Thoughts";
}
