"""Record changes and services due on the one map (issues 12, 14), on the small twin: a change set committed in a
temp store is in the live feed's next layers at its building's point; the services-due choropleth's per-grid
values are the sums of :func:`twin.services.counts_by_grid`."""

from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import twin  # noqa: E402
from apps.live_feed import LiveFeed  # noqa: E402
from layers import changes as change_layers  # noqa: E402
from twin.live.changes import BusinessMoves, PersonMovesOut  # noqa: E402
from twin.live.state import LiveTwin  # noqa: E402
from twin.services import counts_by_grid, run_services  # noqa: E402
from twin.store.sql import open_store  # noqa: E402


def _layers(feed: LiveFeed) -> dict[str, dict]:
    head = json.loads(feed.path.read_text())
    raw = json.loads((feed.path.parent / Path(head["layers_ref"]).name).read_text())
    return {k: json.loads(v) for k, v in raw.items()}, head


def test_a_committed_change_is_on_the_map_at_its_building(small_twin: twin.Twin, tmp_path: Path) -> None:
    t = small_twin
    db = tmp_path / "state.sqlite"
    (tmp_path / "layers").mkdir()
    feed = LiveFeed(url=str(db), path=tmp_path / "layers" / "live-t.json", ref="layers/live-t.json", base=t,
                    residents=1, key_persons=1)
    feed.tick()
    layers, _ = _layers(feed)
    assert not set(change_layers.LAYER_IDS) & set(layers)  # no change committed yet: no change layers
    lt = LiveTwin(t, open_store(db))
    b = t.businesses.iloc[0]
    target = t.buildings.loc[t.buildings["building_id"] != b["building_id"]].iloc[3]
    p = t.persons.iloc[10]  # a removal: its row is gone, the point comes from the base frames
    lt.apply([BusinessMoves(effective_date=dt.date.today(), author="test", reason="feed test",
                            business_id=int(b["business_id"]), building_id=int(target["building_id"])),
              PersonMovesOut(effective_date=dt.date.today(), author="test", reason="feed test",
                             person_id=int(p["person_id"]))], role="community")
    feed.tick()
    layers, head = _layers(feed)
    dots = {d["kind"]: d for d in layers["changes"]["data"]}
    assert set(dots) == {"business.moves", "person.moves_out"}
    biz = dots["business.moves"]
    assert (biz["lng"], biz["lat"]) == pytest.approx((float(target["lng"]), float(target["lat"])))
    assert biz["role"] == "community" and biz["family"] == "businesses"
    home = t.buildings.loc[t.buildings["building_id"] == p["building_id"]].iloc[0]
    assert (dots["person.moves_out"]["lng"], dots["person.moves_out"]["lat"]) == pytest.approx(
        (float(home["lng"]), float(home["lat"])))
    assert len(layers["changes-new"]["data"]) == 2  # just committed: both haloed
    assert sum(d["n"] for d in layers["changes-agg"]["data"]) == 2
    assert any(lg["layers"] == list(change_layers.LAYER_IDS) for lg in head["legends"])


def test_services_due_values_are_counts_by_grid(small_twin: twin.Twin, tmp_path: Path) -> None:
    t = small_twin
    lt = LiveTwin(t, open_store(tmp_path / "state.sqlite"))
    month = f"{dt.date.today():%Y-%m}"
    counts = counts_by_grid(run_services(lt, month), t)
    codes = t.grids["grid_code"].astype(str).tolist()
    vals = change_layers.services_due_values(counts, codes)
    expect = counts.drop(columns="in_scope").sum(axis=1).reindex(codes).to_numpy(dtype=float)
    assert vals.sum() > 0 and np.array_equal(vals, expect)
    (lid, js), legend = change_layers.services_due_layer(t.grids, counts, month)
    assert lid == "grid-metric" and month in legend["title"]
    shown = {f["properties"]["grid_code"]: f["properties"]["value"] for f in json.loads(js)["data"]["features"]}
    assert shown == {c: f"{v:,.0f}" if v >= 10 else f"{v:,.2f}" for c, v in zip(codes, expect, strict=True)}
