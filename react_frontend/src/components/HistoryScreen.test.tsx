import { act, fireEvent, render, screen, waitFor } from "@testing-library/react";
import { afterEach, describe, expect, it, vi } from "vitest";
import type { AtelierConnection } from "@/lib/gradio";
import { HistoryScreen } from "./HistoryScreen";

function job(id: number, prompt: string) {
  return { job_id: id, prompt, negative_prompt: "", created_at: "2026-12-06T07:00:00+00:00", status: "done", files: [], width: 64, height: 64, steps: 2, sampler: "Euler a", cfg_scale: 7, seed: -1, seed_used: 1, batch_count: 1, model: "tiny", duration_s: 1, cached: false };
}

afterEach(() => vi.restoreAllMocks());

describe("HistoryScreen", () => {
  it("never lets the newest list, answering late, replace the search typed meanwhile", async () => {
    let answerNewest: (page: unknown) => void = () => undefined;
    const call = vi.fn((endpoint: string) =>
      endpoint === "/history" ? new Promise((resolve) => (answerNewest = resolve)) : Promise.resolve({ conversations: [], next_before: null }),
    );
    const conn = { root: "http://h/", call, imageUrl: (id: number) => `http://h/api/images/${id}` } as unknown as AtelierConnection;
    // Each REST read its own answer: the screen also reads the user's collections and the filters' choices.
    const page = { jobs: [job(2, "a grey heron")], next_cursor: null, order: "relevance", query: { terms: [], excluded: [], truncated: false } };
    vi.spyOn(globalThis, "fetch").mockImplementation(async (url) => {
      const path = new URL(String(url)).pathname;
      const body = path === "/api/collections" ? [] : path === "/api/history/facets" ? { models: [], samplers: [], modes: [], sizes: [] } : page;
      return new Response(JSON.stringify(body), { status: 200 });
    });
    render(<HistoryScreen conn={conn} refreshKey={0} onReuse={vi.fn()} onOpenConversation={vi.fn()} />);
    fireEvent.change(screen.getByTestId("history-search-input"), { target: { value: "heron" } });
    fireEvent.submit(screen.getByTestId("history-search"));
    await waitFor(() => expect(screen.getAllByTestId("history-job").map((c) => c.textContent)).toEqual([expect.stringContaining("a grey heron")]));
    await act(async () => answerNewest({ jobs: [job(1, "a windmill"), job(2, "a grey heron")], next_before: null }));
    expect(screen.getAllByTestId("history-job")).toHaveLength(1);
  });
});
