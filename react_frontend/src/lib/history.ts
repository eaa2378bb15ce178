/**
 * History's search and favourites over Atelier's REST routes (docs/history.md): `GET /api/history?q=…` and
 * `GET /api/conversations?q=…` page by an opaque cursor; `POST`/`DELETE …/favourite` marks. The login cookie
 * authorises them, as it does the stored images. Pure URL building and answer reading, so that they are unit tested;
 * `restJson` is the one place that fetches.
 */
import { errorFromHttp, errorFromException, type AppError } from "./errors";
import type { ConversationPage, ConversationSearchPage, ConversationSummary, JobSearchPage } from "./types";

export interface JobQuery {
  q: string;
  favourite: boolean;
  mode?: "txt2img" | "img2img" | "inpaint" | "";
  /** The filters beyond words and favourites (HistoryFilters sets them); empty or absent: not filtered. */
  filters?: JobFilters;
}

/** The image search's filters as the user set them (text fields, as typed or picked). */
export interface JobFilters {
  /** The first day (YYYY-MM-DD, the user's own calendar), and the last day, both included. */
  from?: string;
  to?: string;
  model?: string;
  sampler?: string;
  /** "WxH", as /api/history/facets lists the sizes. */
  size?: string;
  seed?: string;
  lora?: string;
  status?: string;
  collection_id?: number | null;
  order?: "" | "relevance" | "newest" | "oldest";
}

export interface ConversationQuery {
  q: string;
  favourite: boolean;
  reasoning: boolean;
}

/** Whether a query asks anything (words or a filter); without, the screens list the newest as they always did. */
export function isSearch(query: { q: string; favourite: boolean; mode?: string; filters?: JobFilters }): boolean {
  return query.q.trim() !== "" || query.favourite || Boolean(query.mode) || Object.keys(filterParams(query.filters)).length > 0;
}

/** Midnight at the start of a YYYY-MM-DD day in the browser's time zone (plus `days`), as an ISO time in UTC. */
export function dayStart(day: string, days = 0): string | null {
  const match = /^(\d{4})-(\d{2})-(\d{2})$/.exec(day.trim());
  if (!match) return null;
  const when = new Date(Number(match[1]), Number(match[2]) - 1, Number(match[3]) + days);
  return Number.isNaN(when.getTime()) ? null : when.toISOString();
}

/**
 * The REST filters (GET /api/history's query parameters, an export's `query`) of what the user set: the days become
 * `since` (the first day's start) and `until` (the start of the day after the last: REST's `until` is exclusive),
 * the size its `width` and `height`; what is unset is left out.
 */
export function filterParams(filters: JobFilters | undefined): Record<string, string | number> {
  const out: Record<string, string | number> = {};
  if (!filters) return out;
  const since = filters.from ? dayStart(filters.from) : null;
  const until = filters.to ? dayStart(filters.to, 1) : null;
  if (since) out.since = since;
  if (until) out.until = until;
  for (const key of ["model", "sampler", "lora", "status", "order"] as const) {
    const value = filters[key]?.trim();
    if (value) out[key] = value;
  }
  const size = /^(\d+)x(\d+)$/.exec(filters.size ?? "");
  if (size) {
    out.width = Number(size[1]);
    out.height = Number(size[2]);
  }
  // The seed as typed: the server checks it (a whole number) and names the field when it is not one.
  if (filters.seed?.trim()) out.seed = filters.seed.trim();
  if (filters.collection_id != null) out.collection_id = filters.collection_id;
  return out;
}

function withParams(root: string, path: string, params: Record<string, string | number | boolean | null | undefined>): string {
  const url = new URL(path, root);
  for (const [name, value] of Object.entries(params)) {
    if (value === null || value === undefined || value === "" || value === false) continue;
    url.searchParams.set(name, String(value));
  }
  return url.href;
}

/** The URL of one page of a job search (the cursor of the previous page, or null for the first). */
export function jobSearchUrl(root: string, query: JobQuery, cursor: string | null, limit: number): string {
  return withParams(root, "api/history", {
    q: query.q.trim(),
    favourite: query.favourite,
    mode: query.mode,
    ...filterParams(query.filters),
    cursor,
    limit,
  });
}

/** The URL of one page of a conversation search; `reasoning=false` searches the answers only. */
export function conversationSearchUrl(root: string, query: ConversationQuery, cursor: string | null, limit: number): string {
  return withParams(root, "api/conversations", {
    q: query.q.trim(),
    favourite: query.favourite,
    reasoning: query.reasoning ? null : "false",
    cursor,
    limit,
  });
}

/** The favourite route of a job or a conversation. */
export function favouriteUrl(root: string, kind: "job" | "conversation", id: number): string {
  return new URL(kind === "job" ? `api/history/${id}/favourite` : `api/conversations/${id}/favourite`, root).href;
}

/**
 * A REST refusal as an AppError: FastAPI's 422 lists `{loc, msg}` per field, which become the error's fields
 * and its message; other statuses read as errorFromHttp reads them.
 */
export function restError(status: number, body: unknown, retryAfter: string | null = null): AppError {
  const detail = body && typeof body === "object" ? (body as { detail?: unknown }).detail : undefined;
  if (status === 422 && Array.isArray(detail)) {
    const fields: Record<string, string> = {};
    for (const item of detail as { loc?: unknown[]; msg?: string }[]) {
      const field = String(item.loc?.[item.loc.length - 1] ?? "input");
      fields[field] = item.msg ?? "not allowed";
    }
    const message = Object.entries(fields)
      .map(([field, msg]) => `${field}: ${msg}`)
      .join(" ");
    return { ...errorFromHttp(422, { detail: message }), fields };
  }
  return errorFromHttp(status, body, retryAfter);
}

/** Fetch a REST route with the login cookie: its JSON, or an AppError thrown. */
export async function restJson<T>(url: string, init: RequestInit = {}, fetchImpl: typeof fetch = fetch): Promise<T> {
  let response: Response;
  try {
    response = await fetchImpl(url, { credentials: "include", ...init });
  } catch (err) {
    throw errorFromException(err);
  }
  const text = await response.text();
  let body: unknown = text;
  try {
    body = JSON.parse(text);
  } catch {
    // not JSON: the text is the message
  }
  if (!response.ok) throw restError(response.status, body, response.headers.get("retry-after"));
  return body as T;
}

export function searchJobs(root: string, query: JobQuery, cursor: string | null, limit: number, fetchImpl?: typeof fetch) {
  return restJson<JobSearchPage>(jobSearchUrl(root, query, cursor, limit), {}, fetchImpl);
}

export function searchConversations(root: string, query: ConversationQuery, cursor: string | null, limit: number, fetchImpl?: typeof fetch) {
  return restJson<ConversationSearchPage>(conversationSearchUrl(root, query, cursor, limit), {}, fetchImpl);
}

/** Mark (or unmark) a job or a conversation as a favourite; the mark as the server now has it. */
export async function setFavourite(root: string, kind: "job" | "conversation", id: number, value: boolean, fetchImpl?: typeof fetch): Promise<boolean> {
  const answer = await restJson<{ favourite: boolean }>(favouriteUrl(root, kind, id), { method: value ? "POST" : "DELETE" }, fetchImpl);
  return answer.favourite;
}

/** The link of a conversation's export (a GET: a plain download link carries the login cookie). */
export function conversationExportUrl(root: string, id: number, format: "markdown" | "json" | "openai"): string {
  return new URL(`api/conversations/${id}/export?format=${format}`, root).href;
}

/** The link of the whole account's archive. */
export function accountExportUrl(root: string): string {
  return new URL("api/account/export", root).href;
}

/** Which jobs an images export names: the search shown (every result, not one page), or all of them. */
export function imagesExportBody(query: JobQuery): Record<string, unknown> {
  if (!isSearch(query)) return { all: true };
  return {
    query: {
      q: query.q.trim(),
      ...(query.favourite ? { favourite: true } : {}),
      ...(query.mode ? { mode: query.mode } : {}),
      ...exportFilters(query.filters),
    },
  };
}

/** The filters as an export's body takes them: typed (numbers as numbers), and without `order` (a zip has none). */
function exportFilters(filters: JobFilters | undefined): Record<string, string | number> {
  const { order: _order, seed, ...rest } = filterParams(filters);
  void _order;
  const out: Record<string, string | number> = { ...rest };
  if (seed !== undefined) out.seed = /^\d+$/.test(String(seed)) ? Number(seed) : seed;
  return out;
}

export interface Received {
  bytes: number;
  /** Jobs in the zip (the X-Atelier-Jobs header), known before the first byte. */
  jobs: number | null;
}

/** The file name a download's Content-Disposition gives, or `fallback`. */
export function attachmentName(header: string | null, fallback: string): string {
  const match = header ? /filename="([^"]+)"/.exec(header) : null;
  return match ? match[1] : fallback;
}

/**
 * POST a streamed download (the images zip), reporting the bytes received as they come (the zip has no
 * Content-Length); the whole file as a Blob with its name. A refusal (422 naming the field) comes before any byte.
 */
export async function downloadStream(
  url: string,
  body: unknown,
  onProgress: (received: Received) => void,
  fetchImpl: typeof fetch = fetch,
): Promise<{ blob: Blob; name: string }> {
  let response: Response;
  try {
    response = await fetchImpl(url, { method: "POST", credentials: "include", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
  } catch (err) {
    throw errorFromException(err);
  }
  if (!response.ok) {
    const text = await response.text();
    let parsed: unknown = text;
    try {
      parsed = JSON.parse(text);
    } catch {
      // the text is the message
    }
    throw restError(response.status, parsed, response.headers.get("retry-after"));
  }
  const jobs = Number(response.headers.get("x-atelier-jobs") ?? NaN);
  const received: Received = { bytes: 0, jobs: Number.isFinite(jobs) ? jobs : null };
  const parts: BlobPart[] = [];
  const reader = response.body?.getReader();
  while (reader) {
    const { done, value } = await reader.read();
    if (done) break;
    parts.push(value);
    received.bytes += value.byteLength;
    onProgress({ ...received });
  }
  const name = attachmentName(response.headers.get("content-disposition"), "atelier-images.zip");
  return { blob: new Blob(parts, { type: "application/zip" }), name };
}

/** Bring an account archive into the user's account: the counts of what arrived, or an AppError (nothing written). */
export async function importArchive(root: string, file: File, fetchImpl?: typeof fetch): Promise<Record<string, number>> {
  const form = new FormData();
  form.append("archive", file, file.name);
  return restJson<Record<string, number>>(new URL("api/account/import", root).href, { method: "POST", body: form }, fetchImpl);
}

/** Delete many of the user's jobs at once, with their images: what was deleted, and the ids that were not theirs. */
export function deleteJobs(root: string, jobIds: number[], fetchImpl?: typeof fetch): Promise<{ deleted: number[]; missing: number[] }> {
  return restJson(
    new URL("api/history/delete", root).href,
    { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ job_ids: jobIds }) },
    fetchImpl,
  );
}

/**
 * One page of the chat sidebar: the latest conversations through the named API (`/conversations`), or, with
 * words, a search of them (title and every message, the reasoning too); `next` continues either.
 */
export async function conversationsPage(
  conn: { root: string; call<T>(endpoint: string, payload: Record<string, unknown>): Promise<T> },
  q: string,
  before: number | string | null,
  limit: number,
): Promise<{ conversations: ConversationSummary[]; next: number | string | null }> {
  if (q.trim()) {
    const found = await searchConversations(conn.root, { q, favourite: false, reasoning: true }, before == null ? null : String(before), limit);
    return { conversations: found.conversations, next: found.next_cursor };
  }
  const page = await conn.call<ConversationPage>("/conversations", { limit, before });
  return { conversations: page.conversations, next: page.next_before };
}

/** Rename one of the user's conversations: its summary with the title as stored (spaces tidied). */
export function renameConversation(root: string, id: number, title: string, fetchImpl?: typeof fetch): Promise<ConversationSummary> {
  return restJson(
    new URL(`api/conversations/${id}`, root).href,
    { method: "PATCH", headers: { "content-type": "application/json" }, body: JSON.stringify({ title }) },
    fetchImpl,
  );
}
