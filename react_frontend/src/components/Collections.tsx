import { useCallback, useEffect, useState, type FormEvent } from "react";
import { FolderOpen, FolderPlus, Loader2, Pencil, Trash2, X } from "lucide-react";
import { Button } from "@/components/ui/button";
import { Input } from "@/components/ui/input";
import {
  addToCollection,
  createCollection,
  deleteCollection,
  describeChange,
  listCollections,
  removeFromCollection,
  renameCollection,
  withCollection,
  type Collection,
} from "@/lib/collections";
import { errorFromException, type AppError } from "@/lib/errors";

/** The user's collections, read again on `refreshKey`, with `set` to change the list in place after an edit. */
export function useCollections(root: string, refreshKey: number, onError: (error: AppError) => void) {
  const [list, setList] = useState<Collection[]>([]);
  const reload = useCallback(async () => {
    try {
      setList(await listCollections(root));
    } catch (err) {
      onError(errorFromException(err));
    }
  }, [root, onError]);
  useEffect(() => {
    void reload();
  }, [reload, refreshKey]);
  return { list, setList, reload };
}

interface PanelProps {
  root: string;
  collections: Collection[];
  /** The collection whose jobs are shown, or null. */
  browsing: number | null;
  onBrowse: (id: number | null) => void;
  onChanged: (list: Collection[]) => void;
  onError: (error: AppError) => void;
  confirm?: (message: string) => boolean;
  fetchImpl?: typeof fetch;
}

/** The collections as chips: open one to browse its jobs, rename it in place, delete it (its jobs stay); and a box
 * to make a new one. */
export function CollectionsPanel({ root, collections, browsing, onBrowse, onChanged, onError, confirm = (m) => window.confirm(m), fetchImpl }: PanelProps) {
  const [name, setName] = useState("");
  const [busy, setBusy] = useState(false);
  const create = async (event: FormEvent) => {
    event.preventDefault();
    setBusy(true);
    try {
      onChanged(withCollection(collections, await createCollection(root, name, fetchImpl)));
      setName("");
    } catch (err) {
      onError(errorFromException(err));
    } finally {
      setBusy(false);
    }
  };
  const remove = async (c: Collection) => {
    if (!confirm(`Delete the collection “${c.name}”? Its ${c.jobs} job(s) stay in your history.`)) return;
    try {
      await deleteCollection(root, c.collection_id, fetchImpl);
      onChanged(collections.filter((x) => x.collection_id !== c.collection_id));
      if (browsing === c.collection_id) onBrowse(null);
    } catch (err) {
      onError(errorFromException(err));
    }
  };
  return (
    <section className="grid gap-2" aria-label="Collections" data-testid="collections">
      <div className="flex flex-wrap items-center gap-2">
        <span className="text-sm font-medium">Collections</span>
        {collections.length === 0 ? <span className="text-xs text-muted-foreground">none yet: name one to make it.</span> : null}
        {collections.map((c) => (
          <CollectionChip
            key={c.collection_id}
            root={root}
            collection={c}
            open={browsing === c.collection_id}
            onBrowse={() => onBrowse(browsing === c.collection_id ? null : c.collection_id)}
            onRenamed={(renamed) => onChanged(withCollection(collections, renamed))}
            onDelete={() => void remove(c)}
            onError={onError}
            fetchImpl={fetchImpl}
          />
        ))}
        <form onSubmit={(event) => void create(event)} className="flex items-center gap-1">
          <Input
            value={name}
            maxLength={100}
            onChange={(event) => setName(event.target.value)}
            placeholder="New collection"
            aria-label="New collection name"
            className="h-8 w-40"
            data-testid="collection-new-name"
          />
          <Button type="submit" variant="outline" size="sm" disabled={busy} data-testid="collection-create">
            {busy ? <Loader2 className="animate-spin" /> : <FolderPlus />}
            Make
          </Button>
        </form>
      </div>
    </section>
  );
}

interface ChipProps {
  root: string;
  collection: Collection;
  open: boolean;
  onBrowse: () => void;
  onRenamed: (collection: Collection) => void;
  onDelete: () => void;
  onError: (error: AppError) => void;
  fetchImpl?: typeof fetch;
}

/** One collection: its name and size (a toggle that browses it), a pencil to rename it and a bin to delete it. */
function CollectionChip({ root, collection: c, open, onBrowse, onRenamed, onDelete, onError, fetchImpl }: ChipProps) {
  const [editing, setEditing] = useState(false);
  const [text, setText] = useState(c.name);
  const save = async (event: FormEvent) => {
    event.preventDefault();
    try {
      onRenamed(await renameCollection(root, c.collection_id, text, fetchImpl));
      setEditing(false);
    } catch (err) {
      onError(errorFromException(err));
    }
  };
  if (editing) {
    return (
      <form onSubmit={(event) => void save(event)} className="flex items-center gap-1" data-testid="collection">
        <Input
          autoFocus
          value={text}
          maxLength={100}
          onChange={(event) => setText(event.target.value)}
          onKeyDown={(event) => event.key === "Escape" && setEditing(false)}
          aria-label={`New name for ${c.name}`}
          className="h-8 w-40"
          data-testid="collection-name-input"
        />
      </form>
    );
  }
  return (
    <span className="inline-flex items-center rounded-md border" data-testid="collection" data-name={c.name}>
      <Button variant={open ? "default" : "ghost"} size="sm" aria-pressed={open} onClick={onBrowse} title={open ? "Show all jobs" : "Show its jobs"} data-testid="collection-browse">
        <FolderOpen />
        {c.name} ({c.jobs})
      </Button>
      <Button variant="ghost" size="sm" className="size-8 p-0" aria-label={`Rename collection ${c.name}`} title="Rename" onClick={() => { setText(c.name); setEditing(true); }} data-testid="collection-rename">
        <Pencil />
      </Button>
      <Button variant="ghost" size="sm" className="size-8 p-0 text-destructive" aria-label={`Delete collection ${c.name}`} title="Delete (its jobs stay)" onClick={onDelete} data-testid="collection-delete">
        <Trash2 />
      </Button>
    </span>
  );
}

interface SelectionProps {
  root: string;
  selected: number[];
  collections: Collection[];
  /** The collection shown, whose jobs can be taken out of it. */
  browsing: Collection | null;
  /** After an add or a take-out: what it did in words, and the ids taken out (if any). */
  onDone: (message: string, removed: number[]) => void;
  onClear: () => void;
  onError: (error: AppError) => void;
  fetchImpl?: typeof fetch;
}

/** What to do with the selected jobs: add them to a collection, take them out of the one shown, or unselect. */
export function SelectionBar({ root, selected, collections, browsing, onDone, onClear, onError, fetchImpl }: SelectionProps) {
  const [target, setTarget] = useState("");
  const [busy, setBusy] = useState(false);
  if (selected.length === 0) return null;
  const chosen = collections.find((c) => String(c.collection_id) === target) ?? null;
  const run = async (kind: "add" | "remove", c: Collection) => {
    setBusy(true);
    try {
      const change = kind === "add" ? addToCollection : removeFromCollection;
      const done = await change(root, c.collection_id, selected, fetchImpl);
      onDone(describeChange(kind, done, c.name), kind === "remove" ? selected : []);
    } catch (err) {
      onError(errorFromException(err));
    } finally {
      setBusy(false);
    }
  };
  return (
    <div className="flex flex-wrap items-center gap-2 rounded-md border bg-muted/40 p-2 text-sm" data-testid="selection-bar">
      <span data-testid="selection-count">
        {selected.length} selected
      </span>
      <select
        aria-label="Collection to add to"
        className="h-8 rounded-md border bg-background px-2 text-sm"
        value={target}
        onChange={(event) => setTarget(event.target.value)}
        data-testid="selection-collection"
      >
        <option value="">Choose a collection…</option>
        {collections.map((c) => (
          <option key={c.collection_id} value={String(c.collection_id)}>
            {c.name}
          </option>
        ))}
      </select>
      <Button size="sm" variant="outline" disabled={busy || !chosen} onClick={() => chosen && void run("add", chosen)} data-testid="selection-add">
        <FolderPlus />
        Add to collection
      </Button>
      {browsing ? (
        <Button size="sm" variant="outline" disabled={busy} onClick={() => void run("remove", browsing)} data-testid="selection-remove">
          Take out of “{browsing.name}”
        </Button>
      ) : null}
      <Button size="sm" variant="ghost" onClick={onClear} data-testid="selection-clear">
        <X />
        Unselect
      </Button>
    </div>
  );
}
