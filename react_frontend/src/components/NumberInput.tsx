import { useEffect, useState, type ComponentProps } from "react";
import { Input } from "@/components/ui/input";

/** A number box that lets the text be half-typed ("", "-") and reports a number only when it is one. */
export function NumberInput({
  value,
  onValue,
  integer = true,
  ...props
}: Omit<ComponentProps<typeof Input>, "value" | "onChange" | "type"> & {
  value: number;
  onValue: (value: number) => void;
  integer?: boolean;
}) {
  const [text, setText] = useState(String(value));

  useEffect(() => {
    setText((current) => (Number(current) === value && current.trim() !== "" ? current : String(value)));
  }, [value]);

  return (
    <Input
      {...props}
      type="number"
      inputMode={integer ? "numeric" : "decimal"}
      value={text}
      onChange={(event) => {
        setText(event.target.value);
        const parsed = Number(event.target.value);
        if (event.target.value.trim() !== "" && Number.isFinite(parsed)) onValue(parsed);
      }}
      onBlur={() => setText(String(value))}
    />
  );
}

/** A number box that may be left empty: null, so that the server uses its own default. */
export function OptionalNumberInput({
  value,
  onValue,
  ...props
}: Omit<ComponentProps<typeof Input>, "value" | "onChange" | "type" | "placeholder"> & {
  value: number | null;
  onValue: (value: number | null) => void;
}) {
  return (
    <Input
      {...props}
      type="number"
      placeholder="server default"
      value={value ?? ""}
      onChange={(event) => {
        const parsed = event.target.value.trim() === "" ? null : Number(event.target.value);
        onValue(parsed != null && Number.isFinite(parsed) ? parsed : null);
      }}
    />
  );
}
