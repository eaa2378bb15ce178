import type { ComponentProps, ReactNode } from "react";
import { ChevronDown } from "lucide-react";
import { Button } from "@/components/ui/button";
import { Collapsible, CollapsibleContent, CollapsibleTrigger } from "@/components/ui/collapsible";

type SectionProps = Omit<ComponentProps<typeof Collapsible>, "className" | "children"> & {
  /** What stays in sight while the section is closed: its name, a checkbox, its state. */
  header: ReactNode;
  toggleTestId: string;
  /** The Options button's accessible name, where "Options" alone would not say which. */
  toggleLabel?: string;
  children: ReactNode;
};

/** A bordered part of the image form (Hires. fix, Refiner) whose header stays in sight, its fields behind "Options". */
export function OptionsSection({ header, toggleTestId, toggleLabel, children, ...collapsible }: SectionProps) {
  return (
    <Collapsible {...collapsible} className="col-span-2 grid gap-3 rounded-lg border p-3">
      <div className="flex items-center justify-between gap-2">
        {header}
        <CollapsibleTrigger asChild>
          <Button variant="ghost" size="sm" data-testid={toggleTestId} aria-label={toggleLabel}>
            Options <ChevronDown />
          </Button>
        </CollapsibleTrigger>
      </div>
      <CollapsibleContent className="grid grid-cols-2 gap-4">{children}</CollapsibleContent>
    </Collapsible>
  );
}
