"""Cached data and layer JSON for the map app (everything here is computed once per twin, not per rerun).

The twin is loaded once per process (``st.cache_resource``). Static layers (boundaries, labels, points,
overlays) are serialised once to compact JSON and cached; only small per-interaction layers (the queried area,
touched cells, buildings in view) are built on a rerun.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import shapely
import shapely.geometry
import streamlit as st
from shapely.geometry.base import BaseGeometry

import twin
from layers import boundaries, buildings, colors, hexagons, points
from layers.serialize import layer_to_json
from twin.access.roles import ANALYST, DISTRICT, Role
from twin.cells import PARTITION_RES, latlng_to_cells
from twin.encoding import dumps
from twin.partition import versions
from twin.partition.balance import grid_stats
from twin.partition.model import neighbour_grids, partition_from_twin
from twin.query.dossier import grid_counts, grid_dossier
from twin.query.results import AreaSummary
from twin.store.sql import Store, open_store

__all__ = [
    "get_twin", "warm_dossier", "twin_key", "HeadTwin", "app_store", "store_url", "head_twin", "OVERLAY_CATEGORIES", "GRID_METRICS", "overlay_frame", "static_layer", "hex_layers",
    "grid_table", "grid_metric_values", "grid_metric_layer", "buildings_layer_json", "search_options",
    "unit_geometry", "grid_neighbours", "cell_at", "grid_at", "summary_of", "area_id", "LayerJSON", "ROLES",
]

LayerJSON = tuple[str, str]
#: roles the app offers, by name
ROLES = {"district": DISTRICT, "analyst": ANALYST}

#: overlay category → (label, palette)
OVERLAY_CATEGORIES: dict[str, tuple[str, str]] = {
    "residents": ("Residents 常住人口", "YlOrRd"),
    "dwellings": ("Dwellings 房屋", "Blues"),
    "businesses": ("Businesses 法人", "BuGn"),
    "disabled": ("Disabled 残疾人", "PuRd"),
    "low_income": ("Low income 低保", "PuRd"),
    "pregnant": ("Pregnant 孕产妇", "PuRd"),
    "elderly_70": ("Elderly 70+", "PuRd"),
    "elderly_80": ("Elderly 80+", "PuRd"),
}
#: grid metric → label (values from twin.query.dossier.grid_counts, plus key persons and workload)
GRID_METRICS: dict[str, str] = {
    "residents": "Residents",
    "key_persons": "Key persons (disabled+低保+pregnant+80+)",
    "businesses": "Businesses",
    "dwellings": "Dwellings",
    "workload": "Workload (weighted)",
    "residents_per_km2": "Residents per km²",
    "elderly_80": "Elderly 80+",
    "credit_red": "Red-credit businesses",
}


@st.cache_resource(show_spinner="Loading the Chancheng twin …")
def get_twin() -> twin.Twin:
    """The default twin, loaded once per server process."""
    t = twin.load()
    b = t.district.centroid
    summary_of(t, shapely.geometry.box(b.x - 0.001, b.y - 0.001, b.x + 0.001, b.y + 0.001), DISTRICT)  # warm indexes
    return t


@st.cache_resource(show_spinner=False)
def warm_dossier(_t: twin.Twin, key: str) -> threading.Thread:
    """Build the first dossier's per-grid tables and the partition (≈ 3.5 s) in a background thread, once per
    twin: the first click on a grid is then as fast as the next ones, and the first paint does not wait for it.
    Explore starts it (the command-centre screen never opens dossiers)."""

    def work() -> None:
        code = str(_t.grids["grid_code"].iloc[0])
        grid_dossier(_t, code)
        neighbour_grids(partition_from_twin(_t), code)

    thread = threading.Thread(target=work, name="twin-warm-dossier", daemon=True)
    thread.start()
    return thread


def twin_key(t: twin.Twin) -> str:
    """Cache key of a loaded twin (its folder and checksums, and the partition version of a checked-out twin): the
    ``key`` argument of the cached builders here."""
    key = str(t.root) + ":" + str(t.manifest.get("checksums", t.manifest.get("seed")))[:64]
    version = t.manifest.get("partition_version")
    return key if version is None else f"{key}:v{version}"


def store_url(t: twin.Twin) -> str:
    """The state store's URL for ``t`` (``$TWIN_DATABASE_URL`` or ``<twin>/state.sqlite``)."""
    return open_store(twin_root=t.root).url


@st.cache_resource(show_spinner=False)
def app_store(url: str) -> Store:
    """One :class:`Store` per URL and server process (partition versions, incidents, worker status)."""
    return open_store(url)


@dataclass(frozen=True)
class HeadTwin:
    """The twin at the head partition version, the version id (``None`` before any version is stored) and a label
    naming it on screen."""

    twin: twin.Twin
    version: int | None
    label: str


def head_twin(base: twin.Twin | None = None) -> HeadTwin:
    """The twin as of the store's **head** partition version (:func:`twin.partition.versions.checkout`, cached per
    version in the base twin), so counts, search, dossiers, area tables and layers all follow the last commit.

    One small query per call (the head id); a new head is checked out once per server process (≈ 2–4 s: grid
    polygons and the partition index). Before any version is stored the built twin is its own head (version 1).
    """
    base = base if base is not None else get_twin()
    store = app_store(store_url(base))
    try:
        vid = versions.head_version(store)
    except twin.NotFoundError:
        return HeadTwin(base, None, f"partition v{versions.BASE_VERSION} (built) · {len(base.grids)} grids")
    if vid == versions.BASE_VERSION:
        t = base
    else:
        t = versions.checkout(base, vid, store=store)
    return HeadTwin(t, vid, f"partition v{vid} (head) · {len(t.grids)} grids")


# --- overlays -------------------------------------------------------------------------------------------------

@st.cache_resource(show_spinner=False)
def overlay_frame(_t: twin.Twin, key: str, category: str, res: int, role_name: str = "district") -> pd.DataFrame:
    """``twin.overlay`` (cell, count, density_km2, suppressed) without empty cells, for the role by name."""
    if category not in OVERLAY_CATEGORIES:
        raise twin.ValidationError(f"unknown overlay {category!r}; use one of {sorted(OVERLAY_CATEGORIES)}")
    frame = twin.overlay(_t, category, res=res, role=ROLES[role_name])
    count = frame["count"].astype("Float64").to_numpy(dtype=float, na_value=np.nan)
    return frame.loc[(count > 0) | frame["suppressed"].to_numpy(dtype=bool)].reset_index(drop=True)


@st.cache_resource(show_spinner=False)
def hex_layers(_t: twin.Twin, key: str, category: str, res_choice: str,
               role_name: str = "district") -> tuple[list[LayerJSON], dict, dict]:
    """Hexagon layers for one overlay: every resolution with its zoom range ("auto"), or one fixed res.

    Returns (layers, zoom_ranges, legend). The colour classes are computed on the res-9 counts and scaled by
    cell area for other resolutions, so a colour means the same density at every zoom.
    """
    label, palette = OVERLAY_CATEGORIES[category]
    base = overlay_frame(_t, key, category, 9, role_name)
    dens = base["density_km2"].astype("Float64").to_numpy(dtype=float, na_value=np.nan)
    scale = colors.classed_scale(dens, palette=palette, n_classes=6, alpha=185, title=label,
                                 unit="/km²")
    out: list[LayerJSON] = []
    ranges: dict[str, tuple[float, float]] = {}
    res_list = list(hexagons.ZOOM_FOR_RES) if res_choice == "auto" else [int(res_choice)]
    for res in res_list:
        frame = overlay_frame(_t, key, category, res, role_name)
        lid = f"hex-{category}-{res}"
        layer = hexagons.hexagon_layer(frame, scale, value="density_km2", layer_id=lid, label=f"{label} /km²",
                                       extra=("count",), opacity=0.8)
        out.append((lid, layer_to_json(layer)))
        if res_choice == "auto":
            ranges[lid] = hexagons.ZOOM_FOR_RES[res]
    legend = {"title": f"{label} per km² (H3)", "rows": scale.legend()}
    return out, ranges, legend


# --- static layers --------------------------------------------------------------------------------------------

@st.cache_resource(show_spinner=False)
def static_layer(_t: twin.Twin, key: str, name: str) -> LayerJSON:
    """One cached static layer by name: district, boundary-*, labels-*, workers, cameras, cameras-agg, businesses."""
    t = _t
    if name == "district-fill":
        layer = boundaries.district_layer(t.district, layer_id=name)
    elif name.startswith("boundary-"):
        level = name.split("-", 1)[1]
        frame = {"town": t.towns, "community": t.communities, "grid": t.grids}[level]
        layer = boundaries.boundary_layer(frame, level)
    elif name.startswith("labels-"):
        level = name.split("-", 1)[1]
        frame = {"town": t.towns, "community": t.communities, "grid": t.grids}[level]
        layer = boundaries.label_layer(frame, level)
    elif name == "workers":
        layer = points.workers_layer(t.workers)
    elif name == "cameras":
        layer = points.cameras_layer(t.cameras)
    elif name == "cameras-agg":
        layer = hexagons.point_count_layer(t.cameras["lng"].to_numpy(), t.cameras["lat"].to_numpy(), res=8,
                                           layer_id=name, color=(186, 104, 255), label="cameras")
    elif name == "businesses":
        layer = points.businesses_layer(points.businesses_by_building(t.businesses, t.buildings))
    else:
        raise twin.ValidationError(f"unknown static layer {name!r}")
    return name, layer_to_json(layer)


# --- grid metric ----------------------------------------------------------------------------------------------

@st.cache_resource(show_spinner=False)
def grid_table(_t: twin.Twin, key: str) -> pd.DataFrame:
    """Per-grid counts (twin.query.dossier.grid_counts) plus ``key_persons`` and ``workload`` of the twin's own
    partition (twin.partition.balance.grid_stats, the balance report's definitions) and ``residents_per_km2``."""
    c = grid_counts(_t).copy()
    stats = grid_stats(_t, partition_from_twin(_t), polygons=False).set_index("grid_code")
    for col in ("key_persons", "workload"):
        c[col] = stats[col].reindex(c.index).to_numpy(dtype=float)
    area = _t.grids.set_index("grid_code")["area_km2"].reindex(c.index).to_numpy()
    c["residents_per_km2"] = c["residents"] / np.where(area > 0, area, np.nan)
    return c


def grid_metric_values(t: twin.Twin, metric: str) -> np.ndarray:
    """One value per row of ``t.grids`` for ``metric`` (see :data:`GRID_METRICS`)."""
    if metric not in GRID_METRICS:
        raise twin.ValidationError(f"unknown grid metric {metric!r}; use one of {sorted(GRID_METRICS)}")
    table = grid_table(t, twin_key(t))
    return table[metric].reindex(t.grids["grid_code"].astype(str)).to_numpy(dtype=float)


@st.cache_resource(show_spinner=False)
def grid_metric_layer(_t: twin.Twin, key: str, metric: str) -> tuple[LayerJSON, dict]:
    """Grids filled by a classed scale of ``metric``; returns (layer, legend)."""
    vals = grid_metric_values(_t, metric)
    scale = colors.classed_scale(vals, palette="YlOrRd", n_classes=5, alpha=170, title=GRID_METRICS[metric])
    layer = boundaries.choropleth_layer(_t.grids, vals, scale, value_name=metric, layer_id="grid-metric",
                                        label=GRID_METRICS[metric])
    return ("grid-metric", layer_to_json(layer)), {"title": f"Grids: {GRID_METRICS[metric]}", "rows": scale.legend()}


# --- buildings in view ----------------------------------------------------------------------------------------

@st.cache_data(show_spinner=False, max_entries=32)
def _buildings_json(key: str, bbox: tuple[float, float, float, float]) -> str:
    t = get_twin()
    sub = buildings.buildings_in_bbox(t.buildings, bbox)
    return layer_to_json(buildings.building_layer(sub))


def buildings_layer_json(t: twin.Twin, bbox: tuple[float, float, float, float]) -> LayerJSON:
    """3D buildings with their point in ``bbox`` (west, south, east, north; WGS84)."""
    w, s, e, n = (round(float(v), 5) for v in bbox)
    return "buildings-3d", _buildings_json(twin_key(t), (w, s, e, n))


# --- search and units -----------------------------------------------------------------------------------------

@st.cache_resource(show_spinner=False)
def search_options(_t: twin.Twin, key: str) -> dict[str, tuple[str, str]]:
    """Label shown in the search box → (level, code), for every town, community and grid."""
    t = _t
    out: dict[str, tuple[str, str]] = {}
    for r in t.towns.itertuples():
        out[f"镇街 {r.town_name} · {r.town_code}"] = ("town", str(r.town_code))
    for r in t.communities.itertuples():
        out[f"村居 {r.community_name} · {r.community_code}"] = ("community", str(r.community_code))
    for r in t.grids.itertuples():
        out[f"网格 {r.grid_name} · {r.grid_code}"] = ("grid", str(r.grid_code))
    return out


def unit_geometry(t: twin.Twin, level: str, code: str) -> BaseGeometry:
    """The WGS84 polygon of a town, community or grid (:class:`twin.NotFoundError` for unknown codes)."""
    getter = {"town": t.town, "community": t.community, "grid": t.grid}.get(level)
    if getter is None:
        raise twin.ValidationError(f"unknown level {level!r}; use town, community or grid")
    geom: BaseGeometry = getter(code).geometry
    return geom


def grid_neighbours(t: twin.Twin, code: str) -> list[str]:
    """Codes of the grids sharing a cell edge with grid ``code`` in the twin's own partition (the partition's one
    definition, :func:`twin.partition.model.neighbour_grids`); :class:`twin.NotFoundError` for an unknown code."""
    return neighbour_grids(partition_from_twin(t), code)


def cell_at(coordinate: Sequence[float] | None) -> int | None:
    """The H3 partition cell (res 11) at WGS84 ``[lng, lat]``; ``None`` for a missing coordinate."""
    if not coordinate or len(coordinate) != 2:
        return None
    cell = latlng_to_cells(np.array([float(coordinate[1])]), np.array([float(coordinate[0])]), PARTITION_RES)
    return int(cell[0])


def grid_at(t: twin.Twin, coordinate: Sequence[float] | None) -> str:
    """Grid code at a WGS84 ``[lng, lat]`` (``""`` outside the partition or for a missing coordinate)."""
    cell = cell_at(coordinate)
    if cell is None:
        return ""
    return str(t.grid_of_cells(np.array([cell], dtype=np.uint64))[0])


def summary_of(t: twin.Twin, area: dict[str, Any] | BaseGeometry, role: Role) -> AreaSummary:
    """``twin.summarize_area`` for an area (GeoJSON or shapely, WGS84) by grid: the one call the summary panel
    shows."""
    return twin.summarize_area(t, area, role=role, by="grid")


def area_id(geojson: dict[str, Any]) -> str:
    """Short stable id of an area (for cache keys and download names)."""
    return hashlib.sha1(dumps(geojson, sort_keys=True)).hexdigest()[:10]
