"""The city fabric as the map's offline base layers: water, parks, blocks and streets by class (dark theme).

Input frames are the twin's optional WGS84 tables (:data:`twin.model.FABRIC_TABLES`): ``streets`` (LineStrings
with ``class`` and ``width_m``), ``water`` (Polygons) and ``blocks`` (Polygons with ``land_use``). Streets are
drawn at their width in metres (never thinner than a pixel or two), minor streets only when zoomed in
(:data:`ZOOM_RANGES`, honoured by the map component). A twin without the tables gives no layers.
"""

from __future__ import annotations

from typing import Any

import geopandas as gpd
import numpy as np
import pydeck as pdk
import shapely

from layers.colors import RGBA, rgba_to_css
from layers.serialize import layer_to_json

__all__ = ["STREET_STYLE", "WATER_COLOR", "PARK_COLOR", "BLOCK_COLOR", "ZOOM_RANGES", "street_layers",
           "water_layer", "park_layer", "block_layer", "fabric_layers", "base_layers_json", "fabric_legend"]

#: class → (colour, minimum width in pixels); drawn bottom → top in this order.
STREET_STYLE: dict[str, tuple[RGBA, float]] = {
    "path": ([70, 82, 104, 200], 0.5),
    "service": ([74, 86, 110, 220], 0.6),
    "local": ([88, 100, 126, 255], 0.8),
    "collector": ([122, 134, 158, 255], 1.4),
    "arterial": ([176, 184, 200, 255], 2.2),
    "expressway": ([236, 178, 92, 255], 3.0),
}
WATER_COLOR: RGBA = [38, 112, 184, 255]
PARK_COLOR: RGBA = [44, 116, 74, 255]
BLOCK_COLOR: RGBA = [30, 46, 78, 255]
_MINOR = ("path", "service", "local")
ZOOM_RANGES: dict[str, tuple[float, float]] = {"fabric-streets-minor": (13.5, 24.0), "fabric-blocks": (12.0, 24.0)}
"""Layer id → (min, max) zoom at which it is drawn; the other fabric layers show at every zoom."""


def _split(coords: np.ndarray, owner: np.ndarray) -> list[list[list[float]]]:
    """Rows of ``coords`` (rounded to 1e-6°, ≈ 0.1 m) grouped by consecutive ``owner``."""
    cuts = np.flatnonzero(np.diff(owner)) + 1
    return [c.tolist() for c in np.split(np.round(coords, 6), cuts)]


def _paths(frame: gpd.GeoDataFrame, *, simplify_deg: float) -> list[dict[str, Any]]:
    geoms = shapely.simplify(frame.geometry.to_numpy(), simplify_deg, preserve_topology=False)
    parts, owner = shapely.get_parts(geoms, return_index=True)
    coords, idx = shapely.get_coordinates(parts, return_index=True)
    keep = shapely.get_num_coordinates(parts) >= 2
    paths = _split(coords, idx)
    cls = frame["class"].to_numpy().astype(str)[owner]
    width = np.round(frame["width_m"].to_numpy(dtype=float), 1)[owner]
    return [{"path": p, "c": c, "w": float(w), "color": STREET_STYLE.get(c, STREET_STYLE["local"])[0]}
            for p, c, w, k in zip(paths, cls, width, keep) if k]


def street_layers(streets: gpd.GeoDataFrame, *, simplify_deg: float = 5e-6) -> list[pdk.Layer]:
    """Two PathLayers: ``fabric-streets-minor`` (local, service, path) and ``fabric-streets-major`` (collector,
    arterial, expressway), width = ``width_m`` in metres with a per-class minimum in pixels."""
    order = {c: i for i, c in enumerate(STREET_STYLE)}
    s = streets.assign(_o=streets["class"].map(order).fillna(0)).sort_values("_o", kind="stable")
    layers = []
    for layer_id, minor in (("fabric-streets-minor", True), ("fabric-streets-major", False)):
        sub = s[s["class"].isin(_MINOR) == minor]
        if sub.empty:
            continue
        min_px = min(STREET_STYLE[c][1] for c in (_MINOR if minor else ("collector", "arterial", "expressway")))
        layers.append(pdk.Layer(
            "PathLayer", data=_paths(sub, simplify_deg=simplify_deg), id=layer_id, get_path="path",
            get_color="color", get_width="w", width_units="meters", width_min_pixels=min_px, cap_rounded=True,
            joint_rounded=True, pickable=False))
    return layers


def _polygons(frame: gpd.GeoDataFrame, *, simplify_deg: float) -> list[dict[str, Any]]:
    geoms = frame.geometry.to_numpy()
    if simplify_deg > 0:
        geoms = shapely.simplify(geoms, simplify_deg, preserve_topology=False)
    parts = shapely.get_parts(geoms)
    parts = parts[(shapely.get_type_id(parts) == 3) & ~shapely.is_empty(parts)]
    if len(parts) == 0:
        return []
    rings, ring_poly = shapely.get_rings(parts, return_index=True)  # exterior first, then the holes
    coords, coord_ring = shapely.get_coordinates(rings, return_index=True)
    ring_xy = _split(coords, coord_ring)
    out: list[dict[str, Any]] = []
    for r, poly in zip(ring_xy, ring_poly):
        if out and out[-1]["_p"] == poly:
            out[-1]["polygon"].append(r)
        else:
            out.append({"polygon": [r], "_p": int(poly)})
    for d in out:
        del d["_p"]
    return out


def _polygon_layer(frame: gpd.GeoDataFrame, layer_id: str, color: RGBA, *, simplify_deg: float) -> pdk.Layer:
    return pdk.Layer("PolygonLayer", data=_polygons(frame, simplify_deg=simplify_deg), id=layer_id,
                     get_polygon="polygon", get_fill_color=list(color), stroked=False, filled=True, pickable=False)


def water_layer(water: gpd.GeoDataFrame, *, simplify_deg: float = 5e-6) -> pdk.Layer:
    """River, ponds and lakes (``fabric-water``)."""
    return _polygon_layer(water, "fabric-water", WATER_COLOR, simplify_deg=simplify_deg)


def park_layer(blocks: gpd.GeoDataFrame, *, simplify_deg: float = 5e-6) -> pdk.Layer:
    """The park blocks (``fabric-parks``)."""
    return _polygon_layer(blocks[blocks["land_use"] == "park"], "fabric-parks", PARK_COLOR, simplify_deg=simplify_deg)


def block_layer(blocks: gpd.GeoDataFrame, *, simplify_deg: float = 5e-6) -> pdk.Layer:
    """Built blocks, a shade lighter than the district background (``fabric-blocks``, when zoomed in)."""
    built = blocks[~blocks["land_use"].isin(["park", "water"])]
    return _polygon_layer(built, "fabric-blocks", BLOCK_COLOR, simplify_deg=simplify_deg)


def fabric_layers(streets: gpd.GeoDataFrame | None, water: gpd.GeoDataFrame | None,
                  blocks: gpd.GeoDataFrame | None) -> list[pdk.Layer]:
    """The base layers bottom → top: blocks, parks, water, minor streets, major streets (those the twin has)."""
    out: list[pdk.Layer] = []
    if blocks is not None and len(blocks):
        out += [block_layer(blocks), park_layer(blocks)]
    if water is not None and len(water):
        out.append(water_layer(water))
    if streets is not None and len(streets):
        out += street_layers(streets)
    return out


def base_layers_json(t: Any) -> list[tuple[str, str]]:
    """``(id, JSON)`` of :func:`fabric_layers` for a loaded twin, serialised once and kept in ``t.cache``."""
    got = t.cache.get("layers.fabric")
    if got is None:
        layers = fabric_layers(getattr(t, "streets", None), getattr(t, "water", None), getattr(t, "blocks", None))
        got = t.cache["layers.fabric"] = [(lyr.id, layer_to_json(lyr)) for lyr in layers]
    return list(got)


def fabric_legend(layer_ids: list[str]) -> dict[str, Any]:
    """A legend block for the base layers present."""
    rows = [{"color": rgba_to_css(STREET_STYLE[c][0]), "label": c, "kind": "line"}
            for c in ("expressway", "arterial", "collector", "local")]
    rows += [{"color": rgba_to_css(WATER_COLOR), "label": "water"}, {"color": rgba_to_css(PARK_COLOR), "label": "park"}]
    return {"title": "City fabric (synthetic unless OSM)", "layers": layer_ids, "rows": rows}
