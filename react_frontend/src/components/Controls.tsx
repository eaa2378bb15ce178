import type { ReactNode } from "react";
import { Field } from "@/components/Field";
import { NumberInput } from "@/components/NumberInput";
import { Select, SelectContent, SelectItem, SelectTrigger, SelectValue } from "@/components/ui/select";
import { Slider } from "@/components/ui/slider";

// Radix's Select cannot hold "" as an item's value; "" means "the server's default" in the API.
const EMPTY = "__default__";

/** A labelled select of named choices; an option whose value is "" stands for the server's default. */
export function ChoiceField<T extends string | number>({
  id,
  label,
  value,
  options,
  onValue,
  error,
  className,
}: {
  id: string;
  label: ReactNode;
  value: T;
  options: readonly { value: T; label: string }[];
  onValue: (value: T) => void;
  error?: string;
  className?: string;
}) {
  const encode = (v: T) => (v === "" ? EMPTY : String(v));
  return (
    <Field id={id} label={label} error={error} className={className}>
      <Select value={encode(value)} onValueChange={(raw) => onValue(options.find((o) => encode(o.value) === raw)?.value ?? value)}>
        <SelectTrigger id={id} aria-invalid={!!error} data-testid={id}>
          <SelectValue />
        </SelectTrigger>
        <SelectContent>
          {options.map((option) => (
            <SelectItem key={encode(option.value)} value={encode(option.value)}>
              {option.label}
            </SelectItem>
          ))}
        </SelectContent>
      </Select>
    </Field>
  );
}

/** A labelled slider with a number box beside it (either one sets the value). */
export function SliderField({
  id,
  label,
  value,
  onValue,
  min,
  max,
  step,
  integer = true,
  error,
  hint,
  className,
}: {
  id: string;
  label: ReactNode;
  value: number;
  onValue: (value: number) => void;
  min: number;
  max: number;
  step: number;
  integer?: boolean;
  error?: string;
  hint?: ReactNode;
  className?: string;
}) {
  return (
    <Field id={id} label={label} error={error} hint={hint ?? String(value)} className={className}>
      <div className="flex items-center gap-3">
        <Slider aria-label={typeof label === "string" ? label : id} min={min} max={max} step={step} value={[Math.min(max, Math.max(min, value))]} onValueChange={([v]) => onValue(v)} />
        <NumberInput id={id} className="w-24" integer={integer} min={min} step={step} value={value} onValue={onValue} aria-invalid={!!error} />
      </div>
    </Field>
  );
}

/** A labelled checkbox. */
export function CheckField({ id, label, checked, onChecked }: { id: string; label: ReactNode; checked: boolean; onChecked: (checked: boolean) => void }) {
  return (
    <label htmlFor={id} className="flex items-center gap-2 text-sm font-medium">
      <input id={id} type="checkbox" className="size-4 accent-primary" checked={checked} onChange={(e) => onChecked(e.target.checked)} />
      {label}
    </label>
  );
}
