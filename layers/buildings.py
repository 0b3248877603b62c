"""3D building footprints (extruded by ``height_m``), coloured by use or by a share."""

from __future__ import annotations

from collections.abc import Sequence

import geopandas as gpd
import numpy as np
import pydeck as pdk
import shapely

from layers.colors import USE_COLORS, ClassedScale

__all__ = ["buildings_in_bbox", "building_layer", "MIN_ZOOM"]

#: Buildings are sent to the browser only when the map is zoomed in at least this far.
MIN_ZOOM = 14.5


def buildings_in_bbox(buildings: gpd.GeoDataFrame, bbox: Sequence[float], *, limit: int = 12_000) -> gpd.GeoDataFrame:
    """Buildings whose point (``lng``, ``lat``, WGS84 degrees) lies in ``bbox`` = (west, south, east, north).

    At most ``limit`` rows, nearest to the bbox centre first (keeps the JSON sent to the browser bounded).
    """
    w, s, e, n = (float(v) for v in bbox)
    if not (w < e and s < n):
        raise ValueError(f"bbox must be (west, south, east, north) with west<east and south<north, got {tuple(bbox)}")
    lng = buildings["lng"].to_numpy()
    lat = buildings["lat"].to_numpy()
    inside = (lng >= w) & (lng <= e) & (lat >= s) & (lat <= n)
    sub = buildings.loc[inside]
    if len(sub) > limit:
        d2 = (sub["lng"].to_numpy() - (w + e) / 2) ** 2 + (sub["lat"].to_numpy() - (s + n) / 2) ** 2
        sub = sub.iloc[np.argsort(d2)[:limit]]
    return sub


def building_layer(buildings: gpd.GeoDataFrame, *, layer_id: str = "buildings-3d", color_by: str = "use",
                   scale: ClassedScale | None = None, values: np.ndarray | None = None,
                   extruded: bool = True) -> pdk.Layer:
    """Extruded footprints (metres of ``height_m``), coloured by ``use`` or by ``values`` through ``scale``.

    Parameters
    ----------
    buildings : GeoDataFrame (EPSG:4326)
        Twin buildings (footprint polygons, ``use``, ``height_m``, ``residents``, ``businesses``, ``dwellings``).
    color_by : {"use", "value"}
        "value" needs ``scale`` and ``values`` aligned with the rows (e.g. a key-population share).
    """
    rings = shapely.get_exterior_ring(shapely.get_geometry(buildings.geometry.values, 0))
    coords = [np.round(shapely.get_coordinates(r), 6).tolist() for r in rings]
    if color_by == "use":
        fill = [USE_COLORS.get(u, [200, 200, 200, 255]) for u in buildings["use"].astype(str)]
    elif color_by == "value":
        if scale is None or values is None or len(values) != len(buildings):
            raise ValueError("color_by='value' needs a scale and one value per building")
        fill = scale.colors_for(values, nan_color=[120, 120, 120, 200])
    else:
        raise ValueError(f"unknown color_by {color_by!r}; use 'use' or 'value'")
    data = {
        "polygon": coords,
        "height_m": buildings["height_m"].astype(float).round(1).tolist(),  # float32 → 34.7, not 34.70000076…
        "fill": fill,
        "use": buildings["use"].astype(str).tolist(),
        "building_id": buildings["building_id"].astype(int).tolist(),
        "residents": buildings["residents"].astype(int).tolist(),
        "dwellings": buildings["dwellings"].astype(int).tolist(),
        "businesses": buildings["businesses"].astype(int).tolist(),
    }
    records = [dict(zip(data, row)) for row in zip(*data.values())]
    return pdk.Layer(
        "PolygonLayer", data=records, id=layer_id, get_polygon="polygon", get_fill_color="fill",
        extruded=extruded, get_elevation="height_m", wireframe=False, stroked=False, pickable=True,
        auto_highlight=True, material={"ambient": 0.45, "diffuse": 0.6, "shininess": 20},
        tooltip_html="<b>building {building_id}</b> · {use}<br/>{height_m} m · {dwellings} dwellings"
                     "<br/>{residents} residents · {businesses} businesses",
    )
