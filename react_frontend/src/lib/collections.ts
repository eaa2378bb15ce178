/**
 * Collections over Atelier's REST routes (`/api/collections`, docs/history.md): named sets of the user's image jobs
 * (conversations are not collected). List, make, rename, delete; add and take out jobs. A collection's jobs are
 * browsed as a history search filtered by `collection_id`, so they page, search and export as any search does.
 */
import { restJson } from "./history";

export interface Collection {
  collection_id: number;
  name: string;
  created_at: string;
  updated_at: string;
  /** How many jobs it holds. */
  jobs: number;
  /** An image of its newest job (GET /api/images/{id}), or null when empty. */
  cover_file_id: number | null;
}

/** What an add or a take-out did. */
export interface Changed {
  added: number;
  already: number;
  removed: number;
}

function url(root: string, path: string): string {
  return new URL(path, root).href;
}

function json(method: string, body: unknown): RequestInit {
  return { method, headers: { "content-type": "application/json" }, body: JSON.stringify(body) };
}

/** The user's collections, by name. */
export function listCollections(root: string, fetchImpl?: typeof fetch): Promise<Collection[]> {
  return restJson<Collection[]>(url(root, "api/collections"), {}, fetchImpl);
}

/** A new, empty collection; a 422 naming `name` when it is empty, too long or already the user's. */
export function createCollection(root: string, name: string, fetchImpl?: typeof fetch): Promise<Collection> {
  return restJson<Collection>(url(root, "api/collections"), json("POST", { name }), fetchImpl);
}

/** A collection under a new name (spaces tidied by the server). */
export function renameCollection(root: string, id: number, name: string, fetchImpl?: typeof fetch): Promise<Collection> {
  return restJson<Collection>(url(root, `api/collections/${id}`), json("PATCH", { name }), fetchImpl);
}

/** Delete a collection; its jobs stay in the user's history. */
export async function deleteCollection(root: string, id: number, fetchImpl?: typeof fetch): Promise<void> {
  await restJson<unknown>(url(root, `api/collections/${id}`), { method: "DELETE" }, fetchImpl);
}

/** Add jobs to a collection: all or nothing (a 422 when any is not the user's). */
export function addToCollection(root: string, id: number, jobIds: number[], fetchImpl?: typeof fetch): Promise<Changed> {
  return restJson<Changed>(url(root, `api/collections/${id}/jobs`), json("POST", { job_ids: jobIds }), fetchImpl);
}

/** Take jobs out of a collection (they stay in history). */
export function removeFromCollection(root: string, id: number, jobIds: number[], fetchImpl?: typeof fetch): Promise<Changed> {
  return restJson<Changed>(url(root, `api/collections/${id}/jobs/remove`), json("POST", { job_ids: jobIds }), fetchImpl);
}

/** A collection's list after a change: `changed` put in its place (or added), sorted by name as the server sorts. */
export function withCollection(list: Collection[], changed: Collection): Collection[] {
  const others = list.filter((c) => c.collection_id !== changed.collection_id);
  return [...others, changed].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : a.collection_id - b.collection_id));
}

/** What an add or take-out did, in words. */
export function describeChange(kind: "add" | "remove", changed: Changed, name: string): string {
  const jobs = (n: number) => `${n} job${n === 1 ? "" : "s"}`;
  if (kind === "remove") return `Took ${jobs(changed.removed)} out of “${name}”.`;
  const already = changed.already ? ` (${jobs(changed.already)} already in it)` : "";
  return `Added ${jobs(changed.added)} to “${name}”${already}.`;
}
