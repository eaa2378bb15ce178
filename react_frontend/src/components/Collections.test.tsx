import { useState } from "react";
import { fireEvent, render, screen, waitFor } from "@testing-library/react";
import { describe, expect, it, vi } from "vitest";
import { CollectionsPanel, SelectionBar } from "./Collections";
import type { Collection } from "@/lib/collections";

function collection(id: number, name: string, jobs = 0): Collection {
  return { collection_id: id, name, created_at: "", updated_at: "", jobs, cover_file_id: null };
}

function reply(status: number, body: unknown): Response {
  return new Response(status === 204 ? null : JSON.stringify(body), { status });
}

/** The panel with its list kept as HistoryScreen keeps it, answering from `answers` in turn. */
function Harness({ answers, confirm, start = [] as Collection[] }: { answers: Response[]; confirm: () => boolean; start?: Collection[] }) {
  const [list, setList] = useState<Collection[]>(start);
  const [browsing, setBrowsing] = useState<number | null>(null);
  const [error, setError] = useState("");
  const fetchImpl = (async () => answers.shift()!) as unknown as typeof fetch;
  return (
    <>
      <CollectionsPanel root="http://h/" collections={list} browsing={browsing} onBrowse={setBrowsing} onChanged={setList} onError={(e) => setError(e.message)} confirm={confirm} fetchImpl={fetchImpl} />
      <p data-testid="browsing">{String(browsing)}</p>
      <p data-testid="error">{error}</p>
    </>
  );
}

describe("CollectionsPanel", () => {
  it("makes a collection, shows a taken name's refusal, renames it, browses it and deletes it once confirmed", async () => {
    const answers = [
      reply(201, collection(5, "Birds")),
      reply(422, { detail: [{ loc: ["body", "name"], msg: "you already have a collection named 'Birds'." }] }),
      reply(200, collection(5, "Water birds", 0)),
      reply(204, null),
    ];
    const confirms = [false, true];
    render(<Harness answers={answers} confirm={() => confirms.shift()!} />);
    const name = screen.getByTestId("collection-new-name");
    fireEvent.change(name, { target: { value: "Birds" } });
    fireEvent.submit(name.closest("form")!);
    await screen.findByText("Birds (0)");
    expect((name as HTMLInputElement).value).toBe("");

    fireEvent.change(name, { target: { value: "Birds" } });
    fireEvent.submit(name.closest("form")!);
    await waitFor(() => expect(screen.getByTestId("error").textContent).toContain("already have a collection named 'Birds'"));
    expect(screen.getAllByTestId("collection")).toHaveLength(1);

    fireEvent.click(screen.getByTestId("collection-rename"));
    const box = screen.getByTestId("collection-name-input");
    fireEvent.change(box, { target: { value: "Water birds" } });
    fireEvent.submit(box.closest("form")!);
    await screen.findByText("Water birds (0)");

    fireEvent.click(screen.getByTestId("collection-browse"));
    expect(screen.getByTestId("browsing").textContent).toBe("5");
    fireEvent.click(screen.getByTestId("collection-delete"));  // not confirmed: kept
    expect(screen.getAllByTestId("collection")).toHaveLength(1);
    fireEvent.click(screen.getByTestId("collection-delete"));
    await waitFor(() => expect(screen.queryAllByTestId("collection")).toHaveLength(0));
    expect(screen.getByTestId("browsing").textContent).toBe("null");  // no longer browsing what is gone
  });
});

describe("SelectionBar", () => {
  it("adds the selected jobs to the chosen collection, and takes them out of the one browsed", async () => {
    const fetchImpl = vi.fn(async (url: string) =>
      reply(200, url.endsWith("/remove") ? { added: 0, already: 0, removed: 2 } : { added: 1, already: 1, removed: 0 }),
    );
    const onDone = vi.fn();
    const birds = collection(5, "Birds", 1);
    const { rerender } = render(
      <SelectionBar root="http://h/" selected={[1, 2]} collections={[birds]} browsing={null} onDone={onDone} onClear={vi.fn()} onError={vi.fn()} fetchImpl={fetchImpl as unknown as typeof fetch} />,
    );
    expect(screen.getByTestId("selection-count").textContent).toBe("2 selected");
    expect((screen.getByTestId("selection-add") as HTMLButtonElement).disabled).toBe(true);  // no collection chosen yet
    expect(screen.queryByTestId("selection-remove")).toBeNull();
    fireEvent.change(screen.getByTestId("selection-collection"), { target: { value: "5" } });
    fireEvent.click(screen.getByTestId("selection-add"));
    await waitFor(() => expect(onDone).toHaveBeenCalledWith("Added 1 job to “Birds” (1 job already in it).", []));

    rerender(<SelectionBar root="http://h/" selected={[1, 2]} collections={[birds]} browsing={birds} onDone={onDone} onClear={vi.fn()} onError={vi.fn()} fetchImpl={fetchImpl as unknown as typeof fetch} />);
    fireEvent.click(screen.getByTestId("selection-remove"));
    await waitFor(() => expect(onDone).toHaveBeenLastCalledWith("Took 2 jobs out of “Birds”.", [1, 2]));
    const [url, init] = fetchImpl.mock.calls[1] as unknown as [string, RequestInit];
    expect([url, init.body]).toEqual(["http://h/api/collections/5/jobs/remove", '{"job_ids":[1,2]}']);
  });

  it("is not there when nothing is selected", () => {
    const { container } = render(<SelectionBar root="http://h/" selected={[]} collections={[]} browsing={null} onDone={vi.fn()} onClear={vi.fn()} onError={vi.fn()} />);
    expect(container.textContent).toBe("");
  });
});
