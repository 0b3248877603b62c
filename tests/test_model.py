"""The default twin: calibration to published totals, nesting, plausibility of the synthetic people."""

import pytest
import shapely

from twin.crs import to_metric
from twin.geography import nbs_communities, nbs_towns
from twin.model import ages_on
from twin.partition.validate import validate


def test_calibrated_totals(default_twin):
    t = default_twin
    assert abs(len(t.persons) - 1_330_000) <= 0.005 * 1_330_000
    assert abs(len(t.businesses) - 290_000) <= 0.01 * 290_000
    assert len(t.towns) == 4 and set(t.towns["town_code"]) == set(nbs_towns()["town_code"])
    assert len(t.communities) == 147 and set(t.communities["community_code"]) == set(nbs_communities()["community_code"])
    assert len(t.grids) == 451
    assert len(t.workers) == 648 and len(t.cameras) == 18_000
    per_grid = t.workers.groupby("grid_code").size()
    assert set(per_grid.index) == set(t.grids["grid_code"]) and per_grid.min() >= 1
    assert t.buildings["residents"].sum() == len(t.persons)
    assert t.buildings["businesses"].sum() == len(t.businesses)
    assert t.buildings["dwellings"].sum() == len(t.dwellings)


def test_manifest_matches_files(default_twin):
    c = default_twin.manifest["counts"]
    assert c["residents"] == len(default_twin.persons) and c["buildings"] == len(default_twin.buildings)
    raster = default_twin.manifest["population_raster"]
    # raster → cells preserves the sum: what falls outside the district's cells is accounted for, and small
    assert raster["inside_total"] + raster["outside_total"] == pytest.approx(raster["raster_total"], rel=1e-9)
    assert raster["raster_total"] == pytest.approx(1_330_000, rel=1e-6)
    assert raster["outside_total"] < 0.005 * raster["raster_total"]
    assert default_twin.cells["pop_raster"].sum() == pytest.approx(raster["inside_total"], rel=1e-9)


def test_partition_is_valid(default_twin):
    rep = validate(default_twin)
    assert rep.ok, rep.problems


def test_grids_nest_in_communities_of_their_town(default_twin):
    g = default_twin.grids.merge(nbs_communities(), on="community_code", suffixes=("", "_nbs"))
    assert len(g) == 451
    assert (g["town_code"] == g["town_code_nbs"]).all()
    # each community polygon covers its grids
    comm = to_metric(default_twin.communities.set_index("community_code").geometry)
    grids = to_metric(default_twin.grids.geometry)
    outside_m2 = [gi.difference(comm[c]).area for c, gi in zip(default_twin.grids["community_code"], grids)]
    assert max(outside_m2) < 1.0, max(outside_m2)  # < 1 m² of a grid outside its community: floating-point slivers


def test_people_are_plausible(default_twin):
    p = default_twin.persons
    age = ages_on(p["birth_date"].to_numpy(), default_twin.as_of)
    assert age.min() >= 0 and age.max() < 105
    preg = p["pregnant"].to_numpy()
    assert (p.loc[preg, "sex"] == "F").all()
    assert age[preg].min() >= 15 and age[preg].max() <= 49
    share = lambda m: m.mean()  # noqa: E731
    assert 0.13 < share(age < 15) < 0.18 and 0.04 < share(age >= 70) < 0.08 and 0.01 < share(age >= 80) < 0.025
    assert 0.01 < p["disabled"].mean() < 0.04
    assert 0.002 < p["low_income"].mean() < 0.02
    assert 0.003 < preg.mean() < 0.012
    # low-income is a household property: all members flagged together
    by_hh = p.groupby("household_id")["low_income"].agg(["min", "max"])
    assert (by_hh["min"] == by_hh["max"]).all()
    # a household lives in one dwelling of one building
    hh = p.groupby("household_id")[["dwelling_id", "building_id"]].nunique()
    assert (hh == 1).all().all()
    d = default_twin.dwellings.set_index("dwelling_id")
    assert (d.loc[p["dwelling_id"], "building_id"].to_numpy() == p["building_id"].to_numpy()).all()


def test_homes_are_in_residential_buildings(default_twin):
    b = default_twin.buildings.set_index("building_id")
    uses = b.loc[default_twin.persons["building_id"].unique(), "use"]
    assert set(uses) <= {"residential", "mixed"}
    biz_uses = b.loc[default_twin.businesses["building_id"].unique(), "use"]
    assert "residential" not in set(biz_uses)


def test_buildings_do_not_overlap_and_lie_in_the_district(default_twin):
    b = default_twin.buildings
    sample = b.sample(5000, random_state=1)
    m = to_metric(sample.geometry).values
    tree = shapely.STRtree(to_metric(b.geometry).values)
    a, c = tree.query(m, predicate="intersects")
    # each sampled footprint intersects only itself
    assert len(a) == len(sample)
    assert default_twin.district.contains(shapely.union_all(sample.geometry.values).envelope.centroid)
    assert shapely.contains(default_twin.district, sample.geometry.values).all()
    assert b["height_m"].min() > 2 and b["floors"].min() >= 1
    assert {"residential", "mixed", "commercial", "industrial", "public"} == set(b["use"])


def test_old_town_is_denser_than_nanzhuang(default_twin):
    t = default_twin
    res = t.buildings.groupby(t.buildings["grid_code"].astype(str))["residents"].sum()
    g = t.grids.assign(res=t.grids["grid_code"].map(res).fillna(0))
    dens = g.groupby("town_code")["res"].sum() / g.groupby("town_code")["area_km2"].sum()
    assert dens["440604012"] > 3 * dens["440604100"]  # Zumiao vs Nanzhuang
    # Zumiao's communities are smaller than Nanzhuang's
    ca = t.communities.groupby("town_code")["area_km2"].median()
    assert ca["440604012"] < ca["440604100"]


def test_credit_colours_and_kinds(default_twin):
    share = default_twin.businesses["credit"].value_counts(normalize=True)
    assert 0.75 < share["green"] < 0.88 and 0.1 < share["yellow"] < 0.18 and 0.02 < share["red"] < 0.08


def test_twin_repr_is_short(default_twin) -> None:
    """Reprs end up in hypothesis's example reports and pytest output: a twin must not print its frames."""
    text = repr(default_twin)
    assert len(text) < 200 and "Twin" in text and str(len(default_twin.grids)) in text
