"""Administrative boundaries (district, towns, communities, grids), their labels and the grid choropleth.

Input frames are WGS84 GeoDataFrames as in :mod:`twin.model`; output is :class:`pydeck.Layer` with a stable ``id``
and a ``tooltipHtml`` template (``{field}`` placeholders, read by the map component).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import geopandas as gpd
import numpy as np
import pydeck as pdk
import shapely
from shapely.geometry.base import BaseGeometry

from layers.colors import LEVEL_COLORS, ClassedScale

__all__ = ["LEVELS", "boundary_layer", "label_layer", "choropleth_layer", "area_layer", "district_layer",
           "to_feature_collection", "CJK_FONT"]

LEVELS = ("district", "town", "community", "grid")
#: Font stack for Chinese labels (Debian's fonts-noto-cjk provides Noto Sans CJK SC).
CJK_FONT = "Noto Sans CJK SC, Noto Sans SC, WenQuanYi Micro Hei, Microsoft YaHei, sans-serif"

_TOOLTIPS = {
    "town": "<b>{town_name}</b><br/>town {town_code}<br/>{area_km2} km²",
    "community": "<b>{community_name}</b><br/>community {community_code}<br/>{area_km2} km²",
    "grid": "<b>{grid_name}</b><br/>grid {grid_code}<br/>{area_km2} km²<br/><i>click for the dossier</i>",
    "district": "<b>禅城区 Chancheng District</b>",
}
_NAME_COLUMN = {"town": "town_name", "community": "short_name", "grid": "grid_name"}


def to_feature_collection(frame: gpd.GeoDataFrame, *, columns: Sequence[str] = (),
                          simplify_deg: float = 0.0) -> dict[str, Any]:
    """GeoJSON FeatureCollection (WGS84) of ``frame`` keeping ``columns`` as properties.

    ``simplify_deg`` simplifies outlines (degrees; 1e-5 ≈ 1 m here) to lighten the JSON sent to the browser.
    Floats are rounded to 6 decimals (≈ 0.1 m).
    """
    keep = [c for c in columns if c in frame.columns]
    geoms = frame.geometry
    if simplify_deg > 0:
        geoms = geoms.simplify(simplify_deg, preserve_topology=True)
    sub = gpd.GeoDataFrame(frame[keep].copy(), geometry=shapely.set_precision(geoms.values, 1e-6), crs=frame.crs)
    for c in keep:
        if sub[c].dtype.kind == "f":
            sub[c] = sub[c].round(3)
    out: dict[str, Any] = json.loads(sub.to_json(drop_id=True))
    return out


def boundary_layer(frame: gpd.GeoDataFrame, level: str, *, layer_id: str | None = None,
                   pickable: bool = True) -> pdk.Layer:
    """Outlines of one administrative level; grids are filled invisibly and pickable (hover tooltip, highlight).

    Parameters
    ----------
    frame : GeoDataFrame (EPSG:4326)
        towns, communities or grids from the twin, or a one-row frame for the district.
    level : {"district", "town", "community", "grid"}
    """
    if level not in LEVELS:
        raise ValueError(f"unknown level {level!r}; use one of {LEVELS}")
    color, width = LEVEL_COLORS[level]
    cols = [c for c in frame.columns if c != frame.geometry.name and frame[c].dtype.kind in "OUifb"]
    cols = [c for c in cols if c not in ("synthetic", "n_cells")] + [c for c in frame.columns if c == "short_name"]
    data = to_feature_collection(frame, columns=sorted(set(cols)), simplify_deg=2e-5)
    return pdk.Layer(
        "GeoJsonLayer", data=data, id=layer_id or f"boundary-{level}",
        stroked=True, filled=level == "grid", get_fill_color=[0, 0, 0, 1],
        get_line_color=color, line_width_units="pixels", get_line_width=width, line_width_min_pixels=width * 0.5,
        # only grids are picked: town and community outlines are long H3-stepped paths whose picking pass cost
        # 0.1 s and 1.2 s per hover or click on a software-rendered screen (their names are on the label layers)
        pickable=pickable and level == "grid", auto_highlight=level == "grid",
        highlight_color=[255, 255, 255, 60], tooltip_html=_TOOLTIPS[level],
    )


def label_layer(frame: gpd.GeoDataFrame, level: str, *, layer_id: str | None = None, size_px: float | None = None,
                color: Sequence[int] = (255, 255, 255, 255)) -> pdk.Layer:
    """Name labels at each unit's representative point (inside the polygon), Chinese-capable font."""
    if level not in _NAME_COLUMN:
        raise ValueError(f"no labels for level {level!r}; use one of {sorted(_NAME_COLUMN)}")
    pts = shapely.point_on_surface(frame.geometry.values)
    names = frame[_NAME_COLUMN[level]].astype(str).to_numpy()
    data = [{"name": n, "position": [round(float(x), 6), round(float(y), 6)]}
            for n, x, y in zip(names, shapely.get_x(pts), shapely.get_y(pts))]
    size = size_px or {"town": 22.0, "community": 14.0, "grid": 12.0}[level]
    return pdk.Layer(
        "TextLayer", data=data, id=layer_id or f"labels-{level}", get_position="position", get_text="name",
        get_size=size, size_units="pixels", get_color=list(color), character_set="'auto'", font_family=f"'{CJK_FONT}'",
        font_weight=700 if level == "town" else 500, outline_width=3, outline_color=[0, 0, 0, 230],
        font_settings={"sdf": True, "fontSize": 48, "buffer": 4}, billboard=True, pickable=False,
        get_text_anchor="'middle'", get_alignment_baseline="'center'",
    )


def choropleth_layer(frame: gpd.GeoDataFrame, values: np.ndarray, scale: ClassedScale, *, value_name: str,
                     layer_id: str = "grid-metric", label: str = "") -> pdk.Layer:
    """Units filled by a classed colour scale (e.g. grids by residents); ``values`` aligned with ``frame`` rows.

    NaN values (suppressed counts) are drawn hatched-grey and shown as "suppressed" in the tooltip.
    """
    vals = np.asarray(values, dtype=float)
    if len(vals) != len(frame):
        raise ValueError(f"choropleth needs one value per row: {len(vals)} values for {len(frame)} rows")
    cols = [c for c in ("grid_code", "grid_name", "community_code", "short_name", "community_name", "town_code",
                        "town_name", "area_km2") if c in frame.columns]
    data = to_feature_collection(frame, columns=cols, simplify_deg=2e-5)
    colors = scale.colors_for(vals, nan_color=[90, 90, 90, 160])
    for f, v, c in zip(data["features"], vals.tolist(), colors):
        f["properties"]["value"] = "suppressed" if np.isnan(v) else f"{v:,.0f}" if abs(v) >= 10 else f"{v:,.2f}"
        f["properties"]["fill"] = c
    name_field = "{grid_name}" if "grid_name" in cols else "{short_name}" if "short_name" in cols else "{town_name}"
    return pdk.Layer(
        "GeoJsonLayer", data=data, id=layer_id, stroked=False, filled=True, get_fill_color="properties.fill",
        pickable=True, auto_highlight=True, highlight_color=[255, 255, 255, 80],
        tooltip_html=f"<b>{name_field}</b><br/>{label or value_name}: <b>{{value}}</b>",
    )


def area_layer(geojson: dict[str, Any], *, layer_id: str = "query-area",
               color: Sequence[int] = (0, 200, 255, 255)) -> pdk.Layer:
    """The queried area (drawn, uploaded or picked) as a bright outline with a light fill."""
    fill = [int(color[0]), int(color[1]), int(color[2]), 40]
    return pdk.Layer("GeoJsonLayer", data=geojson, id=layer_id, stroked=True, filled=True, get_fill_color=fill,
                     get_line_color=list(color), line_width_units="pixels", get_line_width=3, pickable=False)


def district_layer(district: BaseGeometry, *, layer_id: str = "district-fill",
                   fill: Sequence[int] = (22, 36, 64, 255)) -> pdk.Layer:
    """The district polygon (WGS84) filled dark with a white outline: the map's background, so it reads without a
    web basemap. Outlines are simplified by 1e-5 degrees (≈ 1 m)."""
    frame = gpd.GeoDataFrame({"name": ["禅城区"]}, geometry=[district], crs="EPSG:4326")
    data = to_feature_collection(frame, columns=["name"], simplify_deg=1e-5)
    return pdk.Layer("GeoJsonLayer", data=data, id=layer_id, stroked=True, filled=True, get_fill_color=list(fill),
                     get_line_color=[255, 255, 255, 255], line_width_units="pixels", get_line_width=3,
                     pickable=False)
