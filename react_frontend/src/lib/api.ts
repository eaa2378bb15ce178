/**
 * How the image screen's settings become a call to Atelier's named endpoints, and how PNG Info and /models
 * answers come back into settings. Pure functions (no connection), so that the mapping is unit tested.
 *
 * The endpoints take AUTOMATIC1111's names (README "Image modes"): /generate_image takes the txt2img
 * parameters, the checkpoint and VAE, and the hires fix; /img2img the txt2img parameters with the checkpoint
 * and VAE plus `init_image`, `denoising_strength`, `resize_mode`; /inpaint those plus `mask` and the inpaint
 * parameters. @gradio/client refuses a keyword an endpoint does not have, so each payload has exactly its own.
 */
import type { AppError } from "./errors";
import { REFINER_KEYS, refinerFromRecord } from "./refiner";
import { DEFAULT_IMAGE_SETTINGS, type Choice, type ChoiceLists, type ImageSettings, type Mode, type ModelCatalog, type PngInfo } from "./types";

export const ENDPOINTS: Record<Mode, string> = { txt2img: "/generate_image", img2img: "/img2img", inpaint: "/inpaint" };

const BASE_KEYS = ["prompt", "negative_prompt", "width", "height", "steps", "cfg_scale", "seed", "sampler", "batch_count", "model", "vae"] as const;
const HIRES_KEYS = ["enable_hr", "hr_scale", "hr_upscaler", "hr_second_pass_steps", "denoising_strength"] as const;
const IMG2IMG_KEYS = ["denoising_strength", "resize_mode"] as const;
const INPAINT_KEYS = ["mask_blur", "inpainting_fill", "inpaint_full_res", "inpaint_full_res_padding", "inpainting_mask_invert"] as const;

/** The parameter names each endpoint takes besides its images. */
export const ENDPOINT_KEYS: Record<Mode, readonly (keyof ImageSettings)[]> = {
  txt2img: [...BASE_KEYS, ...HIRES_KEYS, ...REFINER_KEYS],
  img2img: [...BASE_KEYS, ...IMG2IMG_KEYS, ...REFINER_KEYS],
  inpaint: [...BASE_KEYS, ...IMG2IMG_KEYS, ...INPAINT_KEYS],
};

/** The images a job sends: the init image (img2img, inpaint) and the mask drawn over it (inpaint). */
export interface ImageInputs {
  initImage: Blob | null;
  /** A PNG, white where the model repaints; null when nothing was drawn. */
  mask: Blob | null;
  /** The enabled ControlNet units, as the `controlnet` parameter takes them (lib/controlnet.ts); sent when any. */
  controlnet?: Record<string, unknown>[];
}

export type ImageCall = { endpoint: string; payload: Record<string, unknown> } | { error: AppError };

function missing(fields: Record<string, string>): { error: AppError } {
  return { error: { kind: "validation", title: "Missing input", message: Object.values(fields).join(" "), fields, retryAfterS: null } };
}

/** The endpoint and keyword payload of a job in this mode; or, when an image it needs is missing, why not. */
export function imageCall(mode: Mode, settings: ImageSettings, inputs: ImageInputs): ImageCall {
  const payload: Record<string, unknown> = {};
  for (const key of ENDPOINT_KEYS[mode]) payload[key] = settings[key];
  if (inputs.controlnet?.length) payload.controlnet = inputs.controlnet;
  if (mode === "txt2img") return { endpoint: ENDPOINTS[mode], payload };
  const errors: Record<string, string> = {};
  if (!inputs.initImage) errors.init_image = `${mode} needs an init image: upload or drop one.`;
  if (mode === "inpaint" && !inputs.mask && inputs.initImage) errors.mask = "Draw a mask over the image: the model repaints what you paint.";
  if (Object.keys(errors).length) return missing(errors);
  // @gradio/client uploads a Blob found in the payload and sends the server its file reference.
  payload.init_image = inputs.initImage;
  if (mode === "inpaint") payload.mask = inputs.mask;
  return { endpoint: ENDPOINTS[mode], payload };
}

/** The /models answer, with missing lists taken as empty. */
export function catalogFrom(value: unknown): ModelCatalog {
  const record = value && typeof value === "object" ? (value as Record<string, unknown>) : {};
  const list = (key: string) => (Array.isArray(record[key]) ? (record[key] as unknown[]).filter((x): x is string => typeof x === "string") : []);
  const families = record.families && typeof record.families === "object" ? (record.families as Record<string, unknown>) : null;
  const family = (x: unknown) => (typeof x === "string" && x ? x : null);
  const byModel = families?.models && typeof families.models === "object" ? (families.models as Record<string, unknown>) : {};
  return {
    models: list("models"),
    vaes: list("vaes"),
    upscalers: list("upscalers"),
    ...(families ? { families: { models: Object.fromEntries(Object.entries(byModel).map(([name, f]) => [name, family(f)])), default: family(families.default) } } : {}),
  };
}

/** Whether a /models answer lacks what a first job builds: no checkpoints yet, or the default's family not known yet
 * (the tiny profile builds its models on the first job); a server that sends no families never settles more. */
export function catalogUnsettled(catalog: ModelCatalog): boolean {
  return !catalog.models.length || catalog.families?.default === null;
}

/** No choice lists yet (before /choices answered, or from a server without it): each field offers its own value. */
export const NO_CHOICES: ChoiceLists = { samplers: [], resize_modes: [], inpainting_fills: [], mask_modes: [], upscalers: [] };

/** The /choices answer, with missing or malformed lists taken as empty. */
export function choicesFrom(value: unknown): ChoiceLists {
  const record = value && typeof value === "object" ? (value as Record<string, unknown>) : {};
  const items = (key: string) => (Array.isArray(record[key]) ? (record[key] as unknown[]) : []);
  const names = (key: string) => items(key).filter((x): x is string => typeof x === "string");
  const numbered = (key: string) =>
    items(key).filter((x): x is Choice => !!x && typeof x === "object" && typeof (x as Choice).value === "number" && typeof (x as Choice).label === "string");
  return {
    samplers: names("samplers"),
    resize_modes: numbered("resize_modes"),
    inpainting_fills: numbered("inpainting_fills"),
    mask_modes: numbered("mask_modes"),
    upscalers: names("upscalers"),
  };
}

/** The image settings the server says suit its model (the `defaults` of /choices), those of known type only. */
export function defaultsFrom(value: unknown): Partial<ImageSettings> {
  const record = value && typeof value === "object" ? (value as Record<string, unknown>) : {};
  const given = record.defaults && typeof record.defaults === "object" ? (record.defaults as Record<string, unknown>) : {};
  const out: Partial<ImageSettings> = {};
  for (const key of ["width", "height", "steps", "cfg_scale"] as const) {
    if (typeof given[key] === "number" && Number.isFinite(given[key])) out[key] = given[key] as number;
  }
  if (typeof given.sampler === "string" && given.sampler) out.sampler = given.sampler;
  return out;
}

/** The server's defaults put in the form, for each field still at the client's own default and not `touched` (a
 * field the user set while the defaults were on their way keeps its value, even one equal to the client's default). */
export function withServerDefaults(settings: ImageSettings, defaults: Partial<ImageSettings>,
  touched: ReadonlySet<keyof ImageSettings> = new Set()): ImageSettings {
  const out: ImageSettings = { ...settings };
  for (const [key, value] of Object.entries(defaults) as [keyof ImageSettings, never][]) {
    if (settings[key] === DEFAULT_IMAGE_SETTINGS[key] && !touched.has(key)) out[key] = value;
  }
  return out;
}

/** The fields the server's defaults must leave: those `touched`, and the one the user is in now (`activeId`, the
 * focused element's id, which is the field's name): a default landing under the cursor would mix with what they type. */
export function fieldsInUse(touched: ReadonlySet<keyof ImageSettings>, activeId: string | undefined): ReadonlySet<keyof ImageSettings> {
  if (!activeId || !(activeId in DEFAULT_IMAGE_SETTINGS)) return touched;
  return new Set([...touched, activeId as keyof ImageSettings]);
}

/** Add to `touched` the fields `next` changed from `previous`: what the user set, which the server's defaults leave. */
export function noteTouched(touched: Set<keyof ImageSettings>, previous: ImageSettings, next: ImageSettings): ImageSettings {
  for (const key of Object.keys(next) as (keyof ImageSettings)[]) {
    if (next[key] !== previous[key]) touched.add(key);
  }
  return next;
}

/** The hires upscalers to offer: the server's list (built-in, then its models), then any /models names it lacks. */
export function upscalerChoices(choices: ChoiceLists, catalog: ModelCatalog): string[] {
  return [...choices.upscalers, ...catalog.upscalers.filter((name) => !choices.upscalers.includes(name))];
}

/** Options for a select: the server's, and the current value when they lack it (the lists have not come yet, or a
 * PNG named something this server does not offer), so that the field always shows what will be sent. */
export function offered<T extends string | number>(options: readonly { value: T; label: string }[], current: T): { value: T; label: string }[] {
  return options.some((option) => option.value === current) ? [...options] : [...options, { value: current, label: String(current) }];
}

/** Names as select options (value and label alike). */
export function named(names: readonly string[]): { value: string; label: string }[] {
  return names.map((name) => ({ value: name, label: name }));
}

const NUMBER_KEYS = [
  "steps",
  "cfg_scale",
  "seed",
  "width",
  "height",
  "denoising_strength",
  "hr_scale",
  "hr_second_pass_steps",
  "mask_blur",
  "inpainting_fill",
  "inpaint_full_res_padding",
  "inpainting_mask_invert",
] as const satisfies readonly (keyof ImageSettings)[];

/** The name in `names` that `value` stands for: itself, or the file a stem names (A1111 writes `Model: stem`). */
function matchName(value: unknown, names: readonly string[]): string | null {
  if (typeof value !== "string" || !value) return null;
  return names.find((name) => name === value || name.replace(/\.[^./]+$/, "") === value) ?? null;
}

function asNumber(value: unknown): number | null {
  const n = typeof value === "string" && value.trim() !== "" ? Number(value) : value;
  return typeof n === "number" && Number.isFinite(n) ? n : null;
}

/**
 * The settings a PNG's parameters give (PNG Info's "Send to"). Only what the PNG says is set; the model and
 * VAE only when this server has them (A1111 writes names the server may not know). Hires fix is turned off
 * unless the PNG used it, so that an old PNG's settings make the same image.
 */
export function settingsFromPngInfo(info: PngInfo, catalog: ModelCatalog = { models: [], vaes: [], upscalers: [] }): Partial<ImageSettings> {
  const out: Partial<ImageSettings> = {};
  for (const key of ["prompt", "negative_prompt"] as const) if (typeof info[key] === "string") out[key] = info[key] as string;
  for (const key of NUMBER_KEYS) {
    const n = asNumber(info[key]);
    if (n !== null) out[key] = n;
  }
  const sampler = info.sampler_name ?? info.sampler;
  if (typeof sampler === "string" && sampler) out.sampler = sampler;
  out.enable_hr = typeof info.enable_hr === "boolean" ? info.enable_hr : asNumber(info.hr_scale) !== null;
  if (typeof info.inpaint_full_res === "boolean") out.inpaint_full_res = info.inpaint_full_res;
  if (typeof info.hr_upscaler === "string" && info.hr_upscaler) out.hr_upscaler = info.hr_upscaler;
  const model = [info.model, info.sd_model_checkpoint, info.sd_model_name].map((m) => matchName(m, catalog.models)).find(Boolean);
  if (model) out.model = model;
  const vae = [info.vae, info.sd_vae].map((v) => matchName(v, catalog.vaes)).find(Boolean);
  if (vae) out.vae = vae;
  // The refiner is off unless the PNG used one this server lists (A1111 writes `Refiner: name [hash]`).
  return { ...out, ...refinerFromRecord({ ...info, refiner_checkpoint: info.refiner_checkpoint ?? info.refiner }, catalog.models) };
}
