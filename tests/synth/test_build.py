"""Building twins: determinism, real-data replacement end to end, the CLI, atomic replacement."""

import json
import subprocess
import sys

import numpy as np
import pytest
import rasterio.transform

import twin
from twin.io import write_raster
from twin.partition.polygons import units_to_polygons
from twin.partition.validate import validate
from twin.synth.build import build_twin
from twin.testing import SMALL_COMMUNITIES, small_extent


def _small(out, *, seed=7, **kw):
    return build_twin(out, seed=seed, progress=False, extent=small_extent(radius_m=600.0),
                      communities=list(SMALL_COMMUNITIES),
                      totals={"residents": 3000, "businesses": 500, "workers": 12, "cameras": 100}, n_grids=8, **kw)


def _shas(root):
    return {k: v["sha256"] for k, v in twin.load(root).manifest["files"].items()}


def test_same_seed_same_files_other_seed_other_people(tmp_path):
    a, b, c = _small(tmp_path / "a"), _small(tmp_path / "b"), _small(tmp_path / "c", seed=8)
    assert _shas(a) == _shas(b)
    assert _shas(a)["persons.parquet"] != _shas(c)["persons.parquet"]
    assert twin.load(c).manifest["counts"]["residents"] == 3000  # calibration kept under another seed


@pytest.mark.slow
def test_scaled_district_twin_is_calibrated(tmp_path):
    """``scale`` over the whole district (the path benchmarks' stress twins take)."""
    m = twin.load(build_twin(tmp_path / "s", seed=7, scale=0.02, progress=False)).manifest
    assert m["counts"]["residents"] == round(1_330_000 * 0.02) and m["counts"]["grids"] == 451
    assert "extent" not in m and len(m["counts"]) == 10


def test_default_twin_is_calibrated(default_twin):
    d = default_twin.manifest
    assert d["counts"]["residents"] == 1_330_000 and d["counts"]["businesses"] == 290_000


def test_bad_build_options_are_named(tmp_path):
    with pytest.raises(twin.ValidationError, match="unknown community codes"):
        build_twin(tmp_path / "x", communities=["123"], progress=False)
    with pytest.raises(twin.ValidationError, match="unknown totals"):
        build_twin(tmp_path / "x", totals={"people": 3}, progress=False)
    with pytest.raises(twin.OutsideDistrictError, match="extent"):
        build_twin(tmp_path / "x", extent=small_extent((116.3, 39.9)), progress=False)


def test_real_data_replaces_synthetic_pieces(tmp_path, default_twin):
    """A user's raster, footprints and grids all go through `twin build` and give a valid twin."""
    transform = rasterio.transform.from_origin(112.96, 23.075, 1 / 1200, 1 / 1200)  # WorldPop-like, 3″
    arr = np.random.default_rng(1).gamma(2.0, 20.0, (190, 250))
    raster = write_raster(arr, transform, "EPSG:4326", tmp_path / "pop.tif")
    b = default_twin.buildings
    footprints = b[b["use"] != "public"].sample(20_000, random_state=4)[["use", "floors", "geometry"]]
    footprints.to_file(tmp_path / "buildings.gpkg", driver="GPKG")
    cells = default_twin.cells  # a user's grid layer: the grids' cell outlines (the fabric's face outlines leave
    polys = units_to_polygons(cells["cell"].to_numpy(), cells["grid_code"].to_numpy(), default_twin.district,
                              name="grid_code")[["grid_code", "geometry"]]  # slivers at the district edge)
    grids = polys.merge(default_twin.grids[["grid_code", "grid_name", "community_code"]], on="grid_code")
    grids.to_parquet(tmp_path / "grids.parquet")
    out = tmp_path / "real"
    cmd = [sys.executable, "-m", "twin.cli", "build", "--out", str(out), "--quiet",
           "--population-raster", str(raster), "--buildings", str(tmp_path / "buildings.gpkg"),
           "--grids", str(tmp_path / "grids.parquet")]
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    t = twin.load(out)
    m = t.manifest
    assert m["synthetic"]["population"] is False and m["synthetic"]["buildings"] is False
    assert m["synthetic"]["grids"] is False and m["synthetic"]["people"] is True
    assert m["counts"]["buildings"] == 20_000
    assert m["counts"]["residents"] == round(m["population_raster"]["inside_total"])
    assert m["population_raster"]["outside_total"] > 0  # the raster reaches into Nanhai/Shunde
    assert len(t.grids) == 451
    assert set(t.buildings["use"]) <= {"residential", "mixed", "commercial", "industrial"}
    kept = t.buildings["floors"].to_numpy()
    assert np.array_equal(np.sort(kept), np.sort(footprints["floors"].to_numpy()))  # user floors kept
    rep = validate(t)
    assert rep.ok, rep.problems


def test_cli_validate_and_info(default_twin):
    root = str(default_twin.root)
    v = subprocess.run([sys.executable, "-m", "twin.cli", "validate", "--twin", root], capture_output=True, text=True)
    assert v.returncode == 0 and "OK: no problems found" in v.stdout
    i = subprocess.run([sys.executable, "-m", "twin.cli", "info", "--twin", root], capture_output=True, text=True)
    assert json.loads(i.stdout)["counts"]["residents"] == 1_330_000


def test_cli_reports_missing_twin(tmp_path):
    r = subprocess.run([sys.executable, "-m", "twin.cli", "validate", "--twin", str(tmp_path / "nothing")],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "twin build" in r.stderr


def test_cli_bad_input_names_the_file(tmp_path):
    bad = tmp_path / "b.geojson"
    bad.write_text("{oops", encoding="utf-8")
    r = subprocess.run([sys.executable, "-m", "twin.cli", "build", "--out", str(tmp_path / "x"), "--quiet",
                        "--buildings", str(bad)], capture_output=True, text=True)
    assert r.returncode == 2 and "b.geojson" in r.stderr
    assert not (tmp_path / "x").exists()  # nothing half-built left in place


def test_missing_input_file_is_named(tmp_path):
    with pytest.raises(twin.IngestError, match="nope.tif: population raster file not found"):
        build_twin(tmp_path / "x", population_raster=tmp_path / "nope.tif", progress=False)


def test_rebuild_keeps_mutable_state(tmp_path):
    out = _small(tmp_path / "t", seed=3)
    (out / "state.sqlite").write_bytes(b"versions, incidents, audit")
    build_twin(out, seed=3, progress=False, extent=small_extent(radius_m=600.0), communities=list(SMALL_COMMUNITIES),
               n_grids=6)  # same cells, other grids: the state moves into the new twin
    assert (out / "state.sqlite").read_bytes() == b"versions, incidents, audit"
    assert len(twin.load(out).grids) == 6
    build_twin(out, seed=3, progress=False, extent=small_extent(radius_m=500.0),
               communities=list(SMALL_COMMUNITIES), n_grids=6)  # other cells: the state is archived beside it
    assert not (out / "state.sqlite").exists()
    archived = list(tmp_path.glob("t.state-*/state.sqlite"))
    assert len(archived) == 1 and archived[0].read_bytes() == b"versions, incidents, audit"
