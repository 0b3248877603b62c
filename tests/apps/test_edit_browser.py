"""Edit mode's brush in a real browser (tests/apps/browser/edit_brush.mjs): pick a grid, paint two strokes of cells
with the mouse (a click, then a drag), see the live balance box and the panel's preview, commit → exactly one new version equal to
``apply_edit(EditOp("move_cells", …))``. Prints the measured paint → panel times. Uses its own temporary state store.
Skips (with the reason printed) only when Chromium, node or playwright-core is missing."""

from __future__ import annotations

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
from twin.partition import versions  # noqa: E402
from twin.partition.edit_ops import EditOp, apply_edit  # noqa: E402
from twin.store.sql import open_store  # noqa: E402

pytestmark = pytest.mark.browser
ARTIFACTS = ROOT / "tests" / "artifacts"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
GRID = "440604010004002"


def _skip_reason() -> str | None:
    if not Path(CHROMIUM).exists():
        return f"no Chromium at {CHROMIUM} (apt-get install chromium; make test does)"
    if shutil.which("node") is None:
        return "node is not installed"
    for pkg in ("playwright-core", "deck.gl", "h3-js"):
        if not (ROOT / "node_modules" / pkg).exists():
            return f"node_modules/{pkg} missing (run `npm ci`; make test does)"
    return None


@pytest.fixture(scope="module")
def edit_app(tmp_path_factory):
    reason = _skip_reason()
    if reason:
        print(f"SKIP browser test: {reason}")
        pytest.skip(reason)
    db = tmp_path_factory.mktemp("edit-state") / "state.sqlite"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    log = open(ARTIFACTS / "streamlit_edit.log", "w")
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "streamlit"), "run", "apps/streamlit_app.py", "--server.headless", "true",
         "--server.port", str(port), "--browser.gatherUsageStats", "false"],
        cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ, TWIN_DATABASE_URL=str(db)))
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
        pytest.fail(f"streamlit did not start on {url}; see {ARTIFACTS / 'streamlit_edit.log'}")
    yield url, str(db)
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


def test_brush_paints_cells_with_the_mouse_and_commits_one_version(edit_app):
    url, db = edit_app
    cmd = ["node", str(ROOT / "tests" / "apps" / "browser" / "edit_brush.mjs"), url, str(ARTIFACTS), GRID]
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)
    lines = [ln for ln in res.stdout.splitlines() if ln.startswith("RESULT ")]
    if not lines:
        if "Failed to launch" in res.stderr or "browserType.launch" in res.stderr:
            pytest.skip("Chromium could not start:\n" + res.stderr[-2000:])
        pytest.fail(f"edit_brush.mjs printed no result (exit {res.returncode}):\n{res.stderr[-4000:]}")
    out = json.loads(lines[-1][len("RESULT "):])
    print(res.stderr[-3000:])
    assert out["error"] is None, out["error"]
    assert out["errors"] == [], out["errors"]
    print(f"\nstroke → panel preview: {out['stroke1_to_panel_ms']} ms, {out['stroke2_to_panel_ms']} ms; "
          f"live box during the drag: {out['move_to_live_ms']} ms after the mouse moves began")
    # the live box named the target and the source grid with their deviation before → now
    live = out["live_box_text"]
    assert out["plan"]["target"] in live and out["plan"]["source"] in live and "→" in live
    # the panel's preview and the map: both strokes painted, the preview and the painted cells drawn
    assert sorted(out["painted"]) == sorted(out["plan"]["cells"])
    assert "edit-preview" in out["layer_ids"] and "edit-brush" in out["layer_ids"]
    assert f"Preview: paint {len(out['painted'])} cell(s) into {out['plan']['target']}" in out["panel_text"]
    # committed as ONE version equal to the one edit dispatch's move_cells
    t = twin.load()
    store = open_store(db)
    assert [v.version for v in versions.list_versions(store)] == [1, 2, 3, 4]  # commit, undo, redo
    assert versions.version_info(store, 2).author == "browser"
    p1 = versions.load_partition(store, t, 1)
    expected = apply_edit(p1, EditOp("move_cells", cells=out["painted"], to_grid=GRID)).partition
    assert versions.load_partition(store, t, 2).assignment_equals(expected)
    # ↶ Undo went back to the base, ↷ Redo restored the painting (the buttons in the version bar)
    assert versions.load_partition(store, t, 3).assignment_equals(p1)
    assert versions.load_partition(store, t, 4).assignment_equals(expected)
    assert "version 4 is now the head" in out["undo_redo_text"]
    # the visual diff of versions 3 → 4 is on the map and names the changed grids
    assert "edit-diff" in out["diff_layer_ids"], out["diff_layer_ids"]
    assert any("Version 3 → 4" in x for x in out["diff_text"] or []), out["diff_text"]
    assert (ARTIFACTS / "edit_brush.png").stat().st_size > 50_000
    assert (ARTIFACTS / "edit_diff.png").stat().st_size > 50_000
