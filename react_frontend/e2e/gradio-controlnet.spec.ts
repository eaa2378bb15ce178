import { expect, keepScreenshot, test, type Page } from "./fixtures";
import { pictureBytes } from "./pictures";

async function setSlider(page: Page, name: string, value: number) {
  const box = page.getByRole("spinbutton", { name: `number input for ${name}` }).first();
  await box.fill(String(value));
  await box.press("Enter");
}

async function choose(page: Page, selector: string, text: string) {
  await page.locator(`${selector} input`).click();
  await page.keyboard.press("ControlOrMeta+a");  // replace what the box shows
  await page.keyboard.type(text);
  await page.keyboard.press("Enter");
}

test("the Gradio ControlNet panel previews a unit's map and generates with the unit", async ({ page }) => {
  await page.goto("/");
  await page.locator("#image-prompt textarea").fill("a fox in the snow");
  await setSlider(page, "Width", 64);
  await setSlider(page, "Height", 64);
  await setSlider(page, "Steps", 2);
  // The first job loads the model, which builds the tiny models and their ControlNets.
  await page.locator("#image-generate").click();
  await expect(page.locator("#image-progress")).toContainText(/done in [\d.]+ s/, { timeout: 90_000 });

  await page.locator("#image-controlnet").getByRole("button", { name: /ControlNet/ }).first().click();
  await page.locator("#image-controlnet-refresh").click();
  const unit = "#image-controlnet-0";
  await page.locator(`${unit}-image input[type=file]`).setInputFiles({
    name: "pose.png", mimeType: "image/png", buffer: await pictureBytes(page),
  });
  await choose(page, `${unit}-module`, "canny");
  await page.locator(`${unit}-preview`).click();
  await expect(page.locator(`${unit}-map img`)).toBeVisible();
  await choose(page, `${unit}-model`, "tiny-cn-sd15");
  await page.locator(`${unit}-enabled input`).check();
  await page.locator("#image-generate").click();
  await expect(page.locator("#image-progress")).toContainText(/done in [\d.]+ s/, { timeout: 60_000 });
  await expect(page.locator("#image-info")).toContainText("tiny-cn-sd15");
  await expect(page.locator("#image-info")).toContainText("canny");
  await keepScreenshot(page, "gradio-controlnet");
});
