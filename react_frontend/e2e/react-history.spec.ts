import { readFileSync } from "node:fs";
import { expect, fillImageForm, keepScreenshot, test } from "./fixtures";

test("the React client's History finds a job by its prompt, stars it (the star stays), exports the results, moves the account and deletes the results", async ({ page }) => {
  await page.goto("/app/");
  await fillImageForm(page, { prompt: "a grey heron in the reeds", steps: 2 });
  await page.getByTestId("generate").click();
  await expect(page.getByTestId("job-status")).toHaveAttribute("data-phase", "done", { timeout: 60_000 });

  await page.getByTestId("nav-history").click();
  const box = page.getByTestId("history-search-input");
  await box.click();
  await page.keyboard.type("herons -egret");
  await page.keyboard.press("Enter");
  const found = page.getByTestId("history-job");
  await expect(found).toHaveCount(1);
  await expect(found.locator("mark")).toHaveText("heron");  // "herons" matched by its stem
  const star = found.getByTestId("job-favourite");
  await expect(star).toHaveAttribute("aria-pressed", "false");
  await star.click();
  await expect(star).toHaveAttribute("aria-pressed", "true");

  // Favourites only, with no words; after a reload, so the star is the server's.
  await page.reload();
  await page.getByTestId("nav-history").click();
  await page.getByTestId("history-search-favourites").click();
  await expect(page.getByTestId("history-search-favourites")).toHaveAttribute("aria-pressed", "true");
  const favourites = page.getByTestId("history-job");
  await expect(favourites.filter({ hasText: "a grey heron in the reeds" })).toHaveCount(1);
  for (const button of await favourites.getByTestId("job-favourite").all()) {
    await expect(button).toHaveAttribute("aria-pressed", "true");
  }
  await keepScreenshot(page, "react-history-search");

  // The favourites, exported as one zip, with the bytes received shown.
  const [zip] = await Promise.all([page.waitForEvent("download"), page.getByTestId("history-export").click()]);
  expect(readFileSync((await zip.path())!).subarray(0, 2).toString()).toBe("PK");
  await expect(page.getByTestId("history-export-progress")).toContainText(/Saved [\d.]+ kB · \d+ jobs?/);

  // The whole account out, and back in: the heron twice.
  await page.getByTestId("history-account-tab").click();
  const [archive] = await Promise.all([page.waitForEvent("download"), page.getByTestId("account-export").click()]);
  await page.getByTestId("account-import-file").setInputFiles(await archive.path());
  await page.getByTestId("account-import").click();
  await expect(page.getByTestId("account-import-done")).toContainText(/Imported \d+ jobs, \d+ images/);
  await page.getByTestId("history-images-tab").click();
  await page.getByTestId("history-search-favourites").click();  // off again
  await page.getByTestId("history-search-input").fill("heron");
  await page.keyboard.press("Enter");
  await expect(page.getByTestId("history-job")).toHaveCount(2);
  await keepScreenshot(page, "react-history-import");

  // Both herons deleted at once, once the browser's confirmation is accepted; gone after a reload too.
  page.once("dialog", (dialog) => void dialog.accept());
  await page.getByTestId("history-delete-shown").click();
  await expect(page.getByTestId("history-job")).toHaveCount(0);
  await page.reload();
  await page.getByTestId("nav-history").click();
  // As a person would: search once the page has shown its newest jobs (other tests' may remain), or none.
  await expect(page.getByTestId("history-job").first().or(page.getByText("No image jobs yet."))).toBeVisible();
  await page.getByTestId("history-search-input").fill("heron");
  await page.keyboard.press("Enter");
  await expect(page.getByText("No image job matches.")).toBeVisible();

  await page.getByTestId("history-search-input").fill("no such words anywhere");
  await page.keyboard.press("Enter");
  await expect(page.getByText("No image job matches.")).toBeVisible();
});

test("the React chat's sidebar finds a conversation by the words of its messages, and History renames it", async ({ page }) => {
  await page.goto("/app/");
  await page.getByTestId("nav-chat").click();
  await page.locator("#chat-input").fill("Where do kingfishers nest?");
  await page.locator("#chat-input").press("Enter");
  await expect(page.getByTestId("chat-assistant-message").last()).toHaveAttribute("data-status", "done", { timeout: 60_000 });
  await page.getByTestId("new-chat").click();

  const search = page.getByTestId("chat-search-input");
  await search.click();
  await page.keyboard.type("kingfisher");
  await page.keyboard.press("Enter");
  const items = page.getByTestId("conversation-item");
  await expect(items).toHaveCount(1);
  await expect(items.locator("mark").first()).toHaveText(/kingfisher/i);
  await items.first().click();
  await expect(page.getByTestId("chat-user-message").first()).toContainText("Where do kingfishers nest?");
  await keepScreenshot(page, "react-chat-search");

  await search.fill("");  // an empty box lists the latest again
  await expect.poll(() => items.count()).toBeGreaterThanOrEqual(1);
  await search.fill("nothing like this was ever said");
  await search.press("Enter");
  await expect(page.getByText("No conversation matches.")).toBeVisible();

  // Renamed in History, as a person would: the pencil, type, Enter.
  await page.getByTestId("nav-history").click();
  await page.getByTestId("history-conversations-tab").click();
  const card = page.getByTestId("history-conversation").filter({ hasText: "Where do kingfishers nest?" });
  await card.getByTestId("conversation-rename").click();
  await page.keyboard.press("ControlOrMeta+a");
  await page.keyboard.type("Kingfisher nests");
  await page.keyboard.press("Enter");
  await expect(page.getByTestId("history-conversation").filter({ hasText: "Kingfisher nests" })).toHaveCount(1);
  await page.getByTestId("nav-chat").click();
  await page.getByTestId("chat-search-input").fill("");  // the sidebar kept its last search: empty lists the latest
  await expect(page.getByTestId("conversation-item").filter({ hasText: "Kingfisher nests" })).toHaveCount(1);
});
