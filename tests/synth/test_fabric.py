"""The city fabric on the small twin: buildings inside blocks, none overlapping, none on streets or water; units
are unions of blocks with boundaries on streets/water; deterministic by seed; totals calibrated; old twins load."""

import shutil

import numpy as np
import shapely

import twin
from twin.crs import STORAGE_CRS, to_metric
from twin.partition.validate import clear_boundary_share
from twin.synth.build import build_twin
from twin.testing import SMALL_COMMUNITIES, SMALL_TOTALS, small_extent


def _metric(frame):
    return to_metric(frame).geometry.to_numpy()


def test_fabric_tables_written_labelled_and_listed(small_twin):
    t, m = small_twin, small_twin.manifest
    assert {"streets.parquet", "water.parquet", "blocks.parquet"} <= set(m["files"])
    assert m["synthetic"]["streets"] and m["synthetic"]["blocks"] and m["sources"]["streets"] == "synthetic"
    assert t.streets.crs == STORAGE_CRS and set(t.streets.geom_type) == {"LineString"}
    assert {"arterial", "collector", "local"} <= set(t.streets["class"])
    assert (t.streets["width_m"] > 0).all() and t.streets["synthetic"].all()
    assert set(t.blocks.geom_type) <= {"Polygon"} and t.blocks["block_id"].is_unique
    assert m["fabric"]["counts"]["blocks"] == len(t.blocks) > 100


def test_arterials_about_a_kilometre_apart():
    rng = np.random.default_rng(1)
    from twin.synth.fabric.streets import main_roads
    square = shapely.box(0, 0, 6000, 6000)
    roads = main_roads(square, rng)
    art = roads[roads["class"] == "arterial"].geometry.to_numpy()
    # along a transect through the middle, the arterial crossings are ≈ 1 km apart (two families → ≈ 0.5 km mixed)
    probe = shapely.LineString([(0, 3000), (6000, 3000)])
    xs = np.sort([p.x for g in art for p in shapely.get_parts(shapely.intersection(probe, g))
                  if p.geom_type == "Point"])
    gaps = np.diff(xs)
    assert 4 <= len(xs) <= 14 and 300 < np.median(gaps) < 1400


def test_buildings_inside_blocks_never_overlapping(small_twin):
    b, blocks = small_twin.buildings, small_twin.blocks
    inside = shapely.STRtree(blocks.geometry.to_numpy()).query(b.geometry.to_numpy(), predicate="within")[0]
    assert len(np.unique(inside)) == len(b)  # every footprint lies wholly inside a block
    bm = _metric(b)
    i, j = shapely.STRtree(bm).query(bm, predicate="intersects")
    assert np.array_equal(i, j)  # each footprint meets only itself


def test_buildings_never_on_streets_or_water(small_twin):
    t = small_twin
    bm = _metric(t.buildings)
    streets = to_metric(t.streets)
    bufs = shapely.buffer(streets.geometry.to_numpy(), streets["width_m"].to_numpy(dtype=float) / 2 - 0.01)
    assert shapely.STRtree(bufs).query(bm, predicate="intersects").shape[1] == 0
    if len(t.water):
        assert shapely.STRtree(_metric(t.water)).query(bm, predicate="intersects").shape[1] == 0


def test_boundaries_run_on_streets_and_water(small_twin):
    t = small_twin
    grids = t.cells["grid_code"].to_numpy().astype(str)
    comm = t.grids.set_index("grid_code")["community_code"].reindex(grids).to_numpy()
    assert clear_boundary_share(t, grids) >= 0.95
    assert clear_boundary_share(t, comm) >= 0.95
    rep = twin.validate(t)
    assert rep.ok and "%" in rep.figures["clear boundaries grids/comm./towns"]
    # whole blocks: the cells whose centres lie in one block are (almost always) in one grid
    pts = shapely.points(t.cells[["lng", "lat"]].to_numpy())
    cell_i, block_i = shapely.STRtree(t.blocks.geometry.to_numpy()).query(pts, predicate="within")
    per_block = {}
    for c, blk in zip(cell_i, block_i):
        per_block.setdefault(blk, set()).add(grids[c])
    whole = np.mean([len(v) == 1 for v in per_block.values()])
    assert whole >= 0.98, whole


def test_cell_based_boundaries_score_lower(small_twin):
    """A straight cut through the cells (ignoring the fabric) is far less 'clear' than the fabric's grids."""
    t = small_twin
    straight = np.where(t.cells["lng"].to_numpy() < np.median(t.cells["lng"]), "a", "b")
    assert clear_boundary_share(t, straight) < 0.6


def test_calibration_totals_unchanged(small_twin):
    c = small_twin.manifest["counts"]
    for key, n in SMALL_TOTALS.items():
        assert c[key] == n
    assert len(small_twin.persons) == small_twin.buildings["residents"].sum() == SMALL_TOTALS["residents"]
    assert set(small_twin.buildings["use"]) >= {"residential", "commercial"}


def test_deterministic_by_seed(tmp_path):
    kw = dict(progress=False, extent=small_extent(radius_m=500.0), communities=list(SMALL_COMMUNITIES[:2]),
              totals={"residents": 1500, "businesses": 200, "workers": 5, "cameras": 50}, n_grids=4)
    shas = []
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        m = twin.load(build_twin(tmp_path / name, seed=seed, **kw)).manifest["files"]
        shas.append({k: m[k]["sha256"] for k in ("streets.parquet", "blocks.parquet", "buildings.parquet")})
    assert shas[0] == shas[1]
    assert shas[0]["streets.parquet"] != shas[2]["streets.parquet"]


def test_twin_without_fabric_tables_still_loads(small_twin, tmp_path):
    old = tmp_path / "old"
    shutil.copytree(small_twin.root, old)
    for name in ("streets", "water", "blocks"):
        (old / f"{name}.parquet").unlink()
    t = twin.load(old)
    assert t.streets is None and t.blocks is None and t.water is None
    rep = twin.validate(t)
    assert rep.ok and rep.figures["clear boundaries (street/water)"].startswith("n/a")
