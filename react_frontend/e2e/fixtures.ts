import { test as base, expect, type Page } from "@playwright/test";

/**
 * Every test's page records each request it makes; at the end, none may have left the app's host
 * (no fonts, CDNs, analytics or telemetry from the React client or from the Gradio UI).
 */
export const test = base.extend<{ page: Page }>({
  page: async ({ page }, use) => {
    const outside: string[] = [];
    page.on("request", (request) => {
      const url = new URL(request.url());
      if (url.protocol === "data:" || url.protocol === "blob:" || url.protocol === "about:") return;
      if (url.hostname !== "127.0.0.1") outside.push(request.url());
    });
    await use(page);
    expect(outside, "requests that left the app's origin").toEqual([]);
  },
});

export { expect };
export type { Page };

/** A full-page screenshot kept with the test's results (test-results/…). */
export async function keepScreenshot(page: Page, name: string): Promise<void> {
  await page.screenshot({ path: test.info().outputPath(`${name}.png`), fullPage: true });
}

/** Set a number box (our NumberInput) to a value. */
export async function setNumber(page: Page, selector: string, value: number): Promise<void> {
  await page.locator(selector).fill(String(value));
}

/** Fill the React client's image form: the prompt and a small size and step count. */
export async function fillImageForm(
  page: Page,
  { prompt, width = 64, height = 64, steps }: { prompt: string; width?: number; height?: number; steps: number },
): Promise<void> {
  await page.locator("#prompt").fill(prompt);
  await setNumber(page, "#width", width);
  await setNumber(page, "#height", height);
  await setNumber(page, "#steps", steps);
}

/** The last `limit` history rows (newest first), as /api/history lists them for this server's user. */
export async function historyJobs(page: Page, limit = 5): Promise<Record<string, unknown>[]> {
  const response = await page.request.get(`/api/history?limit=${limit}`);
  return ((await response.json()) as { jobs: Record<string, unknown>[] }).jobs;
}

/** The RGB pixels of an <img> on the page, row-major, read through a canvas. */
export async function pixelsOf(page: Page, selector: string): Promise<{ width: number; height: number; data: number[] }> {
  return page.locator(selector).first().evaluate(async (img: HTMLImageElement) => {
    await img.decode();
    const canvas = document.createElement("canvas");
    canvas.width = img.naturalWidth;
    canvas.height = img.naturalHeight;
    const context = canvas.getContext("2d")!;
    context.drawImage(img, 0, 0);
    const rgba = context.getImageData(0, 0, canvas.width, canvas.height).data;
    const rgb: number[] = [];
    for (let i = 0; i < rgba.length; i += 4) rgb.push(rgba[i], rgba[i + 1], rgba[i + 2]);
    return { width: canvas.width, height: canvas.height, data: rgb };
  });
}
