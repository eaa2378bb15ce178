import { afterEach, describe, expect, it, vi } from "vitest";
import { AtelierConnection, checkAccess, login, resolveServerUrl, STOP_GRACE_MS, type GradioLike } from "./gradio";

const loc = (href: string) => {
  const url = new URL(href);
  return { href: url.href, origin: url.origin, search: url.search };
};

describe("server URL", () => {
  it("is the page's origin by default, or ?gradio=, or VITE_GRADIO_URL", () => {
    expect(resolveServerUrl(loc("http://127.0.0.1:7860/app/"), undefined)).toBe("http://127.0.0.1:7860/");
    expect(resolveServerUrl(loc("http://127.0.0.1:5173/app/?gradio=http://10.0.0.2:7860"), "http://x:1/")).toBe("http://10.0.0.2:7860/");
    expect(resolveServerUrl(loc("http://127.0.0.1:5173/app/"), "http://gpu-box:7860/atelier")).toBe("http://gpu-box:7860/atelier/");
    expect(resolveServerUrl(loc("http://127.0.0.1:5173/app/?gradio=javascript:alert(1)"), undefined)).toBe("http://127.0.0.1:5173/");
  });
});

function response(status: number, body: unknown, headers: Record<string, string> = {}): Response {
  return new Response(typeof body === "string" ? body : JSON.stringify(body), { status, headers });
}

describe("login", () => {
  it("knows from /config whether the server wants a login", async () => {
    const fetch401 = vi.fn(async () => response(401, { detail: { error: "Not authenticated", auth_message: "Log in with your Atelier account." } }));
    await expect(checkAccess("http://h/", fetch401 as unknown as typeof fetch)).resolves.toEqual({
      loginRequired: true,
      message: "Log in with your Atelier account.",
      username: null,
    });
    const single = vi.fn(async () => response(200, { username: null, components: [] }));
    await expect(checkAccess("http://h/", single as unknown as typeof fetch)).resolves.toEqual({ loginRequired: false, message: null, username: null });
    const alice = vi.fn(async () => response(200, { username: "alice" }));
    await expect(checkAccess("http://h/", alice as unknown as typeof fetch)).resolves.toMatchObject({ username: "alice" });
  });

  it("posts the form to /login and explains a refusal", async () => {
    const ok = vi.fn(async () => response(200, { success: true }));
    await login("http://h/", "alice", "pw", ok as unknown as typeof fetch);
    const [url, init] = ok.mock.calls[0] as unknown as [URL, RequestInit];
    expect(String(url)).toBe("http://h/login");
    expect((init.body as FormData).get("username")).toBe("alice");
    const wrong = vi.fn(async () => response(400, { detail: "Incorrect credentials." }));
    await expect(login("http://h/", "alice", "x", wrong as unknown as typeof fetch)).rejects.toMatchObject({ message: "Wrong user name or password." });
    const limited = vi.fn(async () => response(429, { detail: "Too many login attempts: the limit is 5 per 1 minute. Try again in 9 s." }, { "retry-after": "9" }));
    await expect(login("http://h/", "alice", "x", limited as unknown as typeof fetch)).rejects.toMatchObject({ kind: "rate_limit", retryAfterS: 9 });
  });
});

/** A stand-in for @gradio/client: a scripted stream, and a record of cancel calls. */
function fakeClient(script: (push: (m: unknown) => void, end: () => void) => void) {
  const calls: string[] = [];
  const client: GradioLike = {
    submit(endpoint, data) {
      calls.push(`submit ${endpoint} ${JSON.stringify(data)}`);
      const queue: unknown[] = [];
      let wake: (() => void) | null = null;
      let ended = false;
      const push = (m: unknown) => {
        queue.push(m);
        wake?.();
      };
      const end = () => {
        ended = true;
        wake?.();
      };
      const iterator = {
        async next(): Promise<IteratorResult<unknown>> {
          while (!queue.length && !ended) await new Promise<void>((r) => (wake = r));
          if (queue.length) return { value: queue.shift(), done: false };
          return { value: undefined, done: true };
        },
        [Symbol.asyncIterator]() {
          return iterator;
        },
        async cancel() {
          calls.push("cancel");
          push({ type: "status", stage: "error", message: "An Unexpected Error Occurred!" });
        },
        async wait_for_id() {
          calls.push("wait_for_id");
          return "event-1";
        },
        async return() {
          calls.push("return");
          end();
          return { value: undefined, done: true };
        },
      };
      setTimeout(() => script(push, end), 0);
      return iterator;
    },
  };
  return { client, calls };
}

describe("AtelierConnection", () => {
  afterEach(() => vi.useRealTimers());

  it("streams data, and Stop cancels the job once it has an id", async () => {
    const { client, calls } = fakeClient((push) => push({ type: "data", data: ["step 1"] }));
    const conn = new AtelierConnection("http://h/", client);
    const seen: unknown[][] = [];
    const job = conn.stream("/generate_image", { prompt: "p" }, { onData: (d) => seen.push(d) });
    await vi.waitFor(() => expect(seen).toHaveLength(1));
    job.stop();
    job.stop(); // a second press does nothing more
    await expect(job.done).resolves.toStrictEqual({ kind: "cancelled", data: ["step 1"] }); // confirmed by the server
    expect(calls.slice(0, 3)).toEqual(['submit /generate_image {"prompt":"p"}', "wait_for_id", "cancel"]);
  });

  it("closes the stream itself if the server never ends it after Stop", async () => {
    vi.useFakeTimers();
    const { client, calls } = fakeClient(() => undefined);
    client.submit = ((original) => (endpoint: string, data: Record<string, unknown>) => {
      const job = original(endpoint, data);
      job.cancel = async () => void calls.push("cancel (ignored)");
      return job;
    })(client.submit.bind(client));
    const conn = new AtelierConnection("http://h/", client);
    const job = conn.stream("/chat", { message: "hi" });
    job.stop();
    await vi.advanceTimersByTimeAsync(STOP_GRACE_MS + 10);
    // Cancelled, but not confirmed: the screens say the job may still finish rather than "Stopped".
    await expect(job.done).resolves.toEqual({ kind: "cancelled", data: null, unconfirmed: true });
    expect(calls).toContain("return");
  });

  it("a call the client refuses before sending (unknown parameter or endpoint) ends as an error, not a wait", async () => {
    const { client } = fakeClient(() => undefined);
    client.submit = () => {
      throw new Error("Parameter `enable_hr` is not a valid keyword argument. Please refer to the API for usage.");
    };
    const conn = new AtelierConnection("http://h/", client);
    const job = conn.stream("/generate_image", { enable_hr: true });
    await expect(job.done).resolves.toMatchObject({ kind: "error", data: null, error: { message: expect.stringContaining("enable_hr") } });
    job.stop(); // nothing to stop
    await expect(conn.call("/models", {})).rejects.toMatchObject({ message: expect.stringContaining("not a valid keyword") });
  });

  it("call() returns the single output, or throws the mapped error", async () => {
    const ok = new AtelierConnection(
      "http://h/",
      fakeClient((push) => {
        push({ type: "data", data: [{ jobs: [], next_before: null }] });
        push({ type: "status", stage: "complete" });
      }).client,
    );
    await expect(ok.call("/history", { limit: 5, before: null })).resolves.toEqual({ jobs: [], next_before: null });
    const missing = new AtelierConnection(
      "http://h/",
      fakeClient((push) => push({ type: "status", stage: "error", message: "conversation 9 does not exist." })).client,
    );
    await expect(missing.call("/conversation", { conversation_id: 9 })).rejects.toMatchObject({ kind: "not_found" });
    expect(ok.imageUrl(12)).toBe("http://h/api/images/12");
  });
});
