import { expect, fillImageForm, historyJobs, keepScreenshot, pixelsOf, setNumber, test, type Page } from "./fixtures";
import { pictureBytes } from "./pictures";

// The React client's ControlNet section on the tiny profile: a unit with a picture and canny, its map previewed,
// a job made with it (recorded in history and reused from there), and a unit the server refuses.
test.describe.configure({ mode: "serial" });

/** Pick `option` in the select labelled by `id`, as a person does: open it, click the option. */
async function choose(page: Page, id: string, option: string | RegExp): Promise<void> {
  await page.getByTestId(id).click();
  await page.getByRole("option", { name: option }).click();
  await expect(page.getByTestId(id)).toContainText(option);
}

/** Drag a PNG file onto a drop zone and let go, as a person drops one from their files. */
async function dropPicture(page: Page, zone: string, png: Buffer, name: string): Promise<void> {
  const transfer = await page.evaluateHandle(
    ([b64, fileName]) => {
      const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
      const data = new DataTransfer();
      data.items.add(new File([bytes], fileName, { type: "image/png" }));
      return data;
    },
    [png.toString("base64"), name] as const,
  );
  await page.getByTestId(zone).dispatchEvent("dragover", { dataTransfer: transfer });
  await page.getByTestId(zone).dispatchEvent("drop", { dataTransfer: transfer });
}

async function generated(page: Page): Promise<void> {
  await page.getByTestId("generate").click();
  await expect(page.getByTestId("job-status")).toHaveAttribute("data-phase", "done", { timeout: 90_000 });
  await expect(page.getByTestId("error-alert")).toHaveCount(0);
}

test.beforeEach(async ({ page }) => {
  await page.goto("/app/");
  await expect(page.getByTestId("nav-image")).toBeVisible();
  await fillImageForm(page, { prompt: "a fox in the snow, controlnet", steps: 2 });
  await setNumber(page, "#seed", 1234);
});

test("a unit with a picture and canny: the map previewed, the job made with it, recorded and reused", async ({ page }) => {
  // The same seed without ControlNet first (the first job also builds the tiny ControlNets, which the section lists).
  await generated(page);
  const plain = await pixelsOf(page, "[data-testid=result-image]");

  await page.getByTestId("controlnet-toggle").click();
  const unit = page.getByTestId("cn-unit-0");
  await expect(unit).toBeVisible();
  await page.getByTestId("cn-0-image-input").setInputFiles({ name: "pose.png", mimeType: "image/png", buffer: await pictureBytes(page) });
  await expect(page.getByTestId("cn-0-image-thumb")).toBeVisible();
  // A picture turns its unit on.
  await expect(page.locator("#cn-0-enabled")).toBeChecked();
  await choose(page, "cn-0-module", "canny");
  // canny's thresholds show, with its defaults; the none module had none.
  await expect(page.locator("#cn-0-threshold-a")).toHaveValue("100");
  await expect(page.locator("#cn-0-threshold-b")).toHaveValue("200");
  await page.getByTestId("cn-0-preview").click();
  const map = page.getByTestId("cn-0-map-image");
  await expect(map).toBeVisible();
  const mapPixels = await pixelsOf(page, "[data-testid=cn-0-map-image]");
  expect([mapPixels.width, mapPixels.height]).toEqual([64, 64]);
  // canny's map is black with white edges.
  expect(new Set(mapPixels.data).size).toBeGreaterThan(1);
  // The default checkpoint is tiny-sd: the models offered are SD 1.5's.
  await expect(page.locator("label[for=cn-0-model]")).toContainText("for SD 1.5");
  await page.getByTestId("cn-0-model").click();
  await expect(page.getByRole("option", { name: /^tiny-cn-sdxl/ })).toHaveCount(0);
  await page.getByRole("option", { name: /^tiny-cn-sd15/ }).click();
  await keepScreenshot(page, "react-controlnet-unit");
  // The section alone (docs/images/react-controlnet.png), from the page's top so that the sticky header stays there.
  await page.evaluate(() => window.scrollTo(0, 0));
  const section = (await page.getByTestId("controlnet").boundingBox())!;
  await page.screenshot({ path: test.info().outputPath("react-controlnet-panel.png"), fullPage: true, clip: section });

  await generated(page);
  await expect(page.getByTestId("results").getByTestId("controlnet-summary")).toContainText("canny, tiny-cn-sd15");
  const controlled = await pixelsOf(page, "[data-testid=result-image]");
  expect(controlled.data, "the control picture changes the pixels").not.toEqual(plain.data);

  const [job] = await historyJobs(page);
  const units = job.controlnet as Record<string, unknown>[];
  expect(units).toHaveLength(1);
  expect(units[0]).toMatchObject({ module: "canny", threshold_a: 100, threshold_b: 200, weight: 1 });
  expect(String(units[0].model)).toMatch(/^tiny-cn-sd15 \[/);
  expect(String(units[0].image)).toMatch(/^inputs\/[0-9a-f]{64}\.png$/);

  // Reuse from history: the unit comes back, with its picture, after the form was changed.
  await page.locator("#cn-0-enabled").uncheck();
  await page.getByLabel("Remove image").click();
  await page.getByTestId("nav-history").click();
  const entry = page.getByTestId("history-job").first();
  await expect(entry.getByTestId("controlnet-summary")).toContainText("canny, tiny-cn-sd15");
  await entry.getByTestId("history-reuse").click();
  await expect(page.getByTestId("cn-0-image-thumb")).toBeVisible();
  await expect(page.locator("#cn-0-enabled")).toBeChecked();
  await expect(page.getByTestId("cn-0-module")).toContainText("canny");
  await expect(page.getByTestId("cn-0-model")).toContainText("tiny-cn-sd15");
  // The same job again gives the same pixels (from the cache, or made anew).
  await generated(page);
  expect((await pixelsOf(page, "[data-testid=result-image]")).data).toEqual(controlled.data);

  // PNG Info reads the result's `ControlNet 0: "…"` back into a unit (a PNG carries no picture).
  const src = (await page.getByTestId("result-image").first().getAttribute("src"))!;
  const png = Buffer.from(await (await page.request.get(src)).body());
  await page.locator("#cn-0-enabled").uncheck();
  await choose(page, "cn-0-module", "invert");
  await page.getByTestId("nav-png-info").click();
  await page.getByTestId("png-info-input").setInputFiles({ name: "result.png", mimeType: "image/png", buffer: png });
  await expect(page.getByTestId("png-info-parameters")).toContainText('ControlNet 0: "Module: canny');
  await page.getByTestId("send-to-txt2img").click();
  await expect(page.locator("#cn-0-enabled")).toBeChecked();
  await expect(page.getByTestId("cn-0-module")).toContainText("canny");
  await expect(page.getByTestId("cn-0-model")).toContainText("tiny-cn-sd15");

  await page.getByTestId("theme-toggle").click();
  await keepScreenshot(page, "react-controlnet-dark");
});

test("a unit the server refuses (start after end) says so on its field, and nothing is made", async ({ page }) => {
  const before = (await historyJobs(page)).length ? (await historyJobs(page))[0].job_id : null;
  await page.getByTestId("controlnet-toggle").click();
  // Keyboard: the second unit's tab, then its picture.
  await page.getByTestId("cn-tab-0").focus();
  await page.keyboard.press("ArrowRight");
  await expect(page.getByTestId("cn-unit-1")).toBeVisible();
  await dropPicture(page, "cn-1-image-drop", await pictureBytes(page), "dropped.png");
  await expect(page.getByTestId("cn-1-image-drop")).toContainText("dropped.png");
  await choose(page, "cn-1-model", /^tiny-cn-sd15/);
  await setNumber(page, "#cn-1-start", 0.8);
  await setNumber(page, "#cn-1-end", 0.2);
  await page.getByTestId("generate").click();
  // The server's message, on the unit's field, numbered as the form numbers the unit (only unit 1 was sent).
  await expect(page.getByTestId("cn-1-start-error")).toContainText("guidance_start (0.8) must not be after guidance_end (0.2)");
  await expect(page.getByTestId("error-alert")).toContainText("ControlNet unit 1");
  await expect(page.getByTestId("prompt-error")).toHaveCount(0);
  await keepScreenshot(page, "react-controlnet-refused");
  const after = (await historyJobs(page))[0]?.job_id ?? null;
  expect(after).toEqual(before);
});

test("img2img: a unit without its own picture previews and uses the init image", async ({ page }) => {
  await page.getByTestId("mode-img2img").click();
  await page.getByTestId("init-image-input").setInputFiles({ name: "init.png", mimeType: "image/png", buffer: await pictureBytes(page) });
  await expect(page.getByTestId("init-image-thumb")).toBeVisible();
  await page.getByTestId("controlnet-toggle").click();
  await expect(page.getByTestId("cn-unit-0")).toContainText("Without one, the init image is used.");
  await page.locator("#cn-0-enabled").check();
  await choose(page, "cn-0-module", "canny");
  await choose(page, "cn-0-model", /^tiny-cn-sd15/);
  await page.getByTestId("cn-0-preview").click();
  await expect(page.getByTestId("cn-0-map-image")).toBeVisible();
  await generated(page);
  await expect(page.getByTestId("results").getByTestId("controlnet-summary")).toContainText("canny, tiny-cn-sd15");
  const [job] = await historyJobs(page);
  expect(job.mode).toBe("img2img");
  expect((job.controlnet as Record<string, unknown>[])[0]).toMatchObject({ module: "canny", image: "" });
});
