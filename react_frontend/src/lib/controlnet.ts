/**
 * ControlNet units in the image form: their state, what /models says of the ControlNets and preprocessors, the
 * `controlnet` parameter a job sends (sd-webui-controlnet's API names, docs/sdxl-controlnet.md), the server's
 * messages about a unit put back on its fields, and a job's recorded units (history, a job's info, PNG Info)
 * read back into the form. Pure functions, unit tested; the pictures are read and encoded in the browser.
 *
 * The server checks every field (services/controlnet.py): the client sends what the form holds and shows the
 * messages next to the fields they name, so that the rules live in one place.
 */
import type { AppError } from "./errors";

/** A unit's control picture: the file as chosen, and what the form shows (the init image's shape). */
export interface ControlPicture {
  file: Blob;
  name: string;
  url: string;
  width: number;
  height: number;
}

/** sd-webui-controlnet's control modes and resize modes, by the names its API takes (contracts.py). */
export const CONTROL_MODES = ["Balanced", "My prompt is more important", "ControlNet is more important"] as const;
export const CONTROL_RESIZE_MODES = ["Just Resize", "Crop and Resize", "Resize and Fill"] as const;
/** The server takes up to four units a job (contracts.MAX_CONTROLNET_UNITS); the form starts with two, as A1111's. */
export const MAX_UNITS = 4;
export const FIRST_UNITS = 2;
export const MAX_WEIGHT = 2;

export interface ControlUnit {
  /** A stable key for React (units are added and removed). */
  key: number;
  enabled: boolean;
  image: ControlPicture | null;
  module: string;
  /** A ControlNet as /models lists it ("name [hash]"); "" until one is chosen. */
  model: string;
  weight: number;
  guidance_start: number;
  guidance_end: number;
  control_mode: string;
  resize_mode: string;
  pixel_perfect: boolean;
  /** The preprocessor's resolution and sliders; -1 is the module's default (and what a module without one gets). */
  processor_res: number;
  threshold_a: number;
  threshold_b: number;
}

/** A unit's fields as the API names them (the ones messages and records use). */
export type UnitField = Exclude<keyof ControlUnit, "key">;

let nextKey = 1;

export function newUnit(values: Partial<Omit<ControlUnit, "key">> = {}): ControlUnit {
  return {
    key: nextKey++,
    enabled: false,
    image: null,
    module: "none",
    model: "",
    weight: 1,
    guidance_start: 0,
    guidance_end: 1,
    control_mode: "Balanced",
    resize_mode: "Crop and Resize",
    pixel_perfect: false,
    processor_res: -1,
    threshold_a: -1,
    threshold_b: -1,
    ...values,
  };
}

export function firstUnits(): ControlUnit[] {
  return Array.from({ length: FIRST_UNITS }, () => newUnit());
}

/** One of a preprocessor's numbers, as /models's `module_detail` lists it. */
export interface ModuleSlider {
  name: string;
  value: number;
  min: number;
  max: number;
  step: number;
}

/** What a preprocessor offers: its resolution slider and its thresholds (A, B), when it has them. */
export interface ModuleSliders {
  resolution: ModuleSlider | null;
  threshold_a: ModuleSlider | null;
  threshold_b: ModuleSlider | null;
}

/** Each checkpoint's and ControlNet's family ("sd15", "sd2", "sdxl"; null: not known until loaded), and the
 * default checkpoint's, as /models says them. */
export interface Families {
  models: Record<string, string | null>;
  controlnets: Record<string, string | null>;
  default: string | null;
}

/** The ControlNet part of /models: the ControlNets, the preprocessors and their sliders, the families. */
export interface ControlNetCatalog {
  models: string[];
  modules: string[];
  sliders: Record<string, ModuleSliders>;
  families: Families;
}

const NO_FAMILIES: Families = { models: {}, controlnets: {}, default: null };
export const NO_CONTROLNETS: ControlNetCatalog = { models: [], modules: [], sliders: {}, families: NO_FAMILIES };
export const FAMILY_LABELS: Record<string, string> = { sd15: "SD 1.5", sd2: "SD 2.x", sdxl: "SDXL" };

function isSlider(value: unknown): value is ModuleSlider {
  const s = value as ModuleSlider;
  return !!s && typeof s === "object" && typeof s.name === "string" && [s.value, s.min, s.max, s.step].every((n) => typeof n === "number");
}

/** The sliders of one module_detail entry: the extension lists only the visible ones, the resolution first when
 * the module has one (named "Resolution"), then threshold A, then B. */
export function slidersOf(detail: unknown): ModuleSliders {
  const raw = detail && typeof detail === "object" ? (detail as { sliders?: unknown }).sliders : null;
  const sliders = Array.isArray(raw) ? raw.filter(isSlider) : [];
  const resolution = sliders[0] && /resolution/i.test(sliders[0].name) ? sliders[0] : null;
  const rest = resolution ? sliders.slice(1) : sliders;
  return { resolution, threshold_a: rest[0] ?? null, threshold_b: rest[1] ?? null };
}

/** The /models answer's ControlNets and modules, with anything missing or malformed taken as empty. */
export function controlCatalogFrom(value: unknown): ControlNetCatalog {
  const record = value && typeof value === "object" ? (value as Record<string, unknown>) : {};
  const names = (key: string) => (Array.isArray(record[key]) ? (record[key] as unknown[]).filter((x): x is string => typeof x === "string") : []);
  const detail = record.module_detail && typeof record.module_detail === "object" ? (record.module_detail as Record<string, unknown>) : {};
  const modules = names("module_list");
  return {
    models: names("controlnets"),
    modules,
    sliders: Object.fromEntries(modules.map((name) => [name, slidersOf(detail[name])])),
    families: familiesFrom(record.families),
  };
}

function familiesFrom(value: unknown): Families {
  const record = value && typeof value === "object" ? (value as Record<string, unknown>) : {};
  const family = (x: unknown) => (typeof x === "string" && x ? x : null);
  const map = (x: unknown) =>
    Object.fromEntries(Object.entries(x && typeof x === "object" ? (x as Record<string, unknown>) : {}).map(([name, f]) => [name, family(f)]));
  return { models: map(record.models), controlnets: map(record.controlnets), default: family(record.default) };
}

/** The checkpoint's family ("" = the server's default checkpoint), null when the server does not know it yet. */
export function checkpointFamily(catalog: ControlNetCatalog, checkpoint: string): string | null {
  return (checkpoint ? catalog.families.models[checkpoint] : catalog.families.default) ?? null;
}

/** The ControlNets to offer for a checkpoint: those of its family (and any whose family is unknown); all of them
 * while the checkpoint's family is unknown. The server refuses another family's anyway, naming both. */
export function modelsFor(catalog: ControlNetCatalog, checkpoint: string): string[] {
  const family = checkpointFamily(catalog, checkpoint);
  if (!family) return catalog.models;
  return catalog.models.filter((name) => (catalog.families.controlnets[name] ?? family) === family);
}

const NO_SLIDERS: ModuleSliders = { resolution: null, threshold_a: null, threshold_b: null };

export function sliders(catalog: ControlNetCatalog, module: string): ModuleSliders {
  return catalog.sliders[module] ?? NO_SLIDERS;
}

/** The unit with `module` chosen: its resolution and thresholds start at that module's defaults. */
export function withModule(unit: ControlUnit, module: string, catalog: ControlNetCatalog): ControlUnit {
  const s = sliders(catalog, module);
  return {
    ...unit,
    module,
    processor_res: s.resolution?.value ?? -1,
    threshold_a: s.threshold_a?.value ?? -1,
    threshold_b: s.threshold_b?.value ?? -1,
  };
}

/** The name in `models` that a recorded or typed model stands for: itself, or its name without the "[hash]". */
export function listedModel(model: string, models: readonly string[]): string | null {
  const bare = (name: string) => name.split(" [")[0];
  return models.find((name) => name === model) ?? models.find((name) => bare(name) === bare(model)) ?? null;
}

/** One unit as the `controlnet` parameter takes it; `image` is base64 (omitted: img2img's picture is used). */
export function unitPayload(unit: ControlUnit, catalog: ControlNetCatalog, image: string | null): Record<string, unknown> {
  const s = sliders(catalog, unit.module);
  return {
    enabled: true,
    module: unit.module,
    model: unit.model,
    weight: unit.weight,
    guidance_start: unit.guidance_start,
    guidance_end: unit.guidance_end,
    control_mode: unit.control_mode,
    resize_mode: unit.resize_mode,
    pixel_perfect: unit.pixel_perfect,
    // A module that does not use a number gets -1 (its default); pixel perfect sets the resolution from the size.
    processor_res: s.resolution && !unit.pixel_perfect ? unit.processor_res : -1,
    threshold_a: s.threshold_a ? unit.threshold_a : -1,
    threshold_b: s.threshold_b ? unit.threshold_b : -1,
    ...(image !== null ? { image } : {}),
  };
}

/** The enabled units, each with its place in the form: what a job sends, in order. */
export function enabledUnits(units: readonly ControlUnit[]): { unit: ControlUnit; index: number }[] {
  return units.map((unit, index) => ({ unit, index })).filter(({ unit }) => unit.enabled);
}

/** Messages for each unit of the form, by field ("" for one that names no field). */
export type UnitErrors = Record<number, Partial<Record<UnitField | "", string>>>;

const FIELD_NAMES: readonly UnitField[] = [
  "guidance_start", "guidance_end", "processor_res", "threshold_a", "threshold_b", "pixel_perfect", "control_mode",
  "resize_mode", "weight", "image", "module", "model", "enabled",
];
// Messages that name their field in words (services/controlnet.py, pipelines/control_units.py, controlnet.py).
const FIELD_WORDS: [RegExp, UnitField][] = [
  [/ControlNet module|annotator|preprocessor/i, "module"],
  [/ControlNet model|is a ControlNet for|a ControlNet made for/i, "model"],
  [/picture|image/i, "image"],
];
// "ControlNet unit 1: …" (the unit's checks) or "controlnet.1.image: …" (its picture's).
const UNIT_MARK = /ControlNet unit (\d+): |controlnet\.(\d+)\.(\w+): /g;

/** The field a message about a unit is about: the one it names first, else the one it describes in words. */
function fieldOf(text: string, named: string | undefined): UnitField | "" {
  if (named && (FIELD_NAMES as readonly string[]).includes(named)) return named as UnitField;
  let best: { field: UnitField; at: number } | null = null;
  for (const field of FIELD_NAMES) {
    const at = new RegExp(`\\b${field}\\b`).exec(text)?.index;
    if (at !== undefined && (!best || at < best.at)) best = { field, at };
  }
  if (best) return best.field;
  return FIELD_WORDS.find(([words]) => words.test(text))?.[1] ?? "";
}

/**
 * The server's messages about units, put on the form's units: `sent[i]` is the form's place of the job's unit i
 * (only enabled units are sent). The server may fold them into another field's message (a job's refusal lists
 * them under its first parameter): they are taken out of it, and the alert's text numbers the units as the form does.
 */
export function splitUnitErrors(error: AppError, sent: readonly number[]): { error: AppError; units: UnitErrors } {
  const units: UnitErrors = {};
  const renumber = (text: string) => text.replace(/ControlNet unit (\d+)/g, (whole, i) => (sent[Number(i)] !== undefined ? `ControlNet unit ${sent[Number(i)]}` : whole));
  const take = (text: string): string => {
    const marks = [...text.matchAll(UNIT_MARK)];
    if (!marks.length) return text;
    for (const [n, mark] of marks.entries()) {
      const place = sent[Number(mark[1] ?? mark[2])];
      const end = n + 1 < marks.length ? marks[n + 1].index : text.length;
      const message = text.slice(mark.index + mark[0].length, end).trim();
      if (place === undefined) continue;
      const field = fieldOf(message, mark[3]);
      const said = units[place] ?? (units[place] = {});
      said[field] = said[field] ? `${said[field]} ${message}` : message;
    }
    return text.slice(0, marks[0].index).trim();
  };
  const fields: Record<string, string> = {};
  for (const [name, text] of Object.entries(error.fields)) {
    const rest = take(text);
    if (rest) fields[name] = rest;
  }
  if (!Object.keys(error.fields).length) take(error.message);
  return { error: { ...error, fields, message: renumber(error.message) }, units };
}

/** A unit as a job's record keeps it (history, a job's info, PNG Info): the API's names, the picture as the
 * inputs/<sha>.png path history names it ("" or absent: none). */
export type RecordedUnit = Partial<Record<Exclude<UnitField, "image">, unknown>> & { image?: unknown };

function numberOr(value: unknown, fallback: number): number {
  const n = typeof value === "string" && value.trim() !== "" ? Number(value) : value;
  return typeof n === "number" && Number.isFinite(n) ? n : fallback;
}

function textOr(value: unknown, fallback: string): string {
  return typeof value === "string" && value ? value : fallback;
}

/** The form's unit for a recorded one (enabled, without its picture), the model as this server lists it. */
export function unitFromRecord(record: RecordedUnit, models: readonly string[]): ControlUnit {
  const model = textOr(record.model, "");
  const base = newUnit();
  return newUnit({
    enabled: true,
    module: textOr(record.module, base.module),
    model: model && model !== "None" ? listedModel(model, models) ?? model : "",
    weight: numberOr(record.weight, base.weight),
    guidance_start: numberOr(record.guidance_start, base.guidance_start),
    guidance_end: numberOr(record.guidance_end, base.guidance_end),
    control_mode: textOr(record.control_mode, base.control_mode),
    resize_mode: textOr(record.resize_mode, base.resize_mode),
    pixel_perfect: record.pixel_perfect === true || record.pixel_perfect === "True",
    processor_res: numberOr(record.processor_res, -1),
    threshold_a: numberOr(record.threshold_a, -1),
    threshold_b: numberOr(record.threshold_b, -1),
  });
}

/** The recorded units of a job's info or history entry, or PNG Info's; null when it says nothing about units. */
export function recordedUnits(value: unknown): RecordedUnit[] | null {
  if (!Array.isArray(value)) return null;
  return value.filter((u): u is RecordedUnit => !!u && typeof u === "object" && !Array.isArray(u));
}

/** The sha256 of a recorded unit's picture (history's "inputs/<sha>.png"), or null. */
export function pictureSha(record: RecordedUnit): string | null {
  return typeof record.image === "string" ? (/^inputs\/([0-9a-f]{64})\.png$/.exec(record.image)?.[1] ?? null) : null;
}

/**
 * The form's units after reusing a job's: the recorded ones first (enabled, with `pictures[i]` when there is one),
 * then the form's other units, turned off, so that the job is made again as it was; at least FIRST_UNITS.
 */
export function reusedUnits(current: readonly ControlUnit[], recorded: readonly RecordedUnit[], models: readonly string[],
  pictures: readonly (ControlPicture | null)[] = []): ControlUnit[] {
  const units = recorded.slice(0, MAX_UNITS).map((record, i) => ({ ...unitFromRecord(record, models), image: pictures[i] ?? null }));
  for (const unit of current.slice(units.length)) units.push({ ...unit, enabled: false });
  while (units.length < FIRST_UNITS) units.push(newUnit());
  return units;
}
