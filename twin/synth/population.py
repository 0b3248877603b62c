"""The synthetic population surface: a calibrated GeoTIFF (persons per pixel) for the default twin.

It is read back through :func:`twin.ingest.raster.raster_to_cells`, the same path a user's WorldPop/GHSL raster
takes. Also the synthetic land-use intensities and the largest-remainder rounding the generators share.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio.transform
import shapely
from rasterio.transform import Affine
from scipy import ndimage
from shapely.geometry.base import BaseGeometry

from twin.crs import STORAGE_CRS, lnglat_to_xy
from twin.io import write_raster

__all__ = [
    "RASTER_PIXEL_DEG",
    "synthesize_population_raster",
    "land_use_intensity",
    "largest_remainder",
]

RASTER_PIXEL_DEG = 0.001  # ≈ 102 m (E-W) × 111 m (N-S) at 23°N, like WorldPop's 3 arc-second grid
_SUB = 4  # sub-samples per pixel side when averaging the density surface over a pixel

# Density centres (WGS84 lng, lat, peak persons/km², sigma m). A design choice, not survey data.
_CENTRES = [
    (113.115, 23.030, 52000.0, 1900.0),  # Zumiao old town
    (113.102, 23.003, 30000.0, 2100.0),  # Shiwan
    (113.068, 23.045, 24000.0, 2300.0),  # Zhangcha
    (113.135, 23.010, 16000.0, 1800.0),  # Shiwan east / Lanshi
    (113.012, 23.013, 9000.0, 1500.0),  # Nanzhuang town centre
]
# Industrial (ceramics, metal) and commercial focus areas: (lng, lat, sigma m).
_INDUSTRIAL = [
    (113.035, 23.040, 2200.0),
    (112.990, 23.025, 2500.0),
    (113.020, 22.985, 2300.0),
    (113.085, 22.985, 1500.0),
    (113.055, 23.060, 1500.0),
]
_COMMERCIAL = [
    (113.115, 23.032, 1200.0),
    (113.108, 23.018, 1000.0),
    (113.070, 23.040, 900.0),
    (113.100, 23.000, 900.0),
]
# A synthetic river (the Foshan waterway runs W-E through the north of the district) and parks: kept empty.
_RIVER = [(112.975, 23.050), (113.020, 23.052), (113.060, 23.058), (113.095, 23.050), (113.130, 23.048),
          (113.165, 23.040)]
_RIVER_HALF_WIDTH_M = 90.0
_PARKS = [(113.097, 23.012, 350.0), (113.121, 23.041, 250.0), (113.040, 23.008, 400.0)]


def largest_remainder(values: np.ndarray, total: int) -> np.ndarray:
    """Round non-negative ``values`` to integers summing exactly to ``total`` (Hamilton's method)."""
    v = np.asarray(values, dtype=float)
    s = v.sum()
    if s <= 0:
        return np.zeros(len(v), dtype=np.int64)
    scaled = v * (total / s)
    base = np.floor(scaled).astype(np.int64)
    short = int(total - base.sum())
    if short > 0:
        rem = scaled - base
        idx = np.argsort(-rem, kind="stable")[:short]
        base[idx] += 1
    return base


def _gauss(x: np.ndarray, y: np.ndarray, cx: float, cy: float, sigma: float) -> np.ndarray:
    return np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * sigma * sigma))


def land_use_intensity(lng: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Synthetic (industrial, commercial) intensities in [0, 1] at WGS84 points."""
    x, y = lnglat_to_xy(lng, lat)
    ind = np.zeros_like(x)
    com = np.zeros_like(x)
    for lo, la, s in _INDUSTRIAL:
        cx, cy = lnglat_to_xy(np.array([lo]), np.array([la]))
        ind = np.maximum(ind, _gauss(x, y, cx[0], cy[0], s))
    for lo, la, s in _COMMERCIAL:
        cx, cy = lnglat_to_xy(np.array([lo]), np.array([la]))
        com = np.maximum(com, _gauss(x, y, cx[0], cy[0], s))
    return ind, com


def _empty_mask_xy(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """True where the synthetic river or parks are (no residents)."""
    rx, ry = lnglat_to_xy(np.array([p[0] for p in _RIVER]), np.array([p[1] for p in _RIVER]))
    river = shapely.LineString(np.column_stack([rx, ry]))
    pts = shapely.points(x, y)
    mask = shapely.dwithin(river, pts, _RIVER_HALF_WIDTH_M)
    for lo, la, r in _PARKS:
        cx, cy = lnglat_to_xy(np.array([lo]), np.array([la]))
        mask |= (x - cx[0]) ** 2 + (y - cy[0]) ** 2 < r * r
    return np.asarray(mask)


def synthesize_population_raster(
    district: BaseGeometry, *, seed: int, total: float, path: str | Path | None = None
) -> tuple[np.ndarray, Affine]:
    """A synthetic population-count raster (persons per pixel, WGS84, 0.001° pixels), labelled synthetic.

    Dense old town (Zumiao), sparse industrial/agricultural Nanzhuang, an empty river and parks, small village
    clusters. Pixels are zero outside ``district``; the sum over sub-samples inside the district equals ``total``.
    Written as a GeoTIFF to ``path`` when given.
    """
    rng = np.random.default_rng(seed)
    minx, miny, maxx, maxy = district.bounds
    pad = 2 * RASTER_PIXEL_DEG
    west = np.floor((minx - pad) / RASTER_PIXEL_DEG) * RASTER_PIXEL_DEG
    north = np.ceil((maxy + pad) / RASTER_PIXEL_DEG) * RASTER_PIXEL_DEG
    width = int(np.ceil((maxx + pad - west) / RASTER_PIXEL_DEG))
    height = int(np.ceil((north - (miny - pad)) / RASTER_PIXEL_DEG))
    transform = rasterio.transform.from_origin(west, north, RASTER_PIXEL_DEG, RASTER_PIXEL_DEG)

    # density at sub-sample points, then averaged per pixel
    sub = (np.arange(_SUB) + 0.5) / _SUB
    cols = (np.arange(width)[:, None] + sub[None, :]).ravel()
    rows = (np.arange(height)[:, None] + sub[None, :]).ravel()
    lng = west + cols * RASTER_PIXEL_DEG
    lat = north - rows * RASTER_PIXEL_DEG
    LNG, LAT = np.meshgrid(lng, lat)
    x, y = lnglat_to_xy(LNG.ravel(), LAT.ravel())
    dens = np.full(x.shape, 600.0)  # persons/km² background
    for lo, la, peak, s in _CENTRES:
        cx, cy = lnglat_to_xy(np.array([lo]), np.array([la]))
        dens += peak * _gauss(x, y, cx[0], cy[0], s)
    # urban villages (城中村) and rural villages: small dense clusters
    n_vill = 60
    vx = rng.uniform(x.min(), x.max(), n_vill)
    vy = rng.uniform(y.min(), y.max(), n_vill)
    for cx, cy, peak, s in zip(vx, vy, rng.uniform(6000, 20000, n_vill), rng.uniform(250, 500, n_vill)):
        dens += peak * _gauss(x, y, cx, cy, s)
    ind, _ = land_use_intensity(LNG.ravel(), LAT.ravel())
    dens *= 1.0 - 0.9 * ind
    # built-up mask from smoothed noise: farmland, fish ponds and vacant land are empty, more so in the west
    noise = ndimage.gaussian_filter(rng.standard_normal((height * _SUB, width * _SUB)), sigma=6.0).ravel()
    noise /= noise.std()
    urban = dens / (dens + 8000.0)  # 0 … 1
    dens *= noise > (0.9 - 2.2 * urban)
    dens[_empty_mask_xy(x, y)] = 0.0
    inside = shapely.contains_xy(district, LNG.ravel(), LAT.ravel())
    dens[~inside] = 0.0
    # sub-sample → pixel mean (persons/km² → persons per pixel is a constant factor, rescaled below)
    grid = dens.reshape(height, _SUB, width, _SUB).mean(axis=(1, 3))
    arr = grid * (total / grid.sum())
    if path is not None:
        write_raster(arr, transform, STORAGE_CRS, path)
    return arr, transform
