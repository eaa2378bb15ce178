import { fireEvent, render, screen, waitFor, within } from "@testing-library/react";
import { afterEach, describe, expect, it, vi } from "vitest";
import { AdminUsers } from "./AdminUsers";
import { AdminRequests } from "./AdminRequests";
import { limitChange } from "./AdminLimits";

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
    return new Response(JSON.stringify(body), { status });
  });
  return calls;
}

afterEach(() => vi.unstubAllGlobals());

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
