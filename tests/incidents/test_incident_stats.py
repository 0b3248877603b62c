"""Statistics on a small hand-built history with known answers; the per-grid workload hook; the synthetic history."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd
import pytest

from twin.errors import ValidationError
from twin.incidents.catalogue import load_catalogue
from twin.incidents.lifecycle import CST, overdue_mask
from twin.incidents.stats import incident_stats, incidents_per_grid, period_bounds
from twin.incidents.store import IncidentStore
from twin.incidents.synth import synthesize_incidents
from twin.store.sql import Store


def _t(s: str | None) -> pd.Timestamp | None:
    return None if s is None else pd.Timestamp(s).tz_localize(CST)


# id, grid, community, state, reported, resolved, deadline, satisfaction, answered at once
HISTORY = [
    (1, "A", "C1", "followed_up", "2026-10-05 09:00", "2026-10-05 11:00", "2026-10-06 09:00", 5, True),
    (2, "A", "C1", "followed_up", "2026-10-10 09:00", "2026-10-12 09:00", "2026-10-11 09:00", 3, False),
    (3, "A", "C1", "in_progress", "2026-11-02 09:00", None, "2026-11-03 09:00", None, True),
    (4, "B", "C2", "resolved", "2026-10-20 09:00", "2026-10-20 13:00", "2026-10-21 09:00", None, True),
    (5, "B", "C2", "followed_up", "2026-11-01 09:00", "2026-11-01 15:00", "2026-11-02 09:00", 4, True),
    (6, "B", "C2", "reported", "2026-11-03 09:00", None, None, None, False),
]
NOW = "2026-11-04T09:00:00"


@pytest.fixture()
def history() -> pd.DataFrame:
    rows = []
    for i, g, c, state, rep, res, dl, sat, ans in HISTORY:
        rows.append({"id": i, "grid_code": g, "community_code": c, "town_code": "T1", "state": state,
                     "reported_at": _t(rep), "resolved_at": _t(res), "deadline": _t(dl),
                     "satisfaction": sat, "answered_at_once": ans})
    df = pd.DataFrame(rows)
    for col in ("reported_at", "resolved_at", "deadline"):
        df[col] = pd.to_datetime(df[col])
    df["satisfaction"] = df["satisfaction"].astype("Float64")
    return df


def test_district_figures(history):
    s = incident_stats(history, now=NOW).loc["440604"]
    assert (s["n"], s["closed"], s["followed_up"], s["overdue_open"]) == (6, 4, 3, 1)
    assert s["closure_rate"] == pytest.approx(4 / 6)
    assert s["on_time_rate"] == pytest.approx(3 / 4)
    assert s["median_handling_h"] == pytest.approx(5.0)  # median of 2, 48, 4, 6 hours
    assert s["satisfaction_rate"] == pytest.approx(2 / 3)
    assert s["mean_satisfaction"] == pytest.approx(4.0)
    assert s["immediate_answer_rate"] == pytest.approx(4 / 6)


def test_by_grid_and_community(history):
    g = incident_stats(history, by="grid", now=NOW)
    assert g.loc["A", ["n", "closed", "overdue_open"]].tolist() == [3, 2, 1]
    assert g.loc["A", "on_time_rate"] == pytest.approx(0.5) and g.loc["A", "median_handling_h"] == pytest.approx(25)
    assert g.loc["A", "satisfaction_rate"] == pytest.approx(0.5)
    assert g.loc["B", "on_time_rate"] == pytest.approx(1.0) and g.loc["B", "median_handling_h"] == pytest.approx(5)
    assert g.loc["B", "satisfaction_rate"] == pytest.approx(1.0) and g.loc["B", "overdue_open"] == 0
    c = incident_stats(history, by="community")
    assert c.index.tolist() == ["C1", "C2"] and "overdue_open" not in c
    assert incident_stats(history, by="town").loc["T1", "n"] == 6


def test_by_month(history):
    m = incident_stats(history, period="M")
    oct_, nov = m.loc[("440604", pd.Period("2026-10", "M"))], m.loc[("440604", pd.Period("2026-11", "M"))]
    assert (oct_["n"], oct_["closed"], nov["n"], nov["closed"]) == (3, 3, 3, 1)
    assert oct_["on_time_rate"] == pytest.approx(2 / 3) and oct_["median_handling_h"] == pytest.approx(4)
    assert nov["closure_rate"] == pytest.approx(1 / 3) and nov["median_handling_h"] == pytest.approx(6)


def test_empty_denominators_are_nan(history):
    g = incident_stats(history[history["id"].isin([3, 6])], by="grid")
    assert math.isnan(g.loc["A", "on_time_rate"]) and math.isnan(g.loc["B", "satisfaction_rate"])
    assert g.loc["A", "closure_rate"] == 0.0


def test_bad_arguments(history):
    with pytest.raises(ValidationError, match="by="):
        incident_stats(history, by="province")
    with pytest.raises(ValidationError, match="period"):
        incident_stats(history, period="fortnight")
    with pytest.raises(ValidationError, match="period"):
        period_bounds("last week")
    a, b = period_bounds("2026-11")
    assert (a.isoformat(), b.isoformat()) == ("2026-11-01T00:00:00+08:00", "2026-12-01T00:00:00+08:00")


def test_overdue_mask_agrees(history):
    assert overdue_mask(history, NOW).tolist() == [False, True, True, False, False, False]


def test_stats_through_the_store(tmp_path, history):
    istore = IncidentStore(Store(tmp_path / "s.sqlite"))
    frame = history.drop(columns="id").assign(category="env_garbage", lng=113.1, lat=23.0, channel="online",
                                              severity=1, level="grid")
    istore.add_many(frame)
    back = istore.frame()
    pd.testing.assert_frame_equal(incident_stats(back, by="grid", now=NOW), incident_stats(history, by="grid", now=NOW))


def test_incidents_per_grid_follows_the_partition(tmp_path, default_twin):
    t = default_twin
    istore = IncidentStore(Store(tmp_path / "s.sqlite"))
    b = t.buildings.iloc[[10, 10, 20000]]
    frame = pd.DataFrame({"category": "env_garbage", "lng": b["lng"].to_numpy(), "lat": b["lat"].to_numpy(),
                          "reported_at": ["2026-10-05T09:00", "2026-11-05T09:00", "2026-10-06T09:00"],
                          "channel": "online", "severity": 1, "cell": b["cell"].to_numpy().astype(np.int64)})
    istore.add_many(frame)
    per = incidents_per_grid(istore, t, "2026-10")
    g0, g1 = str(b["grid_code"].iloc[0]), str(b["grid_code"].iloc[2])
    assert len(per) == len(t.grids) and per.sum() == 2 and per[g0] == 1 and per[g1] == 1
    assert incidents_per_grid(istore.store, t).loc[g0] == 2  # all time; a plain Store works too
    # an edited partition: move the first building's cell to g1 → its incident follows
    cells = t.cells.copy()
    cells.loc[cells["cell"] == b["cell"].iloc[0], "grid_code"] = g1
    edited = dataclasses.replace(t, cells=cells)
    per2 = incidents_per_grid(istore, edited, ("2026-10-01", "2026-11-01"))
    assert per2[g0] == 0 and per2[g1] == 2


def test_synthetic_history_is_calibrated(default_twin):
    cat = load_catalogue()
    inc, tr = synthesize_incidents(default_twin, cat, n=6000, end="2026-11-01", seed=3)
    again, _ = synthesize_incidents(default_twin, cat, n=6000, end="2026-11-01", seed=3)
    pd.testing.assert_frame_equal(inc, again)  # seeded
    assert inc["synthetic"].all() and inc["reported_at"].min() >= pd.Timestamp("2025-11-01", tz=CST)
    assert inc["reported_at"].max() < pd.Timestamp("2026-11-01", tz=CST)
    assert (inc["grid_code"] != "").all()
    s = incident_stats(inc.assign(satisfaction=inc["satisfaction"].astype("Float64"))).iloc[0]
    assert 0.98 <= s["closure_rate"] <= 0.995
    assert 0.91 <= s["immediate_answer_rate"] <= 0.945
    assert 0.99 <= s["satisfaction_rate"] <= 1.0
    assert set(inc["channel"]) == {"grid_worker", "hotline_12345", "online", "camera_sensor"}
    # the audit trail replays to each incident's final state
    last = tr.groupby("row")["to_state"].last()
    assert (last.to_numpy() == inc["state"].to_numpy()).all()
    prev = tr.groupby("row")["to_state"].shift(1).fillna("")
    assert (prev == tr["from_state"]).all()  # each step starts where the previous one ended …
    assert (tr.groupby("row")["at"].diff().dropna() >= pd.Timedelta(0)).all()  # … and time never goes back
    assert {"escalate", "reopen"} <= set(tr["action"])
