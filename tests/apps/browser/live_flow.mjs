// The command-centre screen (/?screen=1) in headless Debian Chromium (playwright-core): it must show a new incident,
// reported over HTTP to `twin serve`, by itself (the page is never touched), and look right at 1080p and 2160p.
// Usage: node tests/apps/browser/live_flow.mjs <app url> <artifacts dir> <api url> <api key> <lng> <lat>
// Prints one JSON line prefixed "RESULT ": {incident_id, report_to_screen_ms, kpi_open_before/after, alarm_shown,
// min_font_px, chrome_visible, errors, shots, error}.
import { chromium } from "playwright-core";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";

const [url, artifacts, apiUrl, apiKey, lng, lat, only] = process.argv.slice(2);  // only = "2160": the 4K screen only
fs.mkdirSync(artifacts, { recursive: true });
const userDir = fs.mkdtempSync(path.join(os.tmpdir(), "twin-chromium-"));
const out = { errors: [], shots: [], error: null };
const note = (m) => { out.errors.push(m); console.error("[live] " + m); };
const log = (m) => console.error("[live] " + m);

const context = await chromium.launchPersistentContext(userDir, {
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  viewport: only === "2160" ? { width: 3840, height: 2160 } : { width: 1920, height: 1080 },
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync", "--use-gl=swiftshader",
    "--enable-unsafe-swiftshader"],
});
let page = context.pages()[0] || await context.newPage();
page.on("pageerror", (e) => note("pageerror: " + e.message));
page.on("console", (m) => { if (m.type() === "error" && !m.text().startsWith("Failed to load resource")) note("console error: " + m.text().slice(0, 300)); });
page.on("response", (r) => { if (r.status() >= 400) note(`HTTP ${r.status()} ${r.url()}`); });

async function mapFrame(timeout = 150000) {  // software WebGL on a loaded 2-core machine: a 4K frame takes long
  const iframeEl = await page.waitForSelector("iframe[title*='deckmap']", { timeout });
  const frame = await iframeEl.contentFrame();
  await frame.waitForFunction(() => window.__deckmap && window.__deckmap.firstPaint !== null, null, { timeout });
  await frame.waitForFunction(() => window.__deckmap.isIdle(), null, { timeout });
  return { iframeEl, frame };
}

// what a person at the wall sees: chrome, the map's size, the smallest text of the overlay and legend
async function inspect(frame, name) {
  const chrome = await page.evaluate(() => {
    const vis = (sel) => Array.from(document.querySelectorAll(sel)).some((e) => {
      const r = e.getBoundingClientRect(); return r.width > 0 && r.height > 0 && getComputedStyle(e).visibility !== "hidden";
    });
    return { header: vis("header[data-testid='stHeader']"), sidebar: vis("[data-testid='stSidebar']"),
      toolbar: vis("[data-testid='stToolbar']"), deploy: vis("[data-testid='stAppDeployButton']"),
      title: document.title };
  });
  const box = await (await page.$("iframe[title*='deckmap']")).boundingBox();
  const fonts = await frame.evaluate(() => {
    const sizes = [];
    for (const e of document.querySelectorAll("#hud *, #legend *")) {
      if (!e.childNodes.length || !Array.from(e.childNodes).some((n) => n.nodeType === 3 && n.textContent.trim())) continue;
      const r = e.getBoundingClientRect();
      if (r.width === 0 || r.height === 0) continue;
      sizes.push(parseFloat(getComputedStyle(e).fontSize));
    }
    return sizes;
  });
  for (const [k, v] of Object.entries(chrome)) if (v === true) note(`${name}: Streamlit chrome visible: ${k}`);
  for (const t of await page.locator("[data-testid='stException'], [data-testid='stAlertContentError']").allInnerTexts()) note(`${name}: error box: ${t.slice(0, 300)}`);
  const shown = await frame.evaluate(() => document.getElementById("error").style.display === "block" && document.getElementById("error").textContent);
  if (shown) note(`${name}: map error box: ${shown}`);
  // the least radius an incident dot is drawn with, in device pixels (a 4K wall: twice 1080p's)
  const dotPx = await frame.evaluate(() => { const m = window.__deckmap, d = m.liveDeck || m.deck;
    const l = d.props.layers.find((x) => x.id === "incidents"); return l ? l.props.radiusMinPixels : null; });
  // the legend's check boxes, as tall as its text (a form control keeps the browser's 13 px font unless told)
  const boxPx = await frame.evaluate(() => { const i = document.querySelector("#legend input");
    return i ? i.getBoundingClientRect().height : null; });
  return { chrome, map_box: box, min_font_px: Math.min(...fonts), n_text: fonts.length, dot_px: dotPx, checkbox_px: boxPx };
}

const incidentIds = (frame) => frame.evaluate(() => (window.__deckmap.layerData("incidents") || []).map((d) => d.id));
const kpi = (frame, key) => frame.evaluate((k) => {
  const e = document.querySelector(`.kpi[data-kpi='${k}'] .kpi-value`); return e ? e.textContent : null;
}, key);

try {
  if (only === "2160") {  // a fresh browser at 3840×2160 (a wall display)
    const t4 = Date.now();
    await page.goto(url + "/?screen=1", { waitUntil: "domcontentloaded" });
    const { frame } = await mapFrame(300000);
    out.first_paint_2160_ms = Date.now() - t4;
    await page.waitForTimeout(3000);
    out.view_2160 = await inspect(frame, "2160p");
    await page.screenshot({ path: path.join(artifacts, "screen_2160.png") });
    out.shots.push("screen_2160.png");
    // the same wall resized to 1080p (a window moved to a smaller display): the pixel sizes follow without a reload
    await page.setViewportSize({ width: 1920, height: 1080 });
    await frame.waitForFunction((px) => { const m = window.__deckmap, d = m.liveDeck || m.deck;
      const l = d.props.layers.find((x) => x.id === "incidents"); return l && l.props.radiusMinPixels !== px; },
    out.view_2160.dot_px, { timeout: 20000 }).catch(() => note("2160p → 1080p: the dots kept their 4K size for 20 s"));
    out.dot_px_resized_1080 = (await inspect(frame, "2160p → 1080p")).dot_px;
    throw null;  // done
  }
  const t0 = Date.now();
  await page.goto(url + "/?screen=1", { waitUntil: "domcontentloaded" });
  let { frame } = await mapFrame();
  out.first_paint_ms = Date.now() - t0;
  await page.waitForTimeout(2500);  // CJK label atlases
  out.view_1080 = await inspect(frame, "1080p");
  out.min_font_px = out.view_1080.min_font_px;
  await page.screenshot({ path: path.join(artifacts, "screen_1080.png") });
  out.shots.push("screen_1080.png");
  log(`1080p: first paint ${out.first_paint_ms} ms, map ${JSON.stringify(out.view_1080.map_box)}, min font ${out.min_font_px}px`);

  // report an incident over HTTP; the screen is not touched from here on
  const before = new Set(await incidentIds(frame));
  out.kpi_open_before = await kpi(frame, "open");
  const renders0 = await frame.evaluate(() => window.__deckmap.layerUpdates || 0);
  const frames0 = await frame.evaluate(() => [window.__deckmap.mapFrames || 0, window.__deckmap.liveFrames || 0]);
  // the browser notes (on the machine's clock, which node shares) when each new incident id reaches the map's data
  await frame.evaluate(() => {
    const known = new Set((window.__deckmap.layerData("incidents") || []).map((d) => d.id));
    window.__seenAt = {};
    setInterval(() => {
      for (const d of window.__deckmap.layerData("incidents") || []) {
        if (!known.has(d.id)) { known.add(d.id); window.__seenAt[d.id] = Date.now(); }
      }
    }, 50);
  });
  const tReq = Date.now();
  const now = new Date(Date.now() + 8 * 3600 * 1000).toISOString().slice(0, 19) + "+08:00";
  const r = await fetch(apiUrl + "/incidents", {
    method: "POST", headers: { "Content-Type": "application/json", Authorization: `Bearer ${apiKey}` },
    body: JSON.stringify({ category: "fire_blocked_exit", lng: Number(lng), lat: Number(lat), reported_at: now,
      channel: "hotline_12345", severity: 4, description: "live screen test", reporter: "test" }),
  });
  const tStored = Date.now();
  const body = await r.json();
  if (r.status !== 201) throw new Error(`POST /incidents: HTTP ${r.status} ${JSON.stringify(body)}`);
  const id = body.incident.id;
  out.incident_id = id;
  out.incident_level = body.incident.level;
  out.http_ms = tStored - tReq;
  if (before.has(id)) throw new Error(`incident ${id} was on screen before it was reported`);
  await frame.waitForFunction((i) => window.__seenAt[i] !== undefined, id, { timeout: 60000, polling: 100 });
  const seenAt = await frame.evaluate((i) => window.__seenAt[i], id);
  out.report_to_screen_ms = seenAt - tStored;
  out.request_to_screen_ms = seenAt - tReq;
  out.trace = await frame.evaluate(() => window.__deckmap.trace.slice(-12));
  // the live feed as the browser polled it: polls, layer changes, slowest poll (fetch + parse) in ms
  out.feed = await frame.evaluate(() => { const f = window.__deckmap.feed;
    return f ? { polls: f.polls, changes: f.changes, slowest_ms: f.slowestMs, log: f.log } : null; });
  out.stored_at = tStored;
  await frame.waitForFunction(() => window.__deckmap.isIdle(), null, { timeout: 30000 });
  out.drawn_ms = Date.now() - tStored;
  // frames drawn for it: the live deck's, not the whole map's (the screen is untouched, so the map has no reason to)
  const frames1 = await frame.evaluate(() => [window.__deckmap.mapFrames || 0, window.__deckmap.liveFrames || 0]);
  out.map_frames = frames1[0] - frames0[0];
  out.live_frames = frames1[1] - frames0[1];
  out.kpi_open_after = await kpi(frame, "open");
  // the alarm comes with the case (stored and dispatched in one commit); wait up to 10 s for it as a person would
  out.alarm_shown = await frame.waitForFunction((i) => !!document.querySelector(`#alarms .alarm[data-id='${i}']`), id,
    { timeout: 10000, polling: 100 }).then(() => true, () => false);
  out.new_halo = await frame.evaluate((i) => (window.__deckmap.layerData("incidents-new") || []).some((d) => d.id === i), id);
  out.layer_updates = (await frame.evaluate(() => window.__deckmap.layerUpdates || 0)) - renders0;
  log(`incident #${id} (${out.incident_level}) on screen ${out.report_to_screen_ms} ms after it was stored; ` +
      `open ${out.kpi_open_before} → ${out.kpi_open_after}; alarm ${out.alarm_shown}`);
  await page.waitForTimeout(1000);
  await page.screenshot({ path: path.join(artifacts, "screen_live_1080.png") });
  out.shots.push("screen_live_1080.png");

} catch (e) {
  if (e !== null) out.error = String(e && e.stack || e);
}
await context.close();
fs.rmSync(userDir, { recursive: true, force: true });
console.log("RESULT " + JSON.stringify(out));
