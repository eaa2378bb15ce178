import { describe, expect, it } from "vitest";
import { createKey, listJobs, listKeys, revokeKey, stopJob } from "./account";

const root = "http://atelier.test/";

function fake(status: number, body: unknown, headers: Record<string, string> = {}) {
  const calls: { url: string; init: RequestInit }[] = [];
  const impl = (async (url: URL | string, init: RequestInit = {}) => {
    calls.push({ url: String(url), init });
    return new Response(body === null ? null : JSON.stringify(body), { status, headers });
  }) as typeof fetch;
  return { impl, calls };
}

describe("account requests", () => {
  it("lists keys and jobs from /api/keys and /api/jobs with the login cookie", async () => {
    const keys = fake(200, { keys: [{ name: "laptop", prefix: "atl_AbC123…", created_at: null, last_used_at: null }] });
    expect(await listKeys(root, keys.impl)).toEqual([{ name: "laptop", prefix: "atl_AbC123…", created_at: null, last_used_at: null }]);
    expect(keys.calls[0].url).toBe("http://atelier.test/api/keys");
    expect(keys.calls[0].init.credentials).toBe("include");
    const jobs = fake(200, { jobs: [] });
    expect(await listJobs(root, jobs.impl)).toEqual([]);
    expect(jobs.calls[0].url).toBe("http://atelier.test/api/jobs");
  });

  it("creates a key with a JSON body and hands back the key shown once", async () => {
    const made = fake(201, { name: "laptop", prefix: "atl_AbC123…", created_at: null, last_used_at: null, key: "atl_secret" });
    const key = await createKey(root, "  laptop ", made.impl);
    expect(key.key).toBe("atl_secret");
    expect(made.calls[0].init.method).toBe("POST");
    expect(JSON.parse(String(made.calls[0].init.body))).toEqual({ name: "laptop" });
  });

  it("revokes and stops by name and ref, escaped in the path", async () => {
    const gone = fake(204, null);
    await revokeKey(root, "my key/1", gone.impl);
    expect(gone.calls[0].url).toBe("http://atelier.test/api/keys/my%20key%2F1");
    expect(gone.calls[0].init.method).toBe("DELETE");
    const stopped = fake(200, { stopped: "abcdef12" });
    await stopJob(root, "abcdef12", stopped.impl);
    expect(stopped.calls[0].url).toBe("http://atelier.test/api/jobs/abcdef12/stop");
  });

  it("turns the server's refusals into clear errors", async () => {
    await expect(createKey(root, "x", fake(400, { detail: "alice already has a key named 'x'; choose another name." }).impl)).rejects.toMatchObject({
      message: "alice already has a key named 'x'; choose another name.",
    });
    await expect(listKeys(root, fake(401, { detail: "Log in" }).impl)).rejects.toMatchObject({ kind: "auth" });
    await expect(stopJob(root, "abcdef12", fake(404, { detail: "No running job abcdef12 of yours." }).impl)).rejects.toMatchObject({ kind: "not_found" });
    await expect(listJobs(root, fake(429, { detail: "Too many requests" }, { "retry-after": "7" }).impl)).rejects.toMatchObject({ retryAfterS: 7 });
  });
});
