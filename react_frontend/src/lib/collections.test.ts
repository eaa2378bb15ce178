import { describe, expect, it, vi } from "vitest";
import { addToCollection, createCollection, deleteCollection, describeChange, removeFromCollection, renameCollection, withCollection, type Collection } from "./collections";

const ROOT = "http://h:7860/";

function collection(id: number, name: string, jobs = 0): Collection {
  return { collection_id: id, name, created_at: "", updated_at: "", jobs, cover_file_id: null };
}

function calls(fetchImpl: ReturnType<typeof vi.fn>): [string, string | undefined, unknown][] {
  return (fetchImpl.mock.calls as unknown as [string, RequestInit][]).map(([url, init]) => [url, init.method, init.body]);
}

describe("collections over REST", () => {
  it("make, rename, fill, empty and delete with the routes and bodies REST takes", async () => {
    const fetchImpl = vi.fn(async () => new Response(JSON.stringify(collection(4, "Birds")), { status: 200 }));
    const f = fetchImpl as unknown as typeof fetch;
    await createCollection(ROOT, "Birds", f);
    await renameCollection(ROOT, 4, "Water birds", f);
    await addToCollection(ROOT, 4, [1, 2], f);
    await removeFromCollection(ROOT, 4, [2], f);
    await deleteCollection(ROOT, 4, f);
    expect(calls(fetchImpl)).toEqual([
      ["http://h:7860/api/collections", "POST", '{"name":"Birds"}'],
      ["http://h:7860/api/collections/4", "PATCH", '{"name":"Water birds"}'],
      ["http://h:7860/api/collections/4/jobs", "POST", '{"job_ids":[1,2]}'],
      ["http://h:7860/api/collections/4/jobs/remove", "POST", '{"job_ids":[2]}'],
      ["http://h:7860/api/collections/4", "DELETE", undefined],
    ]);
  });

  it("read a refusal as the field it names (a name already taken), and a 204's empty body as done", async () => {
    const taken = vi.fn(async () => new Response(JSON.stringify({ detail: [{ loc: ["body", "name"], msg: "you already have a collection named 'Birds'." }] }), { status: 422 }));
    await expect(createCollection(ROOT, "Birds", taken as unknown as typeof fetch)).rejects.toMatchObject({
      kind: "validation",
      fields: { name: "you already have a collection named 'Birds'." },
    });
    const gone = vi.fn(async () => new Response(null, { status: 204 }));
    await expect(deleteCollection(ROOT, 4, gone as unknown as typeof fetch)).resolves.toBeUndefined();
  });

  it("keep the list sorted by name after a change, and say what an add or take-out did", () => {
    const list = [collection(1, "Birds", 2), collection(2, "Cats")];
    expect(withCollection(list, collection(2, "Apples")).map((c) => c.name)).toEqual(["Apples", "Birds"]);
    expect(withCollection(list, collection(3, "Boats")).map((c) => c.collection_id)).toEqual([1, 3, 2]);
    expect(describeChange("add", { added: 1, already: 1, removed: 0 }, "Birds")).toBe("Added 1 job to “Birds” (1 job already in it).");
    expect(describeChange("add", { added: 2, already: 0, removed: 0 }, "Birds")).toBe("Added 2 jobs to “Birds”.");
    expect(describeChange("remove", { added: 0, already: 0, removed: 2 }, "Birds")).toBe("Took 2 jobs out of “Birds”.");
  });
});
