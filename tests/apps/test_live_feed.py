"""The live feed (apps/live_feed.py) outside Streamlit: a tick writes the small head file and the layers file, an
incident committed by another connection (as ``twin serve`` does) is in the very next tick's layers and KPIs, and a
tick with nothing new rewrites only the head (same layers file, no rebuild)."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import twin  # noqa: E402
from apps.live_feed import LiveFeed, start_feed, stop_feeds  # noqa: E402
from twin.incidents.catalogue import load_catalogue  # noqa: E402
from twin.incidents.lifecycle import CST  # noqa: E402
from twin.incidents.store import IncidentStore, report_incident  # noqa: E402
from twin.incidents.synth import seed_incidents  # noqa: E402
from twin.store.sql import Store, open_store  # noqa: E402


@pytest.fixture(scope="module")
def t() -> twin.Twin:
    return twin.load()


def _feed(t: twin.Twin, tmp: Path) -> tuple[LiveFeed, Path]:
    db = tmp / "state.sqlite"
    seed_incidents(IncidentStore(open_store(db)), t, load_catalogue(), n=300,
                   end=dt.datetime.now(CST) - dt.timedelta(hours=2), seed=5)
    out = tmp / "layers"
    out.mkdir()
    return LiveFeed(url=str(db), path=out / "live-test.json", ref="layers/live-test.json", base=t, residents=1,
                    key_persons=1), db


def test_a_new_incident_is_in_the_next_tick(t: twin.Twin, tmp_path: Path) -> None:
    feed, db = _feed(t, tmp_path)
    first = feed.tick()
    head = json.loads(feed.path.read_text())
    assert "layers" not in head and head["layers_ref"].startswith("layers/live-test-")
    layers = json.loads((feed.path.parent / Path(head["layers_ref"]).name).read_text())
    assert set(layers) == {"workers-agg", "workers", "incidents", "incidents-new"}
    n0 = first["n_open"]
    ids0 = {d["id"] for d in json.loads(layers["incidents"])["data"]}
    # nothing new: only the head moves; the layers file stays the same
    again = feed.tick()
    assert json.loads(feed.path.read_text())["layers_ref"] == head["layers_ref"] and again["n_open"] == n0
    # another connection (the HTTP service) reports an incident: the next tick has it, haloed as new, KPI + 1
    b = t.buildings.iloc[len(t.buildings) // 2]
    other = Store(db)
    inc, linked = report_incident(IncidentStore(other), t, load_catalogue(), actor="test", category="fire_blocked_exit",
                                  lng=float(b["lng"]), lat=float(b["lat"]), reported_at=dt.datetime.now(CST),
                                  channel="hotline_12345", severity=4, reporter="test", description="feed test")
    other.close()
    assert not linked and inc.id not in ids0
    after = feed.tick()
    head2 = json.loads(feed.path.read_text())
    assert head2["layers_ref"] != head["layers_ref"] and after["n_open"] == n0 + 1
    layers2 = json.loads((feed.path.parent / Path(head2["layers_ref"]).name).read_text())
    assert inc.id in {d["id"] for d in json.loads(layers2["incidents"])["data"]}
    assert inc.id in {d["id"] for d in json.loads(layers2["incidents-new"])["data"]}
    kpi = {k["key"]: k["value"] for k in head2["hud"]["kpis"]}
    assert int(kpi["open"].replace(",", "")) == n0 + 1
    assert head2["error"] is None and head2["seq"] == 3


def test_stop_feeds_ends_the_thread_then_removes_its_files(t: twin.Twin, tmp_path: Path) -> None:
    feed, _ = _feed(t, tmp_path)
    feed.tick()
    th = start_feed(feed)
    deadline = time.monotonic() + 10
    while feed.seq < 2 and time.monotonic() < deadline:  # the thread's own tick
        time.sleep(0.05)
    assert feed.seq >= 2 and th.is_alive()
    assert stop_feeds() == 1
    assert not th.is_alive()
    assert not list(feed.path.parent.glob("live-test*")), "a stopped feed leaves no files behind"
    assert stop_feeds() == 0


_EXITS = """
import atexit, sys, time
from pathlib import Path
sys.path.insert(0, {root!r})
state = {{}}
# registered before apps.live_feed's own hook, so it runs after it (atexit is last in, first out)
atexit.register(lambda: print("feed thread alive at exit:", state["th"].is_alive(), flush=True))
import twin
from apps.live_feed import LiveFeed, start_feed
out = Path({tmp!r})
feed = LiveFeed(url=str(out / "state.sqlite"), path=out / "live-exit.json", ref="layers/live-exit.json",
                base=twin.load(), residents=1, key_persons=1)
feed.tick()
state["th"] = start_feed(feed)
time.sleep(1.5)
"""


def test_a_process_that_ends_stops_its_feeds_first(tmp_path: Path) -> None:
    """The feed threads are stopped and joined by an atexit hook, before the interpreter finalizes."""
    script = textwrap.dedent(_EXITS.format(root=str(ROOT), tmp=str(tmp_path)))
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "feed thread alive at exit: False" in run.stdout
    assert not list(tmp_path.glob("live-exit*"))
