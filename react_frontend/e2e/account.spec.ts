import { request } from "@playwright/test";
import { AUTH_PORT, E2E_PASSWORD, E2E_USER } from "./constants";
import { expect, keepScreenshot, test } from "./fixtures";

const ROOT = `http://127.0.0.1:${AUTH_PORT}`;

test("the account screen makes an API key shown once, that works until it is revoked", async ({ page }) => {
  await page.goto(`${ROOT}/app/`);
  await page.locator("#login-username").fill(E2E_USER);
  await page.locator("#login-password").fill(E2E_PASSWORD);
  await page.getByRole("button", { name: "Log in" }).click();
  await page.getByTestId("nav-account").click();

  await page.getByTestId("key-name").fill("e2e-laptop");
  await page.getByTestId("key-create").click();
  const key = (await page.getByTestId("key-value").textContent())?.trim() ?? "";
  expect(key).toMatch(/^atl_[A-Za-z0-9_-]{43}$/);
  const listed = page.getByTestId("key-list").locator("li", { hasText: "e2e-laptop" });
  await expect(listed).toContainText(key.slice(0, 10));
  await expect(listed).not.toContainText(key); // the list shows its first characters only
  await keepScreenshot(page, "account-key-created");

  // The key stands for the user on the OpenAI-compatible API, from a client with no cookie of the page's.
  const api = await request.newContext();
  const bearer = { Authorization: `Bearer ${key}` };
  expect((await api.get(`${ROOT}/v1/models`, { headers: bearer })).status()).toBe(200);
  await page.reload();
  await page.getByTestId("nav-account").click();
  await expect(page.getByTestId("key-value")).toHaveCount(0); // never shown again
  await expect(listed).toContainText("last used");

  await listed.getByRole("button", { name: "Revoke e2e-laptop" }).click();
  await expect(page.getByTestId("key-list").locator("li", { hasText: "e2e-laptop" })).toHaveCount(0);
  expect((await api.get(`${ROOT}/v1/models`, { headers: bearer })).status()).toBe(401);
  await api.dispose();
});
