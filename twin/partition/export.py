"""Grid layers out: export any partition version as GeoJSON / GeoPackage / GeoParquet.

Exports hold one polygon per grid (WGS84, the union of its H3 cells clipped to the district) with ``grid_code``,
``grid_name``, ``community_code``, ``town_code``, ``n_cells``, ``area_km2`` (EPSG:4547), ``polsby_popper``, the
counts and ``workload``. Counts are for a role (:mod:`twin.access.policy`): exact for grids in its record scope
(every grid for the district role); other grids' counts (``in_scope`` false) are answered from whole fixed units
— the built grids (version 1) each grid covers more than half of, each suppressed below k or rounded to a
multiple of k — and ``workload`` is recomputed from those published counts, so two versions' exports differ
outside the scope only where a whole built grid changed hands, by multiples of k. Files are written atomically (:func:`twin.io.atomic_write`). Grid layers in:
:mod:`twin.ingest.grids`.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd

from twin.access.policy import (
    DEFAULT_POLICY,
    AccessPolicy,
    base_units,
    grid_scope_mask,
    publish_groups,
    sees_everything,
    unit_table,
)
from twin.access.roles import DISTRICT, Role
from twin.crs import STORAGE_CRS
from twin.errors import ValidationError
from twin.io import atomic_write
from twin.model import Twin
from twin.partition.balance import grid_stats
from twin.partition.model import Partition
from twin.partition.polygons import units_to_polygons
from twin.partition.workload import COUNT_COLUMNS, cell_counts, workload

__all__ = ["EXPORT_FORMATS", "grids_frame", "export_grids"]

EXPORT_FORMATS = {".geojson": "GeoJSON", ".json": "GeoJSON", ".gpkg": "GPKG", ".parquet": "Parquet",
                  ".geoparquet": "Parquet"}


def grids_frame(twin: Twin, p: Partition, *, role: Role = DISTRICT,
                policy: AccessPolicy = DEFAULT_POLICY) -> gpd.GeoDataFrame:
    """One WGS84 polygon per grid of ``p`` with codes, ``n_cells``, ``area_km2``, ``polsby_popper``, counts and
    ``workload`` (default weights), as ``role`` may see them: for a role that does not see everything, an
    ``in_scope`` column and, outside its record scope, published counts (nullable ``Int64``, suppressed = NA)."""
    stats = grid_stats(twin, p, polygons=True)
    ok = p.grid_code != ""
    polys = units_to_polygons(p.cells[ok], p.grid_code[ok], twin.district, name="grid_code")[["grid_code", "geometry"]]
    cols = ["grid_code", "grid_name", "community_code", "town_code", "n_cells", "area_km2", "polsby_popper",
            *COUNT_COLUMNS, "workload"]
    out = polys.merge(stats[cols], on="grid_code", how="left")
    if not sees_everything(role):
        out = _scoped(twin, p, out, role, policy)
        cols = [*cols, "in_scope"]
    return gpd.GeoDataFrame(out[[*cols, "geometry"]], geometry="geometry", crs=STORAGE_CRS)


def _scoped(twin: Twin, p: Partition, out: pd.DataFrame, role: Role, policy: AccessPolicy) -> pd.DataFrame:
    """Grids outside ``role``'s record scope: counts answered from whole fixed units (the built grids each grid
    covers more than half of, each published: suppressed below k, else rounded to a multiple of k — as dossiers
    and areas), workload recomputed from those published counts."""
    inside = grid_scope_mask(role, out)
    codes = out["grid_code"].astype(str).to_numpy()
    group = pd.Index(codes).get_indexer(np.asarray(p.grid_code, dtype=str))
    closed = (group < 0) | ~inside[np.maximum(group, 0)]
    counts = cell_counts(twin)
    vals = np.column_stack([np.rint(counts[c].to_numpy(dtype=float)).astype(np.int64) for c in COUNT_COLUMNS])
    unit_codes, unit = base_units(twin)
    table = unit_table(vals, closed, unit, len(unit_codes), policy.k_for(role))
    pub, _ = publish_groups(table, closed, unit, group, len(out))
    out = out.copy()
    published: dict[str, np.ndarray] = {}
    hidden = np.zeros(len(out), dtype=bool)
    for j, c in enumerate(COUNT_COLUMNS):
        exact = np.rint(out[c].to_numpy(dtype=float)).astype(np.int64)
        col = np.where(inside, exact, pub[:, j])
        published[c] = np.maximum(col, 0)
        hidden |= col < 0
        out[c] = pd.arrays.IntegerArray(np.maximum(col, 0), col < 0)
    work = np.where(inside, out["workload"].to_numpy(dtype=float), workload(published))
    out["workload"] = pd.arrays.FloatingArray(np.where(~inside & hidden, 0.0, work), ~inside & hidden)
    out["in_scope"] = inside
    return out


def export_grids(twin: Twin, p: Partition, path: str | Path, *, version: int | None = None,
                 role: Role = DISTRICT, policy: AccessPolicy = DEFAULT_POLICY) -> Path:
    """Write partition ``p`` to ``path`` as ``role`` may see it (:func:`grids_frame`); the format follows the
    suffix (.geojson, .gpkg, .parquet)."""
    path = Path(path)
    fmt = EXPORT_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ValidationError(f"cannot export to {path.name!r}: use one of {sorted(EXPORT_FORMATS)}.")
    gdf = grids_frame(twin, p, role=role, policy=policy)
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
