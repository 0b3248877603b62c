"""OpenStreetMap in: a small PBF written with pyosmium inside the district, read back with known answers (lengths and
areas in EPSG:4547), the bad files and their messages, and a small build whose buildings come from OSM."""

from __future__ import annotations

import json
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import shapely

osmium = pytest.importorskip("osmium")
from osmium.osm.mutable import Node, Relation, Way  # noqa: E402

from twin.cli.main import main  # noqa: E402
from twin.crs import METRIC_CRS, STORAGE_CRS, lnglat_to_xy, xy_to_lnglat  # noqa: E402
from twin.errors import IngestError, OutsideDistrictError  # noqa: E402
from twin.ingest.osm import STREET_WIDTH_M, WATERWAY_WIDTH_M, building_use, read_osm  # noqa: E402
from twin.model import load  # noqa: E402
from twin.synth.build import build_twin  # noqa: E402
from twin.testing import SMALL_CENTRE, SMALL_COMMUNITIES, SMALL_GRIDS, SMALL_RADIUS_M, SMALL_TOTALS, small_extent  # noqa: E402

# (tags, x, y) of 20 m × 20 m buildings, metres from the centre in EPSG:4547, and the use each must map to
_BUILDINGS = [
    ({"building": "apartments", "building:levels": "12"}, "residential"),
    ({"building": "house"}, "residential"),
    ({"building": "yes"}, "residential"),
    ({"building": "commercial", "height": "15 m"}, "commercial"),
    ({"building": "retail"}, "commercial"),
    ({"building": "yes", "shop": "supermarket"}, "commercial"),
    ({"building": "industrial", "building:levels": "3;4"}, "industrial"),
    ({"building": "warehouse"}, "industrial"),
    ({"building": "school"}, "public"),
    ({"building": "yes", "amenity": "hospital"}, "public"),
    ({"building": "apartments", "shop": "convenience"}, "mixed"),
    ({"building": "residential", "height": "60'"}, "residential"),
]


class _Pbf:
    """Write nodes and ways given in EPSG:4547 metres relative to a WGS84 centre."""

    def __init__(self, path: Path, centre: tuple[float, float]) -> None:
        self.w = osmium.SimpleWriter(str(path))
        cx, cy = lnglat_to_xy(np.array([centre[0]]), np.array([centre[1]]))
        self.cx, self.cy = float(cx[0]), float(cy[0])
        self.node_id = 0
        self.way_id = 0

    def way(self, pts: list[tuple[float, float]], tags: dict[str, str], *, closed: bool = False) -> None:
        lng, lat = xy_to_lnglat(np.array([p[0] + self.cx for p in pts]), np.array([p[1] + self.cy for p in pts]))
        ids = []
        for x, y in zip(lng, lat):
            self.node_id += 1
            self.w.add_node(Node(id=self.node_id, location=(float(x), float(y)), tags={}))
            ids.append(self.node_id)
        self.way_id += 1
        self.w.add_way(Way(id=self.way_id, nodes=ids + ids[:1] if closed else ids, tags=tags))

    def close(self) -> None:
        self.w.close()


def _write_city(path: Path, centre: tuple[float, float] = SMALL_CENTRE) -> Path:
    """Streets of five classes (plus one under construction), a 2 km river line, a 100 m pond, 12 buildings."""
    p = _Pbf(path, centre)
    p.way([(-1500, 0), (1500, 0)], {"highway": "primary", "name": "季华路"})  # 3 km: cut by the 900 m disc
    p.way([(0, -400), (0, 400)], {"highway": "secondary"})
    p.way([(-200, -100), (-200, 100)], {"highway": "residential"})
    p.way([(-100, -100), (-100, 100)], {"highway": "service", "width": "6"})
    p.way([(100, -100), (100, 100)], {"highway": "footway"})
    p.way([(200, -100), (200, 100)], {"highway": "construction"})
    p.way([(300, -1000), (300, 1000)], {"waterway": "river", "name": "汾江"})
    p.way([(-450, -350), (-350, -350), (-350, -250), (-450, -250)], {"natural": "water", "water": "pond"},
          closed=True)
    for i, (tags, _) in enumerate(_BUILDINGS):
        x0, y0 = -300 + (i % 6) * 50, 150 + (i // 6) * 50
        p.way([(x0, y0), (x0 + 20, y0), (x0 + 20, y0 + 20), (x0, y0 + 20)], tags, closed=True)
    p.close()
    return path


@pytest.fixture(scope="module")
def city(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _write_city(tmp_path_factory.mktemp("osm") / "city.osm.pbf")


@pytest.fixture(scope="module")
def fabric(city):
    return read_osm(city, district=small_extent())


def test_streets_classes_widths_and_clipping(fabric):
    s = fabric.streets
    assert s.crs == STORAGE_CRS and set(s.geom_type) == {"LineString"}
    assert sorted(s["class"]) == ["arterial", "collector", "local", "path", "service"]  # construction skipped
    by = s.set_index("class")
    assert by.loc["arterial", "width_m"] == STREET_WIDTH_M["arterial"] == 24.0
    assert by.loc["service", "width_m"] == 6.0  # the way's own width tag wins
    assert by.loc["arterial", "name"] == "季华路"
    # the 3 km primary is cut at the 900 m disc: the diameter, measured in EPSG:4547
    assert by.loc["arterial", "length_m"] == pytest.approx(2 * SMALL_RADIUS_M, rel=2e-3)
    assert s.to_crs(METRIC_CRS).length.to_numpy() == pytest.approx(s["length_m"].to_numpy(), rel=1e-5)
    assert by.loc["collector", "length_m"] == pytest.approx(800.0, rel=1e-3)
    assert s["osm_id"].str.startswith("way/").all()
    assert s.geometry.within(small_extent().buffer(1e-9)).all()
    assert any("highway ways of other kinds" in n for n in fabric.notes)


def test_water_pond_and_buffered_river(fabric):
    w = fabric.water.set_index("kind")
    assert fabric.water.crs == STORAGE_CRS and set(fabric.water.geom_type) == {"Polygon"}
    assert w.loc["pond", "area_m2"] == pytest.approx(10_000.0, rel=1e-3)  # a 100 m square drawn in EPSG:4547
    chord = 2 * np.sqrt(SMALL_RADIUS_M**2 - 300.0**2)  # the river line at x = 300 m cut by the disc
    assert w.loc["river", "area_m2"] == pytest.approx(WATERWAY_WIDTH_M["river"] * chord, rel=1e-2)
    assert w.loc["river", "name"] == "汾江"


def test_buildings_uses_floors_heights(fabric):
    b = fabric.buildings
    assert len(b) == len(_BUILDINGS) and set(b.geom_type) == {"Polygon"} and b.crs == STORAGE_CRS
    assert b["use"].tolist() == [use for _, use in _BUILDINGS]
    assert b["footprint_m2"].to_numpy() == pytest.approx(400.0, rel=1e-3)
    assert b["floors"].iloc[0] == 12 and b["floors"].iloc[6] == 3 and np.isnan(b["floors"].iloc[1])
    assert b["height_m"].iloc[3] == 15.0 and b["height_m"].iloc[11] == pytest.approx(60 * 0.3048)
    assert building_use({"building": "yes"}) == "residential"


def test_whole_district_by_default(city):
    f = read_osm(city)  # the real district: the 3 km road is inside it whole
    assert f.streets.set_index("class").loc["arterial", "length_m"] == pytest.approx(3000.0, rel=2e-3)


def test_outside_the_district(tmp_path):
    p = _write_city(tmp_path / "guangzhou.osm.pbf", centre=(113.30, 23.13))
    with pytest.raises(OutsideDistrictError) as e:
        read_osm(p)
    msg = str(e.value)
    assert "guangzhou.osm.pbf" in msg and "none of its" in msg
    assert "113.28" in msg and "112.9738" in msg  # the file's feature bounds and the district's


def test_not_a_pbf(tmp_path):
    p = tmp_path / "city.osm.pbf"
    p.write_text('<?xml version="1.0"?><osm version="0.6"></osm>')
    with pytest.raises(IngestError, match="not an OpenStreetMap PBF.*osmium cat"):
        read_osm(p)
    with pytest.raises(IngestError, match="not found"):
        read_osm(tmp_path / "missing.osm.pbf")


def test_empty_and_truncated_pbf(tmp_path, city):
    empty = tmp_path / "empty.osm.pbf"
    osmium.SimpleWriter(str(empty)).close()
    with pytest.raises(IngestError, match="no roads .* at all"):
        read_osm(empty)
    cut = tmp_path / "cut.osm.pbf"
    data = city.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(IngestError, match="cut.osm.pbf: cannot read the PBF"):
        read_osm(cut)


def test_only_one_kind_is_a_note(tmp_path):
    p = _Pbf(tmp_path / "roads.osm.pbf", SMALL_CENTRE)
    p.way([(-100, 0), (100, 0)], {"highway": "tertiary"})
    p.close()
    f = read_osm(tmp_path / "roads.osm.pbf")
    assert len(f.streets) == 1 and len(f.water) == 0 and len(f.buildings) == 0
    assert any("no water" in n for n in f.notes) and any("no buildings" in n for n in f.notes)


def test_small_build_with_osm(tmp_path, city):
    out = build_twin(tmp_path / "t", seed=7, n_grids=SMALL_GRIDS, progress=False, extent=small_extent(),
                     communities=list(SMALL_COMMUNITIES), totals=SMALL_TOTALS, osm=city)
    t = load(out)
    m = json.loads((out / "manifest.json").read_text())
    assert (t.buildings["source"] == "osm").all() and len(t.buildings) == len(_BUILDINGS)
    assert m["sources"]["buildings"] == "osm" and m["synthetic"]["buildings"] is False
    assert m["sources"]["streets"] == "osm" and m["sources"]["water"] == "osm"
    assert "OpenStreetMap contributors" in m["osm"]["attribution"] and m["osm"]["file"] == "city.osm.pbf"
    assert t.buildings["residents"].sum() == SMALL_TOTALS["residents"]
    assert t.buildings.sort_values("building_id")["floors"].iloc[0] >= 1
    streets = gpd.read_parquet(out / "streets.parquet")
    water = gpd.read_parquet(out / "water.parquet")
    assert {"class", "width_m"} <= set(streets.columns) and set(streets.geom_type) == {"LineString"}
    assert set(water.geom_type) == {"Polygon"} and water.crs == STORAGE_CRS
    assert {"streets.parquet", "water.parquet"} <= set(m["files"])
    assert not (out / ".osm_buildings.parquet").exists()
    assert shapely.union_all(t.buildings.geometry.values).within(small_extent())


def test_multipolygon_lake_with_island(tmp_path):
    p = _Pbf(tmp_path / "lake.osm.pbf", SMALL_CENTRE)
    p.way([(0, 0), (200, 0), (200, 200), (0, 200)], {}, closed=True)  # outer ring, way 1
    p.way([(75, 75), (125, 75), (125, 125), (75, 125)], {}, closed=True)  # island, way 2
    p.w.add_relation(Relation(id=1, members=[("w", 1, "outer"), ("w", 2, "inner")],
                              tags={"type": "multipolygon", "natural": "water", "name": "湖"}))
    p.close()
    w = read_osm(tmp_path / "lake.osm.pbf").water
    assert len(w) == 1 and w["osm_id"].iloc[0] == "relation/1" and w["name"].iloc[0] == "湖"
    assert w["area_m2"].iloc[0] == pytest.approx(200 * 200 - 50 * 50, rel=1e-3)


def test_cli_osm_missing_file(tmp_path, capsys):
    assert main(["build", "--out", str(tmp_path / "t"), "--osm", str(tmp_path / "nope.osm.pbf"), "--quiet"]) != 0
    assert "nope.osm.pbf: OpenStreetMap file not found" in capsys.readouterr().err
