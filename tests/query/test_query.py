"""Area queries are exact: counts equal a brute-force shapely/geopandas answer for random polygons."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from shapely.geometry import MultiPolygon, Polygon, box, mapping

import twin
from twin.access.roles import ANALYST, make_role
from twin.cells import PARTITION_RES, latlng_to_cells
from twin.errors import PermissionDenied, ValidationError
from twin.model import ages_on
from twin.query.areas import parse_area
from twin.query.records import MAX_PAGE_SIZE, records_in_area
from twin.query.summary import COUNT_KEYS, summarize_area

# --- brute force oracle ---------------------------------------------------------------------------------------

@dataclasses.dataclass(repr=False)
class Oracle:
    """Brute force: test every record's point with shapely covers; residents' attributes are counted per
    building once (pandas groupby over the 1.33 M persons), so each example only sums the buildings inside."""

    t: Any
    bx: np.ndarray
    by: np.ndarray
    per_building: pd.DataFrame  # index = building position, columns = COUNT_KEYS of the building's records
    camera_grid: np.ndarray
    worker_grid: np.ndarray

    def __repr__(self) -> str:  # keep hypothesis's example reprs small
        return f"<Oracle over {len(self.bx)} buildings>"

    def counts(self, geom: Any) -> tuple[dict[str, int], pd.DataFrame]:
        t = self.t
        b_in = shapely.intersects_xy(geom, self.bx, self.by)  # covers: boundary counts as inside
        cam_in = shapely.intersects_xy(geom, t.cameras["lng"].to_numpy(), t.cameras["lat"].to_numpy())
        wk_in = shapely.intersects_xy(geom, t.workers["lng"].to_numpy(), t.workers["lat"].to_numpy())
        inside = self.per_building[b_in]
        totals = {k: int(v) for k, v in inside.sum().items()}
        totals.update(cameras=int(cam_in.sum()), workers=int(wk_in.sum()))
        grid_b = t.buildings["grid_code"].astype(str).to_numpy()
        frames = [inside.assign(grid_code=grid_b[b_in]),
                  pd.DataFrame({"grid_code": self.camera_grid[cam_in], "cameras": 1}),
                  pd.DataFrame({"grid_code": self.worker_grid[wk_in], "workers": 1})]
        by_grid = pd.concat(frames).fillna(0).groupby("grid_code").sum().astype(int)
        return totals, by_grid[by_grid.index != ""]


def _per_building(t: twin.Twin) -> pd.DataFrame:
    p = t.persons
    age = ages_on(p["birth_date"].to_numpy(), t.as_of)
    male = (p["sex"] == "M").to_numpy()
    flags = pd.DataFrame({
        "building": p["building_id"].to_numpy(), "residents": 1, "residents_male": male,
        "residents_female": ~male, "disabled": p["disabled"].to_numpy(), "low_income": p["low_income"].to_numpy(),
        "pregnant": p["pregnant"].to_numpy(), "elderly_70": age >= 70, "elderly_80": age >= 80,
        "age_0_14": age < 15, "age_15_59": (age >= 15) & (age < 60), "age_60_plus": age >= 60,
    })
    ids = t.buildings["building_id"].to_numpy()
    out = flags.groupby("building").sum().astype(int).reindex(ids, fill_value=0)
    out["dwellings"] = t.dwellings.groupby("building_id").size().reindex(ids, fill_value=0)
    out["businesses"] = t.businesses.groupby("building_id").size().reindex(ids, fill_value=0)
    out["buildings"] = 1
    return out.reset_index(drop=True)


@pytest.fixture(scope="module")
def t(default_twin: twin.Twin) -> twin.Twin:
    return default_twin


@pytest.fixture(scope="module")
def oracle(t: twin.Twin) -> Oracle:
    def grids_of(frame: pd.DataFrame) -> np.ndarray:
        x, y = frame["lng"].to_numpy(), frame["lat"].to_numpy()
        return np.asarray(t.grid_of_cells(latlng_to_cells(y, x, PARTITION_RES)), dtype=object).astype(str)

    b = t.buildings
    return Oracle(t, b["lng"].to_numpy(), b["lat"].to_numpy(), _per_building(t), grids_of(t.cameras),
                  grids_of(t.workers))


def _check(t: twin.Twin, oracle: Oracle, area: Any) -> None:
    geom = parse_area(area).geometry
    s = summarize_area(t, area)
    want, want_grid = oracle.counts(geom)
    assert s.totals == {k: want[k] for k in COUNT_KEYS}
    got = s.by_grid.set_index("grid_code")[list(COUNT_KEYS)].astype(int)
    got = got[(got != 0).any(axis=1)]
    want_grid = want_grid[(want_grid != 0).any(axis=1)]
    pd.testing.assert_frame_equal(got.sort_index(), want_grid[list(COUNT_KEYS)].sort_index(), check_names=False,
                                  check_dtype=False)
    assert s.suppressed == []


# --- polygon strategies ---------------------------------------------------------------------------------------

def _star(cx: float, cy: float, radius_m: float, radii: list[float]) -> Polygon:
    n = len(radii)
    ang = np.linspace(0, 2 * np.pi, n, endpoint=False)
    r = np.asarray(radii) * radius_m / 111_000
    return Polygon(np.column_stack([cx + r * np.cos(ang) / np.cos(np.radians(cy)), cy + r * np.sin(ang)]))


@st.composite
def polygon_params(draw: st.DrawFn) -> tuple[str, float, float, list[float]]:
    kind = draw(st.sampled_from(["convex", "concave", "holes", "multi", "tiny"]))
    where = draw(st.floats(0.0, 1.0))  # which building the polygon is centred on
    radius = draw(st.floats(30, 80)) if kind == "tiny" else draw(st.floats(150, 3000))
    n = draw(st.integers(3, 40))
    radii = draw(st.lists(st.floats(0.3, 1.0), min_size=n, max_size=n))
    return kind, where, radius, radii


def _polygon(t: twin.Twin, kind: str, where: float, radius: float, radii: list[float]) -> Any:
    b = t.buildings
    i = min(int(where * len(b)), len(b) - 1)
    cx, cy = float(b["lng"].iloc[i]), float(b["lat"].iloc[i])  # centred on a building, so something is near
    if kind == "convex":
        return shapely.convex_hull(_star(cx, cy, radius, radii))
    poly = _star(cx, cy, radius, radii)
    if kind == "holes":
        poly = poly.difference(_star(cx, cy, radius * 0.25, [1.0] * 7))
    if kind == "multi":
        dx = 2.5 * radius / 111_000
        poly = MultiPolygon([poly, _star(cx + dx, cy, radius, radii[::-1])])
    return poly


# --- exactness ------------------------------------------------------------------------------------------------

@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(params=polygon_params())
def test_counts_equal_brute_force_for_random_polygons(t: twin.Twin, oracle: Oracle,
                                                      params: tuple[str, float, float, list[float]]) -> None:
    _check(t, oracle, _polygon(t, *params))


@pytest.mark.parametrize("which", ["district", "inner", "half", "box"])
def test_district_sized_areas_are_exact(t: twin.Twin, oracle: Oracle, which: str) -> None:
    d = t.district
    minx, miny, maxx, maxy = d.bounds
    area = {"district": d, "inner": d.buffer(-0.01), "half": box(minx, miny, (minx + maxx) / 2, maxy),
            "box": box(minx - 0.1, miny - 0.1, maxx + 0.1, maxy + 0.1)}[which]
    _check(t, oracle, area)


def test_whole_district_totals_match_the_manifest(t: twin.Twin) -> None:
    s = summarize_area(t, t.district)
    counts = t.manifest["counts"]
    for k in ("buildings", "dwellings", "residents", "businesses"):
        assert s.totals[k] == counts[k]
    # a few cameras/workers were placed just outside the official boundary; those are not in the district
    d = t.district
    assert s.totals["cameras"] == int(shapely.intersects_xy(d, t.cameras["lng"], t.cameras["lat"]).sum())
    assert s.totals["workers"] == int(shapely.intersects_xy(d, t.workers["lng"], t.workers["lat"]).sum())
    assert len(s.by_grid) == len(t.grids)
    assert (s.by_grid["share_of_grid_residents"].fillna(1.0) == 1.0).all()
    edge = ~shapely.intersects_xy(t.district, t.cells["lng"].to_numpy(), t.cells["lat"].to_numpy())
    assert len(t.cells) - edge.sum() <= len(s.cells) <= len(t.cells)  # edge cells count when a record is inside


def test_points_on_the_boundary_count_as_inside(t: twin.Twin, oracle: Oracle) -> None:
    b = t.buildings
    i = int(np.argmax(b["residents"].to_numpy()))
    x, y = float(b["lng"].iloc[i]), float(b["lat"].iloc[i])
    # the building's point is a vertex of one triangle and lies on an edge of another
    vertex = Polygon([(x, y), (x + 0.003, y), (x, y + 0.003)])
    edge = Polygon([(x - 0.003, y), (x + 0.003, y), (x, y + 0.003)])
    for area in (vertex, edge):
        s = summarize_area(t, area)
        assert s.totals["residents"] >= int(b["residents"].iloc[i]) > 0
        _check(t, oracle, area)


def test_geopandas_sjoin_agrees(t: twin.Twin) -> None:
    """An independent oracle: geopandas sjoin(predicate='intersects') on the building points."""
    c = t.district.centroid
    area = _star(c.x, c.y, 1200, [1.0, 0.5, 0.9, 0.4, 1.0, 0.6, 0.8, 0.3])
    pts = gpd.GeoDataFrame(t.buildings[["building_id", "residents"]],
                           geometry=gpd.points_from_xy(t.buildings["lng"], t.buildings["lat"]), crs="EPSG:4326")
    hit = gpd.sjoin(pts, gpd.GeoDataFrame(geometry=[area], crs="EPSG:4326"), predicate="intersects")
    s = summarize_area(t, area)
    assert s.totals["buildings"] == len(hit)
    assert s.totals["residents"] == int(t.persons["building_id"].isin(hit["building_id"]).sum())


def test_share_of_grid_residents(t: twin.Twin) -> None:
    c = t.district.centroid
    s = summarize_area(t, _star(c.x, c.y, 900, [1.0] * 12))
    g = s.by_grid.set_index("grid_code")
    for code, row in g.head(5).iterrows():
        all_res = int(t.persons["building_id"].map(t.buildings["grid_code"].astype(str)).eq(code).sum())
        want = row["residents"] / all_res if all_res else 0.0
        assert row["share_of_grid_residents"] == pytest.approx(want)
    # rolls up: communities and towns sum their grids
    assert int(s.by_town["residents"].sum()) == s.totals["residents"] == int(s.by_community["residents"].sum())


def test_cells_touched_cover_the_records_and_centres(t: twin.Twin) -> None:
    area = box(113.10, 23.02, 113.11, 23.03)
    s = summarize_area(t, area)
    b = t.buildings
    inside_b = shapely.intersects_xy(area, b["lng"].to_numpy(), b["lat"].to_numpy())
    centres = t.cells["cell"].to_numpy()[shapely.intersects_xy(area, t.cells["lng"].to_numpy(),
                                                                t.cells["lat"].to_numpy())]
    want = np.union1d(b["cell"].to_numpy()[inside_b], centres)
    for f in (t.cameras, t.workers):
        x, y = f["lng"].to_numpy(), f["lat"].to_numpy()
        hit = shapely.intersects_xy(area, x, y)
        want = np.union1d(want, latlng_to_cells(y[hit], x[hit], PARTITION_RES))
    assert s.cells.dtype == np.uint64
    np.testing.assert_array_equal(s.cells, want)


# --- roles, records, partitions -------------------------------------------------------------------------------

def test_records_in_area_pages_match_brute_force(t: twin.Twin) -> None:
    area = box(113.10, 23.02, 113.105, 23.025)
    inside_b = shapely.intersects_xy(area, t.buildings["lng"].to_numpy(), t.buildings["lat"].to_numpy())
    want = np.sort(t.persons["person_id"].to_numpy()[inside_b[t.persons["building_id"].to_numpy()]])
    pages = []
    first = records_in_area(t, area, "persons", page=0, page_size=500)
    assert first.total == len(want)
    for p in range(first.pages):
        pages.extend(records_in_area(t, area, "persons", page=p, page_size=500).ids)
    assert pages == want.tolist()
    b = _all_ids(t, area, "buildings")
    assert b == np.sort(t.buildings["building_id"].to_numpy()[inside_b]).tolist()
    biz = records_in_area(t, area, "businesses", page_size=MAX_PAGE_SIZE)
    assert len(_all_ids(t, area, "businesses")) == biz.total == int(inside_b[t.businesses["building_id"].to_numpy()].sum())


def test_records_respect_role(t: twin.Twin) -> None:
    area = box(113.09, 23.01, 113.12, 23.04)
    with pytest.raises(PermissionDenied):
        records_in_area(t, area, "persons", role=ANALYST)
    s = summarize_area(t, area)
    code = str(s.by_grid["grid_code"].iloc[0])
    worker = make_role("grid_worker", [code])
    got = _all_ids(t, area, "buildings", role=worker)
    grid_of = t.buildings.set_index("building_id")["grid_code"].astype(str)
    assert len(got) == int(s.by_grid["buildings"].iloc[0])
    assert set(grid_of.loc[got]) == {code}


def _all_ids(t: twin.Twin, area: Any, kind: str, **kw: Any) -> list[int]:
    """Every id of ``kind`` inside ``area``, page by page (pages hold at most MAX_PAGE_SIZE ids)."""
    first = records_in_area(t, area, kind, page_size=MAX_PAGE_SIZE, **kw)
    ids = list(first.ids)
    for p in range(1, first.pages):
        ids.extend(records_in_area(t, area, kind, page=p, page_size=MAX_PAGE_SIZE, **kw).ids)
    assert len(ids) == first.total
    return ids


@pytest.mark.parametrize(("kwargs", "fragment"), [
    ({"kind": "cats"}, "unknown record kind"), ({"kind": "persons", "page": -1}, "page must be"),
    ({"kind": "persons", "page_size": 0}, "page_size must be"),
    ({"kind": "persons", "page_size": MAX_PAGE_SIZE + 1}, "page_size must be"),
    ({"kind": "persons", "page": 1.5}, "page must be")])
def test_records_bad_arguments(t: twin.Twin, kwargs: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ValidationError, match=fragment):
        records_in_area(t, box(113.10, 23.02, 113.11, 23.03), **kwargs)


def _check_suppressed(vals: dict[str, int | None], truth: dict[str, int], k: int, where: str) -> None:
    """Published values are the truth and 0 or ≥ k; no suppressed value follows by subtraction."""
    from twin.access.suppression import ADDITIVE_GROUPS, NESTED_PAIRS

    for key, v in vals.items():
        assert v is None or (v == truth[key] and (v == 0 or v >= k)), f"{where}.{key} = {v}"
        if 0 < truth[key] < k:
            assert v is None, f"{where}.{key} = {truth[key]} published below k"
    for tot, parts in ADDITIVE_GROUPS:
        if tot in vals and all(p in vals for p in parts) and vals[tot] is not None:
            hidden = sum(truth[p] for p in parts if vals[p] is None)
            assert hidden == 0 or hidden >= k, f"{where}: {tot} − published parts reveals {hidden}"
    for big, small in NESTED_PAIRS:
        if big in vals and small in vals and vals[big] is not None and vals[small] is not None:
            assert truth[big] - truth[small] in (0,) or truth[big] - truth[small] >= k, f"{where}: {big} − {small}"


def _small_area(t: twin.Twin) -> Polygon:
    """A 40 m box around the first building with 6–14 residents: small counts to suppress."""
    b = t.buildings
    i = int(np.flatnonzero((b["residents"] > 5).to_numpy() & (b["residents"] < 15).to_numpy())[0])
    x, y = float(b["lng"].iloc[i]), float(b["lat"].iloc[i])
    return box(x - 0.0002, y - 0.0002, x + 0.0002, y + 0.0002)


@pytest.mark.parametrize("which", ["small", "star"])
def test_analyst_sees_one_suppressed_aggregate_never_zero(t: twin.Twin, which: str) -> None:
    c = t.district.centroid
    area = _small_area(t) if which == "small" else _star(c.x, c.y, 1500, [1.0, 0.6] * 10)
    full = summarize_area(t, area)
    anon = summarize_area(t, area, role=ANALYST)
    # analysts see no grid, community or town rows (each would split the aggregate), only the suppressed totals
    assert anon.by_grid.empty and anon.by_community.empty and anon.by_town.empty and len(anon.cells) == 0
    assert anon.outside is not None and anon.outside["n_grids_touched"] == len(full.by_grid)
    assert anon.outside["counts"] == anon.totals and anon.k == ANALYST.k
    # outside the record scope only whole grids (more than half covered), each rounded to a multiple of k
    published = [*anon.totals.values(), *anon.buildings_by_use.values(), *anon.businesses_by_credit.values()]
    assert all(v is None or v % ANALYST.k == 0 for v in published)
    if which == "small":  # a 40 m box covers no grid: nothing is published, and nothing is shown as 0
        assert anon.outside["n_grids"] == 0 and all(v is None for v in published)
    assert anon.suppressed == ([f"totals.{k}" for k, v in anon.totals.items() if v is None]
                               + [f"buildings_by_use.{u}" for u, v in anon.buildings_by_use.items() if v is None]
                               + [f"businesses_by_credit.{c}" for c, v in anon.businesses_by_credit.items()
                                  if v is None])
    if which == "small":
        assert anon.suppressed  # a building's few residents: some key populations are small
    assert json.loads(json.dumps(anon.to_dict()))["totals"].keys() == set(COUNT_KEYS)


def test_scoped_role_sees_its_grids_exactly_and_one_aggregate_outside(t: twin.Twin) -> None:
    area = box(113.09, 23.01, 113.12, 23.04)
    full = summarize_area(t, area)
    fg = full.by_grid.set_index("grid_code")
    com = str(fg["community_code"].iloc[0])
    s = summarize_area(t, area, role=make_role("community", [com]))
    g = s.by_grid.set_index("grid_code")
    mine = (fg["community_code"] == com).to_numpy()
    assert set(g.index) == set(fg.index[mine])  # only the grids of its scope, exact
    assert (g[list(COUNT_KEYS)] == fg.loc[g.index, list(COUNT_KEYS)]).all().all()
    assert (g["share_of_grid_residents"] == fg.loc[g.index, "share_of_grid_residents"]).all()
    assert s.by_community["community_code"].tolist() == [com]  # its own community is wholly in scope
    assert s.by_town.empty  # no town is
    assert s.outside is not None and s.outside["n_grids_touched"] == int((~mine).sum())
    assert 0 < s.outside["n_grids"] <= s.outside["n_grids_touched"]
    inside = {k: int(v) for k, v in fg.loc[mine, list(COUNT_KEYS)].sum().items()}
    for k, v in s.totals.items():  # exact inside part + the published (whole grids, rounded) outside part
        o = s.outside["counts"][k]
        assert (v is None) == (o is None) and (o is None or (o % 5 == 0 and v == inside[k] + o))
    cell_grids = set(t.grid_of_cells(s.cells))
    assert cell_grids <= set(fg.index[mine])


def test_breakdown_follows_the_partition_in_force(t: twin.Twin) -> None:
    """Time travel swaps t.cells/t.grids: grid breakdowns must use the partition at call time."""
    area = box(113.09, 23.01, 113.12, 23.04)
    before = summarize_area(t, area)
    g0 = str(before.by_grid["grid_code"].iloc[0])
    g1 = str(before.by_grid["grid_code"].iloc[1])
    cells = t.cells.copy()
    cells["grid_code"] = cells["grid_code"].where(cells["grid_code"] != g1, g0)  # merge g1 into g0
    t2 = dataclasses.replace(t, cells=cells, cache=t.cache)
    after = summarize_area(t2, area)
    a = after.by_grid.set_index("grid_code")
    b = before.by_grid.set_index("grid_code")
    assert g1 not in a.index
    assert a.loc[g0, "residents"] == b.loc[g0, "residents"] + b.loc[g1, "residents"]
    assert after.totals == before.totals
    assert summarize_area(t, area).by_grid.equals(before.by_grid)  # the original twin is untouched


def test_density_per_cell(t: twin.Twin) -> None:
    area = box(113.10, 23.02, 113.105, 23.025)
    s = summarize_area(t, area, density=True)
    d = s.density
    assert d is not None and len(d) == len(s.cells)
    assert int(d["residents"].sum()) == s.totals["residents"]
    assert int(d["elderly_80"].sum()) == s.totals["elderly_80"]
    np.testing.assert_allclose(d["residents_per_km2"].to_numpy(float), d["residents"].to_numpy(float) / d["area_km2"])
    assert d["area_km2"].between(0.0020, 0.0023).all()  # res-11 hexagons ≈ 2,150 m²


def test_bad_by_and_outside_area(t: twin.Twin) -> None:
    with pytest.raises(ValidationError, match="by must be"):
        summarize_area(t, box(113.10, 23.02, 113.11, 23.03), by="street")
    with pytest.raises(twin.OutsideDistrictError):
        summarize_area(t, box(114.0, 23.0, 114.01, 23.01))


# --- CLI ------------------------------------------------------------------------------------------------------

def test_cli_query_prints_json(tmp_path: Path, capsys: pytest.CaptureFixture[str], t: twin.Twin) -> None:
    from twin.cli.main import main

    f = tmp_path / "area.geojson"
    area = box(113.10, 23.02, 113.105, 23.025)
    f.write_text(json.dumps({"type": "Feature", "properties": {}, "geometry": mapping(area)}))
    assert main(["query", "--area", str(f), "--twin", str(t.root)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["totals"] == summarize_area(t, area).totals
    assert out["by_grid"] and "share_of_grid_residents" in out["by_grid"][0]

    bad = tmp_path / "bad.geojson"
    bad.write_text(json.dumps({"type": "LineString", "coordinates": [[113.1, 23.0], [113.2, 23.1]]}))
    assert main(["query", "--area", str(bad), "--twin", str(t.root)]) == 2
    err = json.loads(capsys.readouterr().out)
    assert err["error"] == "ValidationError" and "LineString" in err["message"]


# --- the rasteriser behind the index ---------------------------------------------------------------------------

@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(where=st.floats(0.0, 1.0), size_deg=st.sampled_from([0.0004, 0.004, 0.04, 0.3]),
       radii=st.lists(st.floats(0.2, 1.0), min_size=3, max_size=30), snap=st.booleans(), hole=st.booleans())
def test_points_inside_equals_shapely_for_every_point(t: twin.Twin, where: float, size_deg: float,
                                                      radii: list[float], snap: bool, hole: bool) -> None:
    """Every indexed point (records and cell centres), including areas reaching far past the points' extent
    and vertices snapped onto bin edges, is classified exactly like shapely.intersects_xy."""
    from twin.query._index import point_index, points_inside

    pidx = point_index(t)
    pts = pidx.points
    i = min(int(where * len(pts.x)), len(pts.x) - 1)
    ang = np.linspace(0, 2 * np.pi, len(radii), endpoint=False)
    r = np.asarray(radii) * size_deg
    geom = shapely.make_valid(Polygon(np.column_stack([pts.x[i] + r * np.cos(ang), pts.y[i] + r * np.sin(ang)])))
    if hole:
        geom = geom.difference(shapely.Point(pts.x[i], pts.y[i]).buffer(size_deg / 4))
    if snap:
        geom = shapely.set_precision(geom, pidx.dx)
    if geom.is_empty or geom.geom_type not in ("Polygon", "MultiPolygon"):
        return
    mask = np.zeros(len(pts.x), dtype=bool)
    mask[points_inside(pidx, geom).indices()] = True
    np.testing.assert_array_equal(mask, shapely.intersects_xy(geom, pts.x, pts.y))


def test_points_on_the_boundary_are_left_to_shapely_and_decided_exactly(t: twin.Twin) -> None:
    """Vertices on indexed points (and edges through them) put points within 1e-9° of the boundary: the kernel
    must not decide those by floating-point crossing parity but hand them to shapely's robust predicate."""
    from twin.query._index import EDGE_EPS_DEG, point_index, points_inside, polygon_edges
    from twin.query._kernels import classify_bins

    pidx = point_index(t)
    pts = pidx.points
    c = t.district.centroid
    near = np.flatnonzero((np.abs(pts.x - c.x) < 0.004) & (np.abs(pts.y - c.y) < 0.004))
    hull = shapely.convex_hull(shapely.multipoints(np.column_stack([pts.x[near], pts.y[near]])))
    # a concave polygon through indexed points: every other hull vertex pulled towards the centre
    ring = shapely.get_coordinates(hull)[:-1]
    ring[::2, 0] = c.x + 0.5 * (ring[::2, 0] - c.x)
    ring[::2, 1] = c.y + 0.5 * (ring[::2, 1] - c.y)
    for geom in (hull, shapely.make_valid(Polygon(ring))):
        _, _, _, unsure = classify_bins(polygon_edges(geom), geom.bounds, pidx.x0, pidx.y0, pidx.dx, pidx.dy, pidx.nx,
                                        pidx.ny, pts.bin_start, pts.x, pts.y, EDGE_EPS_DEG)
        assert len(unsure) >= 3  # at least the hull's own vertices
        mask = np.zeros(len(pts.x), dtype=bool)
        mask[points_inside(pidx, geom).indices()] = True
        np.testing.assert_array_equal(mask, shapely.intersects_xy(geom, pts.x, pts.y))


def test_a_comb_with_many_edges_per_bin_row_is_exact(t: twin.Twin) -> None:
    """A comb whose 60 teeth all cross the same bin rows: more than 32 edges and crossings per row, the case the
    kernel sorts with shell sort instead of insertion sort."""
    from twin.query._index import point_index, points_inside

    pidx = point_index(t)
    pts = pidx.points
    c = t.district.centroid
    w = pidx.dx * 0.7  # teeth narrower than a bin: many edges per bin row
    top = [(c.x + i * w, c.y + (0.01 if i % 2 == 0 else 0.002)) for i in range(120)]
    comb = Polygon([(c.x, c.y), *top, (c.x + 119 * w, c.y)])
    assert comb.is_valid
    mask = np.zeros(len(pts.x), dtype=bool)
    mask[points_inside(pidx, comb).indices()] = True
    np.testing.assert_array_equal(mask, shapely.intersects_xy(comb, pts.x, pts.y))
    assert mask.sum() > 100
