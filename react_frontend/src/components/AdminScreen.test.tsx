import { fireEvent, render, screen, waitFor, within } from "@testing-library/react";
import { afterEach, describe, expect, it, vi } from "vitest";
import { AdminUsers } from "./AdminUsers";
import { AdminRequests } from "./AdminRequests";
import { limitChange } from "./AdminLimits";
import { AdminQueue } from "./AdminQueue";
import { AdminModels, possible } from "./AdminModels";
import { AdminKeys } from "./AdminKeys";

const root = "http://atelier.test/";
const USERS = [
  { name: "alice", admin: true, disabled: false, created_at: "2026-01-01T00:00:00", limits_overridden: false, keys: 0 },
  { name: "bob", admin: false, disabled: false, created_at: "2026-01-02T00:00:00", limits_overridden: true, keys: 2 },
];

type Answer = [number, unknown];

/** A stand-in server: answers by "METHOD path", records every call. */
function serve(routes: Record<string, Answer | (() => Answer)>) {
  const calls: { method: string; path: string; body: unknown }[] = [];
  vi.stubGlobal("fetch", async (url: URL | string, init: RequestInit = {}) => {
    const parsed = new URL(String(url));
    const method = init.method ?? "GET";
    calls.push({ method, path: parsed.pathname + parsed.search, body: init.body ? JSON.parse(String(init.body)) : null });
    const route = routes[`${method} ${parsed.pathname}`];
    const [status, body] = typeof route === "function" ? route() : (route ?? [404, { detail: "no such route" }]);
    return new Response(status === 204 ? null : JSON.stringify(body), { status });
  });
  return calls;
}

afterEach(() => {
  vi.unstubAllGlobals();
  vi.restoreAllMocks();
});

describe("AdminUsers", () => {
  it("lists the accounts and disables one, showing what the server did", async () => {
    const calls = serve({
      "GET /api/admin/users": [200, { users: USERS }],
      "PATCH /api/admin/users/bob": [200, { user: USERS[1], done: ["disabled bob", "ended the sessions of bob and stopped 1 job(s)"] }],
    });
    render(<AdminUsers root={root} me="alice" />);
    const table = await screen.findByTestId("admin-users");
    await waitFor(() => expect(within(table).getAllByRole("row")).toHaveLength(3));
    const bob = within(table).getByText("bob", { selector: ".font-medium" }).closest("tr")!;
    expect(within(bob).getByText("own limits")).toBeTruthy();
    // An admin cannot disable, demote or delete themselves: those buttons are off on their own row.
    const alice = within(table).getByText("alice", { selector: ".font-medium" }).closest("tr")!;
    expect((within(alice).getByRole("button", { name: /Disable/ }) as HTMLButtonElement).disabled).toBe(true);
    expect((within(alice).getByRole("button", { name: "Delete alice" }) as HTMLButtonElement).disabled).toBe(true);
    fireEvent.click(within(bob).getByRole("button", { name: /Disable/ }));
    expect(await screen.findByTestId("admin-said")).toHaveProperty("textContent", "disabled bob; ended the sessions of bob and stopped 1 job(s)");
    expect(calls.find((c) => c.method === "PATCH")).toEqual({ method: "PATCH", path: "/api/admin/users/bob", body: { disabled: true } });
    expect(calls.filter((c) => c.path === "/api/admin/users").length).toBeGreaterThanOrEqual(2); // listed again after
  });

  it("shows the server's refusal and creates nothing on bad input", async () => {
    serve({
      "GET /api/admin/users": [200, { users: USERS }],
      "POST /api/admin/users": [422, { detail: [{ loc: ["body", "password"], msg: "String should have at least 8 characters" }] }],
    });
    render(<AdminUsers root={root} me="alice" />);
    await screen.findByText("bob", { selector: ".font-medium" });
    fireEvent.change(screen.getByLabelText("New user"), { target: { value: "dora" } });
    fireEvent.change(screen.getByLabelText("Password"), { target: { value: "short" } });
    fireEvent.click(screen.getByRole("button", { name: /Create/ }));
    const alert = await screen.findByTestId("error-alert");
    expect(alert.textContent).toContain("password: String should have at least 8 characters");
    expect((screen.getByLabelText("New user") as HTMLInputElement).value).toBe("dora"); // kept, to correct
  });
});

describe("AdminRequests", () => {
  it("searches the log with the filters set and pages back", async () => {
    const row = { id: 9, started_at: "2026-01-01T08:00:00+00:00", request_id: "r9", user: "bob", client: "10.0.0.2", route: "/api/history",
      kind: "read", status: "refused", reason: "Too many requests", http_status: 429, duration_s: 0.01, queue_wait_s: null, model: "",
      images: 0, prompt_tokens: 0, completion_tokens: 0, gpu_s: 0, replica: "a" };
    const calls = serve({ "GET /api/admin/requests": [200, { requests: [row], next_before: 9 }] });
    render(<AdminRequests root={root} />);
    expect(await screen.findByText("Too many requests")).toBeTruthy();
    fireEvent.change(screen.getByLabelText("User"), { target: { value: "bob" } });
    fireEvent.change(screen.getByLabelText("Status"), { target: { value: "refused" } });
    fireEvent.click(screen.getByRole("button", { name: "Search" }));
    await waitFor(() => expect(calls.at(-1)?.path).toBe("/api/admin/requests?user=bob&status=refused&limit=50"));
    fireEvent.click(screen.getByRole("button", { name: "Older" }));
    await waitFor(() => expect(calls.at(-1)?.path).toBe("/api/admin/requests?user=bob&status=refused&limit=50&before=9"));
  });
});

describe("limitChange", () => {
  it("sends an empty field as null (the server's setting) and the queue quota as a number", () => {
    expect(limitChange({ image_jobs: " 5/minute ", chat_messages: "", uploads: "", reads: "", queue_quota: "3" })).toEqual({
      image_jobs: "5/minute", chat_messages: null, uploads: null, reads: null, queue_quota: 3,
    });
    // Not a number: sent as written, for the server to refuse naming the field.
    expect(limitChange({ image_jobs: "", chat_messages: "", uploads: "", reads: "", queue_quota: "many" }).queue_quota).toBe("many");
  });
});

describe("UsageCard", () => {
  it("shows your own figures and asks again for another period", async () => {
    const figures = { user: "bob", jobs: 5, done: 4, failed: 1, cancelled: 0, image_jobs: 4, chat_replies: 1, images: 4,
      prompt_tokens: 10, completion_tokens: 30, gpu_seconds: 3.5 };
    const calls = serve({ "GET /api/usage": [200, { since: "", until: "", users: [figures] }] });
    const { UsageCard } = await import("./UsageCard");
    render(<UsageCard root={root} refreshKey={0} />);
    const shown = await screen.findByTestId("my-usage");
    await waitFor(() => expect(within(shown).getByText("GPU seconds").nextSibling?.textContent).toBe("3.5"));
    expect(calls[0].path).toBe("/api/usage?days=30");
    fireEvent.change(screen.getByLabelText("Period"), { target: { value: "7" } });
    await waitFor(() => expect(calls.at(-1)?.path).toBe("/api/usage?days=7"));
  });
});

describe("AdminQueue", () => {
  it("lists whose jobs wait and run, and stops one after asking", async () => {
    let jobs = [
      { id: "ev1", user: "alice", route: "/generate", kind: "image", status: "running", seconds: 12.3 },
      { id: "ev2", user: "bob", route: "/chat", kind: "chat", status: "waiting", seconds: 2 },
    ];
    let listings = 0;
    const calls = serve({
      "GET /api/admin/queue": () => {
        // A running job ends within a step: still listed just after the Stop, gone a moment later.
        if (calls.some((c) => c.method === "DELETE") && ++listings > 1) jobs = jobs.filter((job) => job.id !== "ev1");
        return [200, { replica: "a", jobs }];
      },
      "DELETE /api/admin/queue/ev1": [204, null],
    });
    const confirm = vi.spyOn(window, "confirm").mockReturnValueOnce(false).mockReturnValueOnce(true);
    render(<AdminQueue root={root} />);
    const table = await screen.findByTestId("admin-queue");
    await waitFor(() => expect(within(table).getAllByRole("row")).toHaveLength(3));
    const alice = within(table).getByText("alice", { selector: ".font-medium" }).closest("tr")!;
    expect(alice.textContent).toContain("12 s");
    expect(within(table).getByText("bob", { selector: ".font-medium" }).closest("tr")!.textContent).toContain("waiting");
    const stop = within(alice).getByRole("button", { name: /Stop alice's image job/ });
    fireEvent.click(stop); // the admin says no: nothing is sent
    expect(calls.some((c) => c.method === "DELETE")).toBe(false);
    fireEvent.click(stop);
    expect(await screen.findByTestId("admin-queue-said")).toHaveProperty("textContent", "Stopped alice's image job.");
    expect(confirm).toHaveBeenCalledTimes(2);
    await waitFor(() => expect(within(table).getByText("stopping")).toBeTruthy());
    // Followed until it has left the queue.
    await waitFor(() => expect(within(table).queryByText("alice", { selector: ".font-medium" })).toBeNull(), { timeout: 3_000 });
  });

  it("shows the server's refusal when the job has ended meanwhile", async () => {
    serve({
      "GET /api/admin/queue": [200, { replica: "a", jobs: [{ id: "ev1", user: "", route: "/generate", kind: "image", status: "running", seconds: 1 }] }],
      "DELETE /api/admin/queue/ev1": [404, { detail: "There is no job 'ev1' waiting or running on this replica." }],
    });
    vi.spyOn(window, "confirm").mockReturnValue(true);
    render(<AdminQueue root={root} />);
    fireEvent.click(await screen.findByRole("button", { name: /Stop anonymous's image job/ }));
    expect((await screen.findByTestId("error-alert")).textContent).toContain("There is no job 'ev1'");
  });
});

describe("AdminModels", () => {
  const model = (kind: string, state: string) => ({ kind, model: `tiny-${kind}`, backend: "diffusers", state, phase: "", reason: null, seconds_in_state: 3 });

  it("offers only what the server can do in each state", () => {
    expect(["load", "offload", "unload"].filter((a) => possible(a as "load", "ready"))).toEqual(["offload", "unload"]);
    expect(["load", "offload", "unload"].filter((a) => possible(a as "load", "not loaded"))).toEqual(["load"]);
    expect(["load", "offload", "unload"].filter((a) => possible(a as "load", "offloaded"))).toEqual(["load"]);
    expect(["load", "offload", "unload"].filter((a) => possible(a as "load", "loading"))).toEqual([]);
  });

  it("unloads a model and shows its new state", async () => {
    let image = model("image", "ready");
    const calls = serve({
      "GET /api/admin/models": () => [200, { replica: "a", models: [image, model("text", "not loaded")] }],
      "POST /api/admin/models/image": () => {
        image = model("image", "not loaded");
        return [200, image];
      },
    });
    render(<AdminModels root={root} />);
    const state = await screen.findByTestId("model-state-image");
    await waitFor(() => expect(state.getAttribute("data-state")).toBe("ready"));
    expect((screen.getByRole("button", { name: "Load the image model" }) as HTMLButtonElement).disabled).toBe(true);
    fireEvent.click(screen.getByRole("button", { name: "Unload the image model" }));
    expect(await screen.findByTestId("admin-models-said")).toHaveProperty("textContent", "Asked the image model to unload: it is not loaded.");
    expect(calls.find((c) => c.method === "POST")).toEqual({ method: "POST", path: "/api/admin/models/image", body: { action: "unload" } });
    await waitFor(() => expect(screen.getByTestId("model-state-image").getAttribute("data-state")).toBe("not loaded"));
  });
});

describe("AdminKeys", () => {
  it("lists a user's keys and revokes one after asking, telling the users list", async () => {
    let keys = [
      { name: "laptop", prefix: "atl_AbCdEf…", created_at: "2026-01-01T00:00:00", last_used_at: null },
      { name: "ci", prefix: "atl_XyZ123…", created_at: "2026-01-02T00:00:00", last_used_at: "2026-01-03T00:00:00" },
    ];
    const calls = serve({
      "GET /api/admin/users/bob/keys": () => [200, { keys }],
      "DELETE /api/admin/users/bob/keys/laptop": () => {
        keys = keys.slice(1);
        return [204, null];
      },
    });
    vi.spyOn(window, "confirm").mockReturnValue(true);
    const changed = vi.fn();
    render(<AdminKeys root={root} chosen={{ user: "bob" }} onChange={changed} />);
    const table = await screen.findByTestId("admin-keys");
    await waitFor(() => expect(within(table).getAllByRole("row")).toHaveLength(3));
    expect(within(table).getByText("laptop", { selector: ".font-medium" }).closest("tr")!.textContent).toContain("never");
    expect((screen.getByLabelText("Keys of") as HTMLInputElement).value).toBe("bob");
    fireEvent.click(within(table).getByRole("button", { name: "Revoke laptop" }));
    expect(await screen.findByTestId("admin-keys-said")).toHaveProperty("textContent", "Revoked bob's API key laptop.");
    await waitFor(() => expect(within(table).queryByText("laptop", { selector: ".font-medium" })).toBeNull());
    expect(calls.filter((c) => c.method === "DELETE").map((c) => c.path)).toEqual(["/api/admin/users/bob/keys/laptop"]);
    expect(changed).toHaveBeenCalledTimes(1);
  });

  it("says so when the user does not exist", async () => {
    serve({ "GET /api/admin/users/nobody/keys": [404, { detail: "There is no user 'nobody'." }] });
    render(<AdminKeys root={root} chosen={null} />);
    fireEvent.change(screen.getByLabelText("Keys of"), { target: { value: "nobody" } });
    fireEvent.click(screen.getByRole("button", { name: "Show keys" }));
    expect((await screen.findByTestId("error-alert")).textContent).toContain("There is no user 'nobody'.");
    expect(screen.queryByTestId("admin-keys")).toBeNull();
  });
});
