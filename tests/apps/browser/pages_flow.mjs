// Visits every page and mode of the running Streamlit app in headless Debian Chromium (playwright-core) and reports
// every error a person would see: Streamlit exception boxes and st.error alerts, deck.gl errors inside the map
// component, page errors and console errors. Screenshots of each view go to the artifacts dir.
// Usage: node tests/browser/pages_flow.mjs <app url> <artifacts dir>
// Prints one JSON line prefixed "RESULT ": {views: [{name, maps, errors: [...]}], error}.
import { chromium } from "playwright-core";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";

const [url, artifacts] = process.argv.slice(2);
fs.mkdirSync(artifacts, { recursive: true });
const userDir = fs.mkdtempSync(path.join(os.tmpdir(), "twin-chromium-"));
const out = { views: [], error: null };
let current = null;  // errors of the view being visited
const note = (m) => { if (current) current.errors.push(m); console.error("[pages] " + m); };

const context = await chromium.launchPersistentContext(userDir, {
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium", viewport: { width: 1920, height: 1080 },
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync", "--use-gl=swiftshader",
    "--enable-unsafe-swiftshader"],
});
const page = context.pages()[0] || await context.newPage();
page.on("pageerror", (e) => note("pageerror: " + e.message));
page.on("console", (m) => {
  // a failed request is reported below with its address; the console line alone does not name it
  if (m.type() === "error" && !m.text().startsWith("Failed to load resource")) note("console error: " + m.text().slice(0, 400));
});
page.on("response", (r) => { if (r.status() >= 400) note(`HTTP ${r.status()} ${r.url()}`); });
page.on("requestfailed", (r) => note(`request failed ${r.url()}: ${r.failure() && r.failure().errorText}`));

async function visibleMaps() {  // map iframes a person can see (hidden tabs hold maps too)
  const found = [];
  for (const fr of page.frames()) {
    if (!fr.url().includes("deckmap")) continue;
    const box = await (await fr.frameElement()).boundingBox();
    if (box && box.width > 0 && box.height > 0) found.push(fr);
  }
  return found;
}

async function settle(expectMaps) {
  // Streamlit is done running the script and every map component painted (or showed its error box)
  await page.waitForFunction(() => !document.querySelector("[data-testid='stStatusWidget']"), null, { timeout: 120000 });
  await page.waitForTimeout(800);
  const until = Date.now() + 90000;  // the page's map iframes appear after the script run
  while ((await visibleMaps()).length < expectMaps && Date.now() < until) await page.waitForTimeout(300);
  for (const fr of await visibleMaps()) {
    await fr.waitForFunction(() => (window.__deckmap && window.__deckmap.firstPaint !== null) ||
      (document.getElementById("error") && document.getElementById("error").style.display === "block"),
      null, { timeout: 90000 });
  }
  await page.waitForTimeout(800);
}

async function collect(name) {
  const maps = [];
  for (const fr of await visibleMaps()) {
    const info = await fr.evaluate(() => ({
      error: (document.getElementById("error") || {}).textContent || "",
      shown: (document.getElementById("error") || { style: {} }).style.display === "block",
      layers: (window.__deckmap && window.__deckmap.layerIds) || [],
    }));
    if (info.shown) note(`map error box: ${info.error.slice(0, 400)}`);
    maps.push(info.layers);
  }
  for (const t of await page.locator("[data-testid='stException']").allInnerTexts()) note("exception box: " + t.slice(0, 400));
  for (const t of await page.locator("[data-testid='stAlertContentError']").allInnerTexts()) note("error alert: " + t.slice(0, 400));
  current.maps = maps;
  await page.screenshot({ path: path.join(artifacts, `page_${name}.png`) });
}

async function visit(name, expectMaps, action) {
  current = { name, errors: [], maps: [] };
  out.views.push(current);
  await action();
  await settle(expectMaps);
  await collect(name);
  console.error(`[pages] ${name}: ${current.maps.length} map(s), ${current.errors.length} error(s)`);
}

try {
  await visit("explore", 1, () => page.goto(url, { waitUntil: "domcontentloaded" }));
  await visit("edit", 1, () => page.getByText("Edit grids 网格调整", { exact: true }).click());
  // as a person would: through the page list in the sidebar (a typed /Incidents address makes Streamlit probe
  // /Incidents/_stcore/* first, two 404s that are Streamlit's own)
  await visit("incidents_queue", 1, () => page.locator("[data-testid='stSidebarNav'] a", { hasText: "Incidents" }).click());
  // a row of the queue opens that incident in "Act on an incident" (click the first data row's cell)
  {
    const grid = page.locator("[data-testid='stDataFrame']").first();
    const gb = await grid.boundingBox();
    await page.mouse.click(gb.x + 12, gb.y + 36 + 17);  // the row selector of the first data row
    await page.waitForFunction(() => !document.querySelector("[data-testid='stStatusWidget']"), null, { timeout: 60000 });
    await page.waitForTimeout(800);
    const picked = await page.evaluate(() => Array.from(document.querySelectorAll("[data-testid='stCaptionContainer']"))
      .map((e) => e.innerText).find((x) => x.startsWith("#")) || "");
    out.incident_opened = picked.slice(0, 200);
    console.error("[pages] incident opened from a row: " + out.incident_opened);
  }
  await visit("incidents_stats", 0, () => page.getByRole("tab", { name: /Statistics/ }).click());
  await visit("incidents_inspections", 1, () => page.getByRole("tab", { name: /Inspections/ }).click());
  // the command-centre screen: no chrome, the map is the window
  await visit("screen", 1, () => page.goto(url + "/?screen=1", { waitUntil: "domcontentloaded" }));
  out.screen_chrome = await page.evaluate(() => ["header[data-testid='stHeader']", "[data-testid='stSidebar']",
    "[data-testid='stToolbar']"].filter((sel) => { const e = document.querySelector(sel); if (!e) return false;
    const r = e.getBoundingClientRect(); return r.width > 0 && r.height > 0; }));
  out.title = await page.title();
} catch (e) {
  out.error = String(e && e.stack || e);
}
await context.close();
fs.rmSync(userDir, { recursive: true, force: true });
console.log("RESULT " + JSON.stringify(out));
