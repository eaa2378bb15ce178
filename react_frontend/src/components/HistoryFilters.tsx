import { useEffect, useState, type FormEvent, type ReactNode } from "react";
import { Filter, X } from "lucide-react";
import { Button } from "@/components/ui/button";
import { Input } from "@/components/ui/input";
import { Label } from "@/components/ui/label";
import type { Collection } from "@/lib/collections";
import { filterParams, restJson, type JobFilters, type JobQuery } from "@/lib/history";

/** What GET /api/history/facets answers: the values the user's own jobs have, for the filters' choices. */
export interface Facets {
  models: string[];
  samplers: string[];
  modes: string[];
  sizes: string[];
}

const NO_FACETS: Facets = { models: [], samplers: [], modes: [], sizes: [] };
const MODES = ["txt2img", "img2img", "inpaint"];
const STATUSES = ["done", "failed", "cancelled", "running"];
const ORDERS: [string, string][] = [["", "Best match (newest without words)"], ["newest", "Newest first"], ["oldest", "Oldest first"]];
const SELECT = "h-9 w-full rounded-md border bg-background px-2 text-sm";

/** The facets of the user's jobs; none (free text only) when the server cannot say. */
export function useFacets(root: string, refreshKey: number): Facets {
  const [facets, setFacets] = useState<Facets>(NO_FACETS);
  useEffect(() => {
    let live = true;
    restJson<Facets>(new URL("api/history/facets", root).href)
      .then((answer) => live && setFacets({ ...NO_FACETS, ...answer }))
      .catch(() => undefined); // the filters still take typed values; a search names any bad one
    return () => {
      live = false;
    };
  }, [root, refreshKey]);
  return facets;
}

/** How many filters are set (the mode included), for the button's badge. */
export function activeFilters(query: Pick<JobQuery, "mode" | "filters">): number {
  const params = filterParams(query.filters);
  // The two days are one filter to the user; the size one, though REST takes it as width and height.
  const keys = new Set(Object.keys(params).map((k) => (k === "until" ? "since" : k === "height" ? "width" : k)));
  return keys.size + (query.mode ? 1 : 0);
}

function Field({ id, label, children }: { id: string; label: string; children: ReactNode }) {
  return (
    <div className="grid gap-1">
      <Label htmlFor={id} className="text-xs">
        {label}
      </Label>
      {children}
    </div>
  );
}

function Choice({ id, label, value, options, onChange, any = "Any" }: {
  id: string;
  label: string;
  value: string;
  options: (string | [string, string])[];
  onChange: (value: string) => void;
  any?: string | null;
}) {
  const pairs = options.map((o) => (Array.isArray(o) ? o : [o, o]));
  // A value the user's jobs no longer have (a filter kept from before) stays offered, so the box shows what is sent.
  if (value && !pairs.some(([v]) => v === value)) pairs.push([value, value]);
  return (
    <Field id={id} label={label}>
      <select id={id} className={SELECT} value={value} onChange={(event) => onChange(event.target.value)} data-testid={id}>
        {any !== null ? <option value="">{any}</option> : null}
        {pairs.map(([v, text]) => (
          <option key={v} value={v}>
            {text}
          </option>
        ))}
      </select>
    </Field>
  );
}

interface Props {
  query: JobQuery;
  facets: Facets;
  collections: Collection[];
  /** Apply the filters (and the mode) set; the words and favourites stay as they are. */
  onApply: (change: Pick<JobQuery, "mode" | "filters">) => void;
}

/** The image search's filters beyond words and favourites: days, model, mode, size, sampler, seed, LoRA, status,
 * collection and order. Edited as a draft; Apply (or Enter) searches with them, Clear drops them all. */
export function HistoryFilters({ query, facets, collections, onApply }: Props) {
  const [open, setOpen] = useState(false);
  const [draft, setDraft] = useState<JobFilters>(query.filters ?? {});
  const [mode, setMode] = useState<string>(query.mode ?? "");
  // The filters applied elsewhere (a collection browsed from its card) show in the draft.
  useEffect(() => {
    setDraft(query.filters ?? {});
    setMode(query.mode ?? "");
  }, [query.filters, query.mode]);
  const set = (key: keyof JobFilters) => (value: string) =>
    setDraft((d) => ({ ...d, [key]: key === "collection_id" ? (value ? Number(value) : null) : value }));
  const apply = (event: FormEvent) => {
    event.preventDefault();
    onApply({ mode: mode as JobQuery["mode"], filters: draft });
  };
  const count = activeFilters(query);
  return (
    <div className="grid gap-2">
      <div className="flex items-center gap-2">
        <Button type="button" variant="outline" size="sm" aria-expanded={open} onClick={() => setOpen(!open)} data-testid="history-filters-toggle">
          <Filter />
          Filters{count ? ` (${count})` : ""}
        </Button>
        {count ? (
          <Button type="button" variant="ghost" size="sm" onClick={() => onApply({ mode: "", filters: {} })} data-testid="history-filters-clear">
            <X />
            Clear filters
          </Button>
        ) : null}
      </div>
      {open ? (
        <form onSubmit={apply} className="grid gap-3 rounded-md border p-3" aria-label="Filters" data-testid="history-filters">
          <div className="grid grid-cols-2 gap-2 sm:grid-cols-3 lg:grid-cols-6">
            <Field id="filter-from" label="From (day)">
              <Input id="filter-from" type="date" value={draft.from ?? ""} onChange={(e) => set("from")(e.target.value)} data-testid="filter-from" />
            </Field>
            <Field id="filter-to" label="To (day, included)">
              <Input id="filter-to" type="date" value={draft.to ?? ""} onChange={(e) => set("to")(e.target.value)} data-testid="filter-to" />
            </Field>
            <Choice id="filter-model" label="Model" value={draft.model ?? ""} options={facets.models} onChange={set("model")} />
            <Choice id="filter-mode" label="Mode" value={mode} options={MODES} onChange={setMode} />
            <Choice id="filter-size" label="Size" value={draft.size ?? ""} options={facets.sizes.map((s) => [s, s.replace("x", "×")])} onChange={set("size")} />
            <Choice id="filter-sampler" label="Sampler" value={draft.sampler ?? ""} options={facets.samplers} onChange={set("sampler")} />
            <Field id="filter-seed" label="Seed">
              <Input id="filter-seed" inputMode="numeric" maxLength={20} value={draft.seed ?? ""} onChange={(e) => set("seed")(e.target.value)} data-testid="filter-seed" />
            </Field>
            <Field id="filter-lora" label="LoRA">
              <Input id="filter-lora" maxLength={255} value={draft.lora ?? ""} onChange={(e) => set("lora")(e.target.value)} data-testid="filter-lora" />
            </Field>
            <Choice id="filter-status" label="Status" value={draft.status ?? ""} options={STATUSES} onChange={set("status")} />
            <Choice
              id="filter-collection"
              label="Collection"
              value={draft.collection_id != null ? String(draft.collection_id) : ""}
              options={collections.map((c) => [String(c.collection_id), `${c.name} (${c.jobs})`])}
              onChange={set("collection_id")}
            />
            <Choice id="filter-order" label="Order" value={draft.order ?? ""} options={ORDERS} onChange={set("order")} any={null} />
          </div>
          <div className="flex gap-2">
            <Button type="submit" size="sm" data-testid="history-filters-apply">
              Apply filters
            </Button>
            <Button
              type="button"
              variant="outline"
              size="sm"
              onClick={() => {
                setDraft({});
                setMode("");
              }}
            >
              Reset the form
            </Button>
          </div>
        </form>
      ) : null}
    </div>
  );
}
