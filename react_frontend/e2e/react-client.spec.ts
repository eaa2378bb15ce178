import { expect, fillImageForm, keepScreenshot, setNumber, test } from "./fixtures";

// The tests build on one another (the history test looks for the jobs and the chat made before it).
test.describe.configure({ mode: "serial" });

/** The user messages the chat test sent in its first conversation. */
let userTurns = 0;
/** The user messages of the conversation in which the chat test stopped a reply. */
let storyTurns = 0;

test.beforeEach(async ({ page }) => {
  await page.goto("/app/");
  await expect(page.getByTestId("nav-image")).toBeVisible();
});

test("generates an image: live preview, progress, result with seed and download", async ({ page }) => {
  await page.locator("#prompt").fill("a lighthouse at dusk, watercolor");
  await page.locator("#negative-prompt").fill("blurry");
  await setNumber(page, "#width", 64);
  await setNumber(page, "#height", 96);
  await setNumber(page, "#steps", 10);
  await page.getByTestId("generate").click();

  await expect(page.getByTestId("job-status")).toHaveAttribute("data-phase", /running|done/);
  // The first job builds the tiny model (a few seconds), then streams previews every few steps.
  await expect(page.getByTestId("job-status")).toHaveAttribute("data-phase", "done", { timeout: 60_000 });
  const previews = Number(await page.getByTestId("preview-area").getAttribute("data-preview-count"));
  expect(previews).toBeGreaterThan(0);
  await expect(page.getByTestId("progress-text")).toContainText(/done/);

  const result = page.getByTestId("result-image");
  await expect(result).toHaveCount(1);
  await expect.poll(() => result.evaluate((img: HTMLImageElement) => [img.naturalWidth, img.naturalHeight])).toEqual([64, 96]);
  await expect(page.getByTestId("download")).toHaveAttribute("href", /\.png$/);
  await expect(page.getByTestId("download")).toHaveAttribute("download", /\.png$/);
  const seedText = await page.getByTestId("result-seed").textContent();
  const seed = Number(/seed (\d+)/.exec(seedText ?? "")?.[1]);
  expect(seed).toBeGreaterThanOrEqual(0);

  // "Reuse settings" puts the seed actually used in place of -1.
  await expect(page.locator("#seed")).toHaveValue("-1");
  await page.getByTestId("reuse-settings").click();
  await expect(page.locator("#seed")).toHaveValue(String(seed));
  await keepScreenshot(page, "image-result");
});

test("shows the server's validation message next to the field", async ({ page }) => {
  await page.locator("#prompt").fill("a fox");
  await setNumber(page, "#width", 65);
  // Outside the range of the Gradio UI's slider: the server's validator, not a bare 400, answers it.
  await setNumber(page, "#steps", 0);
  await page.getByTestId("generate").click();
  await expect(page.getByTestId("error-alert")).toHaveAttribute("data-kind", "validation");
  await expect(page.getByTestId("width-error")).toContainText("multiple of 8 between 64 and 2048");
  await expect(page.locator("#width")).toHaveAttribute("aria-invalid", "true");
  await expect(page.getByTestId("steps-error")).toContainText("steps must be between 1 and 500, got 0.");
  await keepScreenshot(page, "validation-error");
});

test("stops a long job: the server cancels it, history records it; a job behind it shows its queue place", async ({ page, context }) => {
  // 256² makes each step slow enough (about 20 s for 400 on the tiny model) that the second tab finds it running.
  await fillImageForm(page, { prompt: "a very long job", width: 256, height: 256, steps: 400 });
  await page.getByTestId("generate").click();
  await expect(page.getByTestId("progress-text")).toContainText(/step \d+\/400/);

  // A second tab asks for an image meanwhile: one image job runs at a time, so it waits, and says where.
  const other = await context.newPage();
  await other.goto("/app/");
  await fillImageForm(other, { prompt: "waiting in line", steps: 2 });
  await other.getByTestId("generate").click();
  await expect(other.getByTestId("job-status")).toHaveText("Queued");
  await expect(other.getByTestId("queue-position")).toHaveText(/In queue: next in line/);
  await keepScreenshot(other, "image-queued");

  await page.getByTestId("stop").click();
  await expect(page.getByTestId("job-status")).toHaveAttribute("data-phase", "cancelled", { timeout: 15_000 });
  await expect(page.getByTestId("cancelled-note")).toContainText(/Stopped at step \d+\/400/);
  // Stopping freed the model: the waiting job runs at once.
  await expect(other.getByTestId("job-status")).toHaveAttribute("data-phase", "done", { timeout: 30_000 });
  await other.close();

  // The server really stopped: the job is recorded as cancelled.
  await expect
    .poll(async () => {
      const response = await page.request.get("/api/history?limit=5");
      const { jobs } = (await response.json()) as { jobs: { prompt: string; status: string }[] };
      return jobs.find((job) => job.prompt === "a very long job")?.status;
    })
    .toBe("cancelled");
  await keepScreenshot(page, "image-cancelled");
});

test("chat streams the answer with the Thinking panel live, then folded with its duration", async ({ page }) => {
  await page.getByTestId("nav-chat").click();
  // Watch the DOM while the reply streams: the Thinking panel open and pending with reasoning in it,
  // or the answer growing while the reply is still "answering".
  await page.evaluate(() => {
    const seen = { pendingPanel: false, liveReasoning: false, liveAnswer: false };
    (window as unknown as { __seen: typeof seen }).__seen = seen;
    new MutationObserver(() => {
      const pending = document.querySelector('[data-live="true"] [data-testid="thinking-panel"][data-pending="true"]');
      if (pending) seen.pendingPanel = true;
      const reasoning = pending?.querySelector('[data-testid="thinking-text"]')?.textContent ?? "";
      if (reasoning && reasoning !== "…") seen.liveReasoning = true;
      if (document.querySelector('[data-live="true"][data-status="answering"] [data-testid="chat-answer"]')) seen.liveAnswer = true;
    }).observe(document.body, { subtree: true, childList: true, characterData: true, attributes: true });
  });
  // The tiny model's random weights sometimes end a reply (a few dozen tokens in a tenth of a second) before the
  // first update goes out, leaving nothing to see live: then this asks again in the same chat, twice at most.
  const questions = ["Why is the sky blue?", "And why are sunsets red?", "What colour is the sea?"];
  const reply = page.getByTestId("chat-assistant-message").last();
  let seen: Record<string, boolean> = {};
  for (const question of questions) {
    await page.locator("#chat-input").fill(question);
    await page.locator("#chat-input").press("Enter");
    userTurns += 1;
    await expect(page.getByTestId("chat-user-message").last()).toContainText(question);
    await expect(page.getByTestId("chat-user-message")).toHaveCount(userTurns);
    await expect(page.getByTestId("chat-assistant-message")).toHaveCount(userTurns);  // `reply` is this turn's
    await expect(reply).toHaveAttribute("data-status", "done", { timeout: 60_000 });
    seen = await page.evaluate(() => (window as unknown as { __seen: Record<string, boolean> }).__seen);
    if (seen.liveReasoning || seen.liveAnswer) break;
  }
  expect(seen.pendingPanel, "the Thinking panel showed while the model thought").toBe(true);
  expect(seen.liveReasoning || seen.liveAnswer, "reasoning or answer showed before the reply ended").toBe(true);

  const panel = reply.getByTestId("thinking-panel");
  await expect(panel).toHaveAttribute("data-pending", "false");
  await expect(panel.getByTestId("thinking-label")).toHaveText(/Thought for [\d.]+ s/);
  await expect(panel.getByTestId("thinking-text")).toBeHidden();
  await panel.getByTestId("thinking-label").click();
  await expect(panel.getByTestId("thinking-text")).toBeVisible();
  await expect(panel.getByTestId("thinking-text")).not.toHaveText("");
  await expect(reply.getByTestId("chat-answer")).not.toHaveText("");
  await expect(page.getByTestId("chat-status")).toContainText(/Done/);
  // The list also holds what other tests wrote on this server (single-user mode: one owner for all).
  await expect(page.getByTestId("conversation-item").filter({ hasText: "Why is the sky blue?" })).toHaveCount(1);
  await keepScreenshot(page, "chat-done");

  // Stop a reply: the partial answer stays, marked as stopped. The tiny model's random weights may end a
  // reply before Stop lands, so this asks again (a few times at most) until one is stopped mid-way.
  await page.getByText("Sampling").click();
  // A bad thinking budget is refused under its field before anything is sent, and the message comes back.
  await setNumber(page, "#thinking-budget", -5);
  await page.locator("#chat-input").fill("Is this refused?");
  await page.getByTestId("chat-send").click();
  await expect(page.getByTestId("thinking-budget-error")).toContainText("thinking_budget must be");
  await expect(page.locator("#chat-input")).toHaveValue("Is this refused?");
  await expect(page.getByTestId("chat-user-message")).toHaveCount(userTurns);
  await page.locator("#thinking-budget").fill(""); // the server's default again
  await setNumber(page, "#max-new-tokens", 8192);
  // A new chat, so that the reply has the model's whole context (2,048 tokens on the tiny model) to fill: in the
  // conversation above, what is left ends a reply after a few dozen tokens, before a Stop can land. Greedy, set
  // with the keyboard: the tiny model's random weights then give the same reply each time.
  await page.getByTestId("new-chat").click();
  await expect(page.getByTestId("chat-user-message")).toHaveCount(0);
  await page.getByRole("slider", { name: "Temperature" }).focus();
  await page.keyboard.press("Home");
  await expect(page.getByRole("slider", { name: "Temperature" })).toHaveAttribute("aria-valuenow", "0");
  let stopped = page.getByTestId("chat-assistant-message").last();
  for (let attempt = 0; attempt < 5; attempt++) {
    await page.locator("#chat-input").fill(`Write a long story, part ${attempt + 1}.`);
    await page.getByTestId("chat-send").click();
    storyTurns += 1;
    const generating = page.locator('[data-live="true"][data-status="thinking"], [data-live="true"][data-status="answering"]');
    if (await generating.waitFor({ timeout: 15_000 }).then(() => true, () => false)) {
      // While the reply streams, the text scrolls inside its box: Stop stays in the window, where it was.
      await expect(page.getByTestId("chat-stop")).toBeInViewport();
      await page.getByTestId("chat-stop").click({ timeout: 2_000 }).catch(() => undefined);
    }
    await expect(page.locator('[data-live="true"]')).toHaveCount(0, { timeout: 15_000 });
    stopped = page.getByTestId("chat-assistant-message").last();
    if ((await stopped.getAttribute("data-status")) === "cancelled") break;
  }
  await expect(stopped).toHaveAttribute("data-status", "cancelled");
  await expect(stopped.getByTestId("chat-stopped")).toBeVisible();
  await expect(page.getByTestId("chat-user-message")).toHaveCount(storyTurns);
  await keepScreenshot(page, "chat-stopped");
});

test("prompt assist writes the prompt from an idea, streaming into the box", async ({ page }) => {
  await page.locator("#prompt").fill("PLACEHOLDER");
  await page.locator("#idea").fill("a fox in the snow");
  await page.getByTestId("assist").click();
  await expect(page.getByTestId("assist")).toHaveText(/Write prompt/, { timeout: 30_000 });
  await expect(page.getByTestId("error-alert")).toHaveCount(0);
  await expect(page.locator("#prompt")).not.toHaveValue("PLACEHOLDER");
  await keepScreenshot(page, "prompt-assist");
});

test("history shows the image jobs and the conversation, paged, and reuses them", async ({ page }) => {
  // Ten more jobs for a second page: the same settings with a fixed seed, so the server computes the first
  // and answers the rest from its cache (each a new history row).
  await fillImageForm(page, { prompt: "paging test", steps: 2 });
  await setNumber(page, "#seed", 7);
  let previous: string | null = null;
  for (let i = 0; i < 10; i++) {
    await page.getByTestId("generate").click();
    const results = page.getByTestId("results");
    if (previous) await expect(results).not.toHaveAttribute("data-job-id", previous);
    await expect(page.getByTestId("job-status")).toHaveAttribute("data-phase", "done");
    previous = await results.getAttribute("data-job-id");
  }
  await expect(page.getByTestId("job-status")).toHaveText("Done (from cache)");

  await page.getByTestId("nav-history").click();
  await expect(page.getByTestId("history-job")).toHaveCount(12);
  await page.getByTestId("history-more").click();
  await expect.poll(() => page.getByTestId("history-job").count()).toBeGreaterThanOrEqual(13);
  // Page on to the end: the other specs' jobs on this server (ControlNet, refiner, collections…) make more pages.
  for (let pages = 2; await page.getByTestId("history-more").isVisible(); pages++) {
    expect(pages, "the history ends within a few pages").toBeLessThan(12);
    const shown = await page.getByTestId("history-job").count();
    await page.getByTestId("history-more").click();
    await expect.poll(() => page.getByTestId("history-job").count()).toBeGreaterThan(shown);
  }
  await expect(page.getByTestId("history-more")).toBeHidden();
  // Other tests' jobs (the Gradio UI test's) may be listed too: find ours by prompt.
  const done = page.getByTestId("history-job").filter({ hasText: "a lighthouse at dusk, watercolor" });
  const cancelled = page.getByTestId("history-job").filter({ hasText: "a very long job" });
  await expect(done).toHaveCount(1);
  await expect(done).toHaveAttribute("data-status", "done");
  await expect(cancelled).toHaveAttribute("data-status", "cancelled");
  await expect(cancelled.getByTestId("history-job-status")).toHaveText("cancelled");
  const thumb = done.getByTestId("history-thumb");
  await expect.poll(() => thumb.evaluate((img: HTMLImageElement) => [img.naturalWidth, img.naturalHeight])).toEqual([64, 96]);
  await keepScreenshot(page, "history-images");

  await done.getByTestId("history-reuse").click();
  await expect(page.getByTestId("nav-image")).toHaveAttribute("data-state", "active");
  await expect(page.locator("#prompt")).toHaveValue("a lighthouse at dusk, watercolor");
  await expect(page.locator("#height")).toHaveValue("96");

  await page.getByTestId("nav-history").click();
  await page.getByTestId("history-conversations-tab").click();
  await expect(page.getByTestId("history-conversation").filter({ hasText: "Why is the sky blue?" })).toHaveCount(1);
  const conversation = page.getByTestId("history-conversation").filter({ hasText: "Write a long story" });
  await expect(conversation).toHaveCount(1);
  await keepScreenshot(page, "history-conversations");
  await conversation.getByRole("button", { name: "Open" }).click();
  await expect(page.getByTestId("nav-chat")).toHaveAttribute("data-state", "active");
  await expect(page.getByTestId("chat-user-message")).toHaveCount(storyTurns);
  await expect(page.getByTestId("chat-assistant-message").last()).toHaveAttribute("data-status", "cancelled");
});

test("dark mode follows the system and the toggle", async ({ page }) => {
  await page.emulateMedia({ colorScheme: "dark" });
  await page.reload();
  await expect(page.locator("html")).toHaveClass(/dark/);
  await page.getByTestId("theme-toggle").click();
  await expect(page.locator("html")).not.toHaveClass(/dark/);
  await page.getByTestId("theme-toggle").click();
  await expect(page.locator("html")).toHaveClass(/dark/);
  await page.setViewportSize({ width: 390, height: 844 });
  await keepScreenshot(page, "dark-mobile");
});
