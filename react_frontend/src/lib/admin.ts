/**
 * The admin panel's requests, through Atelier's REST routes under `/api/admin` (admins only: anyone else gets 403 from
 * every one of them) with the same login cookie as the rest of the app, and `/api/me` to know whether to show it.
 */
import { JSON_HEADERS, request, type ApiKey } from "./account";

export interface Me {
  /** null in single-user mode (no accounts). */
  name: string | null;
  admin: boolean;
}

export interface AdminUser {
  name: string;
  admin: boolean;
  disabled: boolean;
  created_at: string;
  limits_overridden: boolean;
  /** How many API keys the user has. */
  keys: number | null;
}

export interface UserChange {
  disabled?: boolean;
  admin?: boolean;
  password?: string;
}

export const LIMIT_FIELDS = ["image_jobs", "chat_messages", "uploads", "reads", "queue_quota"] as const;
export type LimitField = (typeof LIMIT_FIELDS)[number];

export interface Limits {
  image_jobs: string;
  chat_messages: string;
  uploads: string;
  reads: string;
  queue_quota: number;
  /** The fields an admin set for this user; the rest are the server's settings. */
  overridden: LimitField[];
}

export interface UserLimits extends Limits {
  user: string;
}

/** A change of a user's limits: a field set to null goes back to the server's setting, one left out stays. */
export type LimitChange = Partial<Record<LimitField, string | number | null>>;

export interface UsageFigures {
  user: string | null;
  jobs: number;
  done: number;
  failed: number;
  cancelled: number;
  image_jobs: number;
  chat_replies: number;
  images: number;
  prompt_tokens: number;
  completion_tokens: number;
  gpu_seconds: number;
}

export interface UsageReport {
  since: string;
  until: string;
  users: UsageFigures[];
  total?: UsageFigures;
}

export interface RequestRow {
  id: number;
  started_at: string;
  request_id: string;
  user: string;
  client: string;
  route: string;
  kind: string;
  status: string;
  reason: string;
  http_status: number | null;
  duration_s: number | null;
  queue_wait_s: number | null;
  model: string;
  images: number;
  prompt_tokens: number;
  completion_tokens: number;
  gpu_s: number;
  replica: string;
}

export interface RequestFilters {
  user?: string;
  kind?: string;
  status?: string;
  route?: string;
  request_id?: string;
  limit?: number;
  before?: number | null;
}

export interface RequestPage {
  requests: RequestRow[];
  next_before: number | null;
}

const name = (user: string) => encodeURIComponent(user);

export async function whoAmI(root: string, fetchImpl: typeof fetch = fetch): Promise<Me> {
  return request<Me>(root, "api/me", {}, fetchImpl);
}

export async function listUsers(root: string, fetchImpl: typeof fetch = fetch): Promise<AdminUser[]> {
  return (await request<{ users: AdminUser[] }>(root, "api/admin/users", {}, fetchImpl)).users;
}

export async function createUser(root: string, user: string, password: string, admin: boolean, fetchImpl: typeof fetch = fetch): Promise<AdminUser> {
  const body = JSON.stringify({ name: user.trim(), password, admin });
  return request<AdminUser>(root, "api/admin/users", { method: "POST", headers: JSON_HEADERS, body }, fetchImpl);
}

/** Disable or enable, grant or take back admin, reset the password; what the server did, in words. */
export async function changeUser(root: string, user: string, change: UserChange, fetchImpl: typeof fetch = fetch): Promise<string[]> {
  const init = { method: "PATCH", headers: JSON_HEADERS, body: JSON.stringify(change) };
  return (await request<{ done: string[] }>(root, `api/admin/users/${name(user)}`, init, fetchImpl)).done;
}

/** Delete a user with their images, conversations, limits and keys. */
export async function deleteUser(root: string, user: string, fetchImpl: typeof fetch = fetch): Promise<void> {
  await request<unknown>(root, `api/admin/users/${name(user)}`, { method: "DELETE" }, fetchImpl);
}

export async function allLimits(root: string, fetchImpl: typeof fetch = fetch): Promise<{ defaults: Limits; users: UserLimits[] }> {
  return request(root, "api/admin/limits", {}, fetchImpl);
}

export async function userLimits(root: string, user: string, fetchImpl: typeof fetch = fetch): Promise<UserLimits> {
  return request<UserLimits>(root, `api/admin/limits/${name(user)}`, {}, fetchImpl);
}

export async function setLimits(root: string, user: string, change: LimitChange, fetchImpl: typeof fetch = fetch): Promise<UserLimits> {
  const init = { method: "PATCH", headers: JSON_HEADERS, body: JSON.stringify(change) };
  return request<UserLimits>(root, `api/admin/limits/${name(user)}`, init, fetchImpl);
}

export async function clearLimits(root: string, user: string, fetchImpl: typeof fetch = fetch): Promise<UserLimits> {
  return request<UserLimits>(root, `api/admin/limits/${name(user)}`, { method: "DELETE" }, fetchImpl);
}

/** Every user's usage over the last `days` days (and the total). */
export async function usage(root: string, days: number, fetchImpl: typeof fetch = fetch): Promise<UsageReport> {
  return request<UsageReport>(root, `api/admin/usage?days=${encodeURIComponent(String(days))}`, {}, fetchImpl);
}

/** Your own usage over the last `days` days (GET /api/usage: yours only, for anyone logged in). */
export async function myUsage(root: string, days: number, fetchImpl: typeof fetch = fetch): Promise<UsageReport> {
  return request<UsageReport>(root, `api/usage?days=${encodeURIComponent(String(days))}`, {}, fetchImpl);
}

/** A page of the request log, newest first; only the filters given are sent. */
export async function findRequests(root: string, filters: RequestFilters, fetchImpl: typeof fetch = fetch): Promise<RequestPage> {
  const query = new URLSearchParams();
  for (const [key, value] of Object.entries(filters)) {
    if (value !== undefined && value !== null && String(value).trim() !== "") query.set(key, String(value).trim());
  }
  const suffix = query.size ? `?${query}` : "";
  return request<RequestPage>(root, `api/admin/requests${suffix}`, {}, fetchImpl);
}

/** A job waiting or running on this replica, as the live queue lists it. */
export interface QueueJob {
  id: string;
  /** Whose job ("" for an anonymous one). */
  user: string;
  route: string;
  kind: string;
  /** waiting or running (Gradio's own words: pending, processing, …). */
  status: string;
  /** Seconds since it joined the queue. */
  seconds: number;
}

export type ModelKind = "image" | "text";
export const MODEL_ACTIONS = ["load", "offload", "unload"] as const;
export type ModelAction = (typeof MODEL_ACTIONS)[number];

/** A model slot of this replica. */
export interface ModelStatus {
  kind: ModelKind;
  model: string;
  backend: string;
  /** not_loaded, loading, ready, offloaded or failed. */
  state: string;
  phase: string;
  reason: string | null;
  seconds_in_state: number;
}

export async function listQueue(root: string, fetchImpl: typeof fetch = fetch): Promise<{ replica: string; jobs: QueueJob[] }> {
  return request(root, "api/admin/queue", {}, fetchImpl);
}

/** Stop any user's job, waiting or running (a running one stops within a step and is kept as stopped). */
export async function stopJob(root: string, id: string, fetchImpl: typeof fetch = fetch): Promise<void> {
  await request<null>(root, `api/admin/queue/${encodeURIComponent(id)}`, { method: "DELETE" }, fetchImpl);
}

/** The model slots, each with its kind (the server lists them image first, then text). */
export async function listModels(root: string, fetchImpl: typeof fetch = fetch): Promise<{ replica: string; models: ModelStatus[] }> {
  return request(root, "api/admin/models", {}, fetchImpl);
}

/** Load (in the background), offload or unload a model now; its state afterwards. */
export async function modelAction(root: string, kind: ModelKind, action: ModelAction, fetchImpl: typeof fetch = fetch): Promise<ModelStatus> {
  const init = { method: "POST", headers: JSON_HEADERS, body: JSON.stringify({ action }) };
  return request<ModelStatus>(root, `api/admin/models/${kind}`, init, fetchImpl);
}

/** A user's API keys: name, first characters, created and last used (never the key itself). */
export async function userKeys(root: string, user: string, fetchImpl: typeof fetch = fetch): Promise<ApiKey[]> {
  return (await request<{ keys: ApiKey[] }>(root, `api/admin/users/${name(user)}/keys`, {}, fetchImpl)).keys;
}

/** Revoke one of a user's keys: it stops working at once, on every replica. */
export async function revokeUserKey(root: string, user: string, key: string, fetchImpl: typeof fetch = fetch): Promise<void> {
  await request<null>(root, `api/admin/users/${name(user)}/keys/${encodeURIComponent(key)}`, { method: "DELETE" }, fetchImpl);
}
