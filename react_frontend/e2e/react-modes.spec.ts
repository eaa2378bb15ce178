import { expect, fillImageForm, historyJobs, keepScreenshot, pixelsOf, setNumber, test, type Page } from "./fixtures";

// img2img, inpaint (a mask drawn with the mouse), hires fix and PNG Info in the React client, on the tiny profile.
// Serial: the PNG Info test reads the PNG the inpaint test made.
test.describe.configure({ mode: "serial" });

/** A PNG the browser draws: four coloured quadrants, so a pixel that moved or was repainted shows. */
async function quadrantsPng(page: Page, width: number, height: number): Promise<Buffer> {
  const dataUrl = await page.evaluate(
    ([w, h]) => {
      const canvas = document.createElement("canvas");
      canvas.width = w;
      canvas.height = h;
      const context = canvas.getContext("2d")!;
      const colors = ["#d03030", "#30a040", "#3050d0", "#e0c020"];
      colors.forEach((color, i) => {
        context.fillStyle = color;
        context.fillRect((i % 2) * (w / 2), Math.floor(i / 2) * (h / 2), w / 2, h / 2);
      });
      return canvas.toDataURL("image/png");
    },
    [width, height],
  );
  return Buffer.from(dataUrl.split(",")[1], "base64");
}

async function uploadInit(page: Page, png: Buffer, name = "quadrants.png"): Promise<void> {
  await page.getByTestId("init-image-input").setInputFiles({ name, mimeType: "image/png", buffer: png });
  await expect(page.getByTestId("init-image-thumb")).toBeVisible();
}

async function waitDone(page: Page): Promise<void> {
  await expect(page.getByTestId("job-status")).toHaveAttribute("data-phase", "done", { timeout: 60_000 });
  await expect(page.getByTestId("error-alert")).toHaveCount(0);
}

let inpaintResult: Buffer | null = null;

test.beforeEach(async ({ page }) => {
  await page.goto("/app/");
  await expect(page.getByTestId("nav-image")).toBeVisible();
});

test("img2img: upload an init image, set the denoising strength, get an image of its size", async ({ page }) => {
  await page.getByTestId("mode-img2img").click();
  // Asking without an init image is refused before anything is sent, under the image.
  await fillImageForm(page, { prompt: "a painted fox, img2img", steps: 3 });
  await page.getByTestId("generate").click();
  await expect(page.getByTestId("init-image-error")).toContainText("init image");

  await uploadInit(page, await quadrantsPng(page, 96, 64));
  // The size follows the init image.
  await expect(page.locator("#width")).toHaveValue("96");
  await expect(page.locator("#height")).toHaveValue("64");
  await setNumber(page, "#denoising-strength", 0.6);
  await setNumber(page, "#seed", 11);
  await page.getByTestId("generate").click();
  await waitDone(page);
  const result = page.getByTestId("result-image");
  await expect(result).toHaveCount(1);
  await expect.poll(() => result.evaluate((img: HTMLImageElement) => [img.naturalWidth, img.naturalHeight])).toEqual([96, 64]);
  const [job] = await historyJobs(page);
  expect(job).toMatchObject({ prompt: "a painted fox, img2img", mode: "img2img", denoising_strength: 0.6, status: "done" });
  await keepScreenshot(page, "img2img-result");

  // "Send to inpaint": the result becomes the image to paint a mask on.
  await page.getByTestId("send-result-inpaint").click();
  await expect(page.getByTestId("mode-inpaint")).toHaveAttribute("data-state", "active");
  await expect(page.getByTestId("mask-canvas")).toHaveAttribute("width", "96");
  await expect(page.getByTestId("mask-canvas")).toHaveAttribute("height", "64");
});

test("inpaint: draw a mask with the mouse; the unmasked pixels come back untouched", async ({ page }) => {
  await page.getByTestId("mode-inpaint").click();
  await fillImageForm(page, { prompt: "a red balloon, inpaint", steps: 3 });
  await uploadInit(page, await quadrantsPng(page, 64, 64));
  const canvas = page.getByTestId("mask-canvas");
  await expect(canvas).toHaveAttribute("data-painted", "0");

  // Nothing drawn yet: refused before anything is sent.
  await page.getByTestId("generate").click();
  await expect(page.getByTestId("mask-error")).toContainText("Draw a mask");

  // A stroke, then Clear, then the real stroke: across the top-left quadrant, in the top quarter of the image.
  // The mouse acts at viewport coordinates: bring the whole canvas into view first (again after each click,
  // which may scroll).
  const canvasAt = async () => {
    await canvas.scrollIntoViewIfNeeded();
    const box = (await canvas.boundingBox())!;
    return (fx: number, fy: number) => [box.x + box.width * fx, box.y + box.height * fy] as const;
  };
  let at = await canvasAt();
  await page.mouse.move(...at(0.5, 0.5));
  await page.mouse.down();
  await page.mouse.move(...at(0.9, 0.9), { steps: 5 });
  await page.mouse.up();
  await expect.poll(async () => Number(await canvas.getAttribute("data-painted"))).toBeGreaterThan(0);
  await page.getByTestId("mask-clear").click();
  await expect(canvas).toHaveAttribute("data-painted", "0");

  at = await canvasAt();
  await page.mouse.move(...at(0.05, 0.15));
  await page.mouse.down();
  await page.mouse.move(...at(0.45, 0.15), { steps: 10 });
  await page.mouse.move(...at(0.45, 0.25), { steps: 3 });
  await page.mouse.up();
  await expect.poll(async () => Number(await canvas.getAttribute("data-painted"))).toBeGreaterThan(0);
  const painted = Number(await canvas.getAttribute("data-painted"));
  // The default brush is a tenth of the short side (6 px): a stroke about 26 px long and 6 px wide.
  expect(painted).toBeGreaterThan(100);
  expect(painted).toBeLessThan(64 * 24);
  await keepScreenshot(page, "inpaint-mask");

  await setNumber(page, "#seed", 5);
  await page.getByTestId("generate").click();
  await waitDone(page);
  const result = await pixelsOf(page, '[data-testid="result-image"]');
  const init = await pixelsOf(page, '[data-testid="init-image-thumb"]');
  expect([result.width, result.height]).toEqual([64, 64]);
  // Whole picture, mask blur 4: A1111 pastes the original over everything outside the (blurred) mask, so the
  // bottom half, far from the stroke, is exactly the init image.
  const bottom = (p: { data: number[] }) => p.data.slice(64 * 40 * 3);
  expect(bottom(result)).toEqual(bottom(init));
  const [job] = await historyJobs(page);
  expect(job).toMatchObject({ prompt: "a red balloon, inpaint", mode: "inpaint", mask_blur: 4, inpainting_fill: 1, status: "done" });

  const href = await page.getByTestId("download").getAttribute("href");
  inpaintResult = Buffer.from(await (await page.request.get(href!)).body());
  await keepScreenshot(page, "inpaint-result");
});

test("hires fix: the result has the upscaled size", async ({ page }) => {
  await fillImageForm(page, { prompt: "a castle, hires", steps: 2 });
  await page.locator("#enable-hr").check();
  await page.getByTestId("hires-toggle").click();
  await setNumber(page, "#hr-scale", 1.5);
  await setNumber(page, "#hr-steps", 2);
  await page.getByTestId("generate").click();
  await waitDone(page);
  const result = page.getByTestId("result-image");
  await expect.poll(() => result.evaluate((img: HTMLImageElement) => [img.naturalWidth, img.naturalHeight])).toEqual([96, 96]);
  await keepScreenshot(page, "hires-result");
});

test("PNG Info reads the inpaint result's settings and sends them to img2img with the image", async ({ page }) => {
  expect(inpaintResult, "the inpaint test made a PNG").not.toBeNull();
  await page.getByTestId("nav-png-info").click();
  await page.getByTestId("png-info-input").setInputFiles({ name: "inpainted.png", mimeType: "image/png", buffer: inpaintResult! });
  await expect(page.getByTestId("png-info-parameters")).toContainText("a red balloon, inpaint");
  await expect(page.getByTestId("png-info-parameters")).toContainText("Mask blur: 4");
  await expect(page.getByTestId("png-info-result")).toHaveAttribute("data-has-settings", "true");
  await keepScreenshot(page, "png-info");

  await page.getByTestId("send-to-img2img").click();
  await expect(page.getByTestId("mode-img2img")).toHaveAttribute("data-state", "active");
  await expect(page.locator("#prompt")).toHaveValue("a red balloon, inpaint");
  await expect(page.locator("#seed")).toHaveValue("5");
  await expect(page.locator("#steps")).toHaveValue("3");
  await expect(page.getByTestId("init-image-thumb")).toBeVisible();
  await expect(page.getByTestId("init-image-drop")).toContainText("64×64");
});

test("the choice lists are the server's (/choices): samplers, resize modes, masked content, mask modes", async ({ page }) => {
  await page.getByTestId("mode-inpaint").click();
  const options = async (id: string): Promise<string[]> => {
    await page.getByTestId(id).click();
    const names = await page.getByRole("option").allInnerTexts();
    await page.keyboard.press("Escape");
    return names.map((name) => name.trim());
  };
  expect(await options("sampler")).toEqual(["Euler a", "Euler", "DPM++ 2M", "DPM++ 2M Karras", "DDIM", "LMS", "Heun", "UniPC"]);
  expect(await options("resize-mode")).toEqual(["Just resize", "Crop and resize", "Resize and fill"]);
  expect(await options("masked-content")).toEqual(["fill", "original", "latent noise", "latent nothing"]);
  expect(await options("mask-mode")).toEqual(["Inpaint masked", "Inpaint not masked"]);
});
