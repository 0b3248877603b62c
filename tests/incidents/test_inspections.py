"""Credit-based monthly inspection plans: exact visit counts per colour, balance across days and workers."""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from twin.errors import ValidationError
from twin.incidents.inspections import DEFAULT_FREQUENCY, inspection_plan, plan_summary, working_days, write_plan_csv


@pytest.fixture()
def tiny():
    """One grid with two workers, a second grid with one; 10 green, 5 yellow, 3 red + 2 green elsewhere."""
    buildings = pd.DataFrame({"building_id": [1, 2, 3], "grid_code": ["G1", "G1", "G2"],
                              "lng": [113.1, 113.11, 113.12], "lat": [23.0, 23.01, 23.02]})
    credit = ["green"] * 10 + ["yellow"] * 5 + ["red"] * 3 + ["green"] * 2
    businesses = pd.DataFrame({"business_id": range(20), "building_id": [1] * 9 + [2] * 9 + [3] * 2,
                               "credit": pd.Categorical(credit)})
    workers = pd.DataFrame({"worker_id": ["W1", "W2", "W3"], "grid_code": ["G1", "G1", "G2"]})
    return SimpleNamespace(buildings=buildings, businesses=businesses, workers=workers)


def test_working_days():
    nov = working_days("2026-11")
    assert len(nov) == 21 and nov[0] == dt.date(2026, 11, 2) and all(d.weekday() < 5 for d in nov)
    assert len(working_days("2026-11", holidays=["2026-11-02", dt.date(2026, 11, 3)])) == 19
    with pytest.raises(ValidationError, match="2026-11"):
        working_days("November")


def test_exact_counts_per_colour(tiny):
    plan = inspection_plan(tiny, "2026-11")
    per_business = plan.groupby("business_id").size()
    expected = tiny.businesses.set_index("business_id")["credit"].astype(str).map(DEFAULT_FREQUENCY)
    pd.testing.assert_series_equal(per_business, expected, check_names=False)
    assert plan.groupby("credit").size().to_dict() == {"green": 12, "yellow": 10, "red": 12}
    assert (plan["visits_in_month"] == plan["credit"].map(DEFAULT_FREQUENCY)).all()
    # visits of one business fall on distinct days, numbered 1..f in date order
    for _, g in plan.groupby("business_id"):
        assert g["date"].is_unique and g.sort_values("date")["visit"].tolist() == list(range(1, len(g) + 1))


def test_balanced_across_days_and_workers(tiny):
    plan = inspection_plan(tiny, "2026-11")
    days = set(working_days("2026-11"))
    assert set(plan["date"]) <= days
    s = plan_summary(plan)
    assert (s["max_per_day"] - s["min_per_day"] <= 1).all()
    assert s.loc["W3", "visits"] == 2 and s.loc["W3", "businesses"] == 2  # grid G2's own worker
    g1 = s.loc[["W1", "W2"]]
    assert g1["businesses"].sum() == 18 and abs(g1["businesses"].diff().iloc[-1]) <= 1
    # red businesses (4 visits) are spread over the month, not bunched
    red = plan[plan["credit"] == "red"]
    for _, g in red.groupby("business_id"):
        gaps = np.diff(np.sort(pd.to_datetime(g["date"]).to_numpy())) / np.timedelta64(1, "D")
        assert gaps.min() >= 4


def test_configurable_frequency(tiny):
    plan = inspection_plan(tiny, "2026-11", frequency={"green": 0, "yellow": 3, "red": 5}, holidays=["2026-11-02"])
    assert plan.groupby("credit").size().to_dict() == {"yellow": 15, "red": 15}
    assert dt.date(2026, 11, 2) not in set(plan["date"])


@pytest.mark.parametrize("freq,match", [
    ({"green": 1, "yellow": 2}, "no inspection frequency"),
    ({"green": 1, "yellow": 2, "red": 40}, "0–21"),
    ({"green": -1, "yellow": 2, "red": 4}, "integer"),
])
def test_bad_frequency(tiny, freq, match):
    with pytest.raises(ValidationError, match=match):
        inspection_plan(tiny, "2026-11", frequency=freq)


def test_grid_without_worker_is_an_error(tiny):
    tiny.workers = tiny.workers[tiny.workers["grid_code"] != "G2"]
    with pytest.raises(ValidationError, match="G2"):
        inspection_plan(tiny, "2026-11")


def test_default_twin_plan(default_twin, tmp_path):
    t = default_twin
    plan = inspection_plan(t, "2026-11")
    credit = t.businesses["credit"].astype(str).value_counts()
    assert len(plan) == credit["green"] + 2 * credit["yellow"] + 4 * credit["red"]
    assert plan["business_id"].nunique() == len(t.businesses)
    s = plan_summary(plan)
    assert (s["max_per_day"] - s["min_per_day"] <= 1).all()
    assert set(s.index) <= set(t.workers["worker_id"])
    # each business is visited by a worker of its own grid
    wg = t.workers.set_index("worker_id")["grid_code"]
    assert (plan["worker_id"].map(wg) == plan["grid_code"]).all()
    out = write_plan_csv(plan.head(100), tmp_path / "plan.csv")
    back = pd.read_csv(out, encoding="utf-8-sig", dtype={"grid_code": str, "worker_id": str})
    assert len(back) == 100 and list(back.columns) == list(plan.columns)
