// Screenshots of the city fabric on the one map (headless Debian Chromium via playwright-core), 1920×1080.
// Usage: node tests/synth/fabric_shots.mjs <app url> <out dir>
// Writes <out>/fabric_district.png (district zoom), fabric_z14.png (zoom 14), fabric_z16_3d.png (zoom 16, pitched).
import { chromium } from "playwright-core";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";

const [url, out] = process.argv.slice(2);
const userDir = fs.mkdtempSync(path.join(os.tmpdir(), "twin-chromium-"));
const T0 = Date.now();
const log = (m) => console.error(`[fabric-shots +${Date.now() - T0}ms] ${m}`);
const views = [
  ["fabric_district.png", { longitude: 113.075, latitude: 23.012, zoom: 11.6, pitch: 0, bearing: 0 }, 8000],
  ["fabric_z14.png", { longitude: 113.108, latitude: 23.032, zoom: 14, pitch: 0, bearing: 0 }, 10000],
  ["fabric_z16_3d.png", { longitude: 113.113, latitude: 23.029, zoom: 16, pitch: 55, bearing: -25 }, 25000],
];
const context = await chromium.launchPersistentContext(userDir, {
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium", viewport: { width: 1920, height: 1080 },
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--use-gl=swiftshader",
    "--enable-unsafe-swiftshader"],
});
const page = context.pages()[0] || await context.newPage();
page.on("pageerror", (e) => log("pageerror: " + e.message));
try {
  await page.goto(url, { waitUntil: "domcontentloaded" });
  const iframeEl = await page.waitForSelector("iframe[title*='deckmap']", { timeout: 180000 });
  let frame = await iframeEl.contentFrame();
  await frame.waitForFunction(() => window.__deckmap && window.__deckmap.firstPaint !== null, null, { timeout: 180000 });
  log("map painted; layers " + (await frame.evaluate(() => window.__deckmap.layerIds)).join(","));
  // the base map is the subject: hide the hexagon overlay and the live worker dots
  for (const label of ["Hexagon overlay (H3)", "Grid workers 网格员 (live status)"]) {
    await page.getByText(label, { exact: true }).click();
    await page.waitForTimeout(4000);
  }
  await page.waitForFunction(() => !document.body.innerText.includes("Running..."), null, { timeout: 60000 });
  for (const [name, view, wait] of views) {
    frame = await (await page.waitForSelector("iframe[title*='deckmap']")).contentFrame();
    await frame.evaluate((v) => window.__deckmap.flyTo(v), view);
    await page.waitForTimeout(wait);  // the view event reruns the app for the buildings in view; software rendering
    await page.screenshot({ path: path.join(out, name) });
    log("screenshot " + name);
  }
} catch (e) {
  log("FAILED " + e.message);
  await page.screenshot({ path: path.join(out, "fabric_error.png") });
  process.exitCode = 1;
} finally {
  await context.close();
}
