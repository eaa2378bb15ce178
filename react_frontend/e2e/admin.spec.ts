import { AUTH_PORT, E2E_PASSWORD } from "./constants";
import { expect, keepScreenshot, test, type Page } from "./fixtures";

/** The admin panel in both UIs, on the server with accounts: erin (an admin) runs it, bob (no admin) never sees it. */
const ROOT = `http://127.0.0.1:${AUTH_PORT}`;

async function logInToReact(page: Page, user: string): Promise<void> {
  await page.goto(`${ROOT}/app/`);
  await page.locator("#login-username").fill(user);
  await page.locator("#login-password").fill(E2E_PASSWORD);
  await page.keyboard.press("Enter");
  await expect(page.getByTestId("username")).toHaveText(user);
}

test("an admin creates a user, gives them limits and disables them in the React client", async ({ page }) => {
  await logInToReact(page, "erin");
  await page.getByTestId("nav-admin").click();
  const users = page.getByTestId("admin-users");
  await expect(users).toContainText("bob");

  await page.getByLabel("New user").fill("frank");
  await page.getByLabel("Password", { exact: true }).fill("frank-password-1");
  await page.getByLabel("Password", { exact: true }).press("Enter");
  await expect(page.getByTestId("admin-said")).toHaveText("Created frank.");
  const frank = users.locator("tr", { hasText: "frank" });
  await expect(frank).toBeVisible();

  await page.getByLabel("User", { exact: true }).first().fill("frank");
  await page.getByLabel("Image jobs").fill("often");
  await page.getByRole("button", { name: "Save limits" }).click();
  await expect(page.getByTestId("error-alert")).toContainText("'often' is not a rate");
  await page.getByLabel("Image jobs").fill("3/minute");
  await page.getByRole("button", { name: "Save limits" }).click();
  await expect(page.getByTestId("admin-limits")).toContainText("3/minute");

  await frank.getByRole("button", { name: /^Disable/ }).click();
  await expect(page.getByTestId("admin-said")).toContainText("disabled frank");
  await expect(frank).toContainText("disabled");
  // Erin's own row cannot disable or delete her.
  await expect(users.locator("tr", { hasText: "erin" }).getByRole("button", { name: /^Disable/ })).toBeDisabled();
  await keepScreenshot(page, "react-admin-panel");

  // The request log shows what she did.
  await page.getByLabel("Kind").selectOption("admin");
  // The log is written a moment after the answer (a background writer): search again until the row is there.
  await expect(async () => {
    await page.getByRole("button", { name: "Search" }).click();
    await expect(page.getByTestId("admin-requests")).toContainText("disabled frank", { timeout: 1_000 });
  }).toPass({ timeout: 15_000 });
});

test("a user who is no admin sees no admin panel in either UI and is refused its routes", async ({ page }) => {
  await logInToReact(page, "bob");
  await expect(page.getByTestId("nav-account")).toBeVisible();
  await expect(page.getByTestId("nav-admin")).toHaveCount(0);
  await page.getByTestId("nav-account").click();
  await expect(page.getByTestId("my-usage")).toContainText("GPU seconds"); // his own usage, in the account screen
  expect((await page.request.get(`${ROOT}/api/admin/users`)).status()).toBe(403);
  expect((await page.request.get(`${ROOT}/api/admin/requests`)).status()).toBe(403);
  await page.goto(`${ROOT}/`);
  await expect(page.getByRole("tab", { name: "Usage" })).toBeVisible();
  await expect(page.getByRole("tab", { name: "Admin" })).toHaveCount(0);
  await expect(page.locator("#admin-tab")).toBeHidden();
});

test("the Gradio UI's admin panel lists the users and sets limits for an admin", async ({ page }) => {
  const answer = await page.request.post(`${ROOT}/login`, { form: { username: "erin", password: E2E_PASSWORD } });
  expect(answer.status()).toBe(200);
  await page.goto(`${ROOT}/`);
  const panel = page.locator("#admin-tab");
  await expect(panel).toBeVisible();
  await panel.getByRole("button", { name: "Refresh" }).first().click();
  await expect(page.locator("#admin-users")).toContainText("bob");
  await panel.getByRole("tab", { name: "Limits" }).click();
  await page.locator("#admin-limits-user textarea, #admin-limits-user input").first().fill("carol");
  await page.locator("#admin-limit-reads textarea, #admin-limit-reads input").first().fill("500/hour");
  await page.locator("#admin-limits-save").click();
  await expect(panel.getByText("Overridden: reads")).toBeVisible();
  await keepScreenshot(page, "gradio-admin-panel");
});
