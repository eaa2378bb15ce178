import { readFileSync } from "node:fs";
import { expect, keepScreenshot, test, type Page } from "./fixtures";
import { generateSmall } from "./pictures";

/** Click a download link and wait for the file; its bytes. */
async function download(page: Page, link: string): Promise<Buffer> {
  const [file] = await Promise.all([page.waitForEvent("download"), page.locator(link).first().click()]);
  return readFileSync((await file.path())!);
}

test("the History tab searches prompts, marks a favourite, exports the results, moves the account and deletes its jobs", async ({ page }) => {
  await page.goto("/");
  await expect(page.locator("#image-prompt textarea")).toHaveCount(1);
  await generateSmall(page, "a windmill under the aurora");
  await generateSmall(page, "a ginger cat asleep on a quilt");

  await page.getByRole("tab", { name: "History" }).click();
  const search = page.locator("#history-search textarea");
  await search.click();
  await page.keyboard.type("windmill -cat");
  await page.keyboard.press("Enter");
  const table = page.locator("#history-table");
  await expect(table).toContainText("«windmill»");
  await expect(table).not.toContainText("ginger");
  await expect(page.locator("#history-search-status")).toContainText("1 job(s) on this page");

  // Select the job found, and mark it as a favourite.
  await table.getByRole("gridcell", { name: "a «windmill» under the aurora" }).click();
  await expect(page.getByText("a windmill under the aurora").first()).toBeVisible();
  await page.locator("#history-favourite").click();
  await expect(page.getByText("is a favourite")).toBeVisible();
  await expect(table).toContainText("★");

  // Only favourites, with no words: the windmill alone.
  await search.fill("");
  await page.getByText("Filters").click();
  await page.locator("#history-favourites-only input").check();
  await page.locator("#history-search-btn").click();
  await expect(table).toContainText("★ a windmill");
  await expect(table).not.toContainText("ginger");

  // Export this search's results (the default choice): a zip with the PNG and its manifest.
  await page.locator("#history-export").click();
  await expect(page.locator("#history-export-status")).toContainText("Exported 1 job(s)");
  const zip = await download(page, "#history-export-file a");
  expect(zip.subarray(0, 2).toString()).toBe("PK");
  expect(zip.includes(Buffer.from("manifest.json"))).toBe(true);
  await keepScreenshot(page, "gradio-history-search");

  // The selected job in a new collection; the collection chosen in the filters, renamed, then deleted (its job stays).
  const collectionName = page.locator("#history-collection-name textarea");
  await collectionName.fill("Aurora");
  await page.locator("#history-add").click();
  await expect(page.getByText("added to 'Aurora'")).toBeVisible();
  const chosen = page.locator("#history-collection input");
  await chosen.click();
  await page.keyboard.type("Aurora");
  await page.keyboard.press("Enter");
  await expect(chosen).toHaveValue("Aurora (1)");
  await collectionName.fill("Northern lights");
  await page.locator("#history-collection-rename").click();
  await expect(page.getByText("now named 'Northern lights'")).toBeVisible();
  await expect(chosen).toHaveValue("Northern lights (1)");
  await page.locator("#history-collection-delete").click();
  await expect(page.getByText("Tick “Yes, delete the collection” first")).toBeVisible();
  await page.getByLabel("Yes, delete the collection (its jobs stay)").check();
  await page.locator("#history-collection-delete").click();
  await expect(page.getByText("its jobs are still in your history")).toBeVisible();
  await expect(chosen).toHaveValue("");
  await expect(table).toContainText("★ a windmill");

  // The whole account out, and back in: everything arrives again.
  await page.getByText("Your account: archive, import, retention").click();
  await page.locator("#account-export").click();
  await expect(page.locator("#account-export-status")).toContainText(/Exported \d+ job\(s\)/);
  const archive = await download(page, "#account-export-file a");
  await page.locator("#account-import-file input[type=file]").setInputFiles({
    name: "account.zip",
    mimeType: "application/zip",
    buffer: archive,
  });
  await page.locator("#account-import").click();
  await expect(page.locator("#account-import-status")).toContainText(/Imported \d+ jobs, \d+ images/);
  await page.locator("#history-favourites-only input").uncheck();
  await search.fill("windmill");
  await page.locator("#history-search-btn").click();
  await expect(page.locator("#history-search-status")).toContainText("2 job(s) on this page");
  await keepScreenshot(page, "gradio-history-import");

  // Everything this test made deleted at once, once "Yes, delete them" is ticked (which also leaves the other
  // tests' history as they expect it).
  await search.fill("windmill OR ginger");
  await page.locator("#history-search-btn").click();
  await expect(page.locator("#history-search-status")).toContainText("4 job(s) on this page");
  await page.locator("#history-delete-many").click();
  await expect(page.getByText("Tick “Yes, delete them” first")).toBeVisible();
  await page.getByLabel("Yes, delete them").check();
  await page.locator("#history-delete-many").click();
  await expect(page.locator("#history-export-status")).toContainText("Deleted 4 job(s) and their images.");
  await expect(page.locator("#history-search-status")).toContainText("0 job(s) on this page");
  await expect(page.getByLabel("Yes, delete them")).not.toBeChecked();
});
