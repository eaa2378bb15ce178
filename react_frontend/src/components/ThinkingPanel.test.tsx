import { act, fireEvent, render, screen } from "@testing-library/react";
import { describe, expect, it } from "vitest";
import { ChatMessage } from "./ChatMessage";
import { ThinkingPanel } from "./ThinkingPanel";

describe("ThinkingPanel", () => {
  it("is open with a spinner while the model thinks, streaming its reasoning", () => {
    const { rerender } = render(<ThinkingPanel reasoning="" status="thinking" reasoningS={null} />);
    expect(screen.getByTestId("thinking-panel").dataset.pending).toBe("true");
    expect(screen.getByLabelText("thinking")).toBeTruthy();
    expect(screen.getByTestId("thinking-label").textContent).toBe("Thinking…");
    expect(screen.getByTestId("thinking-text").textContent).toBe("…");
    rerender(<ThinkingPanel reasoning="The sky scatters" status="thinking" reasoningS={null} />);
    expect(screen.getByTestId("thinking-text").textContent).toBe("The sky scatters");
  });

  it("folds away with its duration once the answer starts", () => {
    const { rerender } = render(<ThinkingPanel reasoning="The sky" status="thinking" reasoningS={null} />);
    act(() => rerender(<ThinkingPanel reasoning="The sky scatters blue." status="answering" reasoningS={2.46} />));
    const panel = screen.getByTestId("thinking-panel");
    expect(panel.dataset.pending).toBe("false");
    expect(screen.getByTestId("thinking-label").textContent).toBe("Thought for 2.5 s");
    expect(screen.queryByTestId("thinking-text")).toBeNull();
    fireEvent.click(screen.getByTestId("thinking-label"));
    expect(screen.getByTestId("thinking-text").textContent).toBe("The sky scatters blue.");
  });

  it("leaves it as the reader set it", () => {
    const { rerender } = render(<ThinkingPanel reasoning="a" status="thinking" reasoningS={null} />);
    fireEvent.click(screen.getByTestId("thinking-label")); // the reader closes it while it thinks
    expect(screen.queryByTestId("thinking-text")).toBeNull();
    act(() => rerender(<ThinkingPanel reasoning="ab" status="answering" reasoningS={1} />));
    expect(screen.queryByTestId("thinking-text")).toBeNull();
    fireEvent.click(screen.getByTestId("thinking-label")); // and opens it again after
    act(() => rerender(<ThinkingPanel reasoning="ab" status="done" reasoningS={1} />));
    expect(screen.getByTestId("thinking-text").textContent).toBe("ab");
  });

  it("shows nothing for a reply without reasoning", () => {
    render(<ThinkingPanel reasoning="" status="done" reasoningS={null} />);
    expect(screen.queryByTestId("thinking-panel")).toBeNull();
  });
});

describe("ChatMessage", () => {
  it("shows a reply's reasoning apart from its answer, and a stopped reply as stopped", () => {
    render(
      <ChatMessage
        turn={{ key: "r", role: "assistant", content: "Because of Rayleigh scattering", reasoning: "Light…", status: "cancelled", reasoningS: 0.8 }}
      />,
    );
    expect(screen.getByTestId("chat-answer").textContent).toBe("Because of Rayleigh scattering");
    expect(screen.getByTestId("thinking-label").textContent).toBe("Thought for 0.8 s");
    expect(screen.getByTestId("chat-stopped").textContent).toContain("Stopped.");
  });

  it("does not call a reply stopped when the server never confirmed the Stop", () => {
    render(<ChatMessage turn={{ key: "r", role: "assistant", content: "Because", reasoning: "", status: "stop-sent", reasoningS: null }} />);
    const note = screen.getByTestId("chat-stopped").textContent ?? "";
    expect(note).toContain("not confirmed");
    expect(note).not.toContain("Stopped.");
  });
});

describe("ChatMessage", () => {
  it("shows a system prompt (from the OpenAI-compatible API) as a note, not as a reply", () => {
    render(<ChatMessage turn={{ key: "s", role: "system", content: "Be brief.", reasoning: "", status: "done", reasoningS: null }} />);
    expect(screen.getByTestId("chat-system-message").textContent).toBe("System: Be brief.");
    expect(screen.queryByTestId("chat-assistant-message")).toBeNull();
  });
});
