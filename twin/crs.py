"""Coordinate reference systems: store in WGS84, measure in CGCS2000 / 3-degree Gauss-Krüger CM 114E.

EPSG:4547 has (northing, easting) axis order; every raw transformer here uses ``always_xy=True`` so that
x = longitude / easting and y = latitude / northing everywhere in the code.
"""

from __future__ import annotations

import threading
from typing import TypeVar

import geopandas as gpd
import numpy as np
import pyproj
import shapely
from shapely.geometry.base import BaseGeometry

from twin.errors import CRSError

__all__ = [
    "STORAGE_CRS",
    "METRIC_CRS",
    "to_metric",
    "to_storage",
    "lnglat_to_xy",
    "xy_to_lnglat",
    "geometry_to_metric",
    "geometry_to_storage",
    "area_km2",
    "warm_transformers",
    "gcj02_to_wgs84",
    "wgs84_to_gcj02",
]

STORAGE_CRS = "EPSG:4326"
METRIC_CRS = "EPSG:4547"

_Frame = TypeVar("_Frame", gpd.GeoDataFrame, gpd.GeoSeries)


_local = threading.local()


def _transformer(src: str, dst: str) -> pyproj.Transformer:
    """One transformer per thread and CRS pair: a pyproj Transformer used from a thread other than the one that
    made it rebuilds its PROJ context on every call (≈ 1.6 ms instead of ≈ 8 µs), which the service's worker
    threads would pay on every request."""
    cache = getattr(_local, "transformers", None)
    if cache is None:
        cache = _local.transformers = {}
    t = cache.get((src, dst))
    if t is None:
        t = cache[(src, dst)] = pyproj.Transformer.from_crs(src, dst, always_xy=True)
    return t


def warm_transformers() -> None:
    """Make this thread's transformers now: their first use in a thread costs ≈ 100–200 ms (PROJ's per-thread
    context), which a service thread should pay at start-up rather than on a request or an edit's build."""
    lnglat_to_xy(np.array([113.1]), np.array([23.0]))
    xy_to_lnglat(np.array([500_000.0]), np.array([2_540_000.0]))
    gpd.GeoSeries([shapely.Point(113.1, 23.0)], crs=STORAGE_CRS).to_crs(METRIC_CRS).to_crs(STORAGE_CRS)


def _require_crs(frame: gpd.GeoDataFrame | gpd.GeoSeries) -> None:
    if frame.crs is None:
        raise CRSError(
            "Cannot transform naive geometries: the data has no CRS. "
            "Set the CRS the coordinates are really in (e.g. .set_crs('EPSG:4326')) first."
        )


def to_metric(frame: _Frame) -> _Frame:
    """Reproject a GeoDataFrame/GeoSeries to EPSG:4547 (metres) for areas and distances."""
    _require_crs(frame)
    return frame.to_crs(METRIC_CRS)


def to_storage(frame: _Frame) -> _Frame:
    """Reproject a GeoDataFrame/GeoSeries to WGS84 (EPSG:4326), the storage and exchange CRS."""
    _require_crs(frame)
    return frame.to_crs(STORAGE_CRS)


def lnglat_to_xy(lng: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """WGS84 longitude/latitude (degrees) → EPSG:4547 easting/northing (metres)."""
    x, y = _transformer(STORAGE_CRS, METRIC_CRS).transform(np.asarray(lng), np.asarray(lat))
    return np.asarray(x), np.asarray(y)


def xy_to_lnglat(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """EPSG:4547 easting/northing (metres) → WGS84 longitude/latitude (degrees)."""
    lng, lat = _transformer(METRIC_CRS, STORAGE_CRS).transform(np.asarray(x), np.asarray(y))
    return np.asarray(lng), np.asarray(lat)


def geometry_to_metric(geom: BaseGeometry) -> BaseGeometry:
    """One WGS84 shapely geometry → EPSG:4547 (metres)."""
    return shapely.transform(geom, lambda c: np.column_stack(lnglat_to_xy(c[:, 0], c[:, 1])))


def geometry_to_storage(geom: BaseGeometry) -> BaseGeometry:
    """One EPSG:4547 shapely geometry → WGS84."""
    return shapely.transform(geom, lambda c: np.column_stack(xy_to_lnglat(c[:, 0], c[:, 1])))


def area_km2(geom: BaseGeometry) -> float:
    """Area in km² of a WGS84 geometry, measured in EPSG:4547 (never in degrees)."""
    if geom.geom_type == "Polygon" and shapely.get_num_interior_rings(geom) == 0:  # a lasso: one ring
        c = shapely.get_coordinates(geom)
        x, y = _transformer(STORAGE_CRS, METRIC_CRS).transform(c[:, 0], c[:, 1])
        return abs(float(np.dot(x[:-1], y[1:]) - np.dot(x[1:], y[:-1]))) / 2e6  # shoelace, ring closed
    return float(geometry_to_metric(geom).area) / 1e6


# --- GCJ-02 (Amap/Tencent "Mars" coordinates) -------------------------------------------------------------
_A = 6378245.0
_EE = 0.00669342162296594323


def _gcj_delta(lng: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x, y = lng - 105.0, lat - 35.0
    dlat = (
        -100.0 + 2.0 * x + 3.0 * y + 0.2 * y * y + 0.1 * x * y + 0.2 * np.sqrt(np.abs(x))
        + (20.0 * np.sin(6.0 * x * np.pi) + 20.0 * np.sin(2.0 * x * np.pi)) * 2.0 / 3.0
        + (20.0 * np.sin(y * np.pi) + 40.0 * np.sin(y / 3.0 * np.pi)) * 2.0 / 3.0
        + (160.0 * np.sin(y / 12.0 * np.pi) + 320 * np.sin(y * np.pi / 30.0)) * 2.0 / 3.0
    )
    dlng = (
        300.0 + x + 2.0 * y + 0.1 * x * x + 0.1 * x * y + 0.1 * np.sqrt(np.abs(x))
        + (20.0 * np.sin(6.0 * x * np.pi) + 20.0 * np.sin(2.0 * x * np.pi)) * 2.0 / 3.0
        + (20.0 * np.sin(x * np.pi) + 40.0 * np.sin(x / 3.0 * np.pi)) * 2.0 / 3.0
        + (150.0 * np.sin(x / 12.0 * np.pi) + 300.0 * np.sin(x / 30.0 * np.pi)) * 2.0 / 3.0
    )
    radlat = lat / 180.0 * np.pi
    magic = 1 - _EE * np.sin(radlat) ** 2
    sqrtmagic = np.sqrt(magic)
    dlat = (dlat * 180.0) / ((_A * (1 - _EE)) / (magic * sqrtmagic) * np.pi)
    dlng = (dlng * 180.0) / (_A / sqrtmagic * np.cos(radlat) * np.pi)
    return dlng, dlat


def wgs84_to_gcj02(lng: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """WGS84 → GCJ-02 (the public forward formula). Degrees in, degrees out."""
    lng, lat = np.asarray(lng, dtype=float), np.asarray(lat, dtype=float)
    dlng, dlat = _gcj_delta(lng, lat)
    return lng + dlng, lat + dlat


def gcj02_to_wgs84(lng: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """GCJ-02 → WGS84 by fixed-point inversion of the forward formula (error < 1e-9°)."""
    glng, glat = np.asarray(lng, dtype=float), np.asarray(lat, dtype=float)
    wlng, wlat = glng.copy(), glat.copy()
    for _ in range(30):
        flng, flat = wgs84_to_gcj02(wlng, wlat)
        ex, ey = flng - glng, flat - glat
        wlng, wlat = wlng - ex, wlat - ey
        if np.all(np.abs(ex) < 1e-10) and np.all(np.abs(ey) < 1e-10):
            break
    return wlng, wlat
