import { fireEvent, render, screen, waitFor } from "@testing-library/react";
import { describe, expect, it, vi } from "vitest";
import { AccountArchive, ConversationExportLinks } from "./HistoryExport";

function choose(name: string) {
  const input = screen.getByTestId("account-import-file") as HTMLInputElement;
  fireEvent.change(input, { target: { files: [new File(["PK"], name, { type: "application/zip" })] } });
}

describe("AccountArchive", () => {
  it("imports the chosen archive and says what arrived", async () => {
    const fetchImpl = vi.fn(async () => new Response(JSON.stringify({ jobs: 3, images: 4, conversations: 1 }), { status: 200 }));
    const onImported = vi.fn();
    render(<AccountArchive root="http://h/" onImported={onImported} fetchImpl={fetchImpl as unknown as typeof fetch} />);
    choose("account.zip");
    fireEvent.click(screen.getByTestId("account-import"));
    await waitFor(() => expect(screen.getByTestId("account-import-done").textContent).toBe("Imported 3 jobs, 4 images, 1 conversations."));
    expect(onImported).toHaveBeenCalled();
    const [url, init] = fetchImpl.mock.calls[0] as unknown as [string, RequestInit];
    expect([url, init.method, (init.body as FormData).get("archive") instanceof File]).toEqual(["http://h/api/account/import", "POST", true]);
  });

  it("shows the server's refusal, and asks for a file when none was chosen", async () => {
    const fetchImpl = vi.fn(async () =>
      new Response(JSON.stringify({ detail: [{ loc: ["body", "archive"], msg: "the archive is damaged; nothing was imported." }] }), { status: 422 }),
    );
    const onImported = vi.fn();
    render(<AccountArchive root="http://h/" onImported={onImported} fetchImpl={fetchImpl as unknown as typeof fetch} />);
    fireEvent.click(screen.getByTestId("account-import"));
    expect(screen.getByTestId("error-alert").textContent).toContain("Choose an account archive");
    expect(fetchImpl).not.toHaveBeenCalled();
    choose("broken.zip");
    fireEvent.click(screen.getByTestId("account-import"));
    await waitFor(() => expect(screen.getByTestId("error-alert").textContent).toContain("nothing was imported"));
    expect(onImported).not.toHaveBeenCalled();
  });
});

describe("ConversationExportLinks", () => {
  it("links the three formats", () => {
    render(<ConversationExportLinks root="http://h/" id={7} />);
    expect(screen.getAllByRole("link").map((a) => a.getAttribute("href"))).toEqual([
      "http://h/api/conversations/7/export?format=markdown",
      "http://h/api/conversations/7/export?format=json",
      "http://h/api/conversations/7/export?format=openai",
    ]);
  });
});
