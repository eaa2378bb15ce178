import { expect, fillImageForm, historyJobs, keepScreenshot, pixelsOf, setNumber, test, type Page } from "./fixtures";

// The React client's Refiner section on the tiny profile: tiny-sdxl refined by itself (the tiny profile has one SDXL
// checkpoint, and the server takes any SDXL checkpoint as the refiner), recorded, reused from History, read back by
// PNG Info and run in img2img; and the server's refusals shown on their fields.
test.describe.configure({ mode: "serial" });

/** Pick `option` in the select labelled by `id`, as a person does: open it, click the option. */
async function choose(page: Page, id: string, option: string | RegExp): Promise<void> {
  await page.getByTestId(id).click();
  await page.getByRole("option", { name: option }).click();
  await expect(page.getByTestId(id)).toContainText(option);
}

async function generated(page: Page): Promise<void> {
  await page.getByTestId("generate").click();
  await expect(page.getByTestId("job-status")).toHaveAttribute("data-phase", "done", { timeout: 90_000 });
  await expect(page.getByTestId("error-alert")).toHaveCount(0);
}

/** The image screen with the form filled. The tiny profile lists tiny-sd and tiny-sdxl from the start, but their
 * families only once its first job built them; the client then reads /models again (App's afterImageJob). */
async function openForm(page: Page): Promise<void> {
  await page.goto("/app/");
  await expect(page.getByTestId("nav-image")).toBeVisible();
  await fillImageForm(page, { prompt: "a lighthouse at dusk, refined", steps: 4 });
  await setNumber(page, "#seed", 4321);
}

test("tiny-sdxl refined by itself: made, recorded, reused from History, read back by PNG Info and run in img2img", async ({ page }) => {
  await openForm(page);
  await choose(page, "model", "tiny-sdxl");
  await generated(page);
  const plain = await pixelsOf(page, "[data-testid=result-image]");
  await expect(page.getByTestId("results").getByTestId("refiner-summary")).toHaveCount(0);

  // The section: closed and off; opened, it offers SDXL checkpoints only, and the switch once a refiner is picked.
  await expect(page.getByTestId("refiner-state")).toHaveText("off");
  await page.getByTestId("refiner-toggle").click();
  await expect(page.locator("#refiner-switch-at")).toHaveCount(0);
  await page.getByTestId("refiner-checkpoint").click();
  await expect(page.getByRole("option", { name: "tiny-sd", exact: true })).toHaveCount(0);
  await page.getByRole("option", { name: "tiny-sdxl" }).click();
  await expect(page.locator("#refiner-switch-at")).toHaveValue("0.8");
  await setNumber(page, "#refiner-switch-at", 0.5);
  await page.locator("#refiner-switch-at").press("Tab");
  await expect(page.getByTestId("refiner-state")).toHaveText("tiny-sdxl at 0.5");
  await page.evaluate(() => window.scrollTo(0, 0));
  await keepScreenshot(page, "react-refiner-section");

  await generated(page);
  await expect(page.getByTestId("results").getByTestId("refiner-summary")).toHaveText("Refiner: tiny-sdxl, switch at 0.5");
  // The base as its own refiner splits one schedule: the picture is the base's alone (docs/sdxl-controlnet.md).
  expect((await pixelsOf(page, "[data-testid=result-image]")).data).toEqual(plain.data);
  expect((await historyJobs(page, 1))[0]).toMatchObject({ refiner_checkpoint: "tiny-sdxl", refiner_switch_at: 0.5 });

  // Reuse from History, after the refiner was turned off.
  await choose(page, "refiner-checkpoint", "None");
  await expect(page.getByTestId("refiner-state")).toHaveText("off");
  await page.getByTestId("nav-history").click();
  const entry = page.getByTestId("history-job").first();
  await expect(entry.getByTestId("refiner-summary")).toHaveText("Refiner: tiny-sdxl, switch at 0.5");
  await entry.getByTestId("history-reuse").click();
  await expect(page.getByTestId("refiner-state")).toHaveText("tiny-sdxl at 0.5");

  // PNG Info reads `Refiner: tiny-sdxl, Refiner switch at: 0.5` back (a folder checkpoint has no hash; a file adds
  // ` [hash]`); Send to img2img runs it there.
  const src = (await page.getByTestId("result-image").first().getAttribute("src"))!;
  const png = Buffer.from(await (await page.request.get(src)).body());
  await choose(page, "refiner-checkpoint", "None");
  await page.getByTestId("nav-png-info").click();
  await page.getByTestId("png-info-input").setInputFiles({ name: "refined.png", mimeType: "image/png", buffer: png });
  await expect(page.getByTestId("png-info-parameters")).toContainText(/Refiner: tiny-sdxl( \[[0-9a-f]+\])?, Refiner switch at: 0\.5/);
  await page.getByTestId("send-to-img2img").click();
  await expect(page.getByTestId("init-image-card")).toBeVisible();
  await expect(page.getByTestId("refiner-state")).toHaveText("tiny-sdxl at 0.5");
  await expect(page.getByTestId("model")).toContainText("tiny-sdxl");
  await generated(page);
  await expect(page.getByTestId("results").getByTestId("refiner-summary")).toHaveText("Refiner: tiny-sdxl, switch at 0.5");
  expect((await historyJobs(page, 1))[0]).toMatchObject({ mode: "img2img", refiner_checkpoint: "tiny-sdxl", refiner_switch_at: 0.5 });

  // Inpaint has no refiner: the section is not there.
  await page.getByTestId("mode-inpaint").click();
  await expect(page.getByTestId("refiner-section")).toHaveCount(0);
});

test("the server's refusals show on their fields, and nothing is made", async ({ page }) => {
  await openForm(page);
  const before = (await historyJobs(page, 1))[0]?.job_id;
  expect(before, "the first test's jobs built the models, so the families are known").toBeDefined();
  // The default checkpoint is tiny-sd (SD 1.5): the section warns, and the server refuses it by the Checkpoint.
  await page.getByTestId("refiner-toggle").click();
  await choose(page, "refiner-checkpoint", "tiny-sdxl");
  await expect(page.getByTestId("refiner-note")).toContainText("SD 1.5");
  await page.getByTestId("generate").click();
  await expect(page.getByTestId("model-error")).toContainText("is Stable Diffusion 1.x; the refiner hands SDXL latents over");
  // A switch typed out of range, on an SDXL checkpoint: refused on the Switch at field.
  await choose(page, "model", "tiny-sdxl");
  await setNumber(page, "#refiner-switch-at", 1);
  await page.locator("#refiner-switch-at").press("Tab");
  await page.getByTestId("generate").click();
  await expect(page.getByTestId("refiner-switch-at-error")).toContainText("refiner_switch_at must be between 0 and 1");
  await keepScreenshot(page, "react-refiner-refused");
  expect((await historyJobs(page, 1))[0]?.job_id).toBe(before);
});
