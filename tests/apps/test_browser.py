"""The map app in a real browser: Debian Chromium driven by npm playwright-core (tests/apps/browser/app_flow.mjs).

Starts ``streamlit run apps/streamlit_app.py`` on a free port, draws a lasso with the mouse, checks the numbers the
summary panel shows equal ``twin.summarize_area`` for the polygon the browser sent, toggles a layer, opens a grid
dossier, zooms in for 3D buildings, and prints first-paint and draw→summary times. Screenshots go to
tests/artifacts/. Skips (with the reason printed) only when Chromium, node or playwright-core is missing.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import twin  # noqa: E402
from apps.panels import KEY_LABELS, TOTAL_LABELS, fmt_count  # noqa: E402
from twin.incidents.catalogue import load_catalogue  # noqa: E402
from twin.incidents.lifecycle import CST  # noqa: E402
from twin.incidents.store import IncidentStore  # noqa: E402
from twin.incidents.synth import seed_incidents  # noqa: E402
from twin.store.sql import open_store  # noqa: E402

pytestmark = pytest.mark.browser
ARTIFACTS = ROOT / "tests" / "artifacts"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")


def _skip_reason() -> str | None:
    if not Path(CHROMIUM).exists():
        return f"no Chromium at {CHROMIUM} (apt-get install chromium; .ci/run does)"
    if shutil.which("node") is None:
        return "node is not installed"
    if not (ROOT / "node_modules" / "playwright-core").exists():
        return "node_modules/playwright-core missing (run `npm ci`; make test does)"
    if not (ROOT / "node_modules" / "deck.gl").exists():
        return "node_modules/deck.gl missing (run `npm ci`; make test does)"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    reason = _skip_reason()
    if reason:
        print(f"SKIP browser test: {reason}")
        pytest.skip(reason)
    # the app's own store (never the default twin's): a synthetic incident history, as `make demo-state` seeds
    db = tmp_path_factory.mktemp("app-state") / "state.sqlite"
    seed_incidents(IncidentStore(open_store(db)), twin.load(), load_catalogue(),
                   end=dt.datetime(2026, 11, 1, tzinfo=CST), seed=20231)
    port = _free_port()
    env = dict(os.environ, TWIN_APP_TIMING="1", TWIN_DATABASE_URL=str(db))
    log = open(ARTIFACTS.mkdir(parents=True, exist_ok=True) or ARTIFACTS / "streamlit.log", "w")
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "streamlit"), "run", "apps/streamlit_app.py", "--server.headless", "true",
         "--server.port", str(port), "--browser.gatherUsageStats", "false"],
        cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://localhost:{port}"
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            urllib.request.urlopen(url + "/_stcore/health", timeout=2)
            break
        except OSError:
            time.sleep(0.3)
    else:
        proc.kill()
        pytest.fail(f"streamlit did not start on {url}; see {ARTIFACTS / 'streamlit.log'}")
    yield url
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


def _run_flow(url: str, script: str = "app_flow.mjs") -> dict:
    cmd = ["node", str(ROOT / "tests" / "apps" / "browser" / script), url, str(ARTIFACTS)]
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    lines = [ln for ln in res.stdout.splitlines() if ln.startswith("RESULT ")]
    if not lines:
        if "Failed to launch" in res.stderr or "browserType.launch" in res.stderr:
            print(f"SKIP browser test: Chromium could not start:\n{res.stderr[-2000:]}")
            pytest.skip("Chromium could not start (see printed log)")
        pytest.fail(f"browser flow printed no result (exit {res.returncode}):\n{res.stderr[-4000:]}")
    out = json.loads(lines[-1][len("RESULT "):])
    out["_stderr"] = res.stderr
    return out


def _script_runs_between(t0_ms: int, t1_ms: int) -> list[int]:
    """End times (epoch ms) of the app's script runs between two moments, from the ``[app]`` lines the app prints
    with ``TWIN_APP_TIMING`` (the browser and the server share this machine's clock)."""
    ends = []
    for line in (ARTIFACTS / "streamlit.log").read_text(errors="replace").splitlines():
        if line.startswith("[app] ") and " script run " in line:
            ts = int(line.split()[1])
            if t0_ms <= ts <= t1_ms:
                ends.append(ts)
    return ends


def test_map_draw_summary_dossier_in_browser(app_url):
    out = _run_flow(app_url)
    print(out["_stderr"][-3000:])
    assert out["error"] is None, out["error"]
    server = _script_runs_between(out["click_at"], out["dossier_at"])
    after_server = out["dossier_at"] - server[-1] if server else None
    print(f"\nfirst paint: {out['first_paint_ms']} ms; draw → summary visible: {out['draw_to_summary_ms']} ms; "
          f"draw → map settled: {out['draw_to_map_settled_ms']} ms ({out['draw_layer_updates']} layer updates); "
          f"click → dossier: {out['click_to_dossier_ms']} ms (click sent after {out['click_sent_ms']} ms; "
          f"{len(server)} script run(s) ending {[s - out['click_at'] for s in server]} ms after the click; dossier "
          f"on screen {after_server} ms after the server's answer; {out['click_layer_updates']} layer updates)")
    # a click that opens a dossier re-sets no layer; one rerun answers it (no fragment run first)
    assert out["click_layer_updates"] == 0
    assert len(server) == 1, server
    # the map and its layers
    for lid in ("district-fill", "boundary-town", "boundary-community", "boundary-grid", "labels-town"):
        assert lid in out["layer_ids"]
    assert any(i.startswith("hex-residents-") for i in out["layer_ids"])
    assert out["toggled"] == "cameras" and out["buildings_layer"]
    # the numbers shown equal the query engine's for the polygon the browser sent
    t = twin.load()
    s = twin.summarize_area(t, out["drawn"], by="grid")
    shown = out["metrics"]
    for key, label in {**TOTAL_LABELS, **KEY_LABELS}.items():
        assert shown[label] == fmt_count(s.totals[key]), (label, shown.get(label), s.totals[key])
    for colour in ("Green", "Yellow", "Red"):
        label = next(k for k in shown if colour in k)
        assert shown[label] == fmt_count(s.businesses_by_credit[colour.lower()])
    assert s.totals["residents"] > 0
    # the dossier names a real grid with its town, community, workers and neighbours
    name = out["dossier_heading"].split("·")[-1].strip()
    row = t.grids.loc[t.grids["grid_name"] == name]
    assert len(row) == 1, name
    text = out["dossier_text"]
    town = t.town(str(row.iloc[0]["town_code"]))["town_name"]
    assert town in text and "Grid workers" in text and "Neighbouring grids" in text
    for shot in ("01_map.png", "02_lasso_summary.png", "03_dossier.png", "04_buildings_3d.png"):
        assert (ARTIFACTS / shot).stat().st_size > 10_000


def test_every_page_and_mode_shows_no_error(app_url):
    """Explore, Edit, the Incidents page's queue / statistics / inspections and the command-centre screen: no exception
    box, no error alert, no deck.gl error in a map, no page or console error; every map on screen paints its layers;
    a queue row opens its incident; the screen shows no Streamlit chrome."""
    out = _run_flow(app_url, "pages_flow.mjs")
    print(out["_stderr"][-3000:])
    assert out["error"] is None, out["error"]
    names = [v["name"] for v in out["views"]]
    assert names == ["explore", "edit", "incidents_queue", "incidents_stats", "incidents_inspections", "screen"], names
    for view in out["views"]:
        assert view["errors"] == [], (view["name"], view["errors"])
    maps = {v["name"]: v["maps"] for v in out["views"]}
    assert maps["explore"] and "district-fill" in maps["explore"][0]
    assert any("incidents" in m and "incident-workers" in m for m in maps["incidents_queue"]), maps["incidents_queue"]
    assert any("inspections" in m for m in maps["incidents_inspections"]), maps["incidents_inspections"]
    assert any("incidents" in m and "workers" in m for m in maps["screen"]), maps["screen"]
    assert out["screen_chrome"] == [], out["screen_chrome"]
    assert out["incident_opened"].startswith("#"), out.get("incident_opened")
    assert "streamlit" not in out["title"].lower(), out["title"]
