import { fireEvent, render, screen, waitFor } from "@testing-library/react";
import { describe, expect, it, vi } from "vitest";
import { DeleteShown, FavouriteButton, Marked, RenameConversation, SearchBar } from "./HistorySearch";

describe("Marked", () => {
  it("marks the matched words and shows a prompt's markup as text", () => {
    const { container } = render(
      <Marked
        text="unused"
        segments={[
          { text: "a <img src=x onerror=alert(1)> ", match: false },
          { text: "cat", match: true },
        ]}
      />,
    );
    expect(container.querySelector("img")).toBeNull();
    expect([...container.querySelectorAll("mark")].map((m) => m.textContent)).toEqual(["cat"]);
    expect(container.textContent).toBe("a <img src=x onerror=alert(1)> cat");
  });

  it("shows the plain text when nothing was matched", () => {
    const { container } = render(<Marked text="a dog" segments={[]} />);
    expect(container.textContent).toBe("a dog");
  });
});

describe("SearchBar", () => {
  it("applies the words on Enter, and the favourites toggle at once", () => {
    const onSearch = vi.fn();
    render(<SearchBar query={{ q: "", favourite: false }} onSearch={onSearch} placeholder="Search prompts" testId="s" />);
    const box = screen.getByTestId("s-input");
    fireEvent.change(box, { target: { value: "ginger cat" } });
    fireEvent.submit(screen.getByTestId("s"));
    expect(onSearch).toHaveBeenLastCalledWith({ q: "ginger cat", favourite: false });
    fireEvent.click(screen.getByTestId("s-favourites"));
    expect(onSearch).toHaveBeenLastCalledWith({ q: "ginger cat", favourite: true });
  });
});

describe("FavouriteButton", () => {
  it("saves the mark and reports the server's answer", async () => {
    const fetchImpl = vi.fn(async () => new Response(JSON.stringify({ job_id: 5, favourite: true }), { status: 200 }));
    const onChange = vi.fn();
    render(<FavouriteButton root="http://h/" kind="job" id={5} value={false} onChange={onChange} onError={vi.fn()} fetchImpl={fetchImpl as unknown as typeof fetch} />);
    fireEvent.click(screen.getByRole("button", { name: "Mark job 5 as a favourite" }));
    await waitFor(() => expect(onChange).toHaveBeenCalledWith(true));
    expect((fetchImpl.mock.calls[0] as unknown as [string, RequestInit])[1].method).toBe("POST");
  });

  it("says why when the server refuses (another user's id), and changes nothing", async () => {
    const fetchImpl = vi.fn(async () => new Response(JSON.stringify({ detail: "job 5 does not exist." }), { status: 404 }));
    const onChange = vi.fn();
    const onError = vi.fn();
    render(<FavouriteButton root="http://h/" kind="job" id={5} value={false} onChange={onChange} onError={onError} fetchImpl={fetchImpl as unknown as typeof fetch} />);
    fireEvent.click(screen.getByTestId("job-favourite"));
    await waitFor(() => expect(onError).toHaveBeenCalledWith(expect.objectContaining({ kind: "not_found", message: "job 5 does not exist." })));
    expect(onChange).not.toHaveBeenCalled();
  });
});

describe("DeleteShown", () => {
  it("deletes the shown jobs once confirmed, and nothing when not", async () => {
    const fetchImpl = vi.fn(async () => new Response(JSON.stringify({ deleted: [1, 2], missing: [] }), { status: 200 }));
    const onDeleted = vi.fn();
    const answers = [false, true];
    render(
      <DeleteShown root="http://h/" jobIds={[1, 2]} onDeleted={onDeleted} onError={vi.fn()} confirm={() => answers.shift()!} fetchImpl={fetchImpl as unknown as typeof fetch} />,
    );
    const button = screen.getByTestId("history-delete-shown");
    expect(button.textContent).toContain("Delete the 2 shown");
    fireEvent.click(button);
    expect(fetchImpl).not.toHaveBeenCalled();
    fireEvent.click(button);
    await waitFor(() => expect(onDeleted).toHaveBeenCalledWith([1, 2]));
    const [url, init] = fetchImpl.mock.calls[0] as unknown as [string, RequestInit];
    expect([url, init.method, init.body]).toEqual(["http://h/api/history/delete", "POST", '{"job_ids":[1,2]}']);
  });
});

describe("RenameConversation", () => {
  it("saves the new title on Enter, and shows the server's refusal of an empty one", async () => {
    const answers = [
      new Response(JSON.stringify({ detail: [{ loc: ["body", "title"], msg: "a title needs 1 to 200 characters." }] }), { status: 422 }),
      new Response(JSON.stringify({ conversation_id: 3, title: "Pasta times", messages: 2 }), { status: 200 }),
    ];
    const fetchImpl = vi.fn(async () => answers.shift()!);
    const onRenamed = vi.fn();
    const onError = vi.fn();
    render(<RenameConversation root="http://h/" id={3} title="Cooking" onRenamed={onRenamed} onError={onError} fetchImpl={fetchImpl as unknown as typeof fetch} />);
    fireEvent.click(screen.getByTestId("conversation-rename"));
    const box = screen.getByTestId("conversation-title-input");
    fireEvent.change(box, { target: { value: " " } });
    fireEvent.submit(box.closest("form")!);
    await waitFor(() => expect(onError).toHaveBeenCalledWith(expect.objectContaining({ fields: { title: "a title needs 1 to 200 characters." } })));
    fireEvent.change(box, { target: { value: "  Pasta   times " } });
    fireEvent.submit(box.closest("form")!);
    await waitFor(() => expect(onRenamed).toHaveBeenCalledWith("Pasta times"));
    const [url, init] = fetchImpl.mock.calls[1] as unknown as [string, RequestInit];
    expect([url, init.method, init.body]).toEqual(["http://h/api/conversations/3", "PATCH", '{"title":"  Pasta   times "}']);
  });
});
