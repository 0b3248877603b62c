"""The twin as typed frames, and loading it from disk.

Layout of a twin directory (all geometry WGS84 / EPSG:4326, areas in km² measured in EPSG:4547)::

    manifest.json       seed, generator version, counts, sha256 of every file
    population.tif      population surface used (synthetic unless a real raster was ingested)
    cells.parquet       cell (uint64 H3 res 11, sorted), lng, lat, pop_raster, grid_code  ← the partition
    towns.parquet       GeoParquet: town_code, town_name, area_km2, n_cells, synthetic
    communities.parquet GeoParquet: community_code, community_name, short_name, kind, town_code, area_km2 …
    grids.parquet       GeoParquet: grid_code, grid_name, community_code, town_code, area_km2, n_cells …
    buildings.parquet   GeoParquet footprints: building_id, use, floors, height_m, footprint_m2, dwellings,
                        residents, businesses, cell, lng, lat (centroid = the building's point), source
    dwellings.parquet   dwelling_id, building_id, occupied, household_id (-1 = vacant)
    persons.parquet     person_id, household_id, dwelling_id, building_id, sex, birth_date, disabled,
                        low_income, pregnant  (SYNTHETIC people, never real records)
    businesses.parquet  business_id, building_id, kind, industry, credit
    workers.parquet     worker_id, name, grid_code, status, lng, lat
    cameras.parquet     camera_id, kind, lng, lat
    streets.parquet     GeoParquet LineStrings: class (expressway/arterial/collector/local/service/path), width_m
    water.parquet       GeoParquet Polygons: kind (river, fish_pond, lake, or OSM's kinds)
    blocks.parquet      GeoParquet Polygons: block_id, land_use, area_m2 (faces between streets and water)
                        — the three fabric tables are optional: twins built before them load without them

A record's location is its building's point (``lng``, ``lat``); its cell is the building's ``cell``; its grid is
the cell's grid in the partition in force.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
from shapely.geometry.base import BaseGeometry

from twin.errors import NotFoundError, TwinNotBuiltError
from twin.geography import twin_district
from twin.io import default_twin_dir, read_json, read_table

__all__ = ["Twin", "load", "TABLES", "GEO_TABLES", "FABRIC_TABLES", "AS_OF", "ages_on", "BUILDING_USES", "COUNT_KEYS", "CREDIT_COLOURS"]

TABLES = ("cells", "towns", "communities", "grids", "buildings", "dwellings", "persons", "businesses", "workers",
          "cameras")
GEO_TABLES = ("towns", "communities", "grids", "buildings")
FABRIC_TABLES = ("streets", "water", "blocks")
"""Optional GeoParquet tables of the city fabric (``None`` on a twin built without them)."""

# --- the twin's vocabulary (shared by generation, ingestion, queries and the privacy policy) ----------------------
AS_OF = dt.date(2023, 6, 30)
"""The built twin's reference date (the NBS code list cut-off); ages default to this day."""
BUILDING_USES = ("residential", "mixed", "commercial", "industrial", "public")
COUNT_KEYS = (
    "buildings", "dwellings", "residents", "residents_male", "residents_female", "businesses", "cameras",
    "workers", "disabled", "low_income", "pregnant", "elderly_70", "elderly_80", "age_0_14", "age_15_59",
    "age_60_plus",
)
"""The counts an area summary gives, in this order (records inside the area; persons by key population)."""
CREDIT_COLOURS = ("green", "yellow", "red")


def ages_on(birth_date: np.ndarray, as_of: dt.date = AS_OF) -> np.ndarray:
    """Completed years of age on ``as_of`` for ``datetime64[D]`` birth dates."""
    b = np.asarray(birth_date, dtype="datetime64[D]")
    y = b.astype("datetime64[Y]").astype(int) + 1970
    md = (b - b.astype("datetime64[Y]")).astype(int)  # day of year (0-based)
    ref_md = (np.datetime64(as_of, "D") - np.datetime64(as_of, "Y")).astype(int)
    return as_of.year - y - (md > ref_md).astype(int)


@dataclass(repr=False)
class Twin:
    """A loaded twin. Frames are plain pandas/GeoPandas objects; treat them as read-only."""

    root: Path
    manifest: dict[str, Any]
    district: BaseGeometry
    cells: pd.DataFrame
    towns: gpd.GeoDataFrame
    communities: gpd.GeoDataFrame
    grids: gpd.GeoDataFrame
    buildings: gpd.GeoDataFrame
    dwellings: pd.DataFrame
    persons: pd.DataFrame
    businesses: pd.DataFrame
    workers: pd.DataFrame
    cameras: pd.DataFrame
    cache: dict[str, Any] = field(default_factory=dict, repr=False)
    streets: gpd.GeoDataFrame | None = None
    water: gpd.GeoDataFrame | None = None
    blocks: gpd.GeoDataFrame | None = None

    def __repr__(self) -> str:  # short: the frames hold millions of rows (and reprs show up in test reports)
        return f"<Twin {self.root} seed={self.manifest.get('seed')} grids={len(self.grids)} persons={len(self.persons)}>"

    @property
    def as_of(self) -> dt.date:
        """Reference date for ages (elderly 70+/80+ are derived from birth dates on this day)."""
        return dt.date.fromisoformat(self.manifest["as_of"])

    @property
    def seed(self) -> int:
        return int(self.manifest["seed"])

    def grid(self, code: str) -> pd.Series:
        """One grid's row; :class:`NotFoundError` names the unknown code."""
        return _row(self.grids, "grid_code", code, "grid")

    def community(self, code: str) -> pd.Series:
        return _row(self.communities, "community_code", code, "community")

    def town(self, code: str) -> pd.Series:
        return _row(self.towns, "town_code", code, "town")

    def grid_of_cells(self, cells: np.ndarray) -> np.ndarray:
        """Grid code for each ``uint64`` cell (``""`` for cells outside the partition)."""
        table = self.cells["cell"].to_numpy()
        pos = np.searchsorted(table, cells)
        pos[pos >= len(table)] = 0
        hit = table[pos] == cells
        codes = self.cells["grid_code"].to_numpy().astype(object)
        return np.where(hit, codes[pos], "")


def _row(frame: pd.DataFrame, col: str, code: str, what: str) -> pd.Series:
    hit = frame.loc[frame[col] == str(code)]
    if hit.empty:
        examples = ", ".join(frame[col].astype(str).head(3))
        raise NotFoundError(f"unknown {what} code {code!r}; codes look like {examples} ({len(frame)} {what}s).")
    return hit.iloc[0]


def load(path: str | Path | None = None) -> Twin:
    """Load a built twin (default: :func:`twin.io.default_twin_dir`).

    Raises :class:`TwinNotBuiltError` when the directory has no manifest (run ``twin build`` first).
    """
    root = Path(path) if path is not None else default_twin_dir()
    manifest_path = root / "manifest.json"
    if not manifest_path.exists():
        raise TwinNotBuiltError(f"no twin at {root} (no manifest.json). Build one with `twin build --out {root}`.")
    manifest = read_json(manifest_path)
    frames: dict[str, Any] = {t: read_table(root / f"{t}.parquet", geo=t in GEO_TABLES) for t in TABLES}
    for t in FABRIC_TABLES:  # optional: older twins have none, an OSM twin may lack one
        if (root / f"{t}.parquet").exists():
            frames[t] = read_table(root / f"{t}.parquet", geo=True)
    twin = Twin(root=root, manifest=manifest, district=twin_district(root), **frames)
    _attach_grid_codes(twin)
    return twin


def _attach_grid_codes(twin: Twin) -> None:
    """Derived column: each building's grid from its cell (the partition in force)."""
    codes = twin.grid_of_cells(twin.buildings["cell"].to_numpy())
    twin.buildings["grid_code"] = pd.Categorical(codes)
