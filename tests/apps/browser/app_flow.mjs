// Drives the running Streamlit map app in headless Debian Chromium (playwright-core, no downloaded browser).
// Usage: node tests/browser/app_flow.mjs <app url> <artifacts dir>
// Prints one JSON line prefixed "RESULT " with what the Python test checks (drawn polygon, shown numbers, timings).
import { chromium } from "playwright-core";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";

const [url, artifacts] = process.argv.slice(2);
fs.mkdirSync(artifacts, { recursive: true });
const userDir = fs.mkdtempSync(path.join(os.tmpdir(), "twin-chromium-"));
const out = { steps: [] };
const T0 = Date.now();
// the summary panel with this title and its numbers is on the page
const summaryShown = (title) => Array.from(document.querySelectorAll("h3")).some((h) => h.innerText.includes(title)) &&
  Array.from(document.querySelectorAll("[data-testid='stMetric']")).some((m) => m.innerText.includes("Residents"));
const log = (m) => { out.steps.push(m); console.error("[browser] " + m); };

const context = await chromium.launchPersistentContext(userDir, {
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium", viewport: { width: 1920, height: 1080 },
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync", "--use-gl=swiftshader",
    "--enable-unsafe-swiftshader"],
});
const page = context.pages()[0] || await context.newPage();
page.on("pageerror", (e) => log("pageerror: " + e.message));
page.on("console", (m) => { if (m.type() === "error" || m.type() === "warning" || m.text().startsWith("deckmap")) log(`console ${m.type()} +${Date.now() - T0}ms @${Date.now()}: ${m.text().slice(0, 300)}`); });
let failed = null;
try {
  const t0 = Date.now();
  await page.goto(url, { waitUntil: "domcontentloaded" });
  // the map iframe and its first paint with layers
  const iframeEl = await page.waitForSelector("iframe[title*='deckmap']", { timeout: 90000 });
  const frame = await iframeEl.contentFrame();
  await frame.waitForFunction(() => window.__deckmap && window.__deckmap.firstPaint !== null, null, { timeout: 90000 });
  out.first_paint_ms = Date.now() - t0;
  out.layer_ids = await frame.evaluate(() => window.__deckmap.layerIds);
  log(`first paint ${out.first_paint_ms} ms, layers ${out.layer_ids.join(",")}`);
  await page.waitForTimeout(1500);  // let text atlases (CJK labels) finish
  await page.screenshot({ path: path.join(artifacts, "01_map.png") });

  // toggle a layer: cameras on → the map gets a "cameras" layer
  await page.getByText("Cameras 视频", { exact: true }).click();
  await frame.waitForFunction(() => (window.__deckmap.layerIds || []).includes("cameras"), null, { timeout: 30000 });
  out.toggled = "cameras";
  await frame.waitForFunction(() => window.__deckmap.isIdle(), null, { timeout: 30000 });
  await page.waitForTimeout(500);
  log("cameras layer on");

  // draw a lasso with the mouse in the map (a rough circle in the old town)
  await frame.click("#btn-lasso");
  await frame.waitForFunction(() => window.__deckmap.isIdle(), null, { timeout: 30000 });  // as a person would: the map is still
  await page.waitForTimeout(300);
  const box = await iframeEl.boundingBox();
  const cx = box.x + box.width * 0.62, cy = box.y + box.height * 0.40, r = Math.min(box.width, box.height) * 0.09;
  await page.mouse.move(cx + r, cy);
  await page.mouse.down();
  for (let i = 1; i <= 36; i++) {
    const a = (i / 36) * 2 * Math.PI;
    await page.mouse.move(cx + r * Math.cos(a), cy + r * 0.8 * Math.sin(a), { steps: 2 });
  }
  const before = await page.locator("h3").allInnerTexts();
  await page.evaluate((src) => {
    const shown = eval(src);
    window.__summaryAt = null;
    new MutationObserver(() => { if (window.__summaryAt === null && shown("Drawn area #1")) window.__summaryAt = Date.now(); })
      .observe(document.body, { childList: true, subtree: true, characterData: true });
  }, summaryShown.toString());
  const updatesBeforeDraw = await frame.evaluate(() => window.__deckmap.layerUpdates || 0);
  const tDraw = Date.now();
  await page.mouse.up();
  await page.waitForFunction(summaryShown, "Drawn area #1", { timeout: 60000, polling: 20 });
  out.draw_to_summary_ms = Date.now() - tDraw;
  // the map settled: the answer's layers (the area outline, the touched cells) are in and drawn
  await frame.waitForFunction(() => (window.__deckmap.layerIds || []).includes("query-area") && window.__deckmap.isIdle(),
    null, { timeout: 60000, polling: 20 });
  out.draw_to_map_settled_ms = Date.now() - tDraw;
  out.draw_layer_updates = (await frame.evaluate(() => window.__deckmap.layerUpdates || 0)) - updatesBeforeDraw;
  const sentAt = await frame.evaluate(() => window.__deckmap.drawSentAt);
  const shownAt = await page.evaluate(() => window.__summaryAt);
  if (sentAt && shownAt) log(`drawing sent → summary in the page: ${shownAt - sentAt} ms (browser clock)`);
  out.drawn = await frame.evaluate(() => window.__deckmap.lastDrawn);
  out.metrics = await page.evaluate(() => Object.fromEntries(Array.from(document.querySelectorAll("[data-testid='stMetric']")).map((m) => {
    const lines = m.innerText.split("\n").map((x) => x.trim()).filter(Boolean);
    return [lines[0], lines[1]];
  })));
  log(`draw → summary ${out.draw_to_summary_ms} ms, map settled ${out.draw_to_map_settled_ms} ms ` +
      `(${out.draw_layer_updates} layer updates); headings before ${before.length}`);
  await page.waitForTimeout(800);
  await page.screenshot({ path: path.join(artifacts, "02_lasso_summary.png") });

  // open a grid dossier: as a person would, hide the live incident dots first (a click on a dot opens the incident),
  // then pan mode and click the map centre of the drawn area (a grid there)
  await page.getByText("Open incidents 在办事件 (live)", { exact: true }).click();
  await frame.waitForFunction(() => !(window.__deckmap.layerIds || []).includes("incidents"), null, { timeout: 60000 });
  await page.getByText("Grid workers 网格员 (live status)", { exact: true }).click();
  await frame.waitForFunction(() => !(window.__deckmap.layerIds || []).includes("workers"), null, { timeout: 60000 });
  await frame.click("#btn-pan");
  await frame.waitForFunction(() => window.__deckmap.isIdle(), null, { timeout: 30000 });
  const updatesBefore = await frame.evaluate(() => window.__deckmap.layerUpdates || 0);
  const tClick = Date.now();
  out.click_at = tClick;
  await page.mouse.click(cx, cy);
  await page.waitForFunction(() => Array.from(document.querySelectorAll("h3")).some((h) => h.innerText.includes("Grid dossier")),
    null, { timeout: 60000, polling: 20 });
  out.dossier_at = Date.now();
  out.click_to_dossier_ms = out.dossier_at - tClick;
  out.click_sent_ms = (await frame.evaluate(() => window.__deckmap.clickSentAt)) - tClick;
  // a click that only opens a dossier changes no layer: the map must not re-set its layers (no WebGL redraw)
  out.click_layer_updates = (await frame.evaluate(() => window.__deckmap.layerUpdates || 0)) - updatesBefore;
  log(`click → dossier ${out.click_to_dossier_ms} ms; layer updates meanwhile ${out.click_layer_updates}`);
  out.dossier_heading = (await page.locator("h3", { hasText: "Grid dossier" }).first().innerText()).trim();
  await page.waitForTimeout(500);
  await page.waitForFunction(() => document.body.innerText.includes("Neighbouring grids"), null, { timeout: 60000 });
  out.dossier_text = await page.locator("[data-testid='stMainBlockContainer']").first().innerText();
  log("dossier: " + out.dossier_heading);
  await page.screenshot({ path: path.join(artifacts, "03_dossier.png") });

  // zoom in over the drawn area: 3D buildings are sent for the view
  await frame.evaluate(() => {
    const c = window.__deckmap.lastDrawn.geometry.coordinates[0];
    const lng = c.reduce((s, p) => s + p[0], 0) / c.length, lat = c.reduce((s, p) => s + p[1], 0) / c.length;
    window.__deckmap.flyTo({ longitude: lng, latitude: lat, zoom: 16, pitch: 50, bearing: 20 });
  });
  await frame.waitForFunction(() => (window.__deckmap.layerIds || []).includes("buildings-3d"), null, { timeout: 60000 });
  await page.waitForTimeout(2500);
  out.buildings_layer = true;
  await page.screenshot({ path: path.join(artifacts, "04_buildings_3d.png") });
  log("3D buildings shown");
} catch (e) {
  failed = String(e && e.stack || e);
  await page.screenshot({ path: path.join(artifacts, "error.png") }).catch(() => {});
}
await context.close();
fs.rmSync(userDir, { recursive: true, force: true });
out.error = failed;
console.log("RESULT " + JSON.stringify(out));
process.exit(failed ? 1 : 0);
