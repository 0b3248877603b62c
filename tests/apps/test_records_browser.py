"""The Records (台账) and Services (无感服务) pages in a real browser (tests/apps/browser/records_flow.mjs) against the
app on its own store: no exception box, no error alert, no page/console error or failed request on any view; a
change committed from the form, the bulk path (download CSV with BOM → flip one flag → upload → diff → apply) and
a status move on the work list all reach the store. Screenshots go to tests/artifacts/."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(Path(__file__).parent))

from test_browser import ARTIFACTS, _free_port, _run_flow, _skip_reason  # noqa: E402

from twin.store.sql import open_store  # noqa: E402

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def records_app(tmp_path_factory):
    reason = _skip_reason()
    if reason:
        print(f"SKIP browser test: {reason}")
        pytest.skip(reason)
    db = tmp_path_factory.mktemp("records-app") / "state.sqlite"  # never the default twin's store
    port = _free_port()
    env = dict(os.environ, TWIN_DATABASE_URL=str(db))
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    log = open(ARTIFACTS / "streamlit_records.log", "w")
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
        pytest.fail(f"streamlit did not start on {url}; see {ARTIFACTS / 'streamlit_records.log'}")
    yield url, str(db)
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


def test_records_and_services_pages_in_browser(records_app):
    url, db = records_app
    out = _run_flow(url, "records_flow.mjs")
    print(out["_stderr"][-3000:])
    assert out["error"] is None, out["error"]
    names = [v["name"] for v in out["views"]]
    assert names == ["records", "records_one_change", "records_bulk", "records_diff", "records_apply", "services",
                     "services_identify", "services_pick", "services_status"], names
    for view in out["views"]:
        assert view["errors"] == [], (view["name"], view["errors"])
    views = {v["name"]: v for v in out["views"]}
    assert "台账" in out["records_title"] and "无感服务" in out["services_title"]
    assert any(s.startswith("Committed change set 1 ") for s in views["records_one_change"]["success"])
    assert out["download_bom"] is True
    assert [m.split("\n")[-1] for m in out["diff_metrics"][1:]] == ["0", "0", "1", "0"]  # added, removed, changed, issues
    assert any(s.startswith("Committed change set 2 ") for s in views["records_apply"]["success"])
    assert any("→ notified" in s for s in views["services_status"]["success"]), views["services_status"]
    st = open_store(db)
    events = st.query("SELECT set_id, kind, author FROM live_events ORDER BY seq")
    assert [(int(s), k) for s, k, _ in events] == [(1, "person.moves_in"), (2, "person.flag")]
    assert {a for _, _, a in events} == {"wang.community"}
    moved = st.query("SELECT to_status, actor FROM service_status_log WHERE to_status = 'notified'")
    assert moved == [("notified", "wang.community")]
