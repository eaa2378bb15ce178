import { describe, expect, it, vi } from "vitest";
import {
  attachmentName,
  filterParams,
  conversationsPage,
  conversationSearchUrl,
  downloadStream,
  imagesExportBody,
  isSearch,
  jobSearchUrl,
  restError,
  restJson,
  setFavourite,
} from "./history";

const ROOT = "http://h:7860/";

function answer(status: number, body: unknown): Response {
  return new Response(JSON.stringify(body), { status, headers: { "content-type": "application/json" } });
}

describe("history search URLs", () => {
  it("send the words, the filters set and the cursor, and leave out the rest", () => {
    expect(jobSearchUrl(ROOT, { q: '  "red hat" -dog ', favourite: false }, null, 12)).toBe(
      "http://h:7860/api/history?q=%22red+hat%22+-dog&limit=12",
    );
    expect(jobSearchUrl(ROOT, { q: "", favourite: true, mode: "img2img" }, "abc/=", 12)).toBe(
      "http://h:7860/api/history?favourite=true&mode=img2img&cursor=abc%2F%3D&limit=12",
    );
    expect(conversationSearchUrl(ROOT, { q: "pasta", favourite: false, reasoning: false }, null, 5)).toBe(
      "http://h:7860/api/conversations?q=pasta&reasoning=false&limit=5",
    );
    expect(conversationSearchUrl(ROOT, { q: "pasta", favourite: false, reasoning: true }, null, 5)).toBe(
      "http://h:7860/api/conversations?q=pasta&limit=5",
    );
  });

  it("know a search from the plain newest-first list", () => {
    expect(isSearch({ q: "  ", favourite: false })).toBe(false);
    expect(isSearch({ q: "cat", favourite: false })).toBe(true);
    expect(isSearch({ q: "", favourite: true })).toBe(true);
    expect(isSearch({ q: "", favourite: false, mode: "inpaint" })).toBe(true);
  });
});

describe("the image search's filters", () => {
  it("send each filter set under REST's name: days as since/until (the last day included), the size as width and height", () => {
    const filters = { from: "2026-12-01", to: "2026-12-06", model: " tiny-sd ", size: "64x48", sampler: "", seed: " 42 ", lora: "ink", status: "done", collection_id: 7, order: "oldest" as const };
    expect(filterParams(filters)).toEqual({
      since: new Date(2026, 11, 1).toISOString(),
      until: new Date(2026, 11, 7).toISOString(),
      model: "tiny-sd",
      width: 64,
      height: 48,
      seed: "42",
      lora: "ink",
      status: "done",
      collection_id: 7,
      order: "oldest",
    });
    const url = new URL(jobSearchUrl(ROOT, { q: "cat", favourite: false, mode: "txt2img", filters }, null, 12));
    expect(url.searchParams.get("until")).toBe(new Date(2026, 11, 7).toISOString());
    expect([url.searchParams.get("width"), url.searchParams.get("collection_id"), url.searchParams.get("mode")]).toEqual(["64", "7", "txt2img"]);
    expect(url.searchParams.has("sampler")).toBe(false);
  });

  it("leave out what is unset or not a day, and count a filter alone as a search", () => {
    expect(filterParams({ from: "", to: "yesterday", model: "  ", collection_id: null, order: "" })).toEqual({});
    expect(isSearch({ q: "", favourite: false, filters: { model: "" } })).toBe(false);
    expect(isSearch({ q: "", favourite: false, filters: { collection_id: 3 } })).toBe(true);
    expect(isSearch({ q: "", favourite: false, filters: { from: "2026-12-01" } })).toBe(true);
  });

  it("export every result of the filtered search, numbers typed and without an order", () => {
    expect(imagesExportBody({ q: "", favourite: false, filters: { size: "64x64", seed: "7", collection_id: 2, order: "newest" } })).toEqual({
      query: { q: "", width: 64, height: 64, seed: 7, collection_id: 2 },
    });
  });
});

describe("REST answers", () => {
  it("turn FastAPI's 422 list into a message and fields named by the API", () => {
    const error = restError(422, { detail: [{ loc: ["query", "since"], msg: "since must be a date", type: "value_error" }] });
    expect(error.kind).toBe("validation");
    expect(error.fields).toEqual({ since: "since must be a date" });
    expect(error.message).toBe("since: since must be a date");
  });

  it("read another user's id as not found, and a rate limit with its wait", async () => {
    const missing = vi.fn(async () => answer(404, { detail: "job 7 does not exist." }));
    await expect(restJson(`${ROOT}api/history/7/favourite`, {}, missing as unknown as typeof fetch)).rejects.toMatchObject({
      kind: "not_found",
      message: "job 7 does not exist.",
    });
    const limited = vi.fn(async () => new Response(JSON.stringify({ detail: "Too many reads." }), { status: 429, headers: { "retry-after": "9" } }));
    await expect(restJson(ROOT, {}, limited as unknown as typeof fetch)).rejects.toMatchObject({ kind: "rate_limit", retryAfterS: 9 });
  });

  it("mark with POST and unmark with DELETE, with the login cookie", async () => {
    const ok = vi.fn(async (_url: string, init?: RequestInit) => answer(200, { job_id: 3, favourite: init?.method === "POST" }));
    await expect(setFavourite(ROOT, "job", 3, true, ok as unknown as typeof fetch)).resolves.toBe(true);
    await expect(setFavourite(ROOT, "conversation", 4, false, ok as unknown as typeof fetch)).resolves.toBe(false);
    const calls = ok.mock.calls as unknown as [string, RequestInit][];
    expect(calls.map(([url, init]) => [url, init.method, init.credentials])).toEqual([
      ["http://h:7860/api/history/3/favourite", "POST", "include"],
      ["http://h:7860/api/conversations/4/favourite", "DELETE", "include"],
    ]);
  });
});

describe("images export", () => {
  it("names every result of the search shown, or everything without one", () => {
    expect(imagesExportBody({ q: " cat ", favourite: true })).toEqual({ query: { q: "cat", favourite: true } });
    expect(imagesExportBody({ q: "", favourite: false })).toEqual({ all: true });
  });

  it("streams the zip, reporting the bytes and the jobs as they come, under the server's file name", async () => {
    const stream = new ReadableStream<Uint8Array>({
      start(controller) {
        controller.enqueue(new Uint8Array([80, 75, 3]));
        controller.enqueue(new Uint8Array([4, 5]));
        controller.close();
      },
    });
    const fetchImpl = vi.fn(async () => new Response(stream, {
      status: 200,
      headers: { "x-atelier-jobs": "2", "content-disposition": 'attachment; filename="atelier-search.zip"' },
    }));
    const seen: number[] = [];
    const { blob, name } = await downloadStream(`${ROOT}api/history/export`, { all: true }, (r) => seen.push(r.bytes), fetchImpl as unknown as typeof fetch);
    expect(seen).toEqual([3, 5]);
    expect(name).toBe("atelier-search.zip");
    expect(blob.size).toBe(5);
    const [, init] = fetchImpl.mock.calls[0] as unknown as [string, RequestInit];
    expect([init.method, init.body]).toEqual(["POST", '{"all":true}']);
  });

  it("reads a refusal before the first byte as the field it names", async () => {
    const refused = vi.fn(async () => answer(422, { detail: [{ loc: ["body", "job_ids"], msg: "no such job(s) of yours: 9; nothing was exported." }] }));
    await expect(downloadStream(ROOT, { job_ids: [9] }, () => undefined, refused as unknown as typeof fetch)).rejects.toMatchObject({
      kind: "validation",
      fields: { job_ids: "no such job(s) of yours: 9; nothing was exported." },
    });
    expect(attachmentName(null, "x.zip")).toBe("x.zip");
  });
});

describe("the chat sidebar's page", () => {
  it("lists the latest through the named API, and searches over REST with words", async () => {
    const call = vi.fn(async () => ({ conversations: [{ conversation_id: 1, title: "a", messages: 2 }], next_before: 1 }));
    const conn = { root: ROOT, call } as unknown as Parameters<typeof conversationsPage>[0];
    await expect(conversationsPage(conn, "  ", null, 30)).resolves.toEqual({
      conversations: [{ conversation_id: 1, title: "a", messages: 2 }],
      next: 1,
    });
    expect(call).toHaveBeenCalledWith("/conversations", { limit: 30, before: null });
    const fetchSpy = vi.spyOn(globalThis, "fetch").mockResolvedValue(answer(200, { conversations: [], next_cursor: "c2" }));
    try {
      await expect(conversationsPage(conn, "herons", "c1", 30)).resolves.toEqual({ conversations: [], next: "c2" });
      expect(String(fetchSpy.mock.calls[0][0])).toBe("http://h:7860/api/conversations?q=herons&cursor=c1&limit=30");
    } finally {
      fetchSpy.mockRestore();
    }
    expect(call).toHaveBeenCalledTimes(1);
  });
});
