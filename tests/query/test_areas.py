"""Drawn areas: every kind of bad input gets its typed error; good input is repaired/clipped and says so."""

from __future__ import annotations

import json
import time
import warnings

import numpy as np
import pytest
import shapely
from shapely.geometry import MultiPolygon, Polygon, box, mapping

from twin.crs import area_km2, geometry_to_metric, geometry_to_storage, wgs84_to_gcj02
from twin.errors import CRSError, OutsideDistrictError, ValidationError
from twin.geography import district_boundary
from twin.query.areas import MAX_PARTS, MAX_VERTICES, parse_area

INNER = box(113.10, 23.02, 113.11, 23.03)  # well inside Chancheng


def test_district_is_where_we_think() -> None:
    assert district_boundary().contains(INNER)


def test_square_100m_measures_10000_m2() -> None:
    c = geometry_to_metric(INNER.centroid)
    sq = geometry_to_storage(box(c.x, c.y, c.x + 100, c.y + 100))
    a = parse_area(sq)
    assert a.area_km2 * 1e6 == pytest.approx(10_000, rel=1e-3)
    assert not a.clipped and a.warnings == []


@pytest.mark.parametrize("wrap", ["geometry", "feature", "collection", "string", "bytes"])
def test_geojson_forms_agree(wrap: str) -> None:
    g = mapping(INNER)
    g = {"type": g["type"], "coordinates": json.loads(json.dumps(g["coordinates"]))}
    obj = {"geometry": g, "feature": {"type": "Feature", "properties": {}, "geometry": g},
           "collection": {"type": "FeatureCollection", "features": [{"type": "Feature", "geometry": g}]},
           "string": json.dumps(g), "bytes": json.dumps(g).encode()}[wrap]
    a = parse_area(obj)
    assert a.geometry.equals(INNER)
    assert a.area_km2 == pytest.approx(area_km2(INNER))


def test_multipolygon_collection_is_unioned() -> None:
    other = box(113.05, 23.00, 113.06, 23.01)
    fc = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "geometry": mapping(INNER)}, {"type": "Feature", "geometry": mapping(other)}]}
    a = parse_area(json.loads(json.dumps(fc)))
    assert isinstance(a.geometry, MultiPolygon)
    assert a.area_km2 == pytest.approx(area_km2(INNER) + area_km2(other))


@pytest.mark.parametrize(
    ("area", "fragment"),
    [
        ("{not json", "not valid JSON"),
        ({"type": "Polygon"}, "no 'coordinates'"),
        ({"type": "Polygon", "coordinates": [[[113.1, 23.0], [113.2, "x"], [113.1, 23.1], [113.1, 23.0]]]},
         "positions are [lng, lat]"),
        ({"type": "Blob", "coordinates": []}, "unknown type 'Blob'"),
        ({"type": "Feature", "geometry": None}, "no geometry"),
        ({"type": "FeatureCollection", "features": []}, "holds no geometry"),
        ({"type": "Point", "coordinates": [113.1, 23.0]}, "is a Point, not an area"),
        ({"type": "LineString", "coordinates": [[113.1, 23.0], [113.2, 23.0]]}, "is a LineString, not an area"),
        (shapely.Point(113.1, 23.0), "is a Point, not an area"),
        ({"type": "Polygon", "coordinates": [[[113.1, 23.0], [113.11, 23.0], [113.11, 23.01], [113.1, 23.01]]]},
         "is not closed"),
        ({"type": "Polygon", "coordinates": [[[113.1, 23.0], [113.11, 23.0], [113.1, 23.0]]]},
         "needs at least 4"),
        (Polygon(), "empty"),
        (Polygon([(113.1, 23.0), (113.11, 23.0), (113.12, 23.0), (113.1, 23.0)]), "zero area"),
        (12, "got int"),
    ],
)
def test_bad_input_is_a_validation_error(area: object, fragment: str) -> None:
    with pytest.raises(ValidationError, match=fragment.replace("[", r"\[").replace("(", r"\(")):
        parse_area(area)


def test_nan_and_inf_coordinates_are_rejected() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # shapely warns when building it
        nan_poly = Polygon([(113.1, 23.0), (113.11, np.nan), (113.11, 23.01), (113.1, 23.0)])
    with pytest.raises(ValidationError, match="NaN or infinite"):
        parse_area(nan_poly)
    with pytest.raises(ValidationError, match="NaN or infinite"):
        parse_area({"type": "Polygon", "coordinates": [[[113.1, 23.0], [113.11, float("nan")], [113.11, 23.01],
                                                        [113.1, 23.0]]]})
    text = '{"type":"Polygon","coordinates":[[[113.1,23.0],[Infinity,23.0],[113.11,23.01],[113.1,23.0]]]}'
    with pytest.raises(ValidationError, match="NaN or infinite"):
        parse_area(text)


def test_projected_metres_are_a_crs_error() -> None:
    metric = geometry_to_metric(INNER)
    with pytest.raises(CRSError, match="look projected"):
        parse_area(metric)


def test_swapped_lat_lng_is_a_crs_error() -> None:
    swapped = shapely.transform(INNER, lambda c: c[:, ::-1])
    with pytest.raises(CRSError, match=r"\(lat, lng\)"):
        parse_area(swapped)


def test_bow_tie_is_repaired_with_a_warning() -> None:
    bow = Polygon([(113.10, 23.02), (113.11, 23.03), (113.11, 23.02), (113.10, 23.03), (113.10, 23.02)])
    assert not bow.is_valid
    a = parse_area(bow)
    assert a.geometry.is_valid
    assert len(shapely.get_parts(a.geometry)) == 2
    assert any("make_valid" in w for w in a.warnings)
    assert a.area_km2 == pytest.approx(area_km2(INNER) / 2, rel=1e-6)


def test_entirely_outside_says_why() -> None:
    far = box(113.5, 23.5, 113.51, 23.51)
    with pytest.raises(OutsideDistrictError, match="entirely outside") as e:
        parse_area(far)
    assert "km from its boundary" in str(e.value)


def test_close_outside_suggests_gcj02() -> None:
    coords = np.asarray(district_boundary().exterior.coords)
    x, y = coords[np.argmin(coords[:, 0])]  # westmost vertex
    near = box(x - 0.006, y - 0.001, x - 0.004, y + 0.001)  # ≈ 0.4 km west of it
    with pytest.raises(OutsideDistrictError, match="from_gcj02"):
        parse_area(near)


def test_partly_outside_is_clipped_with_a_warning() -> None:
    d = district_boundary()
    minx, miny, maxx, maxy = d.bounds
    half = box(minx - 0.05, miny - 0.05, (minx + maxx) / 2, maxy + 0.05)
    a = parse_area(half)
    assert a.clipped
    assert d.buffer(1e-9).contains(a.geometry)
    assert a.area_km2 == pytest.approx(area_km2(half.intersection(d)), rel=1e-9)
    assert any("clipped" in w for w in a.warnings)


def test_too_many_vertices() -> None:
    ring = shapely.Point(113.105, 23.025).buffer(0.004, quad_segs=MAX_VERTICES // 4 + 10)
    with pytest.raises(ValidationError, match="vertices"):
        parse_area(ring)
    with pytest.raises(ValidationError, match="vertices"):
        parse_area(json.loads(json.dumps(mapping(ring))))
    assert parse_area(ring, max_vertices=len(ring.exterior.coords) + 1).area_km2 > 0


def test_gcj02_option_converts_back() -> None:
    gcj = shapely.transform(INNER, lambda c: np.column_stack(wgs84_to_gcj02(c[:, 0], c[:, 1])))
    a = parse_area(gcj, from_gcj02=True)
    assert a.geometry.symmetric_difference(INNER).area < 1e-14
    assert any("GCJ-02" in w for w in a.warnings)
    assert not parse_area(gcj).geometry.equals(INNER)  # without the option it is ~600 m off


def test_shapely_mapping_and_geo_interface_are_accepted(default_twin: object) -> None:
    """``shapely.geometry.mapping`` gives tuples, geopandas objects have ``__geo_interface__`` (and a crs): all
    parse to the same area as the GeoJSON lists."""
    import geopandas as gpd

    import twin

    poly = box(113.10, 23.02, 113.11, 23.03)
    want = parse_area(json.loads(json.dumps(mapping(poly))))
    frame = gpd.GeoDataFrame({"name": ["a"]}, geometry=[poly], crs="EPSG:4326")
    for area in (mapping(poly), {"type": "Feature", "properties": {}, "geometry": mapping(poly)},
                 frame, frame.geometry, frame.to_crs("EPSG:4547")):
        got = parse_area(area)
        assert got.area_km2 == pytest.approx(want.area_km2, rel=1e-6)
        assert got.geometry.equals_exact(want.geometry, 1e-9) or got.geometry.symmetric_difference(
            want.geometry).area < 1e-12
    s = twin.summarize_area(default_twin, mapping(poly))
    assert s.totals == twin.summarize_area(default_twin, poly).totals
    with pytest.raises(ValidationError, match="not closed"):
        parse_area({"type": "Polygon", "coordinates": (((113.10, 23.02), (113.11, 23.02), (113.11, 23.03),
                                                        (113.10, 23.03)),)})
    with pytest.raises(CRSError, match="projected"):  # no crs to reproject from: metres are refused
        parse_area(gpd.GeoSeries([geometry_to_metric(poly)]))


def _square(x: float, y: float, d: float = 0.001) -> list[list[float]]:
    return [[x, y], [x + d, y], [x + d, y + d], [x, y + d], [x, y]]


def test_limits_are_checked_while_walking_the_geojson() -> None:
    many = {"type": "MultiPolygon", "coordinates": [[_square(113.105, 23.025)]] * 4_000}  # the 66 s attack
    with pytest.raises(ValidationError, match="more than 100 polygons"):
        parse_area(many)
    fc = {"type": "FeatureCollection", "features": [{"type": "Feature", "geometry": {
        "type": "Polygon", "coordinates": [_square(113.105, 23.025)]}}] * (MAX_PARTS + 1)}
    with pytest.raises(ValidationError, match=f"limit {MAX_PARTS}"):
        parse_area(fc)
    ring = [[113.105 + 0.01 * np.cos(a), 23.025 + 0.01 * np.sin(a)] for a in np.linspace(0, 6.28, MAX_VERTICES)]
    with pytest.raises(ValidationError, match="more than 10,000 vertices"):
        parse_area({"type": "Polygon", "coordinates": [[*ring, ring[0]]]})


def test_overlapping_parts_are_unioned_cheaply() -> None:
    same = {"type": "MultiPolygon", "coordinates": [[_square(113.105, 23.025)]] * MAX_PARTS}
    a = parse_area(same)
    assert a.area_km2 == pytest.approx(parse_area({"type": "Polygon", "coordinates": [_square(113.105, 23.025)]})
                                       .area_km2)
    assert any("repaired" in w for w in a.warnings)


def _winding(n: int, turns: int) -> Polygon:
    ang = np.linspace(0, 2 * np.pi * turns, n, endpoint=False)
    r = 0.004 * (1 + 0.5 * np.sin(ang * 7.3))
    return Polygon(np.column_stack([113.105 + r * np.cos(ang), 23.025 + r * np.sin(ang)]))


def test_too_many_crossings_are_rejected_before_repair() -> None:
    t0 = time.perf_counter()
    with pytest.raises(ValidationError, match="more than 1,000 times"):  # make_valid: 19 s
        parse_area(mapping(_winding(500, 30)))
    k = 4_999  # a star polygon: every edge crosses almost every other (≈ 6 million crossings)
    ang = 2 * np.pi * np.arange(2 * k + 1) * k / (2 * k + 1)
    star = Polygon(np.column_stack([113.105 + 0.004 * np.cos(ang), 23.025 + 0.004 * np.sin(ang)]))
    with pytest.raises(ValidationError, match="edges cross each other"):
        parse_area(star)
    assert time.perf_counter() - t0 < 10
    fixed = parse_area(mapping(_winding(200, 3)))  # a few crossings: repaired
    assert fixed.area_km2 > 0 and "repaired" in fixed.warnings[0]


def test_json_integer_too_large_for_a_float() -> None:
    text = ('{"type":"Polygon","coordinates":[[[1%s,23.005],[113.115,23.005],[113.115,23.012],[113.105,23.005]]]}'
            % ("0" * 400))
    with pytest.raises(ValidationError, match="out-of-range"):
        parse_area(text)


def test_gcj02_looking_area_gets_a_warning() -> None:
    d = district_boundary()
    gcj = shapely.transform(d.buffer(-0.002), lambda c: np.column_stack(wgs84_to_gcj02(c[:, 0], c[:, 1])))
    a = parse_area(shapely.simplify(gcj, 1e-4))
    assert any("look GCJ-02" in w for w in a.warnings), a.warnings
    assert not any("GCJ-02" in w for w in parse_area(shapely.simplify(d.buffer(-0.002), 1e-4)).warnings)
