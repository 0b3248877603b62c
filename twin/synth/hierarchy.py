"""Towns → communities → grids, all as sets of H3 cells (synthetic polygons with real NBS names and codes).

Towns: a power diagram around approximate seats matching their area shares. Communities: recursive (oblique)
bisection of each town's cells (or, with a city fabric, of its pieces — blocks — so that boundaries run along
streets and water: :mod:`twin.synth.fabric.units`) weighted by residents, urban communities (社区) to the densest parts and villages
(村) to the rest. Grids: allocated over communities by workload (at least one each), each community bisected by
workload. Every unit is then made one connected piece.
"""

from __future__ import annotations

from dataclasses import dataclass

import geopandas as gpd
import numpy as np
import pandas as pd
import scipy.sparse as sp
import shapely
from shapely.geometry.base import BaseGeometry

from twin.crs import lnglat_to_xy
from twin.errors import ValidationError
from twin.geography import nbs_communities, nbs_towns, town_seats
from twin.partition.polygons import short_name, units_to_polygons
from twin.partition.regions import allocate_counts, bisect_labels, power_assign, repair_contiguity
from twin.synth.fabric import Fabric
from twin.synth.fabric.units import (
    aggregate_pieces,
    fabric_pieces,
    fabric_unit_polygons,
    face_units,
    majority_by_piece,
    split_face_pieces,
)

__all__ = ["unit_lists", "assign_towns", "assign_communities", "make_grids", "unit_polygons", "FabricUnits",
           "fabric_units", "fabric_polygons"]


def unit_lists(communities: list[str] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The NBS towns (with seats and area shares) and communities a twin is divided into.

    ``communities``: NBS community codes to keep (default all 147); the towns are then the towns they belong to.
    """
    comm_meta = nbs_communities()
    if communities is not None:
        unknown = sorted(set(communities) - set(comm_meta["community_code"]))
        if unknown or not communities:
            raise ValidationError(
                f"unknown community codes {unknown[:5]} (or none given); use NBS codes like "
                f"{', '.join(comm_meta['community_code'].head(2))} (twin.geography.nbs_communities()).")
        comm_meta = comm_meta[comm_meta["community_code"].isin(communities)].reset_index(drop=True)
    towns_meta = nbs_towns().merge(town_seats()[["town_code", "lon", "lat", "approx_area_km2"]], on="town_code")
    towns_meta = towns_meta[towns_meta["town_code"].isin(comm_meta["town_code"])].reset_index(drop=True)
    return towns_meta, comm_meta


def assign_towns(xy: np.ndarray, adjacency: sp.csr_matrix, towns_meta: pd.DataFrame) -> np.ndarray:
    """Town code per cell (``xy``: cell centres in EPSG:4547 m) from a power diagram around the town seats."""
    sx, sy = lnglat_to_xy(towns_meta["lon"].to_numpy(), towns_meta["lat"].to_numpy())
    town_lab = power_assign(xy, np.column_stack([sx, sy]), towns_meta["approx_area_km2"].to_numpy())
    town_lab = repair_contiguity(town_lab, adjacency)
    return towns_meta["town_code"].to_numpy()[town_lab]


def assign_communities(xy: np.ndarray, adjacency: sp.csr_matrix, town_code: np.ndarray, residents: np.ndarray,
                       comm_meta: pd.DataFrame, *, seed: int, size: np.ndarray | None = None) -> np.ndarray:
    """Community code per unit (a cell, or a piece of the fabric of ``size`` cells): each town's units bisected
    into its communities, sized by ``residents`` plus half the mean residents of a cell per cell (so empty land
    still counts)."""
    comm_code = np.empty(len(xy), dtype=object)
    size = np.ones(len(xy)) if size is None else np.asarray(size, dtype=float)
    mean_res = residents.sum() / size.sum()
    for t in pd.unique(comm_meta["town_code"]):
        idx = np.flatnonzero(town_code == t)
        members = comm_meta[comm_meta["town_code"] == t]
        k = len(members)
        if len(idx) < k:
            raise ValidationError(f"town {t} has {len(idx)} cells in the build area for its {k} communities; "
                                  "enlarge the extent or keep fewer communities.")
        lab = bisect_labels(xy[idx], residents[idx] + 0.5 * mean_res * size[idx], k, seed=seed + int(t))
        lab = repair_contiguity(lab, adjacency[idx][:, idx])
        comm_code[idx] = _name_regions(lab, residents[idx], members, k)
    return comm_code


def _name_regions(lab: np.ndarray, res: np.ndarray, members: pd.DataFrame, k: int) -> np.ndarray:
    """Give region labels real NBS codes: urban communities (社区) to the densest regions, villages to the rest."""
    n_cells = np.bincount(lab, minlength=k)
    dens = np.bincount(lab, weights=res, minlength=k) / np.maximum(n_cells, 1)
    by_density = np.argsort(-dens, kind="stable")
    ordered = pd.concat([members[members["kind"] == "community"], members[members["kind"] == "village"]])
    codes = np.empty(k, dtype=object)
    codes[by_density] = ordered["community_code"].to_numpy()
    return codes[lab]


def make_grids(xy: np.ndarray, adjacency: sp.csr_matrix, comm_code: np.ndarray, cell_work: np.ndarray,
               comm_meta: pd.DataFrame, n_grids: int, *, seed: int, size: np.ndarray | None = None
               ) -> tuple[np.ndarray, pd.DataFrame]:
    """``n_grids`` grids of comparable workload inside the communities: (grid code per unit, grid table).

    A unit is a cell, or a piece of the fabric of ``size`` cells (then grids are unions of blocks).

    Grid codes are the community code + a 3-digit number, numbered north→south, west→east by centroid.
    """
    comm_list = comm_meta["community_code"].to_numpy()
    if n_grids < len(comm_list):
        raise ValidationError(f"n_grids={n_grids} is fewer than the {len(comm_list)} communities (one grid each).")
    comm_work = np.array([cell_work[comm_code == c].sum() for c in comm_list])
    per_comm = allocate_counts(comm_work, n_grids, minimum=1)
    grid_code = np.empty(len(xy), dtype=object)
    rows = []
    size = np.ones(len(xy)) if size is None else np.asarray(size, dtype=float)
    mean_w = cell_work.sum() / size.sum()
    for c, k, name in zip(comm_list, per_comm, comm_meta["community_name"]):
        idx = np.flatnonzero(comm_code == c)
        lab = bisect_labels(xy[idx], cell_work[idx] + 0.05 * mean_w * size[idx], int(k), seed=seed + int(c))
        lab = repair_contiguity(lab, adjacency[idx][:, idx])
        # renumber labels 1..k west→east / north→south by their centroid for readable codes
        uniq = np.unique(lab)
        cen = np.array([xy[idx][lab == u].mean(axis=0) for u in uniq])
        order = np.lexsort((cen[:, 0], -cen[:, 1]))
        seq = np.empty(len(uniq), dtype=np.int64)
        seq[order] = np.arange(1, len(uniq) + 1)
        remap = dict(zip(uniq.tolist(), seq.tolist()))
        grid_code[idx] = np.array([f"{c}{remap[v]:03d}" for v in lab], dtype=object)
        for s in sorted(set(remap.values())):
            rows.append({"grid_code": f"{c}{s:03d}", "grid_name": f"{short_name(name)}第{s}网格",
                         "community_code": c})
    return grid_code, pd.DataFrame(rows)


def unit_polygons(cells: np.ndarray, grid_code: np.ndarray, grids_meta: pd.DataFrame, comm_meta: pd.DataFrame,
                  area: BaseGeometry, *, synthetic_grids: bool
                  ) -> tuple[gpd.GeoDataFrame, gpd.GeoDataFrame, gpd.GeoDataFrame]:
    """Town, community and grid polygons (WGS84, clipped to ``area``) from the grid of each cell.

    Communities are unions of their grids and towns unions of their communities, so the hierarchy nests exactly.
    """
    comm_of_grid = dict(zip(grids_meta["grid_code"], grids_meta["community_code"]))
    comm_code = np.array([comm_of_grid[g] for g in grid_code], dtype=object)
    town_of_comm = dict(zip(comm_meta["community_code"], comm_meta["town_code"]))
    town_code = np.array([town_of_comm[c] for c in comm_code], dtype=object)
    towns = units_to_polygons(cells, town_code, area, name="town_code").merge(nbs_towns(), on="town_code")
    communities = units_to_polygons(cells, comm_code, area, name="community_code").merge(
        comm_meta, on="community_code")
    communities["short_name"] = communities["community_name"].map(short_name)
    grids = units_to_polygons(cells, grid_code, area, name="grid_code").merge(grids_meta, on="grid_code")
    grids["town_code"] = grids["community_code"].map(town_of_comm)
    for g in (towns, communities):
        g["synthetic"] = True
    grids["synthetic"] = synthetic_grids
    return towns, communities, grids


@dataclass(frozen=True)
class FabricUnits:
    """Towns, communities and grids over the fabric's pieces (:func:`twin.synth.fabric.units.fabric_pieces`).

    ``piece`` is the piece of each cell; ``town_code``, ``comm_code`` and ``grid_code`` are per piece (so a unit
    is a union of whole pieces, i.e. of blocks); ``split`` flags the faces too large to keep whole.
    """

    piece: np.ndarray
    town_code: np.ndarray
    comm_code: np.ndarray
    grid_code: np.ndarray
    grids_meta: pd.DataFrame
    split: np.ndarray
    n_pieces: int


def fabric_units(xy: np.ndarray, adjacency: sp.csr_matrix, fabric: Fabric, towns_meta: pd.DataFrame,
                 comm_meta: pd.DataFrame, residents: np.ndarray, cell_work: np.ndarray, *, n_grids: int,
                 seeds: tuple[int, int]) -> FabricUnits:
    """Towns (power diagram of the cells, then the majority per piece), communities and grids (bisection of the
    pieces) — every unit a union of blocks, one connected piece of cells. ``xy``: cell centres, EPSG:4547."""
    face_area = shapely.area(fabric.faces)
    max_face_m2 = float(face_area.sum()) / (3.0 * max(n_grids, 1))
    piece = fabric_pieces(fabric.cell_face, adjacency, face_area, max_face_m2=max_face_m2)
    pxy, padj, size = aggregate_pieces(piece, xy, adjacency)
    town_cell = assign_towns(xy, adjacency, towns_meta)
    t_codes, t_int = np.unique(town_cell.astype(str), return_inverse=True)
    town_code = t_codes[majority_by_piece(piece, t_int, padj)]
    n = len(size)
    pres = np.bincount(piece, weights=residents, minlength=n)
    pwork = np.bincount(piece, weights=cell_work, minlength=n)
    comm_code = assign_communities(pxy, padj, town_code, pres, comm_meta, seed=seeds[0], size=size)
    grid_code, grids_meta = make_grids(pxy, padj, comm_code, pwork, comm_meta, n_grids, seed=seeds[1], size=size)
    return FabricUnits(piece=piece, town_code=town_code, comm_code=comm_code, grid_code=grid_code,
                       grids_meta=grids_meta, split=face_area > max_face_m2, n_pieces=n)


def fabric_polygons(cells: np.ndarray, xy: np.ndarray, grid_code: np.ndarray, grids_meta: pd.DataFrame,
                    comm_meta: pd.DataFrame, fabric: Fabric, units: FabricUnits
                    ) -> tuple[gpd.GeoDataFrame, gpd.GeoDataFrame, gpd.GeoDataFrame]:
    """Town, community and grid polygons (WGS84) as unions of the fabric's faces (edges on streets and water);
    each face goes to the grid of most of its cells, its community and town follow the grid, so they nest.
    ``xy``: cell centres (EPSG:4547)."""
    g_codes, g_int = np.unique(np.asarray(grid_code, dtype=str), return_inverse=True)
    fu = face_units(fabric.faces, fabric.cell_face, g_int, xy)
    pieces = split_face_pieces(fabric.faces, units.split, cells, xy)
    comm_of_grid = dict(zip(grids_meta["grid_code"], grids_meta["community_code"]))
    town_of_comm = dict(zip(comm_meta["community_code"], comm_meta["town_code"]))
    level_codes = {"grid": g_codes}
    level_codes["community"] = np.array([comm_of_grid[g] for g in g_codes], dtype=object)
    level_codes["town"] = np.array([town_of_comm[c] for c in level_codes["community"]], dtype=object)
    out = {}
    for level, name in (("grid", "grid_code"), ("community", "community_code"), ("town", "town_code")):
        codes, inv = np.unique(level_codes[level].astype(str), return_inverse=True)
        out[level] = fabric_unit_polygons(fabric.faces, units.split, pieces, cells, inv[g_int], inv[fu], codes,
                                          name)
    towns = out["town"].merge(nbs_towns(), on="town_code")
    communities = out["community"].merge(comm_meta, on="community_code")
    communities["short_name"] = communities["community_name"].map(short_name)
    grids = out["grid"].merge(grids_meta, on="grid_code")
    grids["town_code"] = grids["community_code"].map(town_of_comm)
    for g in (towns, communities, grids):
        g["synthetic"] = True
    return towns, communities, grids

