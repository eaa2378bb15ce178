import { AUTH_PORT, E2E_PASSWORD } from "./constants";
import { expect, fillImageForm, keepScreenshot, pixelsOf, test, type Page } from "./fixtures";
import { openInpaint, paintStroke, pictureBytes, setSlider, withParameters } from "./pictures";

/**
 * The Gradio UI and the React client on the server with accounts, where each file Gradio hands out is served only to its user: the
 * results, previews and uploads the page shows, and the files it sends back as inputs, must all reach their user.
 * Each test has an account of its own (the server allows 2 image jobs a minute per user).
 */
const ROOT = `http://127.0.0.1:${AUTH_PORT}`;

async function logIn(page: Page, user: string): Promise<void> {
  const answer = await page.request.post(`${ROOT}/login`, { form: { username: user, password: E2E_PASSWORD } });
  expect(answer.status()).toBe(200);
  await page.goto(`${ROOT}/`);
}

test("a logged-in user sees their result, and sends PNG Info's picture to img2img, which reworks it", async ({ page }) => {
  await logIn(page, "bob");
  const tab = "body";  // only the Image tab is drawn yet: its sliders are the only ones
  await expect(page.locator("#image-prompt textarea")).toHaveCount(1);
  await page.locator("#image-prompt textarea").fill("a fox in the snow");
  await setSlider(page, tab, "Width", 64);
  await setSlider(page, tab, "Height", 64);
  await setSlider(page, tab, "Steps", 2);
  await page.locator("#image-generate").click();
  await expect(page.locator("#image-progress")).toContainText(/done in [\d.]+ s/, { timeout: 60_000 });
  expect((await pixelsOf(page, "#image-result img")).width).toBe(64);  // fetched from Gradio's folder, as his

  await page.getByRole("tab", { name: "PNG Info" }).click();
  const text = "a red fox\nSteps: 2, Sampler: Euler, CFG scale: 5.5, Seed: 7, Size: 64x64, Denoising strength: 0.4";
  await page.locator("#pnginfo-image input[type=file]").setInputFiles({
    name: "mine.png",
    mimeType: "image/png",
    buffer: withParameters(await pictureBytes(page), text),
  });
  await expect(page.locator("#pnginfo-parameters textarea")).toHaveValue(text);
  await page.locator("#pnginfo-to-img2img").click();
  await expect(page.locator("#img2img-init-image img")).toBeVisible();
  expect((await pixelsOf(page, "#img2img-init-image img")).width).toBe(64);  // his upload, shown back to him
  await page.locator("#img2img-generate").click();
  await expect(page.locator("#img2img-progress")).toContainText(/done in [\d.]+ s/, { timeout: 60_000 });
  expect((await pixelsOf(page, "#img2img-result img")).width).toBe(64);
  await keepScreenshot(page, "gradio-accounts-img2img");
});

test("a logged-in user inpaints a mask drawn over their upload", async ({ page }) => {
  await logIn(page, "carol");
  await openInpaint(page, 2);
  await page.getByRole("button", { name: "Brush", exact: true }).click();
  await paintStroke(page, [0.3, 0.2], [0.45, 0.2]);
  await page.locator("#inpaint-generate").click();
  await expect(page.locator("#inpaint-progress")).toContainText(/done in [\d.]+ s/, { timeout: 60_000 });
  const result = await pixelsOf(page, "#inpaint-result img");
  expect([result.width, result.height]).toEqual([64, 64]);
  const corner = (60 * result.width + 60) * 3;
  expect(result.data.slice(corner, corner + 3)).toEqual([0x33, 0xaa, 0x77]);  // the unmasked corner, as uploaded
  await keepScreenshot(page, "gradio-accounts-inpaint");
});

test("the React client, logged in, shows its previews and result and links the download", async ({ page }) => {
  await page.goto(`${ROOT}/app/`);
  await page.locator("#login-username").fill("dave");
  await page.locator("#login-password").fill(E2E_PASSWORD);
  await page.getByRole("button", { name: "Log in" }).click();
  await expect(page.getByTestId("username")).toHaveText("dave");
  await fillImageForm(page, { prompt: "a lighthouse", steps: 6 });
  await page.getByTestId("generate").click();
  await expect(page.getByTestId("job-status")).toHaveAttribute("data-phase", "done", { timeout: 60_000 });
  expect(Number(await page.getByTestId("preview-area").getAttribute("data-preview-count"))).toBeGreaterThan(0);
  const result = page.getByTestId("result-image");
  await expect.poll(() => result.evaluate((img: HTMLImageElement) => img.naturalWidth)).toBe(64);
  const download = await page.getByTestId("download").getAttribute("href");
  expect((await page.request.get(new URL(download!, ROOT).href)).status()).toBe(200);  // his, so served
  await keepScreenshot(page, "react-accounts-result");
});
