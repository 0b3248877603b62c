// Screenshot of the map app's edit mode (headless Debian Chromium via playwright-core).
// Usage: node tests/browser/edit_shot.mjs <app url> <png path>
import { chromium } from "playwright-core";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";

const [url, png] = process.argv.slice(2);
const userDir = fs.mkdtempSync(path.join(os.tmpdir(), "twin-chromium-"));
const T0 = Date.now();
const log = (m) => console.error(`[edit-shot +${Date.now() - T0}ms] ${m}`);
const context = await chromium.launchPersistentContext(userDir, {
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium", viewport: { width: 1920, height: 1200 },
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--use-gl=swiftshader",
    "--enable-unsafe-swiftshader"],
});
const page = context.pages()[0] || await context.newPage();
page.on("pageerror", (e) => log("pageerror: " + e.message));
const grid = process.env.EDIT_GRID || "440604010004002";
try {
  await page.goto(url, { waitUntil: "domcontentloaded" });
  const iframeEl = await page.waitForSelector("iframe[title*='deckmap']", { timeout: 120000 });
  let frame = await iframeEl.contentFrame();
  await frame.waitForFunction(() => window.__deckmap && window.__deckmap.firstPaint !== null, null, { timeout: 120000 });
  log("map painted");
  await page.getByText("Edit grids 网格调整", { exact: true }).click();
  await page.waitForFunction(() => document.body.innerText.includes("Balance 均衡"), null, { timeout: 120000 });
  log("edit mode");
  // pick a grid in the select box (type its code, Enter)
  const box = page.getByRole("combobox", { name: /Grid 网格/ });
  await box.click();
  await page.keyboard.type(grid);
  await page.keyboard.press("Enter");
  await page.waitForFunction(() => document.body.innerText.includes("Neighbours 相邻网格"), null, { timeout: 60000 });
  log("grid selected");
  await page.getByRole("button", { name: "Split into k (balanced)" }).click();
  await page.waitForFunction(() => document.body.innerText.includes("Preview: split"), null, { timeout: 60000 });
  log("preview shown");
  frame = await (await page.waitForSelector("iframe[title*='deckmap']")).contentFrame();
  await frame.waitForFunction(() => (window.__deckmap.layerIds || []).includes("edit-preview"), null, { timeout: 60000 });
  await page.waitForTimeout(6000);  // fly-to and software-rendered frames
  await page.screenshot({ path: png });
  log("screenshot " + png + " layers " + (await frame.evaluate(() => window.__deckmap.layerIds)).join(","));
} catch (e) {
  log("FAILED " + e.message);
  await page.screenshot({ path: png.replace(/\.png$/, "_error.png") });
  process.exitCode = 1;
} finally {
  await context.close();
}
