"""Grid layers in: a grid layer (polygons → cells) becomes a partition, with a report of gaps and overlaps.

Each H3 cell goes to the polygon containing its centre; a cell whose centre lies in no polygon (cells cut
by the district edge) goes to the polygon covering most of its hexagon. Overlaps (grid pairs, km² in EPSG:4547,
cells claimed twice — the first polygon in file order keeps them) and gaps (connected pieces of unclaimed cells,
km², neighbouring grids) are reported, never silently fixed; ``fill_gaps=True`` hands gap cells to the adjacent
grid of the same community they share most edges with.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from twin.cells import cell_boundaries
from twin.crs import METRIC_CRS, STORAGE_CRS
from twin.errors import IngestError
from twin.ingest.vectors import read_vector_checked
from twin.model import Twin
from twin.partition.edits import hand_to_neighbours
from twin.partition.model import Partition, check_partition, partition_from_twin
from twin.partition.regions import label_components

__all__ = ["ImportResult", "import_grids"]


@dataclass
class ImportResult:
    """An imported partition and what did not fit."""

    partition: Partition
    overlaps: pd.DataFrame
    gaps: pd.DataFrame
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_text(self) -> str:
        lines = [f"grids {self.partition.n_grids}, cells {len(self.partition.cells)}", *self.notes]
        if len(self.overlaps):
            lines.append(f"{len(self.overlaps)} overlapping grid pair(s):")
            lines += [f"  {r.grid_a} × {r.grid_b}: {r.area_km2:.4f} km², {r.cells} cell(s)"
                      for r in self.overlaps.head(20).itertuples()]
        if len(self.gaps):
            lines.append(f"{len(self.gaps)} gap(s):")
            lines += [f"  {r.cells} cell(s), {r.area_km2:.4f} km² next to {r.neighbours}"
                      for r in self.gaps.head(20).itertuples()]
        lines += [f"PROBLEM: {p}" for p in self.problems] or ["OK"]
        return "\n".join(lines)


def import_grids(twin: Twin, path: str | Path, *, from_gcj02: bool = False, fill_gaps: bool = False,
                 code_column: str = "grid_code") -> ImportResult:
    """Read a grid layer (GeoJSON / GeoPackage / GeoParquet, any CRS declared in the file) into a partition of
    ``twin``'s cells. See the module docstring for the cell rule and the gap/overlap report.

    The layer needs ``code_column``; ``grid_name``, ``community_code`` and ``town_code`` are used when present,
    otherwise a grid joins the community holding most of its cells. The partition is returned even when it breaks
    rules (``problems`` lists them; :func:`twin.partition.versions.commit` will refuse it).
    """
    gdf, notes = read_vector_checked(path, twin.district, what="grid", from_gcj02=from_gcj02)
    if code_column not in gdf.columns:
        raise IngestError(f"{path}: no {code_column!r} column; columns are {list(gdf.columns)}.")
    gdf = gdf.reset_index(drop=True)
    codes = gdf[code_column].astype(str).to_numpy().astype(object)
    dup = sorted(pd.Series(codes)[pd.Series(codes).duplicated()].unique().tolist())
    if dup:
        raise IngestError(f"{path}: grid code(s) {dup[:10]} appear more than once; each grid needs one polygon.")
    base = partition_from_twin(twin)
    cells = base.cells
    lng = twin.cells["lng"].to_numpy()
    lat = twin.cells["lat"].to_numpy()
    geoms = gdf.geometry.values
    tree = shapely.STRtree(geoms)
    pts = shapely.points(lng, lat)
    ci, gi = tree.query(pts, predicate="within")
    order = np.lexsort((gi, ci))  # first polygon in file order wins a doubly claimed cell
    ci, gi = ci[order], gi[order]
    first = np.ones(len(ci), dtype=bool)
    first[1:] = ci[1:] != ci[:-1]
    g_of_cell = np.full(len(cells), -1, dtype=np.int64)
    g_of_cell[ci[first]] = gi[first]
    overlaps = _overlaps(geoms, codes, ci, gi, first)
    missing = np.flatnonzero(g_of_cell < 0)
    if len(missing):  # centre outside every polygon: the polygon covering most of the hexagon, if any
        hexes = shapely.polygons([np.array([*r, r[0]]) for r in cell_boundaries(cells[missing])])
        a, b = tree.query(hexes, predicate="intersects")
        if len(a):
            ar = shapely.area(shapely.intersection(hexes[a], geoms[b]))
            frac = ar / shapely.area(hexes[a])
            best = pd.DataFrame({"a": a, "b": b, "f": frac})
            best = best[best["f"] > 0].sort_values("f").groupby("a").tail(1)
            g_of_cell[missing[best["a"].to_numpy()]] = best["b"].to_numpy()
    grid_code = np.where(g_of_cell >= 0, codes[np.maximum(g_of_cell, 0)], "").astype(object)
    # grid table
    if "community_code" in gdf.columns:
        comm = gdf["community_code"].astype(str).to_numpy()
    else:
        df = pd.DataFrame({"g": g_of_cell, "c": base.community})[g_of_cell >= 0]
        major = df.groupby("g")["c"].agg(lambda s: s.value_counts().index[0])
        comm = np.array([major.get(i, "") for i in range(len(gdf))], dtype=object)
    town_of = dict(zip(twin.communities["community_code"], twin.communities["town_code"]))
    table = pd.DataFrame({
        "grid_code": codes,
        "grid_name": gdf["grid_name"].astype(str).to_numpy() if "grid_name" in gdf.columns else codes,
        "community_code": comm,
        "town_code": [town_of.get(c, "") for c in comm],
    })
    used = set(grid_code.tolist())
    too_small = [c for c in codes if c not in used]
    if too_small:
        notes.append(f"{len(too_small)} grid(s) hold no cell centre (smaller than one ≈ 2,150 m² H3 cell) and are "
                     f"dropped: {too_small[:10]}")
        table = table[table["grid_code"].isin(used)]
    gaps = _gaps(base, grid_code)
    p = base.with_assignment(grid_code, table)
    if fill_gaps and len(gaps):
        hole = np.flatnonzero(p.grid_code == "")
        codes2, stuck = hand_to_neighbours(p, p.grid_code, hole, "")
        codes2[stuck] = ""
        notes.append(f"{len(hole) - len(stuck)} gap cell(s) handed to neighbouring grids of their community")
        p = base.with_assignment(codes2, table)
    return ImportResult(partition=p, overlaps=overlaps, gaps=gaps, problems=check_partition(p), notes=notes)


def _overlaps(geoms: np.ndarray, codes: np.ndarray, ci: np.ndarray, gi: np.ndarray, first: np.ndarray
              ) -> pd.DataFrame:
    cols = ["grid_a", "grid_b", "area_km2", "cells"]
    tree = shapely.STRtree(geoms)
    left, right = tree.query(geoms, predicate="intersects")
    keep = left < right
    if not keep.any():
        return pd.DataFrame(columns=cols)
    metric = gpd.GeoSeries(geoms, crs=STORAGE_CRS).to_crs(METRIC_CRS).values
    area = shapely.area(shapely.intersection(metric[left[keep]], metric[right[keep]])) / 1e6
    # cells claimed by both polygons of a pair
    owner = pd.DataFrame({"c": ci, "g": gi})
    claims = owner.merge(owner, on="c")
    claims = claims[claims["g_x"] < claims["g_y"]].groupby(["g_x", "g_y"]).size()
    rows = []
    for a, b, km2 in zip(left[keep], right[keep], area):
        n = int(claims.get((a, b), 0))
        if km2 > 1e-6 or n:
            rows.append({"grid_a": codes[a], "grid_b": codes[b], "area_km2": float(km2), "cells": n})
    return pd.DataFrame(rows, columns=cols)


def _gaps(base: Partition, grid_code: np.ndarray) -> pd.DataFrame:
    cols = ["cells", "area_km2", "community_code", "neighbours", "first_cell"]
    hole = np.flatnonzero(grid_code == "")
    if len(hole) == 0:
        return pd.DataFrame(columns=cols)
    sub = base.adjacency[hole][:, hole]
    _, comp = label_components(np.zeros(len(hole), dtype=np.int64), sub)
    cell_km2 = _cell_area_km2(base)
    rows = []
    adj = base.adjacency
    for k in np.unique(comp):
        members = hole[comp == k]
        nb = np.unique(np.concatenate([adj.indices[adj.indptr[i]:adj.indptr[i + 1]] for i in members]))
        neigh = sorted(set(grid_code[nb].tolist()) - {""})
        rows.append({"cells": len(members), "area_km2": float(cell_km2 * len(members)),
                     "community_code": ",".join(sorted(set(base.community[members].tolist()))),
                     "neighbours": neigh, "first_cell": f"{int(base.cells[members[0]]):x}"})
    return pd.DataFrame(rows, columns=cols).sort_values("cells", ascending=False).reset_index(drop=True)


def _cell_area_km2(base: Partition) -> float:
    """Mean cell area in km² (EPSG:4547) from a sample of hexagons."""
    sample = base.cells[:: max(len(base.cells) // 50, 1)]
    hexes = gpd.GeoSeries(shapely.polygons([np.array([*r, r[0]]) for r in cell_boundaries(sample)]), crs=STORAGE_CRS)
    return float(hexes.to_crs(METRIC_CRS).area.mean() / 1e6)
