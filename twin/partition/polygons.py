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

__all__ = ["units_to_polygons", "short_name"]


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
