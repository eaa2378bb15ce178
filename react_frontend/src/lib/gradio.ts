/**
 * The one connection to Atelier, through @gradio/client.
 *
 * Same origin by default (app.py serves this client at /app, the Gradio app at /); `?gradio=<url>` or
 * VITE_GRADIO_URL points it elsewhere. Everything the screens do goes through `stream` and `call` on
 * Atelier's public named endpoints; the only plain requests are the login form (Gradio's /login, whose
 * answers @gradio/client does not pass on), the /config probe that says whether a login is needed, the
 * stored images of history (`GET /api/images/{id}`, with the same login cookie), and History's search,
 * favourites, exports and import (lib/history.ts, over the REST routes under /api).
 */
import { Client } from "@gradio/client";
import { errorFromHttp, errorFromException, loginError, type AppError } from "./errors";
import { consume, type GradioMessage, type JobOutcome, type JobProgress } from "./stream";

/** How long Stop waits for the server to end the stream before the client closes it itself. */
export const STOP_GRACE_MS = 5000;

/** The server's root URL, ending in "/". */
export function resolveServerUrl(
  location: Pick<Location, "search" | "origin" | "href"> = window.location,
  envUrl: string | undefined = import.meta.env.VITE_GRADIO_URL,
): string {
  const param = new URLSearchParams(location.search).get("gradio");
  const raw = param || envUrl || `${location.origin}/`;
  let url: URL;
  try {
    url = new URL(raw, location.href);
  } catch {
    url = new URL(`${location.origin}/`);
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") url = new URL(`${location.origin}/`);
  url.search = "";
  url.hash = "";
  return url.href.endsWith("/") ? url.href : `${url.href}/`;
}

function isCrossOrigin(root: string): boolean {
  return typeof window !== "undefined" && new URL(root).origin !== window.location.origin;
}

function credentials(root: string): RequestCredentials {
  return isCrossOrigin(root) ? "include" : "same-origin";
}

async function readBody(response: Response): Promise<unknown> {
  const text = await response.text();
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

export interface Access {
  loginRequired: boolean;
  /** The server's login message ("Log in with your Atelier account."). */
  message: string | null;
  /** Who is logged in (null in single-user mode). */
  username: string | null;
}

/** Does the server want a login? Gradio's /config answers 401 until the login cookie is set. */
export async function checkAccess(root: string, fetchImpl: typeof fetch = fetch): Promise<Access> {
  let response: Response;
  try {
    response = await fetchImpl(new URL("config", root), { credentials: credentials(root) });
  } catch (err) {
    throw errorFromException(err);
  }
  if (response.status === 401) {
    const body = (await readBody(response)) as { detail?: { auth_message?: string } } | null;
    return { loginRequired: true, message: body?.detail?.auth_message ?? null, username: null };
  }
  const body = await readBody(response);
  if (!response.ok) throw errorFromHttp(response.status, body, response.headers.get("retry-after"));
  const username = body && typeof body === "object" ? (body as { username?: unknown }).username : null;
  return { loginRequired: false, message: null, username: typeof username === "string" && username ? username : null };
}

/** Gradio's login form; on success the browser holds the session cookie for every later request. */
export async function login(root: string, username: string, password: string, fetchImpl: typeof fetch = fetch): Promise<void> {
  const form = new FormData();
  form.append("username", username);
  form.append("password", password);
  let response: Response;
  try {
    response = await fetchImpl(new URL("login", root), { method: "POST", body: form, credentials: credentials(root) });
  } catch (err) {
    throw errorFromException(err);
  }
  if (!response.ok) throw loginError(response.status, await readBody(response), response.headers.get("retry-after"));
}

export async function logout(root: string): Promise<void> {
  await fetch(new URL("logout", root), { credentials: credentials(root), redirect: "manual" }).catch(() => undefined);
  resetConnection();
}

export interface RunningJob {
  /** Stop the job: the server stops the model within a step (or a token) and records it as cancelled. */
  stop(): void;
  readonly done: Promise<JobOutcome>;
}

export interface StreamHandlers {
  onData?: (data: unknown[]) => void;
  onProgress?: (progress: JobProgress) => void;
}

/** The subset of @gradio/client's Client that Atelier uses (a fake stands in for it in unit tests). */
export interface GradioLike {
  submit(endpoint: string, data: Payload): AsyncIterable<unknown> & {
    cancel(): Promise<void>;
    wait_for_id?(): Promise<string | null>;
    return?(): Promise<unknown>;
  };
  close?(): void;
}

/** Keyword arguments by the API's names, or positional ones in the endpoint's order. */
export type Payload = Record<string, unknown> | unknown[];

export class AtelierConnection {
  constructor(
    readonly root: string,
    private readonly client: GradioLike,
  ) {}

  /** Submit to a streaming endpoint; each data message replaces the previous value. */
  stream(endpoint: string, payload: Payload, handlers: StreamHandlers = {}): RunningJob {
    let job: ReturnType<GradioLike["submit"]>;
    try {
      job = this.client.submit(endpoint, payload);
    } catch (err) {
      // @gradio/client refuses before sending (an endpoint or a parameter this server does not have): say so,
      // rather than leave the screen waiting for a job that never started.
      const error = errorFromException(err);
      return { done: Promise.resolve({ kind: "error", error, data: null }), stop: () => undefined };
    }
    let stopped = false;
    let gaveUp = false;
    const done = consume(job as AsyncIterable<GradioMessage>, { ...handlers, isCancelled: () => stopped }).then(
      (outcome): JobOutcome => (gaveUp && outcome.kind === "cancelled" ? { ...outcome, unconfirmed: true } : outcome),
    );
    return {
      done,
      stop: () => {
        if (stopped) return;
        stopped = true;
        // Cancel needs the event id, which exists once the job joined the queue.
        const ready = job.wait_for_id ? job.wait_for_id() : Promise.resolve(null);
        void ready.then(() => job.cancel()).catch(() => undefined);
        // The server ends the stream when it stops; never leave the screen waiting if it does not (and say so: the
        // job may still finish there).
        const grace = setTimeout(() => {
          gaveUp = true;
          void job.return?.().catch(() => undefined);
        }, STOP_GRACE_MS);
        void done.finally(() => clearTimeout(grace));
      },
    };
  }

  /** A non-streaming endpoint: its single output, or an AppError thrown. */
  async call<T>(endpoint: string, payload: Payload): Promise<T> {
    const outcome = await this.stream(endpoint, payload).done;
    if (outcome.kind === "error") throw outcome.error;
    if (!outcome.data) throw errorFromException(new Error("Connection errored out. "));
    return outcome.data[0] as T;
  }

  /** A stored PNG of history (same origin as the API; the login cookie authorises it). */
  imageUrl(fileId: number): string {
    return new URL(`api/images/${fileId}`, this.root).href;
  }

  close(): void {
    this.client.close?.();
  }
}

let shared: { root: string; connection: Promise<AtelierConnection> } | null = null;

/** The app's one connection (made on first use, shared by every screen). */
export function connect(root: string): Promise<AtelierConnection> {
  if (shared && shared.root === root) return shared.connection;
  const connection = Client.connect(root, {
    events: ["data", "status"],
    // @gradio/client can keep a copy of every call in the browser's storage; Atelier has its own history.
    record_history: false,
    ...(isCrossOrigin(root) ? { credentials: "include" as RequestCredentials } : {}),
  })
    .then((client) => new AtelierConnection(root, client as unknown as GradioLike))
    .catch((err: unknown) => {
      shared = null;
      throw errorFromException(err) satisfies AppError;
    });
  shared = { root, connection };
  return connection;
}

export function resetConnection(): void {
  const old = shared;
  shared = null;
  void old?.connection.then((c) => c.close()).catch(() => undefined);
}
