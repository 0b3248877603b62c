"""The msgspec fast decoder of plain GeoJSON Polygons (:func:`twin.query.areas.polygon_from_json`) agrees with the
general path (orjson → :func:`parse_area`) and declines everything else, leaving the error to the general path."""

from __future__ import annotations

import math

import numpy as np
import orjson
import pytest
import shapely
from hypothesis import given, settings
from hypothesis import strategies as st

from twin.errors import ValidationError
from twin.geography import district_boundary
from twin.query.areas import parse_area, polygon_from_json

SQ = [[113.10, 23.02], [113.12, 23.02], [113.12, 23.04], [113.10, 23.04], [113.10, 23.02]]
HOLE = [[113.105, 23.025], [113.11, 23.025], [113.11, 23.03], [113.105, 23.025]]


def _same(body: bytes) -> None:
    fast = polygon_from_json(body)
    assert fast is not None
    a, b = parse_area(fast), parse_area(orjson.loads(body))
    assert a.geometry.equals_exact(b.geometry, 0) and a.area_km2 == b.area_km2
    assert (a.clipped, a.warnings) == (b.clipped, b.warnings)


def test_plain_polygons_with_holes_and_integers_decode_as_the_general_path():
    _same(orjson.dumps({"type": "Polygon", "coordinates": [SQ]}))
    _same(orjson.dumps({"type": "Polygon", "coordinates": [SQ, HOLE], "bbox": [0, 0, 1, 1]}))
    _same(b'{"type":"Polygon","coordinates":[[[113,23],[114,23],[114,24],[113,23]]]}')  # ints; clipped


@settings(max_examples=60, deadline=None)
@given(st.integers(3, 80), st.floats(0.001, 0.02), st.integers(0, 2**32 - 1))
def test_random_lassos_agree(n, r, seed):
    rng = np.random.default_rng(seed)
    c = district_boundary().representative_point()
    ang = np.sort(rng.uniform(0, 2 * math.pi, n))
    rad = r * rng.uniform(0.3, 1.0, n)
    ring = [[float(c.x + a * math.cos(t)), float(c.y + a * math.sin(t))] for a, t in zip(rad, ang)]
    body = orjson.dumps({"type": "Polygon", "coordinates": [ring + [ring[0]]]})
    try:
        parse_area(orjson.loads(body))
    except ValidationError as e:  # a degenerate draw: the fast path's polygon is refused with the same error
        with pytest.raises(ValidationError) as fast:
            parse_area(polygon_from_json(body))
        assert str(fast.value) == str(e)
        return
    _same(body)


@pytest.mark.parametrize("obj", [
    {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [SQ]}, "properties": {}},
    {"type": "MultiPolygon", "coordinates": [[SQ]]},
    {"type": "Polygon", "coordinates": [[[*p, 0.0] for p in SQ]]},  # 3-D
    {"type": "Polygon", "coordinates": [SQ[:-1]]},  # not closed
    {"type": "Polygon", "coordinates": [[SQ[0], SQ[1], SQ[0]]]},  # too few positions
    {"type": "Polygon", "coordinates": [[[True, 23.0], *SQ[1:]]]},  # a boolean
    {"type": "Polygon", "coordinates": []},
    {"type": "Point", "coordinates": [113.1, 23.0]},
    [SQ],
])
def test_anything_else_is_left_to_the_general_path(obj):
    assert polygon_from_json(orjson.dumps(obj)) is None


def test_malformed_oversized_and_huge_numbers_are_declined():
    assert polygon_from_json(b'{"type": "Polygon", "coordinates": [[[113.1, 23.0]') is None
    assert polygon_from_json(b'{"type":"Polygon","coordinates":[[[1' + b"0" * 400 + b',23],[113,23],[113,24],[1'
                             + b"0" * 400 + b',23]]]}') is None
    big = [[113.1 + 1e-5 * i, 23.0] for i in range(50)] + [[113.1, 23.01], [113.1, 23.0]]
    assert polygon_from_json(orjson.dumps({"type": "Polygon", "coordinates": [big]}), max_vertices=10) is None
    assert shapely.get_num_coordinates(polygon_from_json(orjson.dumps({"type": "Polygon", "coordinates": [big]}))) == 52
