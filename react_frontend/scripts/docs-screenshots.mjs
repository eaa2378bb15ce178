// The documentation's screenshots (docs/images/*.png): both clients against `python app.py --profile tiny`, which
// this script starts with a fresh data dir and stops after. Run from react_frontend/ after `npm ci` and
// `npm run build` (the React client's pages come from its build):  node scripts/docs-screenshots.mjs
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "@playwright/test";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");
const out = join(root, "docs", "images");
const port = Number(process.env.ATELIER_SCREENSHOT_PORT ?? 7899);
const base = `http://127.0.0.1:${port}`;
const data = mkdtempSync(join(tmpdir(), "atelier-screenshots-"));
const server = spawn(process.env.PYTHON ?? "python", ["app.py", "--profile", "tiny", "--port", String(port)], {
  cwd: root,
  env: { ...process.env, ATELIER_DATA_DIR: data, GRADIO_ANALYTICS_ENABLED: "False", HF_HUB_OFFLINE: "1",
         HF_HUB_DISABLE_TELEMETRY: "1" },
  stdio: ["ignore", "ignore", "inherit"],
});

async function serverUp() {
  for (let i = 0; i < 600; i++) {
    try {
      if ((await fetch(`${base}/api/health`)).ok) return;
    } catch { /* not listening yet */ }
    await new Promise((r) => setTimeout(r, 500));
  }
  throw new Error("the server did not start");
}

async function gradio(page) {
  await page.goto(`${base}/`);
  await page.locator("#image-prompt textarea").fill("a lighthouse at dusk, oil painting");
  await page.locator("#image-generate").click();
  await page.locator("#image-progress").getByText(/done in [\d.]+ s/).waitFor({ timeout: 180_000 });
  await page.locator("#image-result img").first().waitFor();
  // The single result opens in the gallery's preview, which scrolls it into sight: the picture shows the page's top.
  await page.evaluate(() => window.scrollTo(0, 0));
  await page.screenshot({ path: join(out, "gradio-image.png") });
  await page.getByRole("tab", { name: "Chat" }).click();
  await page.locator("#chat-message textarea").fill("Why is the sky blue?");
  await page.locator("#chat-send").click();
  await page.locator("#chat-status").getByText(/Done in [\d.]+ s/).waitFor({ timeout: 180_000 });
  await page.locator("#chat-conversations").getByText("Why is the sky blue?").waitFor();  // listed, and drawn
  await page.waitForTimeout(500);
  await page.screenshot({ path: join(out, "gradio-chat.png") });
}

async function react(page) {
  await page.goto(`${base}/app/`);
  await page.locator("#prompt").fill("a lighthouse at dusk, oil painting");
  await page.getByTestId("generate").click();
  await page.waitForSelector('[data-testid="job-status"][data-phase="done"]', { timeout: 180_000 });
  await page.getByTestId("result-image").waitFor();
  await page.screenshot({ path: join(out, "react-image.png") });
  await page.getByTestId("nav-chat").click();
  await page.locator("#chat-input").fill("Why is the sky blue?");
  await page.locator("#chat-input").press("Enter");
  await page.getByTestId("chat-assistant-message").last().getByTestId("thinking-label")
    .getByText(/Thought for [\d.]+ s/).waitFor({ timeout: 180_000 });
  await page.screenshot({ path: join(out, "react-chat.png") });
}

try {
  await serverUp();
  const browser = await chromium.launch({ executablePath: process.env.CHROMIUM_PATH ?? "/usr/bin/chromium" });
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  await gradio(page);
  await react(page);
  await browser.close();
  console.log(`screenshots written to ${out}`);
} finally {
  server.kill("SIGTERM");
  await new Promise((r) => server.once("exit", r));
  rmSync(data, { recursive: true, force: true });
}
