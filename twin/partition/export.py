"""Grid layers out: export any partition version as GeoJSON / GeoPackage / GeoParquet.

Exports hold one polygon per grid (WGS84, the union of its H3 cells clipped to the district) with ``grid_code``,
``grid_name``, ``community_code``, ``town_code``, ``n_cells``, ``area_km2`` (EPSG:4547), ``polsby_popper``, the
counts and ``workload``. Files are written atomically (:func:`twin.io.atomic_write`). Grid layers in:
:mod:`twin.ingest.grids`.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import geopandas as gpd

from twin.crs import STORAGE_CRS
from twin.errors import ValidationError
from twin.io import atomic_write
from twin.model import Twin
from twin.partition.balance import grid_stats
from twin.partition.model import Partition
from twin.partition.polygons import units_to_polygons
from twin.partition.workload import COUNT_COLUMNS

__all__ = ["EXPORT_FORMATS", "grids_frame", "export_grids"]

EXPORT_FORMATS = {".geojson": "GeoJSON", ".json": "GeoJSON", ".gpkg": "GPKG", ".parquet": "Parquet",
                  ".geoparquet": "Parquet"}


def grids_frame(twin: Twin, p: Partition) -> gpd.GeoDataFrame:
    """One WGS84 polygon per grid of ``p`` with codes, ``n_cells``, ``area_km2``, ``polsby_popper``, counts and
    ``workload`` (default weights)."""
    stats = grid_stats(twin, p, polygons=True)
    ok = p.grid_code != ""
    polys = units_to_polygons(p.cells[ok], p.grid_code[ok], twin.district, name="grid_code")[["grid_code", "geometry"]]
    cols = ["grid_code", "grid_name", "community_code", "town_code", "n_cells", "area_km2", "polsby_popper",
            *COUNT_COLUMNS, "workload"]
    out = polys.merge(stats[cols], on="grid_code", how="left")
    return gpd.GeoDataFrame(out[[*cols, "geometry"]], geometry="geometry", crs=STORAGE_CRS)


def export_grids(twin: Twin, p: Partition, path: str | Path, *, version: int | None = None) -> Path:
    """Write partition ``p`` to ``path``; the format follows the suffix (.geojson, .gpkg, .parquet)."""
    path = Path(path)
    fmt = EXPORT_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ValidationError(f"cannot export to {path.name!r}: use one of {sorted(EXPORT_FORMATS)}.")
    gdf = grids_frame(twin, p)
    if version is not None:
        gdf["version"] = int(version)
    if fmt == "Parquet":
        return atomic_write(path, lambda tmp: gdf.to_parquet(tmp, index=False, compression="zstd"))
    layer = {"layer": "grids"} if fmt == "GPKG" else {}

    def _write(tmp: Path) -> None:
        with warnings.catch_warnings():  # the temporary file's ".tmp" suffix is not ".gpkg"; the final name is
            warnings.filterwarnings("ignore", message="The filename extension should be", category=RuntimeWarning)
            gdf.to_file(tmp, driver=fmt, **layer)

    return atomic_write(path, _write)
