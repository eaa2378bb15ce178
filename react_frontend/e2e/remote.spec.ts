import { A1111_PORT, REMOTE_PORT } from "./constants";
import { expect, fillImageForm, keepScreenshot, setNumber, test } from "./fixtures";

// The app with both remote backends: images from the AUTOMATIC1111 stand-in, text from the OpenAI-compatible
// stand-in (tests/standins/: real HTTP servers speaking the published APIs, started beside the app).
test.use({ baseURL: `http://127.0.0.1:${REMOTE_PORT}` });
test.describe.configure({ mode: "serial" });

/** What the OpenAI-compatible stand-in says by default: reasoning in `reasoning_content`, then the answer. */
const REASONING = "The user greets me. I should greet back.";
const ANSWER = "Hello! How can I help?";

test("the React client drives the WebUI: polled previews, the stored result, Stop interrupts our job", async ({ page }) => {
  await page.goto("/app/");
  // 12 steps: not the client's own default (20), which the server's defaults replace when /choices answers late.
  await fillImageForm(page, { prompt: "a remote lighthouse", steps: 12 });
  await page.getByTestId("generate").click();
  await expect(page.getByTestId("job-status")).toHaveAttribute("data-phase", "done", { timeout: 60_000 });
  const previews = Number(await page.getByTestId("preview-area").getAttribute("data-preview-count"));
  expect(previews, "live previews polled from /sdapi/v1/progress").toBeGreaterThan(0);
  await expect(page.getByTestId("result-image")).toHaveCount(1);
  await keepScreenshot(page, "remote-image");

  await setNumber(page, "#steps", 400);
  await page.getByTestId("generate").click();
  await expect(page.getByTestId("progress-text")).toContainText(/step \d+\/400/);
  await page.getByTestId("stop").click();
  await expect(page.getByTestId("job-status")).toHaveAttribute("data-phase", "cancelled", { timeout: 15_000 });
  // The WebUI itself stopped (Atelier called /sdapi/v1/interrupt): it is idle at once, not 400 steps of 50 ms later.
  await expect
    .poll(async () => {
      const response = await page.request.get(`http://127.0.0.1:${A1111_PORT}/sdapi/v1/progress?skip_current_image=true`);
      return ((await response.json()) as { state: { job: string } }).state.job;
    }, { timeout: 5_000 })
    .toBe("");

  // Both jobs are in the history, as the WebUI's: the first done, the stopped one cancelled.
  await expect
    .poll(async () => {
      const response = await page.request.get("/api/history?limit=2");
      const { jobs } = (await response.json()) as { jobs: { steps: number; status: string; backend: string }[] };
      return jobs.map((job) => `${job.backend} ${job.steps} ${job.status}`);
    })
    .toEqual(["a1111 400 cancelled", "a1111 12 done"]);
});

test("the React client shows the server's reasoning apart from its answer", async ({ page }) => {
  await page.goto("/app/");
  await page.getByTestId("nav-chat").click();
  await page.locator("#chat-input").fill("hello, remote");
  await page.locator("#chat-input").press("Enter");
  const reply = page.getByTestId("chat-assistant-message").last();
  await expect(reply).toHaveAttribute("data-status", "done", { timeout: 60_000 });
  await expect(reply.getByTestId("chat-answer")).toHaveText(ANSWER);
  const panel = reply.getByTestId("thinking-panel");
  await panel.getByTestId("thinking-label").click();
  await expect(panel.getByTestId("thinking-text")).toHaveText(REASONING);
  await keepScreenshot(page, "remote-chat");
});

test("the Gradio UI chats through the remote server with the thinking bubble", async ({ page }) => {
  await page.goto("/");
  await page.getByRole("tab", { name: "Chat" }).click();
  await page.locator("#chat-message textarea").fill("hello from Gradio");
  await page.locator("#chat-send").click();
  await expect(page.locator("#chat-status")).toContainText(/Done in [\d.]+ s/, { timeout: 60_000 });
  await expect(page.locator("#chatbot")).toContainText(ANSWER);
  await expect(page.locator("#chatbot")).toContainText("Thought");
  await keepScreenshot(page, "remote-gradio-chat");
});
