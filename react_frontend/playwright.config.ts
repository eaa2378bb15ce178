import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { defineConfig, devices } from "@playwright/test";
import { A1111_PORT, AUTH_PORT, E2E_PASSWORD, E2E_USER, ELSEWHERE_PORT, OPENAI_PORT, PORT, REMOTE_PORT } from "./e2e/constants";

/**
 * End-to-end tests against the real app (tiny random-weight models, fully offline), started by Playwright:
 * one server in single-user mode for the screens, one with an account for the login screen, and one with
 * both remote backends, driving the AUTOMATIC1111 and OpenAI-compatible stand-ins from tests/standins/.
 * Each app gets a fresh data dir; the config is evaluated again in each worker, so the dirs travel by env.
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
/** Every server is started fresh for the run; only its errors reach the test output. */
const quiet = { reuseExistingServer: false, stdout: "ignore", stderr: "pipe" } as const;
const data = dataDir("ATELIER_E2E_DATA");
const authData = dataDir("ATELIER_E2E_AUTH_DATA");
const remoteData = dataDir("ATELIER_E2E_REMOTE_DATA");

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
      // The client served from another origin (react-elsewhere.spec.ts) is one this server trusts.
      env: { ...serverEnv, ATELIER_LIMIT_IMAGE_JOBS: "120/minute", ATELIER_CORS_ORIGINS: JSON.stringify([`http://127.0.0.1:${ELSEWHERE_PORT}`]) },
      timeout: 120_000,
      ...quiet,
    },
    {
      // An account makes the server ask for a login; a low image-job limit shows the 429 answer.
      // bob, carol and dave drive the UIs with an account of their own each (gradio-accounts.spec.ts); erin is the
      // admin of admin.spec.ts.
      command:
        [E2E_USER, "bob", "carol", "dave", "erin --admin"]
          .map((user) => `printf '%s\\n%s\\n' ${E2E_PASSWORD} ${E2E_PASSWORD} | ${python} ../app.py users add ${user} --data-dir ${authData}`)
          .join(" && ") +
        ` && exec ${python} ../app.py --profile tiny --port ${AUTH_PORT} --data-dir ${authData} --no-warmup`,
      url: `http://127.0.0.1:${AUTH_PORT}/api/health`,
      env: { ...serverEnv, ATELIER_LIMIT_IMAGE_JOBS: "2/minute" },
      timeout: 120_000,
      ...quiet,
    },
    {
      // 50 ms a step: a 20-step job takes a second (several polled previews), a 400-step one long enough to stop.
      command: `${python} -m tests.standins.a1111_server --port ${A1111_PORT} --step-delay 0.05`,
      cwd: "..",
      url: `http://127.0.0.1:${A1111_PORT}/sdapi/v1/options`,
      env: serverEnv,
      timeout: 60_000,
      ...quiet,
    },
    {
      command: `${python} -m tests.standins.openai_server --port ${OPENAI_PORT} --token-delay 0.05`,
      cwd: "..",
      url: `http://127.0.0.1:${OPENAI_PORT}/v1/models`,
      env: serverEnv,
      timeout: 60_000,
      ...quiet,
    },
    {
      command: `${python} ../app.py --profile tiny --port ${REMOTE_PORT} --data-dir ${remoteData} --no-warmup`,
      url: `http://127.0.0.1:${REMOTE_PORT}/api/health`,
      env: {
        ...serverEnv,
        ATELIER_IMAGE_BACKEND: "a1111",
        ATELIER_A1111_URL: `http://127.0.0.1:${A1111_PORT}`,
        ATELIER_A1111_POLL_S: "0.1",
        ATELIER_TEXT_BACKEND: "openai",
        ATELIER_OPENAI_BASE_URL: `http://127.0.0.1:${OPENAI_PORT}/v1`,
      },
      timeout: 120_000,
      ...quiet,
    },
    {
      // The built client alone, on another origin (it reaches the app at PORT through ?gradio=).
      command: `npx vite preview --host 127.0.0.1 --port ${ELSEWHERE_PORT} --strictPort`,
      url: `http://127.0.0.1:${ELSEWHERE_PORT}/app/`,
      timeout: 60_000,
      ...quiet,
    },
  ],
});
