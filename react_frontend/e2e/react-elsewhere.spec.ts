import { ELSEWHERE_PORT, PORT } from "./constants";
import { expect, keepScreenshot, test } from "./fixtures";

test("the React client served from another origin the server trusts makes, renames and deletes a collection", async ({ page }) => {
  const refused: string[] = [];
  page.on("response", (response) => {
    if (response.status() === 403) refused.push(response.url());
  });
  await page.goto(`http://127.0.0.1:${ELSEWHERE_PORT}/app/?gradio=http://127.0.0.1:${PORT}/`);
  await page.getByTestId("nav-history").click();
  await page.getByTestId("collection-new-name").click();
  await page.keyboard.type("Made elsewhere");
  await page.keyboard.press("Enter");
  const chip = page.getByTestId("collection").filter({ hasText: "Made elsewhere" });
  await expect(chip).toContainText("Made elsewhere (0)");
  await chip.getByTestId("collection-rename").click();
  await page.keyboard.press("ControlOrMeta+a");
  await page.keyboard.type("Still elsewhere");
  await page.keyboard.press("Enter");
  const renamed = page.getByTestId("collection").filter({ hasText: "Still elsewhere" });
  await expect(renamed).toContainText("Still elsewhere (0)");
  await keepScreenshot(page, "react-elsewhere");
  page.once("dialog", (dialog) => void dialog.accept());
  await renamed.getByTestId("collection-delete").click();
  await expect(page.getByTestId("collection").filter({ hasText: "elsewhere" })).toHaveCount(0);
  expect(refused).toEqual([]);
});
