// Photographs the built page (argv[2], a file:// URL) into argv[3] once every panel has drawn.
import { chromium } from "playwright-core";

const [, , url, out] = process.argv;
const browser = await chromium.launch({ executablePath: "/usr/bin/chromium", args: ["--no-sandbox"] });
const page = await browser.newPage({ viewport: { width: 1600, height: 1000 }, deviceScaleFactor: 1 });
page.on("pageerror", (error) => console.error("page error:", error.message));
page.on("console", (message) => message.type() === "error" && console.error("console:", message.text()));
await page.goto(url);
await page.locator("#drawn").waitFor({ state: "attached", timeout: 60000 });
await page.waitForTimeout(1500); // uPlot draws on the next frames
await page.screenshot({ path: out, fullPage: true });
await browser.close();
