"""Real vector data in: checks and clear errors for each bad input."""

import warnings

import geopandas as gpd
import numpy as np
import pytest
import shapely

from twin.crs import METRIC_CRS, wgs84_to_gcj02
from twin.errors import CRSError, GCJ02Warning, IngestError, OutsideDistrictError, PartitionError
from twin.ingest.vectors import read_buildings, read_grids


@pytest.fixture(scope="module")
def cells(small_twin):
    return small_twin.cells["cell"].to_numpy()


@pytest.fixture(scope="module")
def comm_of_cell(small_twin):
    g = small_twin.grids.set_index("grid_code")["community_code"]
    return small_twin.cells["grid_code"].map(g).to_numpy()


@pytest.fixture(scope="module")
def some_buildings(small_twin):
    return small_twin.buildings.sample(300, random_state=2)[["use", "floors", "height_m", "geometry"]].copy()


def test_buildings_round_trip_geojson(tmp_path, small_twin, cells, some_buildings):
    p = tmp_path / "b.geojson"
    some_buildings.to_file(p, driver="GeoJSON")
    out = read_buildings(p, small_twin.district, cells)
    assert len(out) == 300
    assert set(out["use"]) <= {"residential", "mixed", "commercial", "industrial", "public"}
    assert np.allclose(np.sort(out["footprint_m2"]), np.sort(some_buildings.to_crs(METRIC_CRS).area), rtol=1e-4)
    assert (out["cell"].isin(cells)).all()


def test_buildings_geoparquet_in_metric_crs(tmp_path, small_twin, cells, some_buildings):
    p = tmp_path / "b.parquet"
    some_buildings.to_crs(METRIC_CRS).to_parquet(p)
    assert len(read_buildings(p, small_twin.district, cells)) == 300


def test_missing_crs(tmp_path, small_twin, cells, some_buildings):
    p = tmp_path / "nocrs.parquet"
    some_buildings.set_crs(None, allow_override=True).to_parquet(p)
    with pytest.raises(CRSError, match="nocrs.parquet.*no CRS"):
        read_buildings(p, small_twin.district, cells)


def test_metres_labelled_as_degrees(tmp_path, small_twin, cells, some_buildings):
    wrong = some_buildings.to_crs(METRIC_CRS).set_crs("EPSG:4326", allow_override=True)
    p = tmp_path / "wrong.gpkg"
    wrong.to_file(p, driver="GPKG")
    with pytest.raises(CRSError, match="look projected"):
        read_buildings(p, small_twin.district, cells)


def test_outside_district(tmp_path, small_twin, cells):
    far = gpd.GeoDataFrame(geometry=[shapely.box(116.3, 39.9, 116.3005, 39.9005)], crs="EPSG:4326")
    p = tmp_path / "beijing.geojson"
    far.to_file(p, driver="GeoJSON")
    with pytest.raises(OutsideDistrictError, match="beijing.geojson"):
        read_buildings(p, small_twin.district, cells)


def test_points_are_not_footprints(tmp_path, small_twin, cells):
    pts = gpd.GeoDataFrame(geometry=[shapely.Point(113.1, 23.02)], crs="EPSG:4326")
    p = tmp_path / "pts.geojson"
    pts.to_file(p, driver="GeoJSON")
    with pytest.raises(IngestError, match="must hold polygons"):
        read_buildings(p, small_twin.district, cells)


def test_malformed_file(tmp_path, small_twin, cells):
    p = tmp_path / "bad.geojson"
    p.write_text('{"type": "FeatureCollection", "features": [', encoding="utf-8")
    with pytest.raises(IngestError, match="bad.geojson"):
        read_buildings(p, small_twin.district, cells)


def test_invalid_geometry_is_repaired_and_counted(tmp_path, small_twin, cells):
    bowtie = shapely.Polygon([(113.110, 23.030), (113.111, 23.031), (113.111, 23.030), (113.110, 23.031)])
    assert not bowtie.is_valid
    ok = shapely.box(113.112, 23.030, 113.1122, 23.0302)
    p = tmp_path / "bowtie.geojson"
    gpd.GeoDataFrame(geometry=[bowtie, ok], crs="EPSG:4326").to_file(p, driver="GeoJSON")
    out = read_buildings(p, small_twin.district, cells)
    assert out.geometry.is_valid.all() and len(out) == 2
    assert any("1 invalid building geometries repaired" in n for n in out.attrs["notes"])


def test_gcj02_input_warns_and_converts(tmp_path, small_twin, cells):
    b = small_twin.buildings[["geometry"]]
    shifted = b.copy()
    shifted["geometry"] = shapely.transform(b.geometry.values, lambda c: np.column_stack(wgs84_to_gcj02(c[:, 0], c[:, 1])))
    p = tmp_path / "amap.geojson"
    shifted.to_file(p, driver="GeoJSON")
    with pytest.warns(GCJ02Warning, match="GCJ-02"):
        read_buildings(p, small_twin.district, cells)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = read_buildings(p, small_twin.district, cells, from_gcj02=True)
    assert len(out) == len(b)  # converted back: every footprint inside again


def _grid_layer(t):
    return t.grids[["grid_code", "grid_name", "community_code", "geometry"]].copy()


def test_grids_round_trip(tmp_path, small_twin, cells, comm_of_cell):
    p = tmp_path / "grids.gpkg"
    _grid_layer(small_twin).to_file(p, driver="GPKG")
    code, meta = read_grids(p, small_twin.district, cells, comm_of_cell)
    assert len(meta) == len(small_twin.grids)
    same = (code == small_twin.cells["grid_code"].to_numpy()).mean()
    assert same > 0.99  # cells by centre; edge cells go to the grid overlapping them most


def test_grids_without_community_take_the_majority(tmp_path, small_twin, cells, comm_of_cell):
    p = tmp_path / "grids.geojson"
    _grid_layer(small_twin).drop(columns=["community_code"]).to_file(p, driver="GeoJSON")
    _, meta = read_grids(p, small_twin.district, cells, comm_of_cell)
    ref = small_twin.grids.set_index("grid_code")["community_code"]
    assert (meta.set_index("grid_code")["community_code"] == ref[meta["grid_code"]]).mean() > 0.99


def test_overlapping_grids_are_named(tmp_path, small_twin, cells, comm_of_cell):
    g = _grid_layer(small_twin)
    a = g.iloc[0]
    g.loc[g.index[0], "geometry"] = a.geometry.union(shapely.buffer(a.geometry, 0.002))  # ~200 m into neighbours
    p = tmp_path / "overlap.parquet"
    g.to_parquet(p)
    with pytest.raises(PartitionError, match=rf"overlapping grid pairs: .*{a.grid_code}"):
        read_grids(p, small_twin.district, cells, comm_of_cell)


def test_gaps_are_reported_with_area_and_neighbours(tmp_path, small_twin, cells, comm_of_cell):
    g = _grid_layer(small_twin)
    dropped = g.iloc[5]
    g = g.drop(index=g.index[5])
    p = tmp_path / "gap.geojson"
    g.to_file(p, driver="GeoJSON")
    area = small_twin.grids.iloc[5]["area_km2"]
    with pytest.raises(PartitionError, match=rf"{area:.3f} km² of the district uncovered") as e:
        read_grids(p, small_twin.district, cells, comm_of_cell)
    assert dropped.grid_code not in str(e.value)


def test_duplicate_grid_codes(tmp_path, small_twin, cells, comm_of_cell):
    g = _grid_layer(small_twin)
    g.loc[g.index[1], "grid_code"] = g.iloc[0]["grid_code"]
    p = tmp_path / "dup.geojson"
    g.to_file(p, driver="GeoJSON")
    with pytest.raises(PartitionError, match="duplicate grid codes"):
        read_grids(p, small_twin.district, cells, comm_of_cell)
