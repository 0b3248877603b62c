"""Key-population overlays: totals preserved at every resolution, small counts suppressed (never shown as 0)."""

from __future__ import annotations

import numpy as np
import pytest

import twin
from twin.access.roles import ANALYST, make_role
from twin.cells import cells_to_parent
from twin.errors import ValidationError
from twin.model import ages_on
from twin.query.overlays import OVERLAY_CATEGORIES, overlay


@pytest.fixture(scope="module")
def t(default_twin: twin.Twin) -> twin.Twin:
    return default_twin


@pytest.fixture(scope="module")
def twin_totals(t: twin.Twin) -> dict[str, int]:
    p = t.persons
    age = ages_on(p["birth_date"].to_numpy(), t.as_of)
    return {"residents": len(p), "dwellings": len(t.dwellings), "businesses": len(t.businesses),
            "disabled": int(p["disabled"].sum()), "low_income": int(p["low_income"].sum()),
            "pregnant": int(p["pregnant"].sum()), "elderly_70": int((age >= 70).sum()),
            "elderly_80": int((age >= 80).sum())}


@pytest.mark.parametrize("category", OVERLAY_CATEGORIES)
def test_totals_equal_the_twin(t: twin.Twin, twin_totals: dict[str, int], category: str) -> None:
    o = overlay(t, category, res=9)
    assert int(o["count"].sum()) == twin_totals[category]
    assert not o["suppressed"].any()
    assert o["cell"].dtype == np.uint64 and o["cell"].is_monotonic_increasing


@pytest.mark.parametrize("res", [8, 10])
def test_other_resolutions(t: twin.Twin, twin_totals: dict[str, int], res: int) -> None:
    o = overlay(t, "elderly_80", res=res)
    assert int(o["count"].sum()) == twin_totals["elderly_80"]
    # the cells really are at that resolution and each building's cell rolls up into one of them
    parents = cells_to_parent(t.buildings["cell"].to_numpy()[:200], res)
    assert np.isin(parents, o["cell"].to_numpy()).all()
    dens = o["density_km2"].to_numpy(float)
    ok = o["count"].to_numpy(float) > 0
    assert (dens[ok] > 0).all()


def test_counts_match_a_groupby(t: twin.Twin) -> None:
    o = overlay(t, "residents", res=9).set_index("cell")
    parent = cells_to_parent(t.buildings["cell"].to_numpy(), 9)
    want = t.persons.groupby(parent[t.persons["building_id"].to_numpy()]).size()
    got = o["count"].astype(int)
    assert (got.loc[want.index].to_numpy() == want.to_numpy()).all()
    assert int(got.drop(want.index).sum()) == 0


def test_analyst_sees_rounded_or_suppressed_cells_never_zeros(t: twin.Twin) -> None:
    """Outside the record scope the base resolution (res 9) publishes each cell rounded to a multiple of k or
    suppressed (never 0 for a positive count); res 8 is the sum of the published res-9 cells; res 10 is not
    published outside the scope."""
    full = overlay(t, "pregnant", res=9)
    anon = overlay(t, "pregnant", res=9, role=ANALYST)
    small = (full["count"] > 0) & (full["count"] < ANALYST.k)
    assert small.any()
    assert (anon["suppressed"] == small).all()
    assert anon.loc[small, "count"].isna().all() and anon.loc[small, "density_km2"].isna().all()
    pub = anon.loc[~small, "count"].astype(int)
    truth = full.loc[~small, "count"].astype(int)
    assert (pub % ANALYST.k == 0).all() and ((pub - truth).abs() <= ANALYST.k // 2).all()
    bigger_k = overlay(t, "pregnant", res=9, role=ANALYST, k=20)
    assert bigger_k["suppressed"].sum() > anon["suppressed"].sum()
    coarse = overlay(t, "pregnant", res=8, role=ANALYST).set_index("cell")
    parent = cells_to_parent(anon["cell"].to_numpy(), 8)
    sums = anon.assign(parent=parent, c=anon["count"].fillna(0).astype(int)).groupby("parent")["c"].sum()
    shown = ~coarse["suppressed"]
    assert (coarse.loc[shown, "count"].astype(int) == sums.loc[coarse.index[shown]]).all()
    assert overlay(t, "pregnant", res=10, role=ANALYST)["suppressed"].all()


def test_scoped_role_exact_inside_its_scope_only(t: twin.Twin) -> None:
    town = str(t.towns["town_code"].iloc[0])
    full = overlay(t, "pregnant", res=10)
    o = overlay(t, "pregnant", res=10, role=make_role("town", [town]))
    assert o["suppressed"].any() and not o["suppressed"].all()
    assert (o.loc[~o["suppressed"], "count"] == full.loc[~o["suppressed"], "count"]).all()


@pytest.mark.parametrize(("kwargs", "fragment"), [
    ({"category": "cats"}, "unknown overlay category"), ({"category": "residents", "res": 11}, "resolution"),
    ({"category": "residents", "k": 0}, "k must be")])
def test_bad_arguments(t: twin.Twin, kwargs: dict[str, object], fragment: str) -> None:
    with pytest.raises(ValidationError, match=fragment):
        overlay(t, **kwargs)  # type: ignore[arg-type]
