// Edit mode's brush in headless Debian Chromium (playwright-core): enter edit mode, pick a grid, set the brush to
// one cell, paint two strokes with the mouse over a neighbouring grid (one click, one drag along its border), check the live balance box and the panel's
// preview, take the 1920×1080 screenshot, commit.
// Usage: node tests/apps/browser/edit_brush.mjs <app url> <artifacts dir> [grid code]
// Prints one JSON line prefixed "RESULT " (painted cells, shown texts, timings) for tests/apps/test_edit_browser.py.
import { chromium } from "playwright-core";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";

const [url, artifacts, gridArg] = process.argv.slice(2);
fs.mkdirSync(artifacts, { recursive: true });
const userDir = fs.mkdtempSync(path.join(os.tmpdir(), "twin-chromium-"));
const grid = gridArg || process.env.EDIT_GRID || "440604010004002";
const out = { steps: [], error: null, grid, errors: [] };
const T0 = Date.now();
const log = (m) => { out.steps.push(m); console.error(`[edit-brush +${Date.now() - T0}ms] ${m}`); };

const context = await chromium.launchPersistentContext(userDir, {
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium", viewport: { width: 1920, height: 1080 },
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync", "--use-gl=swiftshader",
    "--enable-unsafe-swiftshader"],
});
const page = context.pages()[0] || await context.newPage();
page.setDefaultTimeout(120000);
page.on("pageerror", (e) => { out.errors.push("pageerror: " + e.message); log("pageerror: " + e.message); });
const bodyHas = (text) => page.waitForFunction((s) => document.body.innerText.includes(s), text, { timeout: 120000 });
const mapFrame = async () => (await page.waitForSelector("iframe[title*='deckmap']", { timeout: 120000 })).contentFrame();

try {
  await page.goto(url, { waitUntil: "domcontentloaded" });
  let frame = await mapFrame();
  await frame.waitForFunction(() => window.__deckmap && window.__deckmap.firstPaint !== null, null, { timeout: 120000 });
  log("map painted");
  await page.getByText("Edit grids 网格调整", { exact: true }).click();
  await bodyHas("Balance 均衡");
  log("edit mode");
  const box = page.getByRole("combobox", { name: /Grid 网格/ });
  await box.click();
  await page.keyboard.type(grid);
  await page.keyboard.press("Enter");
  await bodyHas("Brush 画刷");
  log("grid selected");
  // brush size 0 (one cell per pointer position): the slider's thumb, Home key
  const slider = page.locator("[data-testid='stSlider']").filter({ hasText: "brush size" }).getByRole("slider");
  await slider.focus();
  await page.keyboard.press("Home");
  frame = await mapFrame();
  await frame.waitForFunction(() => window.__deckmap.brush.args && window.__deckmap.brush.args.radius === 0 &&
    document.getElementById("btn-brush"), null, { timeout: 120000 });
  log("brush ready (radius 0)");
  // two border cells of a same-community neighbour, next to each other and to the target; the view centred on them
  // a chain of up to 4 border cells of one same-community neighbour (each next to the target and to the previous)
  // whose removal keeps that neighbour one piece (checked here with h3-js on the cells the map was given)
  const plan = await frame.evaluate(() => {
    const b = window.__deckmap.brush.args, h3 = window.h3, comm = b.grids[0][4];
    const isT = (h) => b.cells[h] && b.cells[h][0] === 0;
    const connectedWithout = (gi, gone) => {
      const cells = Object.keys(b.cells).filter((h) => b.cells[h][0] === gi && !gone.has(h));
      if (!cells.length) return false;
      const left = new Set(cells), todo = [cells[0]];
      left.delete(cells[0]);
      while (todo.length) for (const n of h3.gridDisk(todo.pop(), 1)) if (left.delete(n)) todo.push(n);
      return left.size === 0;
    };
    const border = Object.keys(b.cells).filter((h) => {
      const c = b.cells[h];
      return c[0] !== 0 && b.grids[c[0]][4] === comm && h3.gridDisk(h, 1).some(isT);
    });
    let best = null;
    for (const a of border) {
      const gi = b.cells[a][0];
      if (!connectedWithout(gi, new Set([a]))) continue;
      const chain = [a];
      while (chain.length < 4) {
        const last = chain[chain.length - 1];
        const next = h3.gridDisk(last, 1).find((h) => !chain.includes(h) && border.includes(h) && b.cells[h][0] === gi &&
          connectedWithout(gi, new Set([...chain, h])));
        if (!next) break;
        chain.push(next);
      }
      if (chain.length >= 2 && (!best || chain.length > best.cells.length)) {
        best = { cells: chain, source: b.grids[gi][1], target: b.grids[0][1] };
      }
      if (best && best.cells.length === 4) break;
    }
    return best;
  });
  if (!plan) throw new Error("no paintable neighbour cells next to grid " + grid);
  out.plan = plan;
  await frame.evaluate((cells) => {
    const [lat, lng] = window.h3.cellToLatLng(cells[0]);
    window.__deckmap.flyTo({ longitude: lng, latitude: lat, zoom: 16.6, pitch: 0, bearing: 0 });
  }, plan.cells);
  await page.waitForTimeout(4000);
  await frame.evaluate(() => document.getElementById("btn-brush").click());
  const iframeEl = await page.$("iframe[title*='deckmap']");
  await iframeEl.scrollIntoViewIfNeeded();  // the slider's focus may have scrolled the page
  await page.waitForTimeout(500);
  const iframeBox = await iframeEl.boundingBox();
  const centre = async (h) => frame.evaluate((cell) => {
    const [lat, lng] = window.h3.cellToLatLng(cell);
    return window.__deckmap.deck.getViewports()[0].project([lng, lat]);
  }, h);
  const toPage = (p) => [iframeBox.x + p[0], iframeBox.y + p[1]];
  // stroke 1: press and release on the first cell
  const p1 = toPage(await centre(plan.cells[0]));
  await page.mouse.move(p1[0] - 1, p1[1]);
  await page.mouse.down();
  await page.mouse.move(p1[0], p1[1], { steps: 2 });
  const live1 = await frame.evaluate(() => ({ at: window.__deckmap.brushLiveAt, text: document.getElementById("brush-box").innerText }));
  let tUp = Date.now();
  await page.mouse.up();
  await bodyHas("Preview: paint 1 cell(s)");
  out.stroke1_to_panel_ms = Date.now() - tUp;
  log(`stroke 1 → panel ${out.stroke1_to_panel_ms} ms; live box: ${live1.text.replace(/\n/g, " | ")}`);
  // stroke 2: drag from the first cell along the chain; the live box updates during the drag
  await page.mouse.move(p1[0], p1[1]);
  await page.mouse.down();
  const tMove = Date.now();
  for (const h of plan.cells.slice(1)) {
    const p = toPage(await centre(h));
    await page.mouse.move(p[0], p[1], { steps: 4 });
  }
  out.live_box_text = await frame.evaluate(() => document.getElementById("brush-box").innerText);
  out.move_to_live_ms = Date.now() - tMove;
  tUp = Date.now();
  await page.mouse.up();
  await bodyHas(`Preview: paint ${plan.cells.length} cell(s)`);
  out.stroke2_to_panel_ms = Date.now() - tUp;
  log(`stroke 2 → panel ${out.stroke2_to_panel_ms} ms; live box after drag (${out.move_to_live_ms} ms): ` +
    out.live_box_text.replace(/\n/g, " | "));
  frame = await mapFrame();
  await frame.waitForFunction(() => (window.__deckmap.layerIds || []).includes("edit-brush") &&
    window.__deckmap.brush.args.painted.length > 1, null, { timeout: 120000 });
  out.painted = await frame.evaluate(() => window.__deckmap.brush.args.painted);
  out.layer_ids = await frame.evaluate(() => window.__deckmap.layerIds);
  out.panel_text = await page.evaluate(() => document.body.innerText);
  // the screenshot: page scrolled to the top (the whole map in view), the painting a little left of the centre
  await page.evaluate(() => { for (const e of document.querySelectorAll("*")) if (e.scrollTop > 0) e.scrollTop = 0; });
  await frame.evaluate((cells) => {
    const [lat, lng] = window.h3.cellToLatLng(cells[0]);
    window.__deckmap.flyTo({ longitude: lng + 0.0015, latitude: lat - 0.0006, zoom: 16.0 });
  }, plan.cells);
  await page.mouse.move(5, 5);
  await page.waitForTimeout(5000);  // software-rendered frames of the new layers
  const shot = path.join(artifacts, "edit_brush.png");
  await page.screenshot({ path: shot });
  log("screenshot " + shot);
  // commit the painting as one version
  await page.getByRole("textbox", { name: /Author/ }).fill("browser");
  await page.getByRole("textbox", { name: /Reason/ }).fill("brush: cells from a neighbour");
  await page.keyboard.press("Tab");
  await page.waitForTimeout(1500);
  await page.getByRole("button", { name: /Commit/ }).click();
  await bodyHas("is now the head");
  out.committed_text = await page.evaluate(() => Array.from(document.querySelectorAll("[data-testid='stAlert']"))
    .map((a) => a.innerText).join("\n"));
  log("committed: " + out.committed_text);
  await page.screenshot({ path: path.join(artifacts, "edit_brush_committed.png") });
  // undo, then redo, from the version bar's buttons (the chain is in the store; each adds a version)
  await page.getByRole("button", { name: /Undo/ }).click();
  await bodyHas("undo: back to the state of version 1");
  await page.getByRole("button", { name: /Redo/ }).click();
  await bodyHas("redo: version 2 restored");
  out.undo_redo_text = await page.evaluate(() => Array.from(document.querySelectorAll("[data-testid='stAlert']"))
    .map((a) => a.innerText).join("\n"));
  log("undo + redo: " + out.undo_redo_text);
  // the visual diff of two versions (the defaults: the viewed version's parent → it) highlighted on the map
  await page.getByText("History and diff 版本对比").click();
  await page.getByText("Show on the map", { exact: true }).click();
  frame = await mapFrame();
  await frame.waitForFunction(() => (window.__deckmap.layerIds || []).includes("edit-diff"), null, { timeout: 120000 });
  await frame.waitForFunction(() => window.__deckmap.isIdle(), null, { timeout: 120000 });
  out.diff_layer_ids = await frame.evaluate(() => window.__deckmap.layerIds);
  out.diff_text = await page.evaluate(() => document.body.innerText.match(/Version \d+ → \d+\*?\*?:[^\n]*/g));
  await page.evaluate(() => { for (const e of document.querySelectorAll("*")) if (e.scrollTop > 0) e.scrollTop = 0; });
  await page.waitForTimeout(3000);
  await page.screenshot({ path: path.join(artifacts, "edit_diff.png") });
  log("diff on the map: " + JSON.stringify(out.diff_text));
} catch (e) {
  out.error = String(e && e.stack || e);
  log("FAILED " + out.error);
  await page.screenshot({ path: path.join(artifacts, "edit_brush_error.png") }).catch(() => {});
} finally {
  console.log("RESULT " + JSON.stringify(out));
  await context.close();
}
