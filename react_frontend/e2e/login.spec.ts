import { AUTH_PORT, E2E_PASSWORD, E2E_USER } from "./constants";
import { expect, keepScreenshot, setNumber, test } from "./fixtures";

const APP = `http://127.0.0.1:${AUTH_PORT}/app/`;

test("asks for a login, refuses a wrong password, then shows rate limits clearly", async ({ page }) => {
  await page.goto(APP);
  await expect(page.getByTestId("login-form")).toBeVisible();
  await expect(page.getByText("Log in with your Atelier account.")).toBeVisible();

  await page.locator("#login-username").fill(E2E_USER);
  await page.locator("#login-password").fill("not-the-password");
  await page.getByRole("button", { name: "Log in" }).click();
  await expect(page.getByTestId("error-alert")).toContainText("Wrong user name or password.");
  await keepScreenshot(page, "login-refused");

  await page.locator("#login-password").fill(E2E_PASSWORD);
  await page.getByRole("button", { name: "Log in" }).click();
  await expect(page.getByTestId("nav-image")).toBeVisible();
  await expect(page.getByTestId("username")).toHaveText(E2E_USER);

  // This server allows 2 image jobs a minute; even refused ones count, so no model has to run.
  await page.locator("#prompt").fill("a fox");
  await setNumber(page, "#width", 65);
  for (let i = 0; i < 2; i++) {
    await page.getByTestId("generate").click();
    await expect(page.getByTestId("error-alert")).toHaveAttribute("data-kind", "validation");
    await page.getByRole("button", { name: "Dismiss" }).click();
  }
  await page.getByTestId("generate").click();
  const alert = page.getByTestId("error-alert");
  await expect(alert).toHaveAttribute("data-kind", "rate_limit");
  await expect(alert).toContainText(/Too many image jobs: the limit is 2 per 1 minute\. Try again in \d+ s\./);
  await keepScreenshot(page, "rate-limited");

  // A reload keeps the session; Log out ends it.
  await page.reload();
  await expect(page.getByTestId("username")).toHaveText(E2E_USER);
  await page.getByLabel("Log out").click();
  await expect(page.getByTestId("login-form")).toBeVisible();
  await page.reload();
  await expect(page.getByTestId("login-form")).toBeVisible();
});
