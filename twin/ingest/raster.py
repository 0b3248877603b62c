"""Population rasters → H3 cells: a user's WorldPop/GHSL GeoTIFF (any CRS) and the synthetic surface alike.

Each pixel's persons are spread over sub-samples (≤ 25 m apart); every sub-sample lands in exactly one cell, so the
sum is preserved: ``inside_total + outside_total == raster_total``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyproj
import rasterio.transform
from pyproj.crs import CRS as ProjCRS
from rasterio.crs import CRS as RasterCRS
from rasterio.transform import Affine
from shapely.geometry.base import BaseGeometry

from twin.cells import latlng_to_cells
from twin.crs import STORAGE_CRS
from twin.errors import CRSError, IngestError, OutsideDistrictError
from twin.io import read_raster

__all__ = ["RasterToCells", "raster_to_cells"]

_MIN_SUB = 4  # at least 4 × 4 sub-samples per pixel
_SUB_SPACING_M = 25.0  # sub-sample spacing (< the res-11 edge, 28 m)


@dataclass(frozen=True)
class RasterToCells:
    """Result of :func:`raster_to_cells`: persons per cell and the sums that prove nothing was lost."""

    counts: np.ndarray  # float64, aligned with the ``cells`` argument
    raster_total: float  # sum of all valid pixels
    inside_total: float  # part that fell into the cells (== counts.sum())
    outside_total: float  # part outside the cells (other districts)


def raster_to_cells(
    path: str | Path, cells: np.ndarray, *, res: int, district: BaseGeometry | None = None
) -> RasterToCells:
    """Spread each pixel of a population-count GeoTIFF over ``cells`` (sorted ``uint64`` at ``res``).

    Each pixel's value is split equally over a regular grid of sub-sample points (spacing ≈ 25 m or finer);
    every sub-sample lands in exactly one cell, so ``inside_total + outside_total == raster_total``.
    Works for any CRS the raster declares (points are reprojected to WGS84). Nodata, NaN and negative pixels
    count as 0.
    """
    arr, transform, crs, nodata = read_raster(path)
    if crs is None:
        raise CRSError(
            f"{path}: the raster has no CRS. Population rasters (WorldPop, GHSL) declare one; "
            "set it with `gdal_edit.py -a_srs EPSG:4326` if you know it."
        )
    valid = np.isfinite(arr) & (arr > 0)
    if nodata is not None:
        valid &= arr != nodata
    vals = np.where(valid, arr, 0.0)
    raster_total = float(vals.sum())
    rows, cols = np.nonzero(vals)
    if len(rows) == 0:
        raise IngestError(f"{path}: the raster has no positive population values.")
    # sub-samples per pixel side: pixel size in metres / 25 m, at least 4
    to_wgs = pyproj.Transformer.from_crs(crs, STORAGE_CRS, always_xy=True)
    px_m = _pixel_size_m(transform, crs)
    sub_n = int(max(_MIN_SUB, min(64, np.ceil(px_m / _SUB_SPACING_M))))
    sub = (np.arange(sub_n) + 0.5) / sub_n
    su, sv = np.meshgrid(sub, sub)
    cc = (cols[:, None] + su.ravel()[None, :]).ravel()
    rr = (rows[:, None] + sv.ravel()[None, :]).ravel()
    xs, ys = rasterio.transform.xy(transform, rr, cc, offset="ul")
    lng, lat = to_wgs.transform(np.asarray(xs, dtype=float), np.asarray(ys, dtype=float))
    lng, lat = np.asarray(lng), np.asarray(lat)
    if not (np.all(np.abs(lat) <= 90) and np.all(np.abs(lng) <= 180)):
        raise CRSError(f"{path}: coordinates fall outside ±180/±90 in {crs}; the declared CRS looks wrong.")
    weights = np.repeat(vals[rows, cols] / (sub_n * sub_n), sub_n * sub_n)
    if district is not None:
        minx, miny, maxx, maxy = district.bounds
        near = (lng >= minx - 0.01) & (lng <= maxx + 0.01) & (lat >= miny - 0.01) & (lat <= maxy + 0.01)
        if not near.any():
            b = (float(np.min(lng)), float(np.min(lat)), float(np.max(lng)), float(np.max(lat)))
            raise OutsideDistrictError(
                f"{path}: the raster's populated pixels {tuple(round(v, 4) for v in b)} (WGS84) do not overlap "
                f"the district {tuple(round(v, 4) for v in district.bounds)}."
            )
        lng, lat, w_near = lng[near], lat[near], weights[near]
    else:
        w_near = weights
    pc = latlng_to_cells(lat, lng, res)
    pos = np.searchsorted(cells, pc)
    pos[pos >= len(cells)] = 0
    hit = cells[pos] == pc
    counts = np.bincount(pos[hit], weights=w_near[hit], minlength=len(cells)).astype(np.float64)
    inside = float(counts.sum())
    if inside <= 0:
        raise OutsideDistrictError(f"{path}: no population falls inside the district's cells.")
    return RasterToCells(counts=counts, raster_total=raster_total, inside_total=inside,
                         outside_total=raster_total - inside)


def _pixel_size_m(transform: Affine, crs: RasterCRS | ProjCRS | str) -> float:
    c = pyproj.CRS.from_user_input(crs)
    if c.is_geographic:
        return abs(transform.a) * 111_000.0
    factor = c.axis_info[0].unit_conversion_factor if c.axis_info else 1.0
    return abs(transform.a) * factor
