import { useCallback, useEffect, useState, type Dispatch, type SetStateAction } from "react";
import { ChevronDown, Eye, Loader2, Plus, RefreshCw, Trash2 } from "lucide-react";
import { Badge } from "@/components/ui/badge";
import { Button } from "@/components/ui/button";
import { Card, CardContent, CardDescription, CardHeader, CardTitle } from "@/components/ui/card";
import { Collapsible, CollapsibleContent, CollapsibleTrigger } from "@/components/ui/collapsible";
import { Label } from "@/components/ui/label";
import { Tabs, TabsContent, TabsList, TabsTrigger } from "@/components/ui/tabs";
import { CheckField, ChoiceField, SliderField } from "@/components/Controls";
import { InitImageInput, type InitImage } from "@/components/InitImageInput";
import { named, offered } from "@/lib/api";
import {
  checkpointFamily,
  CONTROL_MODES,
  CONTROL_RESIZE_MODES,
  controlCatalogFrom,
  enabledUnits,
  MAX_UNITS,
  MAX_WEIGHT,
  FAMILY_LABELS,
  modelsFor,
  newUnit,
  NO_CONTROLNETS,
  recordedUnits,
  reusedUnits,
  sliders,
  splitUnitErrors,
  unitPayload,
  withModule,
  type ControlNetCatalog,
  type ControlUnit,
  type UnitErrors,
  type UnitField,
} from "@/lib/controlnet";
import { encodePicture, PICTURES_BUDGET, recordedPictures } from "@/lib/controlnetPictures";
import { errorFromException, type AppError } from "@/lib/errors";
import type { AtelierConnection } from "@/lib/gradio";
import type { Mode } from "@/lib/types";

export type SetUnits = Dispatch<SetStateAction<ControlUnit[]>>;

/** A job's recorded units in a line ("ControlNet: canny, tiny-cn-sd15 [1a2b] at 1"), for History and results. */
export function ControlUnitsSummary({ value, className }: { value: unknown; className?: string }) {
  const records = recordedUnits(value);
  if (!records?.length) return null;
  const text = records.map((r) => `${String(r.module ?? "none")}, ${String(r.model ?? "None")} at ${String(r.weight ?? 1)}`).join("; ");
  return (
    <p className={className ?? "text-xs text-muted-foreground"} data-testid="controlnet-summary">
      ControlNet: {text}
    </p>
  );
}

/** A recorded job's units (a job's info, a history entry, PNG Info's `controlnet`) put into the form, with their
 * pictures from history where it kept them; a record that says nothing about units changes nothing. */
export async function reuseControlUnits(value: unknown, root: string, setUnits: SetUnits): Promise<void> {
  const records = recordedUnits(value);
  if (!records) return;
  const pictures = await recordedPictures(records, root);
  setUnits((current) => reusedUnits(current, records, [], pictures));
}

/** What the image screen needs of the ControlNet section: the lists, the units as a job sends them, and the
 * server's messages about them. */
export function useControlNet(conn: AtelierConnection, units: ControlUnit[]) {
  const [catalog, setCatalog] = useState<ControlNetCatalog>(NO_CONTROLNETS);
  const [errors, setErrors] = useState<UnitErrors>({});
  const [open, setOpen] = useState(false);
  const [active, setActive] = useState(0);

  const refresh = useCallback(async () => {
    try {
      setCatalog(controlCatalogFrom(await conn.call<unknown>("/models", {})));
    } catch {
      // An older server without ControlNet lists: the pickers offer what the units hold.
    }
  }, [conn]);
  useEffect(() => {
    void refresh();
  }, [refresh]);

  /** The enabled units as the `controlnet` parameter, and each one's place in the form; the pictures encoded. */
  async function prepare(): Promise<{ payload: Record<string, unknown>[]; sent: number[] } | null> {
    setErrors({});
    const chosen = enabledUnits(units);
    const found: UnitErrors = {};
    const payload: Record<string, unknown>[] = [];
    for (const { unit, index } of chosen) {
      try {
        const image = unit.image ? await encodePicture(unit.image, Math.floor(PICTURES_BUDGET / chosen.length)) : null;
        payload.push(unitPayload(unit, catalog, image));
      } catch (err) {
        found[index] = { image: errorFromException(err).message };
      }
    }
    if (Object.keys(found).length) {
      show(found);
      return null;
    }
    return { payload, sent: chosen.map(({ index }) => index) };
  }

  function show(found: UnitErrors) {
    setErrors(found);
    const first = Object.keys(found).map(Number).sort((a, b) => a - b)[0];
    if (first !== undefined) {
      setOpen(true);
      setActive(first);
    }
  }

  /** The job's refusal with its unit messages taken onto the units (the rest stays the screen's). */
  function refused(error: AppError, sent: number[]): AppError {
    if (error.kind !== "validation" && error.kind !== "server") return error;
    const split = splitUnitErrors(error, sent);
    if (Object.keys(split.units).length) show(split.units);
    return split.error;
  }

  /** After a job: the lists again while they lack what a first load builds (the tiny profile's ControlNets, the
   * default checkpoint's family); a read each job would spend the user's read limit for nothing. */
  function afterJob() {
    if (!catalog.models.length || catalog.families.default === null) void refresh();
  }

  return { catalog, refresh, afterJob, errors, setErrors, open, setOpen, active, setActive, prepare, refused };
}

export type ControlNetState = ReturnType<typeof useControlNet>;

interface Props {
  conn: AtelierConnection;
  state: ControlNetState;
  units: ControlUnit[];
  onUnits: SetUnits;
  mode: Mode;
  /** The job's checkpoint ("" = the server's default): the models offered are those of its family. */
  checkpoint: string;
  /** The job's size: the map is previewed as the unit will see it. */
  width: number;
  height: number;
  /** img2img's and inpaint's picture: a unit without its own uses it. */
  initImage: InitImage | null;
}

/** The ControlNet section of the image form: units (tabs) with their picture, preprocessor, model, weights and
 * the preprocessed map before generating, as sd-webui-controlnet's panel offers them. */
export function ControlNetPanel({ conn, state, units, onUnits, mode, checkpoint, width, height, initImage }: Props) {
  const { catalog, errors, open, setOpen, active, setActive } = state;
  const shown = Math.min(active, units.length - 1);
  const on = units.filter((u) => u.enabled).length;

  const update = (index: number, change: (unit: ControlUnit) => ControlUnit) =>
    onUnits((current) => current.map((unit, i) => (i === index ? change(unit) : unit)));

  function remove(index: number) {
    onUnits((current) => current.filter((_, i) => i !== index));
    state.setErrors({});
    setActive(Math.max(0, index - 1));
  }

  return (
    <Card data-testid="controlnet">
      <Collapsible open={open} onOpenChange={setOpen}>
        <CardHeader className="flex-row items-center justify-between gap-2">
          <div className="grid gap-1">
            <CardTitle>ControlNet</CardTitle>
            <CardDescription>Guide the picture with a control map: edges, lines or a pose of your own picture.</CardDescription>
          </div>
          <div className="flex items-center gap-2">
            {on ? <Badge variant="secondary" data-testid="controlnet-on">{on} on</Badge> : null}
            <CollapsibleTrigger asChild>
              <Button variant="ghost" size="sm" data-testid="controlnet-toggle">
                {open ? "Hide" : "Show"} units <ChevronDown className={open ? "rotate-180" : undefined} />
              </Button>
            </CollapsibleTrigger>
          </div>
        </CardHeader>
        <CollapsibleContent>
          <CardContent className="grid gap-3 pt-4">
            <Tabs value={String(units[shown]?.key)} onValueChange={(key) => setActive(units.findIndex((u) => String(u.key) === key))}>
              <UnitBar
                units={units}
                errors={errors}
                onAdd={() => {
                  onUnits((current) => [...current, newUnit()]);
                  setActive(units.length);
                }}
                onRefresh={() => void state.refresh()}
              />
              {units.map((unit, i) => (
                <TabsContent key={unit.key} value={String(unit.key)} className="pt-2">
                  <UnitEditor
                    conn={conn}
                    index={i}
                    unit={unit}
                    catalog={catalog}
                    checkpoint={checkpoint}
                    errors={errors[i] ?? {}}
                    onUnit={(change) => update(i, change)}
                    onRemove={units.length > 1 ? () => remove(i) : undefined}
                    mode={mode}
                    width={width}
                    height={height}
                    initImage={initImage}
                  />
                </TabsContent>
              ))}
            </Tabs>
          </CardContent>
        </CollapsibleContent>
      </Collapsible>
    </Card>
  );
}

/** The units' tabs (a dot marks those on, red those with a message), "Add unit" and "Refresh models". */
function UnitBar({ units, errors, onAdd, onRefresh }: { units: ControlUnit[]; errors: UnitErrors; onAdd: () => void; onRefresh: () => void }) {
  return (
    <div className="flex flex-wrap items-center gap-2">
      <TabsList aria-label="ControlNet units">
        {units.map((unit, i) => (
          <TabsTrigger key={unit.key} value={String(unit.key)} data-testid={`cn-tab-${i}`} className={errors[i] ? "text-destructive" : undefined}>
            Unit {i}
            {unit.enabled ? (
              <>
                <span className="size-1.5 rounded-full bg-primary" aria-hidden />
                <span className="sr-only">(on)</span>
              </>
            ) : null}
          </TabsTrigger>
        ))}
      </TabsList>
      <Button variant="outline" size="sm" disabled={units.length >= MAX_UNITS} onClick={onAdd} data-testid="cn-add">
        <Plus /> Add unit
      </Button>
      <Button variant="outline" size="sm" onClick={onRefresh} data-testid="cn-refresh" title="Read the ControlNet models and preprocessors again">
        <RefreshCw /> Refresh models
      </Button>
    </div>
  );
}

type Said = Partial<Record<UnitField | "", string>>;

interface UnitProps {
  conn: AtelierConnection;
  index: number;
  unit: ControlUnit;
  catalog: ControlNetCatalog;
  checkpoint: string;
  errors: Said;
  onUnit: (change: (unit: ControlUnit) => ControlUnit) => void;
  onRemove?: () => void;
  mode: Mode;
  width: number;
  height: number;
  initImage: InitImage | null;
}

/** One unit: its switch, its picture and map, its pickers and numbers; the job's and the preview's messages on them. */
function UnitEditor({ index, unit, errors, onUnit, onRemove, ...rest }: UnitProps) {
  const [previewErrors, setPreviewErrors] = useState<Said>({});
  const said = { ...errors, ...previewErrors };
  const id = `cn-${index}`;
  return (
    <div className="grid grid-cols-2 gap-4" data-testid={`cn-unit-${index}`} data-enabled={unit.enabled}>
      <div className="col-span-2 flex items-center justify-between gap-2">
        <CheckField id={`${id}-enabled`} label={`Enable unit ${index}`} checked={unit.enabled} onChecked={(v) => onUnit((u) => ({ ...u, enabled: v }))} />
        {onRemove ? (
          <Button variant="ghost" size="sm" onClick={onRemove} data-testid={`${id}-remove`}>
            <Trash2 /> Remove unit {index}
          </Button>
        ) : null}
      </div>
      {said[""] ? (
        <p className="col-span-2 text-xs text-destructive" data-testid={`${id}-error`} role="alert">
          {said[""]}
        </p>
      ) : null}
      <UnitPictures {...rest} index={index} unit={unit} said={said} onUnit={onUnit} onPreviewErrors={setPreviewErrors} />
      <UnitFields index={index} unit={unit} catalog={rest.catalog} checkpoint={rest.checkpoint} said={said} onUnit={onUnit} />
    </div>
  );
}

type PicturesProps = Omit<UnitProps, "errors" | "onRemove" | "checkpoint"> & { said: Said; onPreviewErrors: (said: Said) => void };

/** The control picture (dropped or chosen) and the map its preprocessor makes, previewed at the job's size. */
function UnitPictures({ conn, index, unit, catalog, said, onUnit, onPreviewErrors, mode, width, height, initImage }: PicturesProps) {
  const [map, setMap] = useState<string | null>(null);
  const [previewing, setPreviewing] = useState(false);
  const id = `cn-${index}`;
  const picture = unit.image ?? (mode !== "txt2img" ? initImage : null);
  // Another picture: the map shown was another's.
  useEffect(() => setMap(null), [picture?.url]);

  async function preview() {
    onPreviewErrors({});
    if (!picture) {
      onPreviewErrors({ image: mode === "txt2img" ? "Choose a control picture to preview its map." : "Choose a control picture, or an init image above." });
      return;
    }
    setPreviewing(true);
    try {
      const sent = unitPayload(unit, catalog, null);
      const answer = await conn.call<{ image?: string }>("/controlnet_preview", {
        image: picture.file,
        width,
        height,
        ...Object.fromEntries(["module", "processor_res", "threshold_a", "threshold_b", "pixel_perfect", "resize_mode"].map((key) => [key, sent[key]])),
      });
      if (typeof answer?.image !== "string") throw new Error("The server sent no map.");
      setMap(answer.image);
    } catch (err) {
      // The preview names unit 0 (it previews one unit): its messages go on this unit's fields, the rest above them.
      const split = splitUnitErrors(errorFromException(err), [index]);
      const rest = Object.values(split.error.fields).join(" ");
      onPreviewErrors({ ...split.units[index], ...(rest || !split.units[index] ? { "": rest || split.error.message } : {}) });
    } finally {
      setPreviewing(false);
    }
  }

  return (
    <>
      <div className="col-span-2 grid gap-1.5 sm:col-span-1">
        <Label htmlFor={`${id}-image`}>Control picture</Label>
        <InitImageInput id={`${id}-image`} image={unit.image} error={said.image} onImage={(image) => onUnit((u) => ({ ...u, image, enabled: image ? true : u.enabled }))} />
        {!unit.image && mode !== "txt2img" ? <p className="text-xs text-muted-foreground">Without one, the init image is used.</p> : null}
      </div>
      <div className="col-span-2 grid content-start gap-1.5 sm:col-span-1">
        <span className="text-sm font-medium">Preprocessed map</span>
        <div className="flex min-h-24 items-center justify-center overflow-hidden rounded-lg border bg-muted/40" data-testid={`${id}-map`}>
          {map ? (
            <img src={map} alt={`Preprocessed map of unit ${index}`} className="max-h-48 object-contain [image-rendering:pixelated]" data-testid={`${id}-map-image`} />
          ) : (
            <span className="p-3 text-xs text-muted-foreground">Preview the map the preprocessor makes.</span>
          )}
        </div>
        <Button variant="secondary" size="sm" className="justify-self-start" onClick={() => void preview()} disabled={previewing} data-testid={`${id}-preview`}>
          {previewing ? <Loader2 className="animate-spin" /> : <Eye />}
          Preview map
        </Button>
      </div>
    </>
  );
}

interface FieldsProps {
  index: number;
  unit: ControlUnit;
  catalog: ControlNetCatalog;
  checkpoint: string;
  said: Said;
  onUnit: (change: (unit: ControlUnit) => ControlUnit) => void;
}

/** The preprocessor and model, weight, start and end, the modes. */
function UnitFields({ index, unit, catalog, checkpoint, said, onUnit }: FieldsProps) {
  const id = `cn-${index}`;
  const set = <K extends keyof ControlUnit>(key: K, value: ControlUnit[K]) => onUnit((u) => ({ ...u, [key]: value }));
  const fitting = modelsFor(catalog, checkpoint);
  const family = checkpointFamily(catalog, checkpoint);
  const modelOptions = offered(
    [{ value: "", label: fitting.length ? "Choose a ControlNet" : "No ControlNet found: refresh" }, ...named(fitting)],
    unit.model,
  );
  return (
    <>
      <ChoiceField id={`${id}-module`} label="Preprocessor" value={unit.module} options={offered(named(catalog.modules), unit.module)} onValue={(v) => onUnit((u) => withModule(u, v, catalog))} error={said.module} />
      <ChoiceField
        id={`${id}-model`}
        label={family ? `Model (for ${FAMILY_LABELS[family] ?? family})` : "Model"}
        value={unit.model}
        options={modelOptions}
        onValue={(v) => set("model", v)}
        error={said.model}
      />
      <SliderField id={`${id}-weight`} label="Control weight" className="col-span-2" min={0} max={MAX_WEIGHT} step={0.05} integer={false} value={unit.weight} onValue={(v) => set("weight", v)} error={said.weight} />
      <SliderField id={`${id}-start`} label="Starting control step" min={0} max={1} step={0.01} integer={false} value={unit.guidance_start} onValue={(v) => set("guidance_start", v)} error={said.guidance_start} />
      <SliderField id={`${id}-end`} label="Ending control step" min={0} max={1} step={0.01} integer={false} value={unit.guidance_end} onValue={(v) => set("guidance_end", v)} error={said.guidance_end} />
      <ChoiceField id={`${id}-control-mode`} label="Control mode" value={unit.control_mode} options={offered(named(CONTROL_MODES), unit.control_mode)} onValue={(v) => set("control_mode", v)} error={said.control_mode} />
      <ChoiceField id={`${id}-resize-mode`} label="Resize mode" value={unit.resize_mode} options={offered(named(CONTROL_RESIZE_MODES), unit.resize_mode)} onValue={(v) => set("resize_mode", v)} error={said.resize_mode} />
      <ModuleNumbers index={index} unit={unit} catalog={catalog} said={said} onUnit={onUnit} />
    </>
  );
}

/** Pixel perfect, the resolution and the module's thresholds: only those its preprocessor has, with its labels. */
function ModuleNumbers({ index, unit, catalog, said, onUnit }: Omit<FieldsProps, "checkpoint">) {
  const id = `cn-${index}`;
  const s = sliders(catalog, unit.module);
  const set = <K extends keyof ControlUnit>(key: K, value: ControlUnit[K]) => onUnit((u) => ({ ...u, [key]: value }));
  return (
    <>
      {s.resolution ? (
        <div className="col-span-2 grid gap-1.5">
          <CheckField id={`${id}-pixel-perfect`} label="Pixel perfect (the resolution follows the image size)" checked={unit.pixel_perfect} onChecked={(v) => set("pixel_perfect", v)} />
          {said.pixel_perfect ? <p className="text-xs text-destructive">{said.pixel_perfect}</p> : null}
        </div>
      ) : null}
      {s.resolution && !unit.pixel_perfect ? (
        <SliderField
          id={`${id}-resolution`}
          label="Preprocessor resolution"
          className="col-span-2"
          min={s.resolution.min}
          max={s.resolution.max}
          step={s.resolution.step}
          value={unit.processor_res < 0 ? s.resolution.value : unit.processor_res}
          onValue={(v) => set("processor_res", v)}
          error={said.processor_res}
        />
      ) : null}
      {(["threshold_a", "threshold_b"] as const).map((key) => {
        const slider = s[key];
        if (!slider) return null;
        return (
          <SliderField
            key={key}
            id={`${id}-${key.replace("_", "-")}`}
            label={slider.name}
            min={slider.min}
            max={slider.max}
            step={slider.step}
            integer={Number.isInteger(slider.step)}
            value={unit[key] < 0 && slider.min >= 0 ? slider.value : unit[key]}
            onValue={(v) => set(key, v)}
            error={said[key]}
          />
        );
      })}
    </>
  );
}
