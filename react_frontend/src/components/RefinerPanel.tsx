import { useEffect, useState } from "react";
import { ChoiceField, SliderField } from "@/components/Controls";
import { OptionsSection } from "@/components/OptionsSection";
import { FAMILY_LABELS } from "@/lib/controlnet";
import { familyOf, refinerApplies, refinerChoices, SWITCH_MAX, SWITCH_MIN } from "@/lib/refiner";
import type { ImageSettings, Mode, ModelCatalog } from "@/lib/types";

interface Props {
  mode: Mode;
  settings: ImageSettings;
  catalog: ModelCatalog;
  set: <K extends keyof ImageSettings>(key: K, value: ImageSettings[K]) => void;
  /** The server's message on a field of the last job, if it refused one. */
  fieldError: (name: keyof ImageSettings) => string | undefined;
}

/** Why the picked refiner will be refused before the job is sent, in words; "" when nothing is known against it. */
function refinerNote(settings: ImageSettings, catalog: ModelCatalog, mode: Mode): string {
  if (!settings.refiner_checkpoint) return "";
  const base = familyOf(catalog, settings.model);
  if (base && base !== "sdxl") return `The refiner hands SDXL latents over: pick an SDXL checkpoint (this one is ${FAMILY_LABELS[base] ?? base}).`;
  if (mode === "txt2img" && settings.enable_hr) return "A refiner does not run with Hires. fix yet: turn one of them off.";
  return "";
}

/** A1111's "Refiner" section (txt2img and img2img): an SDXL checkpoint that takes over at "Switch at" of the steps. */
export function RefinerPanel({ mode, settings, catalog, set, fieldError }: Props) {
  const errors = [fieldError("refiner_checkpoint"), fieldError("refiner_switch_at")].filter(Boolean).length;
  const [open, setOpen] = useState(!!settings.refiner_checkpoint);
  // A refiner filled in by Reuse or PNG Info, or refused by the server, is shown rather than hidden in a closed section.
  useEffect(() => {
    if (settings.refiner_checkpoint || errors) setOpen(true);
  }, [settings.refiner_checkpoint, errors]);
  if (!refinerApplies(mode)) return null;
  const note = refinerNote(settings, catalog, mode);
  return (
    <OptionsSection
      open={open}
      onOpenChange={setOpen}
      data-testid="refiner-section"
      toggleTestId="refiner-toggle"
      toggleLabel="Refiner options"
      header={
        <span className="text-sm font-medium">
          Refiner
          <span className="ml-2 text-xs font-normal text-muted-foreground" data-testid="refiner-state">
            {settings.refiner_checkpoint ? `${settings.refiner_checkpoint} at ${settings.refiner_switch_at}` : "off"}
          </span>
        </span>
      }
    >
      <ChoiceField
        id="refiner-checkpoint"
        label="Refiner checkpoint (SDXL)"
        value={settings.refiner_checkpoint}
        options={refinerChoices(catalog, settings.refiner_checkpoint)}
        onValue={(v) => set("refiner_checkpoint", v)}
        error={fieldError("refiner_checkpoint")}
      />
      {settings.refiner_checkpoint ? (
        <SliderField
          id="refiner-switch-at"
          label="Switch at"
          min={SWITCH_MIN}
          max={SWITCH_MAX}
          step={0.01}
          integer={false}
          value={settings.refiner_switch_at}
          onValue={(v) => set("refiner_switch_at", v)}
          error={fieldError("refiner_switch_at")}
        />
      ) : null}
      {note ? (
        <p className="col-span-2 text-xs text-muted-foreground" data-testid="refiner-note">
          {note}
        </p>
      ) : null}
    </OptionsSection>
  );
}

/** A job's refiner in a line, as its record has it (a result's info, a History row); nothing when it had none. */
export function RefinerSummary({ record }: { record: { refiner_checkpoint?: unknown; refiner_switch_at?: unknown } }) {
  if (typeof record.refiner_checkpoint !== "string" || !record.refiner_checkpoint) return null;
  return (
    <p className="text-xs text-muted-foreground" data-testid="refiner-summary">
      Refiner: {record.refiner_checkpoint}
      {typeof record.refiner_switch_at === "number" ? `, switch at ${record.refiner_switch_at}` : ""}
    </p>
  );
}
