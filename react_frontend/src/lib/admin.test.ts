import { describe, expect, it } from "vitest";
import { changeUser, clearLimits, createUser, deleteUser, findRequests, setLimits, usage, whoAmI } from "./admin";

const root = "http://atelier.test/";

function fake(status: number, body: unknown) {
  const calls: { url: string; init: RequestInit }[] = [];
  const impl = (async (url: URL | string, init: RequestInit = {}) => {
    calls.push({ url: String(url), init });
    return new Response(body === null ? null : JSON.stringify(body), { status });
  }) as typeof fetch;
  return { impl, calls };
}

describe("admin requests", () => {
  it("asks /api/me who is logged in, with the login cookie", async () => {
    const me = fake(200, { name: "alice", admin: true });
    expect(await whoAmI(root, me.impl)).toEqual({ name: "alice", admin: true });
    expect(me.calls[0].url).toBe("http://atelier.test/api/me");
    expect(me.calls[0].init.credentials).toBe("include");
  });

  it("creates, changes and deletes users with JSON bodies, names escaped in the path", async () => {
    const made = fake(201, { name: "dora" });
    await createUser(root, " dora ", "a long password", false, made.impl);
    expect(JSON.parse(String(made.calls[0].init.body))).toEqual({ name: "dora", password: "a long password", admin: false });
    const changed = fake(200, { user: {}, done: ["disabled bob", "ended the sessions of bob and stopped 0 job(s)"] });
    expect(await changeUser(root, "bob.b", { disabled: true }, changed.impl)).toHaveLength(2);
    expect(changed.calls[0].url).toBe("http://atelier.test/api/admin/users/bob.b");
    expect(changed.calls[0].init.method).toBe("PATCH");
    const gone = fake(200, { user: "a b" });
    await deleteUser(root, "a b", gone.impl);
    expect(gone.calls[0].url).toBe("http://atelier.test/api/admin/users/a%20b");
    expect(gone.calls[0].init.method).toBe("DELETE");
  });

  it("sets and clears limits, and sends only the request log filters given", async () => {
    const set = fake(200, { user: "bob", overridden: ["reads"] });
    await setLimits(root, "bob", { reads: "5/minute", queue_quota: null }, set.impl);
    expect(JSON.parse(String(set.calls[0].init.body))).toEqual({ reads: "5/minute", queue_quota: null });
    const cleared = fake(200, { user: "bob", overridden: [] });
    await clearLimits(root, "bob", cleared.impl);
    expect(cleared.calls[0].init.method).toBe("DELETE");
    const found = fake(200, { requests: [], next_before: null });
    await findRequests(root, { user: " bob ", kind: "", status: "refused", before: null, limit: 50 }, found.impl);
    expect(found.calls[0].url).toBe("http://atelier.test/api/admin/requests?user=bob&status=refused&limit=50");
    const used = fake(200, { since: "", until: "", users: [] });
    await usage(root, 7, used.impl);
    expect(used.calls[0].url).toBe("http://atelier.test/api/admin/usage?days=7");
  });

  it("turns refusals into the server's words", async () => {
    const refused = fake(409, { detail: "You cannot disable your own account or take back your own admin role; ask another admin." });
    await expect(changeUser(root, "alice", { disabled: true }, refused.impl)).rejects.toMatchObject({
      message: "You cannot disable your own account or take back your own admin role; ask another admin.",
    });
    await expect(whoAmI(root, fake(403, { detail: "Only admins may use the admin routes." }).impl)).rejects.toMatchObject({ kind: "auth", message: "Only admins may use the admin routes." });
  });
});
