import { render, screen } from "@testing-library/react";
import { describe, expect, it } from "vitest";
import { errorFromHttp, errorFromMessage, errorFromStatus } from "@/lib/errors";
import { ErrorAlert } from "./ErrorAlert";

describe("ErrorAlert", () => {
  it("shows a rate limit with the server's words", () => {
    render(<ErrorAlert error={errorFromMessage("Too many chat messages: the limit is 30 per 1 minute. Try again in 12 s.")} />);
    const alert = screen.getByTestId("error-alert");
    expect(alert.dataset.kind).toBe("rate_limit");
    expect(alert.textContent).toContain("Slow down");
    expect(alert.textContent).toContain("Try again in 12 s.");
  });

  it("shows a full queue with when to try again", () => {
    render(<ErrorAlert error={errorFromHttp(503, { detail: "Atelier is busy: 64 jobs are already waiting. Try again shortly." }, "10")} />);
    const alert = screen.getByTestId("error-alert");
    expect(alert.textContent).toContain("Queue full");
    expect(alert.textContent).toContain("Try again in 10 s.");
  });

  it("shows a name the server escaped as the text the user sent, never as markup", () => {
    const { container } = render(<ErrorAlert error={errorFromStatus({ message: "upscaler named &lt;img src=x onerror=alert(1)&gt; not found" })} />);
    expect(container.querySelector("img")).toBeNull();
    expect(screen.getByTestId("error-alert").textContent).toContain("upscaler named <img src=x onerror=alert(1)> not found");
  });

  it("renders nothing without an error", () => {
    const { container } = render(<ErrorAlert error={null} />);
    expect(container.innerHTML).toBe("");
  });
});
