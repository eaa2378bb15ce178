import { useState, type FormEvent } from "react";
import { Loader2, Pencil, Search, Star, Trash2 } from "lucide-react";
import { Button } from "@/components/ui/button";
import { Input } from "@/components/ui/input";
import { errorFromException, type AppError } from "@/lib/errors";
import { deleteJobs, renameConversation, setFavourite } from "@/lib/history";
import type { Segment } from "@/lib/types";

export const SEARCH_HELP = 'All words must match; "a phrase", pref*, -word or NOT word, a OR b.';

interface SearchBarProps {
  /** The query shown on the screen (applied when the user submits it). */
  query: { q: string; favourite: boolean };
  onSearch: (query: { q: string; favourite: boolean }) => void;
  placeholder: string;
  testId: string;
  busy?: boolean;
}

/** A search box with a favourites-only toggle; Enter or the button applies it. */
export function SearchBar({ query, onSearch, placeholder, testId, busy = false }: SearchBarProps) {
  const [text, setText] = useState(query.q);
  const submit = (event: FormEvent) => {
    event.preventDefault();
    onSearch({ q: text, favourite: query.favourite });
  };
  return (
    <form role="search" className="flex flex-wrap items-center gap-2" onSubmit={submit} data-testid={testId}>
      <Input
        type="search"
        value={text}
        maxLength={1000}
        onChange={(event) => setText(event.target.value)}
        placeholder={placeholder}
        title={SEARCH_HELP}
        aria-label={placeholder}
        className="min-w-48 flex-1"
        data-testid={`${testId}-input`}
      />
      <Button
        type="button"
        variant={query.favourite ? "default" : "outline"}
        size="sm"
        aria-pressed={query.favourite}
        onClick={() => onSearch({ q: text, favourite: !query.favourite })}
        data-testid={`${testId}-favourites`}
      >
        <Star className={query.favourite ? "fill-current" : undefined} />
        Favourites
      </Button>
      <Button type="submit" size="sm" disabled={busy} data-testid={`${testId}-submit`}>
        {busy ? <Loader2 className="animate-spin" /> : <Search />}
        Search
      </Button>
    </form>
  );
}

/** A searched text with its matched words marked; plain `text` when the answer has no marks. */
export function Marked({ segments, text }: { segments?: Segment[] | null; text: string }) {
  if (!segments || segments.length === 0) return <>{text}</>;
  return (
    <>
      {segments.map((segment, index) =>
        segment.match ? (
          <mark key={index} className="rounded-sm bg-yellow-200 px-0.5 text-inherit dark:bg-yellow-700">
            {segment.text}
          </mark>
        ) : (
          <span key={index}>{segment.text}</span>
        ),
      )}
    </>
  );
}

interface FavouriteProps {
  root: string;
  kind: "job" | "conversation";
  id: number;
  value: boolean;
  onChange: (value: boolean) => void;
  onError: (error: AppError) => void;
  fetchImpl?: typeof fetch;
}

/** A star that marks a job or a conversation as a favourite (and back), saved on the server at once. */
export function FavouriteButton({ root, kind, id, value, onChange, onError, fetchImpl }: FavouriteProps) {
  const [saving, setSaving] = useState(false);
  const toggle = async () => {
    setSaving(true);
    try {
      onChange(await setFavourite(root, kind, id, !value, fetchImpl));
    } catch (err) {
      onError(errorFromException(err));
    } finally {
      setSaving(false);
    }
  };
  return (
    <Button
      variant="ghost"
      size="sm"
      className="size-7 p-0"
      disabled={saving}
      aria-pressed={value}
      aria-label={value ? `Unmark ${kind} ${id} as a favourite` : `Mark ${kind} ${id} as a favourite`}
      title={value ? "A favourite (click to unmark)" : "Mark as a favourite"}
      onClick={() => void toggle()}
      data-testid={`${kind}-favourite`}
    >
      <Star className={value ? "fill-yellow-400 text-yellow-500" : undefined} />
    </Button>
  );
}

interface DeleteShownProps {
  root: string;
  jobIds: number[];
  onDeleted: (deleted: number[]) => void;
  onError: (error: AppError) => void;
  /** Asks the user to confirm (window.confirm by default). */
  confirm?: (message: string) => boolean;
  fetchImpl?: typeof fetch;
}

/** Delete the jobs shown (with their images), after the user confirms. */
export function DeleteShown({ root, jobIds, onDeleted, onError, confirm = (m) => window.confirm(m), fetchImpl }: DeleteShownProps) {
  const [busy, setBusy] = useState(false);
  if (jobIds.length === 0) return null;
  const run = async () => {
    const what = `${jobIds.length} job${jobIds.length === 1 ? "" : "s"}`;
    if (!confirm(`Delete the ${what} shown, with their images? They cannot come back.`)) return;
    setBusy(true);
    try {
      onDeleted((await deleteJobs(root, jobIds, fetchImpl)).deleted);
    } catch (err) {
      onError(errorFromException(err));
    } finally {
      setBusy(false);
    }
  };
  return (
    <Button variant="outline" size="sm" className="text-destructive" onClick={() => void run()} disabled={busy} data-testid="history-delete-shown">
      {busy ? <Loader2 className="animate-spin" /> : <Trash2 />}
      Delete the {jobIds.length} shown
    </Button>
  );
}

/** The chat sidebar's search box: Enter applies the words, an empty box lists the latest again. */
export function ChatListSearch({ onSearch }: { onSearch: (q: string) => void }) {
  const [text, setText] = useState("");
  return (
    <form
      role="search"
      onSubmit={(event) => {
        event.preventDefault();
        onSearch(text);
      }}
    >
      <Input
        type="search"
        value={text}
        maxLength={1000}
        onChange={(event) => {
          setText(event.target.value);
          if (event.target.value === "") onSearch("");
        }}
        placeholder="Search chats"
        aria-label="Search chats"
        title={SEARCH_HELP}
        className="h-8"
        data-testid="chat-search-input"
      />
    </form>
  );
}

interface RenameProps {
  root: string;
  id: number;
  title: string;
  onRenamed: (title: string) => void;
  onError: (error: AppError) => void;
  fetchImpl?: typeof fetch;
}

/** A conversation's title, editable in place: Enter saves, Escape gives up; the server's refusal is shown. */
export function RenameConversation({ root, id, title, onRenamed, onError, fetchImpl }: RenameProps) {
  const [editing, setEditing] = useState(false);
  const [text, setText] = useState(title);
  const save = async (event: FormEvent) => {
    event.preventDefault();
    try {
      onRenamed((await renameConversation(root, id, text, fetchImpl)).title);
      setEditing(false);
    } catch (err) {
      onError(errorFromException(err));
    }
  };
  if (!editing) {
    return (
      <Button variant="ghost" size="sm" className="size-7 p-0" aria-label={`Rename conversation ${id}`} title="Rename" onClick={() => { setText(title); setEditing(true); }} data-testid="conversation-rename">
        <Pencil />
      </Button>
    );
  }
  return (
    <form onSubmit={(event) => void save(event)} className="flex items-center gap-1">
      <Input
        autoFocus
        value={text}
        maxLength={200}
        onChange={(event) => setText(event.target.value)}
        onKeyDown={(event) => event.key === "Escape" && setEditing(false)}
        aria-label="New title"
        className="h-7"
        data-testid="conversation-title-input"
      />
    </form>
  );
}
