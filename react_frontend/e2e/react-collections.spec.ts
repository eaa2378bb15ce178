import { expect, fillImageForm, keepScreenshot, test, type Page } from "./fixtures";

/** A day as the date box takes it (the browser's calendar: the servers and the browser share this machine's zone). */
function day(offset: number): string {
  const when = new Date();
  when.setDate(when.getDate() + offset);
  return `${when.getFullYear()}-${String(when.getMonth() + 1).padStart(2, "0")}-${String(when.getDate()).padStart(2, "0")}`;
}

async function makeImage(page: Page, prompt: string, width: number): Promise<void> {
  await page.getByTestId("nav-image").click();
  await fillImageForm(page, { prompt, width, height: 64, steps: 2 });
  await page.getByTestId("generate").click();
  await expect(page.getByTestId("job-status")).toHaveAttribute("data-phase", "done", { timeout: 60_000 });
}

async function search(page: Page, words: string): Promise<void> {
  const box = page.getByTestId("history-search-input");
  await box.fill(words);
  await box.press("Enter");
}

test("the React client's collections: two selected images collected, renamed, browsed and deleted; days and sizes narrow the list", async ({ page }) => {
  await page.goto("/app/");
  await makeImage(page, "a puffin on a sea cliff", 64);
  await makeImage(page, "a puffin bobbing at sea", 72);

  await page.getByTestId("nav-history").click();
  await search(page, "puffin");
  const jobs = page.getByTestId("history-job");
  await expect(jobs).toHaveCount(2);

  // A new collection, named in its box; then both puffins ticked and added to it.
  await page.getByTestId("collection-new-name").click();
  await page.keyboard.type("Seabirds");
  await page.keyboard.press("Enter");
  const chip = page.getByTestId("collection").filter({ hasText: "Seabirds" });
  await expect(chip).toContainText("Seabirds (0)");
  for (const card of await jobs.all()) await card.getByTestId("history-job-select").click();
  await expect(page.getByTestId("selection-count")).toHaveText("2 selected");
  await page.getByTestId("selection-collection").selectOption({ label: "Seabirds" });
  await page.getByTestId("selection-add").click();
  await expect(page.getByTestId("selection-note")).toHaveText("Added 2 jobs to “Seabirds”.");
  await expect(chip).toContainText("Seabirds (2)");
  await expect(page.getByTestId("selection-bar")).toHaveCount(0);

  // Renamed in place: the pencil, the new name, Enter.
  await chip.getByTestId("collection-rename").click();
  await page.keyboard.press("ControlOrMeta+a");
  await page.keyboard.type("Puffins");
  await page.keyboard.press("Enter");
  const renamed = page.getByTestId("collection").filter({ hasText: "Puffins" });
  await expect(renamed).toContainText("Puffins (2)");
  await expect(page.getByTestId("selection-note")).toHaveCount(0);  // the add's note was about the old name

  // Browsed with no words: exactly its two jobs, the collection shown as a filter too.
  await search(page, "");
  await renamed.getByTestId("collection-browse").click();
  await expect(jobs).toHaveCount(2);
  await expect(jobs.filter({ hasText: "puffin" })).toHaveCount(2);
  await expect(page.getByTestId("history-filters-toggle")).toHaveText("Filters (1)");
  await expect(page.getByTestId("history-export")).toContainText("Export these results");  // the collection's, not all
  await keepScreenshot(page, "react-collection-browsed");

  // Deleted once confirmed: the chip goes, the jobs stay in history.
  page.once("dialog", (dialog) => void dialog.accept());
  await renamed.getByTestId("collection-delete").click();
  await expect(page.getByTestId("collection")).toHaveCount(0);
  await search(page, "puffin");
  await expect(jobs).toHaveCount(2);

  // Filters: a size narrows the puffins to one; days from tomorrow find none, today's find both.
  await page.getByTestId("history-filters-toggle").click();
  await page.getByTestId("filter-size").selectOption("72x64");
  await page.getByTestId("history-filters-apply").click();
  await expect(jobs).toHaveCount(1);
  await expect(jobs.first()).toContainText("a puffin bobbing at sea");
  await page.getByTestId("filter-size").selectOption("");
  await page.getByTestId("filter-from").fill(day(1));
  await page.getByTestId("history-filters-apply").click();
  await expect(page.getByText("No image job matches.")).toBeVisible();
  await page.getByTestId("filter-from").fill(day(0));
  await page.getByTestId("filter-to").fill(day(0));
  const model = page.getByTestId("filter-model");
  const names = await model.locator("option").allTextContents();
  await model.selectOption(names.find((name) => name.includes("tiny-sd") && !name.includes("sdxl"))!);  // the one these ran
  await page.getByTestId("history-filters-apply").click();
  await expect(jobs).toHaveCount(2);
  await expect(page.getByTestId("history-filters-toggle")).toHaveText("Filters (2)");
  await keepScreenshot(page, "react-history-filters");
  await page.getByTestId("history-filters-clear").click();
  await expect(page.getByTestId("history-filters-toggle")).toHaveText("Filters");
});
