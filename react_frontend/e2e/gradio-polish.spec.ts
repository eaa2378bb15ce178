import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { expect, keepScreenshot, test, type Page } from "./fixtures";
import { generateSmall } from "./pictures";

/** The Gradio UI's tab headers, in order. */
async function tabNames(page: Page): Promise<string[]> {
  return page.getByRole("tablist").first().getByRole("tab").allInnerTexts();
}

test("every tab of the Gradio UI keeps one header, each visited with the mouse or the keyboard", async ({ page }) => {
  await page.goto("/");
  await expect(page.locator("#image-prompt textarea")).toHaveCount(1);
  const names = await tabNames(page);
  expect(names.slice(0, 6)).toEqual(["Image", "img2img", "Inpaint", "Chat", "History", "PNG Info"]);
  expect(new Set(names).size).toBe(names.length);
  for (const name of names.slice(1)) {
    await page.getByRole("tab", { name, exact: true }).click();
    await expect(page.getByRole("tab", { name, exact: true })).toHaveAttribute("aria-selected", "true");
    expect(await tabNames(page), `after opening ${name}`).toEqual(names);
  }
  // Back along the headers with the keyboard: Shift+Tab to the one before, Enter to open it.
  await page.getByRole("tab", { name: names.at(-1), exact: true }).focus();
  for (const name of [...names].reverse().slice(1)) {
    await page.keyboard.press("Shift+Tab");
    await page.keyboard.press("Enter");
    await expect(page.getByRole("tab", { name, exact: true })).toHaveAttribute("aria-selected", "true");
  }
  expect(await tabNames(page)).toEqual(names);
  await expect(page.locator('[role="tab"][aria-selected="true"]')).toHaveCount(1);
  await keepScreenshot(page, "gradio-tabs");
});

test("History's and PNG Info's reuse select the checkpoint the job ran with, and Generate takes it", async ({ page }) => {
  await page.goto("/");
  await generateSmall(page, "a lighthouse at dusk");
  const png = await (await page.request.get((await page.locator("#image-result img").first().getAttribute("src"))!)).body();

  // History → a thumbnail → Reuse settings: the Image tab opens with the job's checkpoint (Default) chosen.
  await page.getByRole("tab", { name: "History", exact: true }).click();
  await page.locator("#history-gallery").getByRole("button", { name: /^Thumbnail 1 of/ }).click();
  await expect(page.locator("#history-details")).toContainText("a lighthouse at dusk");
  await page.locator("#history-reuse").click();
  await expect(page.getByRole("tab", { name: "Image", exact: true })).toHaveAttribute("aria-selected", "true");
  await expect(page.locator("#image-model input")).toHaveValue("Default");
  await page.locator("#image-prompt textarea").fill("a lighthouse at dawn");
  await page.locator("#image-generate").click();
  await expect(page.locator("#image-progress")).toContainText(/Job \d+: done in/, { timeout: 60_000 });

  // PNG Info → the picture → Send to txt2img: its Model is the default's name, which is Default here.
  await page.locator("#image-refresh-models").click();  // the tiny model, built by the first job, is listed now
  await page.locator("#image-model input").click();
  await page.getByRole("option", { name: "tiny-sd", exact: true }).click();  // something else, to see it change
  await page.getByRole("tab", { name: "PNG Info", exact: true }).click();
  await page.locator("#pnginfo-image input[type=file]").setInputFiles({ name: "made.png", mimeType: "image/png", buffer: png });
  await expect(page.locator("#pnginfo-parameters textarea")).toHaveValue(/a lighthouse at dusk/);
  await page.locator("#pnginfo-to-txt2img").click();
  await expect(page.locator("#image-model input")).toHaveValue("Default");
  await expect(page.locator("#image-prompt textarea")).toHaveValue("a lighthouse at dusk");
  await keepScreenshot(page, "gradio-reused");
});

// FIXME (a regression found on the last day of the round, not yet understood): after the React ControlNet spec has
// run on the same server, a fresh Gradio page's first Generate with a checkpoint gone from the folder shows no
// message at all (no job starts and nothing is logged); alone, or after the other specs, it passes. Kept visible
// here and in the round's note rather than weakened, until its cause is found.
test("a checkpoint gone from the folder is refused with its whole message, beside the Checkpoint label", async ({ page }) => {
  const models = join(process.env.ATELIER_E2E_DATA!, "models", "gone-sd");
  mkdirSync(models, { recursive: true });
  writeFileSync(join(models, "model_index.json"), "{}");
  try {
    await page.goto("/");
    await page.locator("#image-refresh-models").click();
    await page.locator("#image-model input").click();
    await page.getByRole("option", { name: "gone-sd", exact: true }).click();
  } finally {
    rmSync(models, { recursive: true, force: true });
  }
  await page.locator("#image-prompt textarea").fill("a fox");
  await page.locator("#image-generate").click();
  const message = page.locator("#image-model .validation-error");
  await expect(message).toContainText("model 'gone-sd' is not available; choose one of:");
  // It stays while the model's status line is kept current (its timer ticks a second after the page opens): an
  // event sent to the server then wiped the messages of fields an earlier event (here "Refresh list") had updated.
  const health = await (await page.request.get("/api/health")).json();
  await expect(page.locator("#image-model-status")).toHaveText(health.models.image.message);
  await page.waitForTimeout(2_000);
  await expect(message).toContainText("model 'gone-sd' is not available; choose one of:");
  // Whole (inside its field, nothing cut off), and clear of the label it used to cover.
  const [cut, field, label, box] = await Promise.all([
    message.evaluate((e) => e.scrollHeight > e.clientHeight + 1),
    page.locator("#image-model").boundingBox(),
    page.locator("#image-model [data-testid=block-info]").boundingBox(),
    message.boundingBox(),
  ]);
  await page.locator("#image-model").screenshot({ path: test.info().outputPath("gradio-refused-checkpoint.png") });
  expect(cut).toBe(false);
  expect(box!.y >= field!.y && box!.y + box!.height <= field!.y + field!.height).toBe(true);
  expect(box!.y + box!.height <= label!.y || label!.y + label!.height <= box!.y).toBe(true);
});

test("one result downloads as its PNG, and the History table is for reading", async ({ page }) => {
  await page.goto("/");
  await generateSmall(page, "a red kite");
  await expect(page.locator("#image-model-status")).toContainText("is ready.");  // read again after the job
  // One result opens in the gallery's preview, whose Download saves that PNG (not gallery.zip).
  const download = page.waitForEvent("download");
  await page.locator("#image-result").getByRole("button", { name: "Download", exact: true }).click();
  const file = await download;
  expect(file.suggestedFilename()).toMatch(/\.png$/);
  const bytes = readFileSync((await file.path())!);
  expect(bytes.subarray(1, 4).toString("latin1")).toBe("PNG");
  expect(bytes.includes(Buffer.from("tEXtparameters"))).toBe(true);  // with its settings

  await page.getByRole("tab", { name: "History", exact: true }).click();
  const cell = page.locator("#history-table").getByRole("gridcell", { name: "a red kite" });
  await cell.click();
  await expect(page.locator("#history-details")).toContainText("a red kite");  // the click selected the job
  // No framed cell that looks like an edit box, and no editor on a double click or on typing.
  const framed = await cell.evaluate((e) => [e, ...e.querySelectorAll("*")].some((x) => {
    const style = getComputedStyle(x);
    return style.boxShadow !== "none" || style.outlineStyle !== "none";
  }));
  expect(framed).toBe(false);
  await cell.dblclick();
  await page.keyboard.type("changed");
  await page.keyboard.press("Enter");
  await expect(page.locator("#history-table").locator("input:visible, textarea:visible")).toHaveCount(0);
  await expect(cell).toHaveText("a red kite");
  await keepScreenshot(page, "gradio-history");
});

test("the chat's message box has a name, its thinking is told in the past once the reply ends, and no conversation says so", async ({ page }) => {
  await page.goto("/");
  await page.getByRole("tab", { name: "Chat", exact: true }).click();
  await expect(page.locator("#chat-conversations")).toContainText("None yet: your first message starts one.");
  const box = page.getByRole("textbox", { name: "Message" });
  await box.click();
  await page.keyboard.type("hello");
  await page.keyboard.press("Enter");
  await expect(page.locator("#chat-status")).toContainText(/Done in [\d.]+ s/, { timeout: 60_000 });
  await expect(page.locator("#chatbot")).toContainText(/Thought/);
  await expect(page.locator("#chatbot")).not.toContainText("Thinking");
  await expect(page.locator("#chat-conversations")).not.toContainText("None yet");
  await expect(page.locator("#chat-conversations")).toContainText("hello");  // titled by its first message
  await expect(page.getByRole("button", { name: "New chat", exact: true })).toBeVisible();
  await page.getByRole("tab", { name: "Image", exact: true }).click();
  await expect(page.getByRole("button", { name: "Refresh list", exact: true })).toBeVisible();
  await keepScreenshot(page, "gradio-chat-thought");
});

test("both clients start from the defaults the server gives for its model", async ({ page }) => {
  await page.goto("/");
  const gradio: string[] = [];
  for (const name of ["Width", "Height", "Steps"]) {
    gradio.push(await page.locator("#image-tab").getByRole("spinbutton", { name: `number input for ${name}` }).inputValue());
  }
  expect(gradio).toEqual(["256", "256", "8"]);  // the tiny profile's
  await page.goto("/app/");
  for (const [id, value] of [["#width", "256"], ["#height", "256"], ["#steps", "8"]]) {
    await expect(page.locator(id), id).toHaveValue(value);
  }
  await keepScreenshot(page, "react-defaults");
});
