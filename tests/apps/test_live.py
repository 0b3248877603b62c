"""The command-centre screen is live: an incident reported over HTTP (``twin serve`` on a free loopback port, the same
store as the app) appears on an open, untouched ``/?screen=1`` within 5 s (asserted; time printed), with its KPI and alarm; the screen has no
Streamlit chrome and text ≥ 18 px at 1920×1080, and also renders at 3840×2160 (tests/apps/browser/live_flow.mjs).
Screenshots go to tests/artifacts/ (screen_1080.png, screen_live_1080.png, screen_2160.png)."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from test_browser import ARTIFACTS, _free_port, _skip_reason  # noqa: E402

import twin  # noqa: E402
from twin.access.auth import add_user  # noqa: E402
from twin.incidents.catalogue import load_catalogue  # noqa: E402
from twin.incidents.lifecycle import CST  # noqa: E402
from twin.incidents.store import IncidentStore  # noqa: E402
from twin.incidents.synth import seed_incidents  # noqa: E402
from twin.store.sql import Store, open_store  # noqa: E402

pytestmark = pytest.mark.browser
BIN = Path(sys.executable).parent


def _wait(url: str, proc: subprocess.Popen, what: str, log: Path, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"{what} exited ({proc.returncode}); see {log}")
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"{what} did not answer {url} within {timeout:.0f} s; see {log}")


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    reason = _skip_reason()
    if reason:
        print(f"SKIP browser test: {reason}")
        pytest.skip(reason)
    t = twin.load()
    db = tmp_path_factory.mktemp("live-state") / "state.sqlite"
    seed_incidents(IncidentStore(open_store(db)), t, load_catalogue(), end=dt.datetime(2026, 11, 1, tzinfo=CST),
                   seed=20231)
    key = add_user(Store(str(db)), "screen-test", "district")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    app_port, api_port = _free_port(), _free_port()
    env = dict(os.environ, TWIN_DATABASE_URL=str(db), TWIN_APP_TIMING="1")
    procs, logs = [], []
    for name, cmd in (
        ("streamlit", [str(BIN / "streamlit"), "run", "apps/streamlit_app.py", "--server.headless", "true",
                       "--server.port", str(app_port), "--browser.gatherUsageStats", "false"]),
        ("twin serve", [str(BIN / "twin"), "serve", "--host", "127.0.0.1", "--port", str(api_port),
                        "--database-url", str(db)]),
    ):
        log = open(ARTIFACTS / f"live_{name.replace(' ', '_')}.log", "w")
        logs.append(log)
        procs.append(subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=env))
    try:
        _wait(f"http://localhost:{app_port}/_stcore/health", procs[0], "streamlit", ARTIFACTS / "live_streamlit.log")
        _wait(f"http://127.0.0.1:{api_port}/health", procs[1], "twin serve", ARTIFACTS / "live_twin_serve.log")
        b = t.buildings.iloc[len(t.buildings) // 3]
        yield {"app": f"http://localhost:{app_port}", "api": f"http://127.0.0.1:{api_port}", "key": key,
               "point": (float(b["lng"]), float(b["lat"]))}
    finally:
        for p in procs:
            p.terminate()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        for log in logs:
            log.close()


def _flow(cmd: list[str]) -> dict:
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)
    print(res.stderr[-3000:])
    lines = [ln for ln in res.stdout.splitlines() if ln.startswith("RESULT ")]
    assert lines, f"live flow printed no result (exit {res.returncode}):\n{res.stderr[-4000:]}"
    return json.loads(lines[-1][len("RESULT "):])


def test_screen_shows_an_http_report_untouched(servers):
    lng, lat = servers["point"]
    cmd = ["node", str(ROOT / "tests" / "apps" / "browser" / "live_flow.mjs"), servers["app"], str(ARTIFACTS),
           servers["api"], servers["key"], str(lng), str(lat)]
    out = _flow(cmd)
    out_4k = _flow([*cmd, "2160"])  # a fresh browser at 3840×2160
    out["view_2160"], out["first_paint_2160_ms"] = out_4k.get("view_2160"), out_4k.get("first_paint_2160_ms")
    out["dot_px_resized_1080"] = out_4k.get("dot_px_resized_1080")
    out["shots"] += out_4k["shots"]
    assert out_4k["error"] is None and out_4k["errors"] == [], (out_4k["error"], out_4k["errors"])
    assert out["error"] is None, out["error"]
    assert out["errors"] == [], out["errors"]
    print(f"\nreport → on screen: {out['report_to_screen_ms']} ms (request → on screen {out['request_to_screen_ms']} ms, "
          f"drawn {out['drawn_ms']} ms); first paint {out['first_paint_ms']} ms (2160p {out.get('first_paint_2160_ms')} ms); "
          f"min font {out['min_font_px']} px; POST {out.get('http_ms')} ms; feed polls {out.get('feed')}; "
          f"frames: map {out.get('map_frames')}, live {out.get('live_frames')}; browser trace {out.get('trace')}")
    # it arrives untouched within 5 s (issue 14's rule for a command-centre screen): the live feed reads the store
    # every second and the screen polls it every second, so ≈ 1–2.5 s is expected here
    assert out["report_to_screen_ms"] is not None and 0 < out["report_to_screen_ms"] <= 5000, out
    # only the live layers were redrawn for it: the screen draws them on their own deck above the map, so a new case
    # costs a frame of a few hundred points, not a frame of the whole city (≈ 2 s in software WebGL, which took a
    # CI run to 5,004 ms)
    assert out["live_frames"] >= 1 and out["map_frames"] == 0, (out["live_frames"], out["map_frames"])
    # its numbers and alarm moved with it: open +1, a level-4 (district) case is an alarm, it is haloed as new
    assert int(out["kpi_open_after"].replace(",", "")) == int(out["kpi_open_before"].replace(",", "")) + 1, out
    assert out["incident_level"] in ("town", "district") and out["alarm_shown"], out
    assert out["new_halo"], out
    # a wall screen: no chrome, the map is the whole window, text >= 18 px at 1080p
    for view, (w, h) in (("view_1080", (1920, 1080)), ("view_2160", (3840, 2160))):
        box = out[view]["map_box"]
        assert box["width"] >= w - 2 and box["height"] >= h - 2, (view, box)
        assert not any(v is True for v in out[view]["chrome"].values()), out[view]["chrome"]
    assert out["view_1080"]["chrome"]["title"] != "streamlit app"
    assert out["min_font_px"] >= 18, out["min_font_px"]
    assert out["view_2160"]["min_font_px"] >= 36, out["view_2160"]["min_font_px"]
    for view in ("view_1080", "view_2160"):  # the legend's check boxes are as large as its text
        assert out[view]["checkbox_px"] >= 0.8 * out[view]["min_font_px"], (view, out[view])
    # the map's symbols follow the text: an incident dot's least radius (pixels) doubles on the 4K wall
    assert out["view_1080"]["dot_px"] and out["view_2160"]["dot_px"] == 2 * out["view_1080"]["dot_px"], \
        (out["view_1080"]["dot_px"], out["view_2160"]["dot_px"])
    # ... and back when the wall's window is resized to 1080p, without a reload
    assert out["dot_px_resized_1080"] == out["view_1080"]["dot_px"], (out["dot_px_resized_1080"], out["view_1080"])
    for shot in out["shots"]:
        assert (ARTIFACTS / shot).stat().st_size > 20_000
