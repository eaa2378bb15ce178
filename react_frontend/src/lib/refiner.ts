/**
 * AUTOMATIC1111's SDXL refiner in the image form: a second SDXL checkpoint (`refiner_checkpoint`, "" = none) that
 * takes over after `refiner_switch_at` of the steps, in txt2img and img2img (the server refuses it in inpaint and
 * with the hires fix, naming the field). Pure functions, so that the choices and the read-backs are unit tested.
 */
import type { ImageSettings, Mode, ModelCatalog } from "./types";

export const REFINER_KEYS = ["refiner_checkpoint", "refiner_switch_at"] as const satisfies readonly (keyof ImageSettings)[];
/** The server takes a switch strictly between 0 and 1 (contracts.py); Gradio's slider offers 0.01 to 0.99. */
export const SWITCH_MIN = 0.01;
export const SWITCH_MAX = 0.99;
export const DEFAULT_SWITCH_AT = 0.8; // A1111's "Switch at"

/** The modes a refiner runs in: the base's latents are handed over in txt2img and img2img. */
export function refinerApplies(mode: Mode): boolean {
  return mode === "txt2img" || mode === "img2img";
}

/** A checkpoint's family as /models says it ("" = the server's default checkpoint); null when not known yet. */
export function familyOf(catalog: ModelCatalog, checkpoint: string): string | null {
  const families = catalog.families;
  if (!families) return null;
  return (checkpoint ? families.models[checkpoint] : families.default) ?? null;
}

/** The refiner picker's options: "None", then the SDXL checkpoints (and those whose family the server cannot tell
 * yet: it refuses another family's by name), and the current value when the list lacks it. */
export function refinerChoices(catalog: ModelCatalog, current: string): { value: string; label: string }[] {
  const fits = catalog.models.filter((name) => [null, "sdxl"].includes(familyOf(catalog, name)));
  const names = current && !fits.includes(current) ? [...fits, current] : fits;
  return [{ value: "", label: "None" }, ...names.map((name) => ({ value: name, label: name }))];
}

/** The checkpoint /models lists that a written refiner names: itself, its stem, or A1111's "stem [hash]". */
export function listedRefiner(value: unknown, models: readonly string[]): string | null {
  if (typeof value !== "string" || !value.trim()) return null;
  const bare = value.replace(/\s*\[[0-9a-fA-F]+\]\s*$/, "").trim();
  return models.find((name) => [value, bare].some((v) => name === v || name.replace(/\.[^./]+$/, "") === v)) ?? null;
}

/**
 * The refiner fields a job's record gives back (a result's info, a History row, a PNG's parameters): the record
 * names none when the refiner was off, which turns it off here too, so that the same settings make the same image.
 * A PNG's name is looked up in `models` (A1111 writes "name [hash]"); one this server lacks leaves the refiner off.
 */
export function refinerFromRecord(record: Record<string, unknown>, models?: readonly string[]): Pick<ImageSettings, "refiner_checkpoint" | "refiner_switch_at"> {
  const raw = record.refiner_checkpoint;
  const name = models ? listedRefiner(raw, models) : typeof raw === "string" ? raw : null;
  const at = typeof record.refiner_switch_at === "string" ? Number(record.refiner_switch_at) : record.refiner_switch_at;
  const switchAt = typeof at === "number" && Number.isFinite(at) ? at : DEFAULT_SWITCH_AT;
  return { refiner_checkpoint: name ?? "", refiner_switch_at: name ? switchAt : DEFAULT_SWITCH_AT };
}
