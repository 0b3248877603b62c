"""Workload and balance report (twin.partition.balance) on the default twin."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import twin
from twin.crs import to_metric
from twin.errors import ValidationError
from twin.model import ages_on
from twin.partition.balance import balance_report, grid_polygons
from twin.partition.model import partition_from_twin
from twin.partition.workload import cell_counts, cell_workload


@pytest.fixture(scope="module")
def t() -> twin.Twin:
    return twin.load()


@pytest.fixture(scope="module")
def report(t: twin.Twin):
    return balance_report(t, partition_from_twin(t))


def test_cell_counts_preserve_totals(t: twin.Twin) -> None:
    c = cell_counts(t)
    assert len(c) == len(t.cells)
    assert c["residents"].sum() == len(t.persons)
    assert c["dwellings"].sum() == len(t.dwellings)
    assert c["businesses"].sum() == len(t.businesses)
    p = t.persons
    key = p["disabled"] | p["low_income"] | p["pregnant"] | (ages_on(p["birth_date"].to_numpy(), t.as_of) >= 80)
    assert c["key_persons"].sum() == int(key.sum())
    assert c["incidents"].sum() == 0


def test_workload_weights_are_configurable(t: twin.Twin) -> None:
    c = cell_counts(t)
    only_res = cell_workload(t, weights={"residents": 1.0, "dwellings": 0, "businesses": 0, "key_persons": 0})
    assert np.allclose(only_res, c["residents"].to_numpy())
    default = cell_workload(t)
    expect = c["residents"] + 0.5 * c["dwellings"] + 2 * c["businesses"] + 5 * c["key_persons"]
    assert np.allclose(default, expect.to_numpy())
    with pytest.raises(ValidationError, match="unknown workload weight"):
        cell_workload(t, weights={"cats": 1.0})
    with pytest.raises(ValidationError, match="finite and ≥ 0"):
        cell_workload(t, weights={"residents": -1.0})


def test_incidents_hook(t: twin.Twin) -> None:
    cells = t.cells["cell"].to_numpy()
    inc = pd.DataFrame({"cell": np.concatenate([cells[:3], cells[:1]])})
    c = cell_counts(t, incidents=inc)
    assert c["incidents"].iloc[0] == 2 and c["incidents"].iloc[1] == 1 and c["incidents"].sum() == 4
    w0 = cell_workload(t)
    w1 = cell_workload(t, weights={"incidents": 3.0}, incidents=inc)
    assert np.isclose((w1 - w0).sum(), 12.0)
    by_point = cell_counts(t, incidents=t.cells[["lng", "lat"]].head(5))
    assert by_point["incidents"].sum() == 5
    with pytest.raises(ValidationError, match="'cell' column or 'lng'/'lat'"):
        cell_counts(t, incidents=pd.DataFrame({"x": [1]}))


def test_report_table_and_summary(t: twin.Twin, report) -> None:
    tab = report.table
    s = report.summary
    assert len(tab) == 451 and s["grids"] == 451 and s["unassigned_cells"] == 0
    assert np.isclose(tab["workload"].sum(), cell_workload(t).sum())
    # community-level ideal = community workload / number of its grids
    grp = tab.groupby("community_code")
    ideal = grp["workload"].transform("sum") / grp["grid_code"].transform("size")
    assert np.allclose(tab["ideal"], ideal)
    assert np.allclose(tab["deviation"], tab["workload"] / tab["ideal"] - 1)
    assert (tab["flagged"] == (tab["deviation"].abs() > 0.10)).all()
    assert s["flagged"] == int(tab["flagged"].sum())
    w = tab["workload"].to_numpy()
    assert np.isclose(s["cv"], w.std() / w.mean()) and np.isclose(s["max_over_min"], w.max() / w.min())
    assert s["contiguous"] and s["nested"] and report.problems == []
    assert np.isclose(tab["area_km2"].sum(), t.grids["area_km2"].sum(), rtol=1e-6)


def test_polsby_popper_measured_in_metres(t: twin.Twin) -> None:
    polys = grid_polygons(t, partition_from_twin(t)).set_index("grid_code")
    g = t.grids.set_index("grid_code").loc[polys.index[:5]]
    m = to_metric(g.geometry)
    expect = 4 * np.pi * m.area / m.length ** 2
    assert np.allclose(polys["polsby_popper"].iloc[:5].to_numpy(), expect.to_numpy(), rtol=1e-6)
    assert ((polys["polsby_popper"] > 0) & (polys["polsby_popper"] <= 1)).all()


def test_unassigned_row_and_rule_flags(t: twin.Twin) -> None:
    p = partition_from_twin(t)
    codes = p.grid_code.copy()
    codes[:4] = ""
    far = np.flatnonzero(codes == "440604010001002")[0]
    g = codes[far]
    # put a far-away cell of another community into grid g: breaks nesting and contiguity
    other = np.flatnonzero(p.community != p.community[far])[-1]
    codes[other] = g
    rep = balance_report(t, p.with_assignment(codes), polygons=False)
    row = rep.table[rep.table["grid_code"] == "UNASSIGNED"].iloc[0]
    assert row["n_cells"] == 4 and row["flagged"]
    grid_row = rep.table[rep.table["grid_code"] == g].iloc[0]
    assert not grid_row["nested"] and not grid_row["contiguous"]
    assert not rep.summary["nested"] and not rep.summary["contiguous"] and rep.summary["unassigned_cells"] == 4
    assert any("belong to no grid" in x for x in rep.problems)
    assert "PROBLEM: 4 cells belong to no grid" in rep.to_text()
    with pytest.raises(ValidationError, match="threshold"):
        balance_report(t, p, threshold=-1)
