"""Building twins: determinism, real-data replacement end to end, the CLI, atomic replacement."""

import json
import subprocess
import sys

import numpy as np
import pytest
import rasterio.transform

import twin
from twin.io import write_raster
from twin.partition.validate import validate
from twin.synth.build import build_twin


@pytest.fixture(scope="module")
def small_twins(tmp_path_factory):
    root = tmp_path_factory.mktemp("twins")
    a = build_twin(root / "a", seed=7, scale=0.02, progress=False)
    b = build_twin(root / "b", seed=7, scale=0.02, progress=False)
    return a, b


def test_same_seed_same_files(small_twins):
    a, b = (twin.load(p).manifest for p in small_twins)
    assert a["counts"] == b["counts"]
    assert {k: v["sha256"] for k, v in a["files"].items()} == {k: v["sha256"] for k, v in b["files"].items()}
    assert a["counts"]["residents"] == round(1_330_000 * 0.02)


def test_other_seed_differs_but_keeps_calibration(small_twins, default_twin):
    a = twin.load(small_twins[0]).manifest
    d = default_twin.manifest
    assert a["files"]["persons.parquet"]["sha256"] != d["files"]["persons.parquet"]["sha256"]
    assert d["counts"]["residents"] == 1_330_000 and d["counts"]["businesses"] == 290_000


def test_small_twin_is_valid(small_twins):
    rep = validate(twin.load(small_twins[0]))
    assert rep.ok, rep.problems


def test_real_data_replaces_synthetic_pieces(tmp_path, default_twin):
    """A user's raster, footprints and grids all go through `twin build` and give a valid twin."""
    transform = rasterio.transform.from_origin(112.96, 23.075, 1 / 1200, 1 / 1200)  # WorldPop-like, 3″
    arr = np.random.default_rng(1).gamma(2.0, 20.0, (190, 250))
    raster = write_raster(arr, transform, "EPSG:4326", tmp_path / "pop.tif")
    b = default_twin.buildings
    footprints = b[b["use"] != "public"].sample(20_000, random_state=4)[["use", "floors", "geometry"]]
    footprints.to_file(tmp_path / "buildings.gpkg", driver="GPKG")
    grids = default_twin.grids[["grid_code", "grid_name", "community_code", "geometry"]]
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
    out = build_twin(tmp_path / "t", seed=3, scale=0.01, progress=False)
    (out / "state.sqlite").write_bytes(b"versions, incidents, audit")
    build_twin(out, seed=3, scale=0.01, progress=False)  # same cells: state moves into the new twin
    assert (out / "state.sqlite").read_bytes() == b"versions, incidents, audit"
    build_twin(out, seed=3, scale=0.01, n_grids=300, progress=False)  # cells identical, grids differ: still kept
    assert (out / "state.sqlite").exists()
    assert len(twin.load(out).grids) == 300
