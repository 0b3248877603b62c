"""Layer builders: data in, pydeck.Layer out, with ids, colours, tooltips and compact JSON (small hand-built data)."""

from __future__ import annotations

import json

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
from shapely.geometry import box

from layers import boundaries, buildings, colors, hexagons, points
from layers.serialize import layer_to_dict, layer_to_json


def test_classed_scale_quantiles_cover_values_and_legend():
    v = np.arange(1, 101, dtype=float)
    s = colors.classed_scale(v, n_classes=5)
    assert s.breaks[0] == 1 and s.breaks[-1] == 100 and len(s.colors) == 5
    idx = s.classify(v)
    assert idx.min() == 0 and idx.max() == 4
    assert np.all(np.diff(idx) >= 0)  # monotone
    counts = np.bincount(idx)
    assert counts.min() >= 15  # quantile classes are roughly balanced
    legend = s.legend()
    assert len(legend) == 5 and legend[0]["label"].startswith("1 –") and legend[-1]["label"].endswith("100")


def test_classed_scale_nan_and_constant():
    s = colors.classed_scale([3.0, 3.0, np.nan])
    assert len(s.colors) == 1
    assert s.colors_for([np.nan], nan_color=[1, 2, 3, 4]) == [[1, 2, 3, 4]]
    with pytest.raises(ValueError, match="palette"):
        colors.classed_scale([1.0], palette="nope")


def _frame() -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame(
        {"grid_code": ["g1", "g2"], "grid_name": ["澜石社区第1网格", "澜石社区第2网格"], "area_km2": [0.1, 0.2],
         "community_code": ["c1", "c1"], "town_code": ["t1", "t1"]},
        geometry=[box(113.0, 23.0, 113.01, 23.01), box(113.01, 23.0, 113.02, 23.01)], crs="EPSG:4326")


def test_boundary_and_label_layers_json():
    d = layer_to_dict(boundaries.boundary_layer(_frame(), "grid"))
    assert d["@@type"] == "GeoJsonLayer" and d["id"] == "boundary-grid"
    assert "{grid_name}" in d["tooltipHtml"] and not d["tooltipHtml"].startswith("@@=")
    props = d["data"]["features"][0]["properties"]
    assert props["grid_code"] == "g1" and props["grid_name"] == "澜石社区第1网格"
    lab = layer_to_dict(boundaries.label_layer(_frame(), "grid"))
    assert lab["characterSet"] == "auto" and "Noto Sans CJK SC" in lab["fontFamily"]
    assert lab["getText"] == "@@=name" and lab["data"][0]["name"] == "澜石社区第1网格"
    x, y = lab["data"][0]["position"]
    assert 113.0 < x < 113.01 and 23.0 < y < 23.01  # inside its polygon
    with pytest.raises(ValueError, match="level"):
        boundaries.boundary_layer(_frame(), "street")


def test_compact_json_is_smaller_than_pydeck_and_equal():
    layer = boundaries.boundary_layer(_frame(), "grid")
    compact = layer_to_json(layer)
    assert "\n" not in compact and len(compact) < len(layer.to_json())
    assert json.loads(compact)["data"] == json.loads(layer.to_json())["data"]


def test_choropleth_colours_by_class_and_marks_suppressed():
    f = _frame()
    scale = colors.classed_scale([10.0, 1000.0], n_classes=2)
    d = layer_to_dict(boundaries.choropleth_layer(f, np.array([10.0, np.nan]), scale, value_name="residents"))
    p0, p1 = (ft["properties"] for ft in d["data"]["features"])
    assert p0["fill"] == list(scale.colors[0]) and p0["value"] == "10"
    assert p1["value"] == "suppressed"
    with pytest.raises(ValueError, match="one value per row"):
        boundaries.choropleth_layer(f, np.array([1.0]), scale, value_name="x")


def test_hexagon_layer_hex_strings_and_suppression():
    cells = np.array([0x8B41A8B2B2B2FFF, 0x8B41A8B2B2B3FFF], dtype=np.uint64)
    frame = pd.DataFrame({"cell": cells, "count": pd.array([12, None], dtype="Int64"),
                          "density_km2": pd.array([5.0, None], dtype="Float64"), "suppressed": [False, True]})
    scale = colors.classed_scale([1.0, 100.0])
    d = layer_to_dict(hexagons.hexagon_layer(frame, scale, value="count", layer_id="hex-x-11"))
    assert d["@@type"] == "H3HexagonLayer" and d["id"] == "hex-x-11"
    assert [r["hex"] for r in d["data"]] == ["8b41a8b2b2b2fff", "8b41a8b2b2b3fff"]
    assert d["data"][1]["value"] == "suppressed" and d["data"][0]["value"] == "12"
    assert hexagons.res_for_zoom(11) == 8 and hexagons.res_for_zoom(13.5) == 9 and hexagons.res_for_zoom(17) == 10
    with pytest.raises(ValueError, match="cell"):
        hexagons.hexagon_layer(frame.drop(columns="cell"), scale, layer_id="x")


def test_buildings_bbox_limit_and_colours():
    n = 50
    b = gpd.GeoDataFrame({
        "building_id": np.arange(n), "use": ["residential", "industrial"] * (n // 2),
        "height_m": np.full(n, 30.0), "residents": np.ones(n, int), "dwellings": np.ones(n, int),
        "businesses": np.zeros(n, int), "lng": 113.0 + np.arange(n) * 1e-4, "lat": np.full(n, 23.0)},
        geometry=[box(113.0 + i * 1e-4, 23.0, 113.0 + i * 1e-4 + 5e-5, 23.00005) for i in range(n)], crs="EPSG:4326")
    sub = buildings.buildings_in_bbox(b, (113.0, 22.99, 113.00205, 23.01))
    assert list(sub["building_id"]) == list(range(21))
    near = buildings.buildings_in_bbox(b, (113.0, 22.99, 113.00205, 23.01), limit=5)
    assert len(near) == 5 and 10 in set(near["building_id"])  # nearest the bbox centre kept
    d = layer_to_dict(buildings.building_layer(sub))
    assert d["extruded"] is True and d["getElevation"] == "@@=height_m"
    assert d["data"][0]["fill"] == colors.USE_COLORS["residential"]
    assert d["data"][1]["fill"] == colors.USE_COLORS["industrial"]
    assert len(d["data"][0]["polygon"]) == 5
    with pytest.raises(ValueError, match="bbox"):
        buildings.buildings_in_bbox(b, (1, 1, 0, 0))


def test_points_workers_status_and_business_worst_credit():
    w = pd.DataFrame({"worker_id": ["W1", "W2"], "name": ["网格员1", "网格员2"], "grid_code": ["g1", "g2"],
                      "status": ["online", "offline"], "lng": [113.0, 113.1], "lat": [23.0, 23.1]})
    d = layer_to_dict(points.workers_layer(w))
    assert [r["fill"] for r in d["data"]] == [colors.STATUS_COLORS["online"], colors.STATUS_COLORS["offline"]]
    biz = pd.DataFrame({"building_id": [1, 1, 2, 3], "credit": ["green", "red", "yellow", "green"]})
    bld = pd.DataFrame({"building_id": [1, 2, 3], "lng": [113.0, 113.1, 113.2], "lat": [23.0, 23.1, 23.2]})
    per = points.businesses_by_building(biz, bld).set_index("building_id")
    assert per.loc[1, "worst"] == "red" and per.loc[2, "worst"] == "yellow" and per.loc[3, "worst"] == "green"
    assert per[["green", "yellow", "red"]].to_numpy().sum() == 4
    layer = layer_to_dict(points.businesses_layer(per.reset_index()))
    assert layer["id"] == "businesses" and len(layer["data"]) == 3


def test_district_layer_is_a_dark_filled_outline_not_pickable():
    d = layer_to_dict(boundaries.district_layer(box(113.0, 23.0, 113.1, 23.1)))
    assert d["id"] == "district-fill" and d["@@type"] == "GeoJsonLayer"
    assert d["filled"] and d["stroked"] and not d["pickable"]
    assert d["getFillColor"] == [22, 36, 64, 255]
    (feat,) = d["data"]["features"]
    assert feat["properties"] == {"name": "禅城区"} and feat["geometry"]["type"] == "Polygon"


def test_layer_modules_declare_their_public_api():
    import layers

    assert set(layers.__all__) >= {"boundaries", "colors", "edit", "serialize"}
    for name in layers.__all__:
        mod = __import__(f"layers.{name}", fromlist=["__all__"])
        assert mod.__all__ and all(hasattr(mod, n) for n in mod.__all__), name


def test_building_heights_are_rounded_in_the_tooltip_data():
    b = gpd.GeoDataFrame({
        "building_id": [1], "use": ["residential"], "height_m": np.array([34.7], dtype=np.float32),
        "residents": [3], "dwellings": [1], "businesses": [0], "lng": [113.0], "lat": [23.0]},
        geometry=[box(113.0, 23.0, 113.0001, 23.0001)], crs="EPSG:4326")
    d = layer_to_dict(buildings.building_layer(b))
    assert d["data"][0]["height_m"] == 34.7  # float32 34.70000076293945 → 34.7
    assert "34.7000" not in layer_to_json(buildings.building_layer(b))


def _incidents(n: int = 4) -> pd.DataFrame:
    t0 = pd.Timestamp("2026-11-01 08:00", tz="Asia/Shanghai")
    return pd.DataFrame({
        "id": np.arange(1, n + 1), "lng": 113.1 + np.arange(n) * 1e-3, "lat": np.full(n, 23.02),
        "category": ["env_sewage", "fire_blocked_exit", "unknown_code", "env_sewage"][:n],
        "level": ["grid", "community", "town", "district"][:n], "state": "dispatched",
        "grid_code": "440604001001001", "assignee": ["W1", "", None, "W2"][:n],
        "reported_at": [t0 + pd.Timedelta(hours=i) for i in range(n)]})


def test_open_incidents_layer_colours_by_level_rings_overdue_and_names_categories():
    from layers import incidents

    cat = pd.DataFrame({"name": ["Sewage discharge"], "name_zh": ["污水直排"]},
                       index=pd.Index(["env_sewage"], name="code"))
    f = _incidents()
    late = np.array([False, True, False, False])
    d = layer_to_dict(incidents.open_incidents_layer(f, overdue=late, catalogue=cat))
    assert d["id"] == "incidents" and d["pickable"] is True
    rows = d["data"]
    assert [r["fill"] for r in rows] == [incidents.LEVEL_COLORS[v] for v in f["level"]]
    assert rows[1]["line"] == incidents.OVERDUE_COLOR and rows[0]["line"] != incidents.OVERDUE_COLOR
    assert rows[0]["category"] == "污水直排 Sewage discharge" and rows[2]["category"] == "unknown_code"
    assert rows[2]["assignee"] == "-" and rows[3]["radius"] > rows[0]["radius"]
    assert "@@=" not in d["tooltipHtml"] and "{category}" in d["tooltipHtml"]
    with pytest.raises(ValueError, match="overdue mask"):
        incidents.open_incidents_layer(f, overdue=late[:2])
    halo = layer_to_dict(incidents.new_incidents_layer(f.iloc[:1]))
    assert halo["id"] == "incidents-new" and [r["id"] for r in halo["data"]] == [1]


def test_point_count_layer_counts_points_per_hexagon():
    lng = np.array([113.1, 113.1001, 113.1002, 113.2])
    lat = np.array([23.02, 23.0201, 23.0202, 23.05])
    online = np.array([True, False, True, True])
    d = layer_to_dict(hexagons.point_count_layer(lng, lat, res=8, layer_id="workers-agg", color=(0, 200, 110),
                                                 label="grid workers", split=online, split_label="online"))
    assert d["id"] == "workers-agg" and d["@@type"] == "H3HexagonLayer"
    got = sorted((r["n"], r["k"]) for r in d["data"])
    assert got == [(1, 1), (3, 2)]  # three close points in one res-8 cell (two online), one far away
    assert sum(r["n"] for r in d["data"]) == len(lng)
    assert "{n}" in d["tooltipHtml"] and "{k}" in d["tooltipHtml"]
