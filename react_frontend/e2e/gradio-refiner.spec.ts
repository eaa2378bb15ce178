import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { expect, keepScreenshot, test, type Page } from "./fixtures";

async function setSlider(page: Page, name: string, value: number) {
  const box = page.getByRole("spinbutton", { name: `number input for ${name}` }).first();
  await box.fill(String(value));
  await box.press("Enter");
}

async function pick(page: Page, selector: string, option: string) {
  await page.locator(`${selector} input`).click();
  await page.locator(selector).getByRole("option", { name: option, exact: true }).click();
}

test("the Gradio Refiner accordion hands an SDXL job to the refiner, which the info records; on SD 1.5 it is refused", async ({ page }) => {
  await page.goto("/");
  await page.locator("#image-prompt textarea").fill("a castle on a hill");
  await setSlider(page, "Width", 64);
  await setSlider(page, "Height", 64);
  await setSlider(page, "Steps", 4);
  // The first job loads the image model, which builds the tiny profile's checkpoints (tiny-sdxl among them).
  await page.locator("#image-generate").click();
  await expect(page.locator("#image-progress")).toContainText(/done in [\d.]+ s/, { timeout: 90_000 });

  await page.locator("#image-refresh-models").click();
  await pick(page, "#image-model", "tiny-sdxl");
  await page.locator("#image-refiner").getByRole("button", { name: /Refiner/ }).first().click();
  await pick(page, "#image-refiner-checkpoint", "tiny-sdxl");
  await setSlider(page, "Switch at", 0.5);
  const first = (await page.locator("#image-progress").textContent()) ?? "";
  await page.locator("#image-generate").click();
  await expect(page.locator("#image-progress")).not.toHaveText(first, { timeout: 30_000 });  // the new job's, not the first's
  await expect(page.locator("#image-progress")).toContainText(/done in [\d.]+ s/, { timeout: 90_000 });
  await expect(page.locator("#image-info")).toContainText("tiny-sdxl");
  // The PNG's parameters say so, as A1111 writes them (PNG Info and Reuse read them back).
  const src = await page.locator("#image-result img").first().getAttribute("src");
  const png = (await (await page.request.get(src!)).body()).toString("latin1");
  expect(png).toContain("Refiner: tiny-sdxl, Refiner switch at: 0.5");
  await keepScreenshot(page, "gradio-refiner");

  // An SD 1.5 base cannot hand over to an SDXL refiner: the message stands on the Checkpoint field, and no job runs.
  const before = await page.locator("#image-progress").textContent();
  await pick(page, "#image-model", "tiny-sd");
  await page.locator("#image-generate").click();
  await expect(page.locator("#image-model .validation-error")).toContainText(
    "the checkpoint 'tiny-sd' is Stable Diffusion 1.x; the refiner hands SDXL latents over");
  await expect(page.locator("#image-progress")).toHaveText(before ?? "");
});

test("\"Refresh list\" lists a checkpoint added to the folder in the Refiner's choices too", async ({ page }) => {
  const folder = join(process.env.ATELIER_E2E_DATA!, "models", "new-refiner");
  await page.goto("/");
  await page.locator("#image-refiner").getByRole("button", { name: /Refiner/ }).first().click();
  await page.locator("#image-refiner-checkpoint input").click();
  await expect(page.locator("#image-refiner-checkpoint").getByRole("option", { name: "new-refiner", exact: true })).toHaveCount(0);
  await page.keyboard.press("Escape");
  mkdirSync(folder, { recursive: true });
  writeFileSync(join(folder, "model_index.json"), "{}");
  try {
    await page.locator("#image-refresh-models").click();
    await page.locator("#image-refiner-checkpoint input").click();
    await expect(page.locator("#image-refiner-checkpoint").getByRole("option", { name: "new-refiner", exact: true })).toHaveCount(1);
  } finally {
    rmSync(folder, { recursive: true, force: true });
  }
});
