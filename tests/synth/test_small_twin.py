"""The small twin for unit tests: built in seconds by the real pipeline, complete, valid and consistent."""

import time

import numpy as np
import pytest

import twin
from twin.crs import area_km2
from twin.model import TABLES
from twin.testing import SMALL_COMMUNITIES, SMALL_GRIDS, SMALL_TOTALS, small_twin


def test_builds_in_seconds(tmp_path):
    t0 = time.perf_counter()
    t = small_twin(tmp_path / "s", seed=11)
    assert time.perf_counter() - t0 < 20  # ≈ 2 s on the 2-core machine; generous for a loaded CI box
    assert t.seed == 11


def test_is_valid(small_twin):
    rep = twin.validate(small_twin)
    assert rep.ok, rep.problems
    assert rep.figures["grids"] == SMALL_GRIDS and rep.figures["communities"] == len(SMALL_COMMUNITIES)


def test_has_every_table_and_a_manifest(small_twin):
    m = small_twin.manifest
    assert set(m["counts"]) >= set(TABLES) - {"persons"} | {"residents"}
    for table in TABLES:
        assert len(getattr(small_twin, table)) > 0, table
        assert (small_twin.root / f"{table}.parquet").exists()
    assert set(m["files"]) >= {f"{t}.parquet" for t in TABLES} | {"population.tif", "extent.geojson"}
    assert m["extent"]["communities"] == sorted(SMALL_COMMUNITIES)


def test_totals_are_consistent(small_twin):
    t, c = small_twin, small_twin.manifest["counts"]
    for key, n in SMALL_TOTALS.items():
        assert c[key] == n, key
    assert len(t.persons) == c["residents"] == t.buildings["residents"].sum()
    assert len(t.businesses) == c["businesses"] == t.buildings["businesses"].sum()
    assert len(t.dwellings) == c["dwellings"] == t.buildings["dwellings"].sum()
    assert len(t.workers) == c["workers"] and set(t.workers["grid_code"]) == set(t.grids["grid_code"])
    assert len(t.cells) == c["cells"] and t.grids["n_cells"].sum() == len(t.cells)
    assert set(t.communities["town_code"]) == {"440604012"} and len(t.towns) == 1
    raster = t.manifest["population_raster"]
    assert raster["inside_total"] + raster["outside_total"] == pytest.approx(raster["raster_total"], rel=1e-9)


def test_district_is_the_extent(small_twin):
    assert area_km2(small_twin.district) == pytest.approx(small_twin.manifest["extent"]["area_km2"], rel=1e-6)
    assert 2.0 < area_km2(small_twin.district) < 3.0  # a disc of radius 900 m
    assert np.isclose(small_twin.grids["area_km2"].sum(), area_km2(small_twin.district), rtol=1e-3)


def test_summarize_area_over_the_whole_small_twin(small_twin):
    s = twin.summarize_area(small_twin, small_twin.district)
    assert s.totals["residents"] == SMALL_TOTALS["residents"]
