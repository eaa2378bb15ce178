/** Turn whatever went wrong (a Gradio status, an HTTP answer, an exception) into one clear message. */

export type ErrorKind = "validation" | "quota" | "rate_limit" | "busy" | "auth" | "connection" | "not_found" | "server";

export interface AppError {
  kind: ErrorKind;
  title: string;
  message: string;
  /** Per-input messages from the server's validators, keyed by the API's parameter names. */
  fields: Record<string, string>;
  /** Seconds to wait before trying again, when the server said. */
  retryAfterS: number | null;
}

/** What @gradio/client says when the server answered 503 to queue/join (it drops the server's own text). */
export const GRADIO_QUEUE_FULL = "This application is currently busy";
const GRADIO_BROKEN = "Connection errored out";
const GRADIO_UNEXPECTED = "An Unexpected Error Occurred!";

interface ValidationEntry {
  is_valid?: boolean;
  message?: string;
  parameter_name?: string;
}

export interface StatusLike {
  message?: unknown;
  code?: string | null;
  broken?: boolean;
  title?: string;
}

function make(kind: ErrorKind, title: string, message: string, extra: Partial<AppError> = {}): AppError {
  return { kind, title, message, fields: {}, retryAfterS: null, ...extra };
}

export function isAppError(value: unknown): value is AppError {
  return !!value && typeof value === "object" && "kind" in value && "message" in value && "fields" in value;
}

/** A message in words, for anything the server or the client library said. */
export function errorFromMessage(raw: string, opts: { code?: string | null; broken?: boolean } = {}): AppError {
  const text = raw.trim();
  const rate = /^Too many (.+?): the limit is (.+?)\. Try again in (\d+) s\.?/.exec(text);
  if (rate) {
    return make("rate_limit", "Slow down", text, { retryAfterS: Number(rate[3]) });
  }
  if (/jobs queued or running \(the limit is \d+\)/.test(text)) {
    return make("quota", "Too many jobs at once", text);
  }
  if (text.startsWith(GRADIO_QUEUE_FULL) || text.startsWith("Atelier is busy")) {
    return make(
      "busy",
      "Queue full",
      text.startsWith("Atelier is busy") ? text : "Atelier is busy: the queue is full. Try again shortly.",
      { retryAfterS: 10 },
    );
  }
  if (opts.broken || text.startsWith(GRADIO_BROKEN) || /failed to fetch|networkerror|load failed/i.test(text)) {
    return make("connection", "Connection lost", "Lost the connection to Atelier. Check that the server is running, then try again.");
  }
  if (/login credentials are required|not authenticated|log in with/i.test(text)) {
    return make("auth", "Login required", "Your session has ended: log in again.");
  }
  if (/does not exist/i.test(text)) {
    return make("not_found", "Not found", text);
  }
  if (opts.code === "validation_error") {
    return make("validation", "Check your input", text);
  }
  if (!text || text === GRADIO_UNEXPECTED || text === "Error" || text === "An error occurred") {
    return make("server", "Server error", "Something went wrong on the server; its log has the details. Try again.");
  }
  return make("server", "Error", text);
}

/**
 * The text of a gr.Error message. Gradio's contract makes it HTML (its own UI renders it in a toast), so Atelier
 * escapes the words it sends ("sampler '&lt;b&gt;' is unknown"); shown here as text, they read as the server meant.
 * An inert DOMParser document loads nothing and runs nothing; tags a server did not escape are dropped.
 */
export function htmlText(message: string): string {
  if (!/[<&]/.test(message)) return message;
  return new DOMParser().parseFromString(message, "text/html").body.textContent ?? "";
}

/** A Gradio status message with stage "error": validation lists, rate limits, the busy answer, gr.Error text. */
export function errorFromStatus(status: StatusLike): AppError {
  const { message } = status;
  if (Array.isArray(message)) {
    const invalid = (message as ValidationEntry[]).filter((entry) => entry && entry.is_valid === false);
    const fields: Record<string, string> = {};
    for (const entry of invalid) {
      if (entry.parameter_name) fields[entry.parameter_name] = entry.message ?? "";
    }
    const text = invalid.map((entry) => entry.message).filter(Boolean).join(" ");
    const base = errorFromMessage(text, { code: "validation_error" });
    if (base.kind === "quota") return { ...base, fields };
    return make("validation", "Check your input", text || "The server refused these settings.", { fields });
  }
  // A validator's messages (above) are text; a gr.Error's is HTML.
  if (typeof message === "string") return errorFromMessage(htmlText(message), { code: status.code, broken: status.broken });
  return errorFromMessage("", { code: status.code, broken: status.broken });
}

/** An HTTP answer from /login, /config or the REST routes. */
export function errorFromHttp(status: number, body: unknown, retryAfter?: string | null): AppError {
  const detail = detailOf(body);
  if (status === 429) {
    const parsed = detail ? errorFromMessage(detail) : null;
    const retry = retryAfter && /^\d+$/.test(retryAfter) ? Number(retryAfter) : parsed?.retryAfterS ?? null;
    return make("rate_limit", "Slow down", detail ?? `Too many requests. Try again in ${retry ?? "a few"} s.`, {
      retryAfterS: retry,
    });
  }
  if (status === 503) {
    return make("busy", "Queue full", detail ?? "Atelier is busy: the queue is full. Try again shortly.", {
      retryAfterS: retryAfter && /^\d+$/.test(retryAfter) ? Number(retryAfter) : 10,
    });
  }
  if (status === 400 || status === 422) return make("validation", "Check your input", detail ?? "The server refused this input.");
  if (status === 401 || status === 403) {
    return make("auth", status === 401 ? "Login required" : "Not allowed", detail ?? "Log in again.");
  }
  if (status === 404) return make("not_found", "Not found", detail ?? "It does not exist (or is not yours).");
  return make("server", "Server error", detail ?? `The server answered HTTP ${status}.`);
}

/** Wrong credentials on /login: Gradio answers 400 "Incorrect credentials." (401 in older versions). */
export function loginError(status: number, body: unknown, retryAfter?: string | null): AppError {
  if (status === 400 || status === 401) {
    return make("auth", "Login failed", "Wrong user name or password.");
  }
  return errorFromHttp(status, body, retryAfter);
}

export function errorFromException(err: unknown): AppError {
  if (isAppError(err)) return err;
  if (err && typeof err === "object" && "stage" in err) return errorFromStatus(err as StatusLike);
  const text = err instanceof Error ? err.message : typeof err === "string" ? err : "";
  return errorFromMessage(text);
}

function detailOf(body: unknown): string | null {
  if (typeof body === "string") return body || null;
  if (!body || typeof body !== "object") return null;
  const record = body as Record<string, unknown>;
  const detail = record.detail ?? record.error;
  if (typeof detail === "string") return detail;
  // FastAPI's validation errors: a list of {loc, msg}; each names its field (the last part of loc).
  if (Array.isArray(detail)) {
    const said = detail
      .filter((e): e is { loc?: unknown[]; msg: string } => !!e && typeof e === "object" && typeof (e as { msg?: unknown }).msg === "string")
      .map((e) => (Array.isArray(e.loc) && e.loc.length ? `${String(e.loc[e.loc.length - 1])}: ${e.msg}` : e.msg));
    return said.length ? said.join("; ") : null;
  }
  if (detail && typeof detail === "object") {
    const inner = detail as Record<string, unknown>;
    if (typeof inner.auth_message === "string") return inner.auth_message;
    if (typeof inner.error === "string") return inner.error;
  }
  return null;
}
