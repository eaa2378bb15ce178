import { request } from "@playwright/test";
import { AUTH_PORT, E2E_PASSWORD, E2E_USER } from "./constants";
import { expect, fillImageForm, keepScreenshot, test, type Page } from "./fixtures";

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

test("an admin stops Alice's long job from the live queue, and she finds it stopped in her history", async ({ page, browser }) => {
  await logInToReact(page, "erin");
  // The server allows 2 image jobs a minute (login.spec.ts shows the refusal): Alice's job here counts against a
  // limit of her own for this test, so that spec's count starts from nothing whatever ran before it.
  const raised = await page.request.patch(`${ROOT}/api/admin/limits/${E2E_USER}`, { data: { image_jobs: "30/minute" } });
  expect(raised.status()).toBe(200);
  const alice = await browser.newPage();
  try {
    await logInToReact(alice, E2E_USER);
    // 256² and 400 steps: about 20 s on the tiny model, long enough to find it running and stop it.
    await fillImageForm(alice, { prompt: "alice's very long job", width: 256, height: 256, steps: 400 });
    await alice.getByTestId("generate").click();
    await expect(alice.getByTestId("progress-text")).toContainText(/step \d+\/400/);

    await page.getByTestId("nav-admin").click();
    const queue = page.getByTestId("admin-queue");
    await page.getByRole("button", { name: "Refresh the queue" }).click();
    const job = queue.locator("tr", { hasText: E2E_USER }).filter({ hasText: "image" }); // not a read of hers
    await expect(job).toContainText("image");
    await expect(job).toContainText("running");
    await job.scrollIntoViewIfNeeded();
    await keepScreenshot(page, "react-admin-queue");
    page.once("dialog", (dialog) => void dialog.accept());
    await job.getByRole("button", { name: /^Stop/ }).click();
    await expect(page.getByTestId("admin-queue-said")).toHaveText(`Stopped ${E2E_USER}'s image job.`);
    // Her image job has left the queue. Her page may be reading her history at that moment (a read, listed too, which
    // the refresh after Stop caught once in CI), so only her image jobs are counted.
    await expect(job).toHaveCount(0);

    // Alice's own page says it stopped, and her history keeps it as stopped.
    await expect(alice.getByTestId("job-status")).toHaveAttribute("data-phase", "cancelled", { timeout: 15_000 });
    await alice.getByTestId("nav-history").click();
    const stopped = alice.getByTestId("history-job").filter({ hasText: "alice's very long job" });
    await expect(stopped).toHaveAttribute("data-status", "cancelled");
    await keepScreenshot(alice, "react-admin-stopped-in-history");
  } finally {
    await alice.close();
    await page.request.delete(`${ROOT}/api/admin/limits/${E2E_USER}`);
  }
});

test("an admin unloads the image model and loads it again, watching its state", async ({ page }) => {
  await logInToReact(page, "erin");
  await page.getByTestId("nav-admin").click();
  const state = page.getByTestId("model-state-image");
  // Make sure it is loaded first (the earlier test's job loaded it; alone, this test loads it here).
  if ((await state.getAttribute("data-state")) !== "ready") {
    const load = page.getByRole("button", { name: "Load the image model", exact: true });
    if (await load.isEnabled()) await load.click();
  }
  await expect(state).toHaveAttribute("data-state", "ready", { timeout: 60_000 });

  await page.getByRole("button", { name: "Unload the image model", exact: true }).click();
  await expect(page.getByTestId("admin-models-said")).toHaveText("Asked the image model to unload: it is not loaded.");
  await expect(state).toHaveAttribute("data-state", "not loaded");
  await expect(page.getByRole("button", { name: "Unload the image model", exact: true })).toBeDisabled();
  await page.getByTestId("admin-models").scrollIntoViewIfNeeded();
  await keepScreenshot(page, "react-admin-model-unloaded");

  await page.getByRole("button", { name: "Load the image model", exact: true }).click();
  await expect(page.getByTestId("admin-models-said")).toContainText("Asked the image model to load");
  // It loads in the background; the section asks again until it is ready.
  await expect(state).toHaveAttribute("data-state", "ready", { timeout: 60_000 });
  await expect(page.getByRole("button", { name: "Load the image model", exact: true })).toBeDisabled();
});

test("an admin revokes Bob's API key and the key is refused from then on", async ({ page, browser }) => {
  const bob = await browser.newPage();
  const api = await request.newContext();
  try {
    await logInToReact(bob, "bob");
    await bob.getByTestId("nav-account").click();
    await bob.getByTestId("key-name").fill("bobs-script");
    await bob.getByTestId("key-create").click();
    const key = (await bob.getByTestId("key-value").textContent())?.trim() ?? "";
    const bearer = { Authorization: `Bearer ${key}` };
    expect((await api.get(`${ROOT}/v1/models`, { headers: bearer })).status()).toBe(200);

    await logInToReact(page, "erin");
    await page.getByTestId("nav-admin").click();
    await page.getByTestId("admin-users").locator("tr", { hasText: "bob" }).getByRole("button", { name: /API keys of bob/ }).click();
    const keys = page.getByTestId("admin-keys");
    const listed = keys.locator("tr", { hasText: "bobs-script" });
    await expect(listed).toContainText(key.slice(0, 10));
    await expect(listed).not.toContainText(key); // never the key itself
    page.once("dialog", (dialog) => void dialog.accept());
    await listed.getByRole("button", { name: "Revoke bobs-script" }).click();
    await expect(page.getByTestId("admin-keys-said")).toHaveText("Revoked bob's API key bobs-script.");
    await expect(keys.locator("tr", { hasText: "bobs-script" })).toHaveCount(0);
    await keepScreenshot(page, "react-admin-key-revoked");
    expect((await api.get(`${ROOT}/v1/models`, { headers: bearer })).status()).toBe(401);
  } finally {
    await api.dispose();
    await bob.close();
  }
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
