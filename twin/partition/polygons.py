"""Polygons of the governance levels (town → community → grid) derived from the cell partition.

The canonical partition is ``cell → grid_code``; a grid's community and town come from the grid table. Polygons
are the union of a unit's H3 cells clipped to the real district boundary (WGS84); areas are measured in EPSG:4547.
"""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from shapely.geometry.base import BaseGeometry

from twin.cells import cells_to_geometry
from twin.crs import STORAGE_CRS, to_metric

__all__ = ["units_to_polygons", "changed_units_polygons", "short_name"]


def short_name(name: str) -> str:
    """``澜石社区居委会`` → ``澜石社区``; ``河宕村民委员会`` → ``河宕村``."""
    for long, short in (("社区居委会", "社区"), ("居委会", "社区"), ("村民委员会", "村"), ("村委会", "村")):
        if name.endswith(long):
            return name[: -len(long)] + short
    return name


def units_to_polygons(
    cells: np.ndarray, unit_of_cell: np.ndarray, district: BaseGeometry, *, name: str = "code"
) -> gpd.GeoDataFrame:
    """One clipped polygon per unit: columns ``name``, ``geometry`` (WGS84), ``area_km2`` (EPSG:4547), ``n_cells``.

    ``unit_of_cell`` is aligned with ``cells`` (codes as strings).
    """
    codes = pd.Series(np.asarray(unit_of_cell)).astype(str)
    order = np.argsort(codes.to_numpy(), kind="stable")
    sorted_codes = codes.to_numpy()[order]
    uniq, starts, counts = np.unique(sorted_codes, return_index=True, return_counts=True)
    shapely.prepare(district)
    geoms = []
    for s, c in zip(starts, counts):
        g = cells_to_geometry(cells[order[s : s + c]])
        geoms.append(shapely.intersection(g, district))
    gdf = gpd.GeoDataFrame({name: uniq, "n_cells": counts.astype(np.int32)}, geometry=geoms, crs=STORAGE_CRS)
    gdf["area_km2"] = to_metric(gdf.geometry).area.to_numpy() / 1e6
    return gdf


def changed_units_polygons(
    built: gpd.GeoDataFrame, built_code: np.ndarray, cells: np.ndarray, new_code: np.ndarray, district: BaseGeometry,
    *, name: str = "grid_code",
) -> gpd.GeoDataFrame:
    """Polygons of a new partition that keep the built polygons of every unit whose cells did not change.

    ``built`` holds the built twin's units (``name``, ``geometry``, ``area_km2``, ``n_cells``; e.g. the fabric's
    face-based polygons along streets and water), ``built_code`` / ``new_code`` are aligned with ``cells``
    (``""`` = no unit). Units with any cell gained or lost are re-derived from their cells
    (:func:`units_to_polygons`); the rest are the built rows, so an edit redraws only the grids it touched, and
    checking out the base partition gives back the built polygons exactly. Columns as :func:`units_to_polygons`.
    """
    built_code = np.asarray(built_code).astype(str)
    new_code = np.asarray(new_code).astype(str)
    moved = built_code != new_code
    changed = set(np.unique(built_code[moved])) | set(np.unique(new_code[moved]))
    present = set(np.unique(new_code[new_code != ""]))
    redo = (new_code != "") & np.isin(new_code, sorted(changed))
    keep = built.loc[built[name].astype(str).isin(present - changed), [name, "n_cells", "geometry", "area_km2"]]
    parts = [keep]
    if redo.any():
        parts.append(units_to_polygons(cells[redo], new_code[redo], district, name=name))
    out = pd.concat(parts, ignore_index=True)
    out[name] = out[name].astype(str)
    return gpd.GeoDataFrame(out.sort_values(name, kind="stable").reset_index(drop=True), geometry="geometry",
                            crs=STORAGE_CRS)
