import { expect, keepScreenshot, test, type Page } from "./fixtures";

/** The Gradio UI's tab headers, in order. */
async function tabNames(page: Page): Promise<string[]> {
  return page.getByRole("tablist").first().getByRole("tab").allInnerTexts();
}

test("every tab of the Gradio UI keeps one header, each visited with the mouse or the keyboard", async ({ page }) => {
  await page.goto("/");
  await expect(page.locator("#image-prompt textarea")).toHaveCount(1);
  const names = await tabNames(page);
  expect(names.slice(0, 6)).toEqual(["Image", "img2img", "Inpaint", "Chat", "History", "PNG Info"]);
  expect(new Set(names).size).toBe(names.length);
  for (const name of names.slice(1)) {
    await page.getByRole("tab", { name, exact: true }).click();
    await expect(page.getByRole("tab", { name, exact: true })).toHaveAttribute("aria-selected", "true");
    expect(await tabNames(page), `after opening ${name}`).toEqual(names);
  }
  // Back along the headers with the keyboard: Shift+Tab to the one before, Enter to open it.
  await page.getByRole("tab", { name: names.at(-1), exact: true }).focus();
  for (const name of [...names].reverse().slice(1)) {
    await page.keyboard.press("Shift+Tab");
    await page.keyboard.press("Enter");
    await expect(page.getByRole("tab", { name, exact: true })).toHaveAttribute("aria-selected", "true");
  }
  expect(await tabNames(page)).toEqual(names);
  await expect(page.locator('[role="tab"][aria-selected="true"]')).toHaveCount(1);
  await keepScreenshot(page, "gradio-tabs");
});
