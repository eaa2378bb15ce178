/** Pictures and strokes for the Gradio UI tests: a PNG drawn in the page, A1111 parameters in it, sliders, a
 * brush stroke. */
import { crc32 } from "node:zlib";
import { expect, type Page } from "./fixtures";

/** A 64×64 PNG drawn in the page (a green field with a red square), as bytes for a file input. */
export async function pictureBytes(page: Page): Promise<Buffer> {
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
export function withParameters(png: Buffer, text: string): Buffer {
  const body = Buffer.concat([Buffer.from("tEXtparameters\0", "latin1"), Buffer.from(text, "latin1")]);
  const length = Buffer.alloc(4);
  length.writeUInt32BE(body.length - 4);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(body) >>> 0);
  return Buffer.concat([png.subarray(0, 33), length, body, crc, png.subarray(33)]);
}

export async function setSlider(page: Page, tab: string, name: string, value: number) {
  const box = page.locator(tab).getByRole("spinbutton", { name: `number input for ${name}` });
  await box.fill(String(value));
  await box.press("Enter");
}

/** Drag the mouse across the editor's canvas, as a person paints a stroke with the brush. */
export async function paintStroke(page: Page, from: [number, number], to: [number, number]) {
  const canvas = page.locator("#inpaint-editor canvas").first();
  // In sight first, as a person scrolls to what they paint (Generate, below the editor, leaves it scrolled up).
  await canvas.scrollIntoViewIfNeeded();
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

/** Open the Inpaint tab with pictureBytes uploaded into the editor, the prompt "a blue bird", 64×64 and `steps`. */
export async function openInpaint(page: Page, steps: number): Promise<void> {
  await page.getByRole("tab", { name: "Inpaint" }).click();
  await expect(page.locator("#inpaint-editor")).toBeVisible();
  const picture = { name: "init.png", mimeType: "image/png", buffer: await pictureBytes(page) };
  // Until the editor shows the picture (its "Upload an image" placeholder gone): a file given while the tab was still
  // mounting its editor was once dropped, and the Brush button shows without a picture too. A person drops it again.
  await expect(async () => {
    await page.locator("#inpaint-editor input[type=file]").setInputFiles(picture);
    await expect(page.locator("#inpaint-editor").getByText("Upload an image")).toBeHidden({ timeout: 3_000 });
  }).toPass({ timeout: 30_000 });
  await expect(page.getByRole("button", { name: "Brush", exact: true })).toBeVisible();
  await page.locator("#inpaint-prompt textarea").fill("a blue bird");
  await setSlider(page, "#inpaint-tab", "Width", 64);
  await setSlider(page, "#inpaint-tab", "Height", 64);
  await setSlider(page, "#inpaint-tab", "Steps", steps);
}

/** Generate a 64×64 picture in 2 steps on the Gradio UI's Image tab and wait for it. */
export async function generateSmall(page: Page, prompt: string): Promise<void> {
  await page.locator("#image-prompt textarea").fill(prompt);
  await setSlider(page, "#image-tab", "Width", 64);
  await setSlider(page, "#image-tab", "Height", 64);
  await setSlider(page, "#image-tab", "Steps", 2);
  await page.locator("#image-generate").click();
  await expect(page.locator("#image-progress")).toContainText(/done in [\d.]+ s/, { timeout: 60_000 });
}
