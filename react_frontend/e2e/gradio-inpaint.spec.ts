import { crc32 } from "node:zlib";
import { expect, keepScreenshot, pixelsOf, test, type Page } from "./fixtures";

/** A 64×64 PNG drawn in the page (a green field with a red square), as bytes for a file input. */
async function pictureBytes(page: Page): Promise<Buffer> {
  const url = await page.evaluate(() => {
    const canvas = document.createElement("canvas");
    canvas.width = 64;
    canvas.height = 64;
    const g = canvas.getContext("2d")!;
    g.fillStyle = "#33aa77";
    g.fillRect(0, 0, 64, 64);
    g.fillStyle = "#cc3333";
    g.fillRect(8, 8, 20, 20);
    return canvas.toDataURL("image/png");
  });
  return Buffer.from(url.split(",")[1], "base64");
}

/** The PNG with AUTOMATIC1111's `parameters` text chunk where A1111 and Atelier write it: after IHDR, before the
 * pixels (the 8-byte signature and the 25-byte IHDR chunk come first). */
function withParameters(png: Buffer, text: string): Buffer {
  const body = Buffer.concat([Buffer.from("tEXtparameters\0", "latin1"), Buffer.from(text, "latin1")]);
  const length = Buffer.alloc(4);
  length.writeUInt32BE(body.length - 4);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(body) >>> 0);
  return Buffer.concat([png.subarray(0, 33), length, body, crc, png.subarray(33)]);
}

async function setSlider(page: Page, tab: string, name: string, value: number) {
  const box = page.locator(tab).getByRole("spinbutton", { name: `number input for ${name}` });
  await box.fill(String(value));
  await box.press("Enter");
}

/** Drag the mouse across the editor's canvas, as a person paints a stroke with the brush. */
async function paintStroke(page: Page, from: [number, number], to: [number, number]) {
  const canvas = page.locator("#inpaint-editor canvas").first();
  const box = (await canvas.boundingBox())!;
  const at = ([x, y]: [number, number]) => [box.x + box.width * x, box.y + box.height * y] as const;
  await page.mouse.move(...at(from));
  await page.mouse.down();
  for (let i = 1; i <= 12; i++) {
    const t = i / 12;
    await page.mouse.move(...at([from[0] + (to[0] - from[0]) * t, from[1] + (to[1] - from[1]) * t]));
  }
  await page.mouse.up();
}

test("the Gradio UI inpaints a mask drawn with the mouse over an uploaded image", async ({ page }) => {
  await page.goto("/");
  await page.getByRole("tab", { name: "Inpaint" }).click();
  const tab = "#inpaint-tab";
  await expect(page.locator("#inpaint-editor")).toBeVisible();
  await page.locator("#inpaint-editor input[type=file]").setInputFiles({
    name: "init.png",
    mimeType: "image/png",
    buffer: await pictureBytes(page),
  });
  await expect(page.getByRole("button", { name: "Brush", exact: true })).toBeVisible();
  await page.locator("#inpaint-prompt textarea").fill("a blue bird");
  await setSlider(page, tab, "Width", 64);
  await setSlider(page, tab, "Height", 64);
  await setSlider(page, tab, "Steps", 3);

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
