// The Records (台账) and Services (无感服务) pages in headless Debian Chromium (playwright-core), as a community user:
// one change committed through the form, the community's residents downloaded, edited (one flag flipped) and
// uploaded, the diff reviewed and applied; on Services the month's counts, the work list identified and one
// person moved to "notified". Reports every error a person would see (exception boxes, st.error alerts, page and
// console errors, failed requests) per view, and takes 1920×1080 screenshots into the artifacts dir.
// Usage: node tests/apps/browser/records_flow.mjs <app url> <artifacts dir>
// Prints one JSON line prefixed "RESULT ": {views: [{name, errors, texts}], error, ...}.
import { chromium } from "playwright-core";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";

const [url, artifacts] = process.argv.slice(2);
fs.mkdirSync(artifacts, { recursive: true });
const userDir = fs.mkdtempSync(path.join(os.tmpdir(), "twin-chromium-"));
const out = { views: [], error: null };
let current = null;
const note = (m) => { if (current) current.errors.push(m); console.error("[records] " + m); };

const context = await chromium.launchPersistentContext(userDir, {
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium", viewport: { width: 1920, height: 1080 },
  acceptDownloads: true,
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync", "--use-gl=swiftshader",
    "--enable-unsafe-swiftshader"],
});
const page = context.pages()[0] || await context.newPage();
page.on("pageerror", (e) => note("pageerror: " + e.message));
page.on("console", (m) => {
  if (m.type() === "error" && !m.text().startsWith("Failed to load resource")) note("console error: " + m.text().slice(0, 400));
});
// a typed /Records address makes Streamlit probe /Records/_stcore/* first: two 404s that are Streamlit's own
const probe = (u) => new URL(u).pathname.startsWith("/Records/_stcore/");
page.on("response", (r) => { if (r.status() >= 400 && !probe(r.url())) note(`HTTP ${r.status()} ${r.url()}`); });
page.on("requestfailed", (r) => {
  const err = r.failure() && r.failure().errorText;
  if (err !== "net::ERR_ABORTED") note(`request failed ${r.url()}: ${err}`);  // aborted = a download handed over
});

async function settle() {  // Streamlit finished running the script, and a rerun it asked for (st.rerun) too
  await page.waitForTimeout(500);
  for (let quiet = 0; quiet < 3;) {  // no script running for 3 checks in a row (1.5 s)
    await page.waitForFunction(() => !document.querySelector("[data-testid='stStatusWidget']"), null, { timeout: 300000 });
    await page.waitForTimeout(500);
    quiet = (await page.locator("[data-testid='stStatusWidget']").count()) ? 0 : quiet + 1;
  }
}

async function texts(selector) { return page.locator(selector).allInnerTexts(); }

async function collect(name, shot) {
  for (const t of await texts("[data-testid='stException']")) note("exception box: " + t.slice(0, 400));
  for (const t of await texts("[data-testid='stAlertContentError']")) note("error alert: " + t.slice(0, 400));
  current.success = await texts("[data-testid='stAlertContentSuccess']");
  current.metrics = await texts("[data-testid='stMetric']");
  if (shot) await page.screenshot({ path: path.join(artifacts, shot) });
}

async function visit(name, action, shot = null) {
  current = { name, errors: [] };
  out.views.push(current);
  await action();
  await settle();
  await collect(name, shot);
  console.error(`[records] ${name}: ${current.errors.length} error(s); success: ${JSON.stringify(current.success)}`);
}

try {
  // as a person would: the one map first (its first paint), then Records through the page list in the sidebar
  await page.goto(url, { waitUntil: "domcontentloaded" });
  await settle();
  const until = Date.now() + 120000;
  let map = null;
  while (!map && Date.now() < until) {
    map = page.frames().find((f) => f.url().includes("deckmap")) || null;
    if (!map) await page.waitForTimeout(300);
  }
  if (map) await map.waitForFunction(() => window.__deckmap && window.__deckmap.firstPaint !== null, null, { timeout: 120000 });
  await visit("records", () => page.locator("[data-testid='stSidebarNav'] a", { hasText: "Records" }).click(),
    "records_1080.png");
  out.records_title = (await texts("h1")).join(" | ");
  // one change: the form's defaults (a person moves into the community's first dwelling) + a reason
  await visit("records_one_change", async () => {
    await page.getByLabel("Reason 原因").first().fill("browser test 浏览器测试");
    await page.getByRole("button", { name: /Commit change/ }).click();
  }, "records_one_change.png");
  // the bulk path: download the residents, flip one flag, upload, review, apply
  await visit("records_bulk", () => page.getByRole("tab", { name: /Bulk/ }).click());
  await page.locator("[data-testid='stRadio'] label").filter({ hasText: /^csv$/ }).click();
  await settle();
  await page.getByRole("button", { name: /Download .* residents \(CSV\)/ }).waitFor({ timeout: 60000 });
  const [download] = await Promise.all([page.waitForEvent("download"),
    page.getByRole("button", { name: /Download .* residents \(CSV\)/ }).click()]);
  const csvPath = path.join(artifacts, "records_download.csv");
  await download.saveAs(csvPath);
  const raw = fs.readFileSync(csvPath, "utf8");
  out.download_bom = raw.charCodeAt(0) === 0xfeff;
  const lines = raw.replace(/^\ufeff/, "").split("\r\n");
  const head = lines[0].split(",");
  const cells = lines[1].split(",");
  const i = head.indexOf("low_income");
  cells[i] = cells[i] === "TRUE" ? "FALSE" : "TRUE";
  lines[1] = cells.join(",");
  out.edited_person = cells[0];
  const edited = path.join(artifacts, "records_upload.csv");
  fs.writeFileSync(edited, "\ufeff" + lines.join("\r\n"));
  await visit("records_diff", () => page.locator("[data-testid='stFileUploaderDropzoneInput']").setInputFiles(edited),
    "records_bulk_1080.png");
  out.diff_metrics = current.metrics;
  await visit("records_apply", async () => {
    await page.getByLabel("Reason 原因").last().fill("monthly update 月度更新");
    await page.getByText(/I reviewed the/).click();
    await page.getByRole("button", { name: /Apply as one change set/ }).click();
  }, "records_apply.png");
  // services: the month's counts, identify the list, move one person to "notified"
  await visit("services", () => page.locator("[data-testid='stSidebarNav'] a", { hasText: "Services" }).click(),
    "services_1080.png");
  out.services_title = (await texts("h1")).join(" | ");
  out.services_metrics = current.metrics;
  const identify = page.getByRole("button", { name: /Identify \d+ new/ });
  out.identify_label = await identify.innerText();
  if (await identify.isEnabled()) {
    await visit("services_identify", () => identify.click());
    const grid = page.locator("[data-testid='stDataFrame']").last();
    const gb = await grid.boundingBox();
    await visit("services_pick", () => page.mouse.click(gb.x + 12, gb.y + 36 + 17));
    out.next_buttons = await page.getByRole("button", { name: /^→/ }).allInnerTexts();
    await visit("services_status", () => page.getByRole("button", { name: /^→/ }).first().click(), "services_status.png");
  }
} catch (e) {
  out.error = String(e && e.stack || e);
  try { await page.screenshot({ path: path.join(artifacts, "records_failure.png") }); } catch (_) { /* closed */ }
}
await context.close();
fs.rmSync(userDir, { recursive: true, force: true });
console.log("RESULT " + JSON.stringify(out));
