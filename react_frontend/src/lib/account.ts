/**
 * The account panel's requests: your API keys and your running jobs, through Atelier's REST routes (`/api/keys`,
 * `/api/jobs`) with the same login cookie as the rest of the app. A key is shown once, in the answer that makes it.
 */
import { errorFromException, errorFromHttp } from "./errors";

export interface ApiKey {
  name: string;
  /** The key's first characters ("atl_AbC123…"): never the key itself. */
  prefix: string;
  created_at: string | null;
  last_used_at: string | null;
}

export interface CreatedKey extends ApiKey {
  /** The whole key, shown this once. */
  key: string;
}

export interface RunningJob {
  ref: string;
  kind: string;
  /** How it came in: web (the UIs), openai, a1111. */
  source: string;
  description: string;
  status: string;
  message: string;
  progress: number;
  job_id: number | null;
  conversation_id: number | null;
}

/** A REST request with the login cookie; the JSON answer, or an AppError from the server's refusal. */
export async function request<T>(root: string, path: string, init: RequestInit, fetchImpl: typeof fetch): Promise<T> {
  let response: Response;
  try {
    response = await fetchImpl(new URL(path, root), { credentials: "include", ...init });
  } catch (err) {
    throw errorFromException(err);
  }
  const text = await response.text();
  let body: unknown = text;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    // not JSON: the text itself is the message
  }
  if (!response.ok) throw errorFromHttp(response.status, body, response.headers.get("retry-after"));
  return body as T;
}

export const JSON_HEADERS = { "content-type": "application/json" };

export async function listKeys(root: string, fetchImpl: typeof fetch = fetch): Promise<ApiKey[]> {
  return (await request<{ keys: ApiKey[] }>(root, "api/keys", {}, fetchImpl)).keys;
}

/** Make a key; its `key` is shown once (the server keeps only a hash). */
export async function createKey(root: string, name: string, fetchImpl: typeof fetch = fetch): Promise<CreatedKey> {
  return request<CreatedKey>(root, "api/keys", { method: "POST", headers: JSON_HEADERS, body: JSON.stringify({ name: name.trim() }) }, fetchImpl);
}

/** Revoke a key: it stops working at once. */
export async function revokeKey(root: string, name: string, fetchImpl: typeof fetch = fetch): Promise<void> {
  await request<null>(root, `api/keys/${encodeURIComponent(name)}`, { method: "DELETE" }, fetchImpl);
}

export async function listJobs(root: string, fetchImpl: typeof fetch = fetch): Promise<RunningJob[]> {
  return (await request<{ jobs: RunningJob[] }>(root, "api/jobs", {}, fetchImpl)).jobs;
}

/** Stop one of your running jobs, whichever way it came in. */
export async function stopJob(root: string, ref: string, fetchImpl: typeof fetch = fetch): Promise<void> {
  await request<unknown>(root, `api/jobs/${encodeURIComponent(ref)}/stop`, { method: "POST", headers: JSON_HEADERS, body: "{}" }, fetchImpl);
}
