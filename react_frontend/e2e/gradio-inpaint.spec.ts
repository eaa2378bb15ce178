import { expect, keepScreenshot, pixelsOf, test } from "./fixtures";
import { openInpaint, paintStroke, pictureBytes, withParameters } from "./pictures";

test("the Gradio UI inpaints a mask drawn with the mouse over an uploaded image", async ({ page }) => {
  await page.goto("/");
  await openInpaint(page, 3);

  // Nothing painted yet: the server says what to do, and no job runs.
  await page.locator("#inpaint-generate").click();
  await expect(page.getByText("Paint over the part to repaint")).toBeVisible();
  await expect(page.locator("#inpaint-progress")).not.toContainText("done");

  await page.getByRole("button", { name: "Brush", exact: true }).click();
  // One stroke across the top left: the bottom right stays unmasked.
  await paintStroke(page, [0.3, 0.2], [0.45, 0.2]);
  await keepScreenshot(page, "gradio-inpaint-mask");
  await page.locator("#inpaint-generate").click();
  await expect(page.locator("#inpaint-progress")).toContainText(/done in [\d.]+ s/, { timeout: 60_000 });
  await expect(page.locator("#inpaint-result img").first()).toBeVisible();
  await expect(page.locator("#inpaint-info")).toContainText('"inpaint_full_res"');
  await keepScreenshot(page, "gradio-inpaint-result");
  // A1111 pastes the original over what the mask leaves alone: the far corner keeps its green.
  const result = await pixelsOf(page, "#inpaint-result img");
  expect([result.width, result.height]).toEqual([64, 64]);
  const corner = (60 * result.width + 60) * 3;
  expect(result.data.slice(corner, corner + 3)).toEqual([0x33, 0xaa, 0x77]);
});

test("Gradio's PNG Info reads a PNG's settings and sends them, with the picture, to img2img", async ({ page }) => {
  await page.goto("/");
  await page.getByRole("tab", { name: "PNG Info" }).click();
  const text =
    "a red fox in the snow\nNegative prompt: blurry\n" +
    "Steps: 7, Sampler: Euler, CFG scale: 5.5, Seed: 1234, Size: 64x64, Denoising strength: 0.4";
  await page.locator("#pnginfo-image input[type=file]").setInputFiles({
    name: "from-a1111.png",
    mimeType: "image/png",
    buffer: withParameters(await pictureBytes(page), text),
  });
  await expect(page.locator("#pnginfo-parameters textarea")).toHaveValue(text);
  await expect(page.locator("#pnginfo-info")).toContainText('"seed": 1234');
  await page.locator("#pnginfo-to-img2img").click();
  await expect(page.getByRole("tab", { name: "img2img" })).toHaveAttribute("aria-selected", "true");
  await expect(page.locator("#img2img-prompt textarea")).toHaveValue("a red fox in the snow");
  await expect(page.locator("#img2img-negative-prompt textarea")).toHaveValue("blurry");
  const tab = page.locator("#img2img-tab");
  await expect(tab.getByRole("spinbutton", { name: "number input for Steps" })).toHaveValue("7");
  await expect(tab.getByRole("spinbutton", { name: "number input for Denoising strength" })).toHaveValue("0.4");
  await expect(page.locator("#img2img-init-image img")).toBeVisible();
  await keepScreenshot(page, "gradio-pnginfo-sent");
});
