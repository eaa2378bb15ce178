import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { defineConfig, devices } from "@playwright/test";
import { AUTH_PORT, E2E_PASSWORD, E2E_USER, PORT } from "./e2e/constants";

/**
 * End-to-end tests against the real app (tiny random-weight models, fully offline), started by Playwright:
 * one server in single-user mode for the screens, one with an account for the login screen.
 * Both get fresh data dirs; the config is evaluated again in each worker, so the dirs travel by env.
 */
function dataDir(name: string): string {
  if (!process.env[name]) {
    const dir = mkdtempSync(join(tmpdir(), "atelier-e2e-"));
    process.env[name] = dir;
    // Only the process that made it removes it, when it exits (after the servers were stopped).
    process.on("exit", () => rmSync(dir, { recursive: true, force: true }));
  }
  return process.env[name]!;
}


const python = process.env.PYTHON ?? "python";
const chromium = process.env.CHROMIUM_PATH ?? (existsSync("/usr/bin/chromium") ? "/usr/bin/chromium" : undefined);
const serverEnv = {
  GRADIO_ANALYTICS_ENABLED: "False",
  HF_HUB_OFFLINE: "1",
  HF_HUB_DISABLE_TELEMETRY: "1",
  PYTHONUNBUFFERED: "1",
};
const data = dataDir("ATELIER_E2E_DATA");
const authData = dataDir("ATELIER_E2E_AUTH_DATA");

export default defineConfig({
  testDir: "./e2e",
  outputDir: "./test-results",
  timeout: 90_000,
  expect: { timeout: 30_000 },
  fullyParallel: false,
  // One queue, one model: the tests share the server and run one at a time.
  workers: 1,
  retries: 0,
  reporter: [["list"], ["html", { open: "never", outputFolder: "playwright-report" }]],
  use: {
    baseURL: `http://127.0.0.1:${PORT}`,
    screenshot: "on",
    trace: "retain-on-failure",
    colorScheme: "light",
    ...devices["Desktop Chrome"],
    launchOptions: {
      ...(chromium ? { executablePath: chromium } : {}),
      args: [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
      ],
    },
  },
  webServer: [
    {
      command: `${python} ../app.py --profile tiny --port ${PORT} --data-dir ${data} --no-warmup`,
      url: `http://127.0.0.1:${PORT}/api/health`,
      // The history test makes a dozen quick (cached) jobs: more than the default 10 a minute.
      env: { ...serverEnv, ATELIER_LIMIT_IMAGE_JOBS: "120/minute" },
      timeout: 120_000,
      reuseExistingServer: false,
      stdout: "ignore",
      stderr: "pipe",
    },
    {
      // An account makes the server ask for a login; a low image-job limit shows the 429 answer.
      command:
        `printf '%s\\n%s\\n' ${E2E_PASSWORD} ${E2E_PASSWORD} | ${python} ../app.py users add ${E2E_USER} --data-dir ${authData}` +
        ` && exec ${python} ../app.py --profile tiny --port ${AUTH_PORT} --data-dir ${authData} --no-warmup`,
      url: `http://127.0.0.1:${AUTH_PORT}/api/health`,
      env: { ...serverEnv, ATELIER_LIMIT_IMAGE_JOBS: "2/minute" },
      timeout: 120_000,
      reuseExistingServer: false,
      stdout: "ignore",
      stderr: "pipe",
    },
  ],
});
