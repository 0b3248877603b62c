"""Precomputed arrays that make area queries exact and fast, cached in ``Twin.cache``.

Two caches with different keys:

* :class:`PointIndex` (partition-independent, keyed on the identity of the record frames): every point record
  — buildings (with per-building aggregates of their residents, dwellings and businesses), cameras, workers —
  and every partition cell centre, bucketed into a regular lng/lat raster of :data:`BIN_DEG` bins and sorted by
  bin, with ``bin_start`` offsets so the points of a run of bins are one contiguous slice.
* :class:`PartitionIndex` (keyed on the identity of ``t.cells``, its ``grid_code`` column and ``t.grids``): each
  cell's and each point's grid, the grids' community/town, and per-grid totals. Time travel swaps those frames,
  so this is rebuilt at most once per partition version. Replace the frames (or the column) to change the
  partition; writing into the array in place is not detected.

Coordinates are WGS84 degrees (lng = x, lat = y).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import shapely
from shapely.geometry.base import BaseGeometry

from twin.cells import PARTITION_RES, cell_boundaries, latlng_to_cells
from twin.crs import lnglat_to_xy
from twin.residents import ages_on

__all__ = [
    "BIN_DEG",
    "COUNT_KEYS",
    "CREDIT_COLOURS",
    "KINDS",
    "PointIndex",
    "PartitionIndex",
    "point_index",
    "partition_index",
    "points_inside",
    "Inside",
    "PointSet",
    "group_sum",
    "cell_areas_km2",
    "partition_cell_areas_km2",
]

BIN_DEG = 0.0005
"""Raster bin size in degrees (≈ 51 m east–west × 55 m north–south at 23°N)."""

COUNT_KEYS = (
    "buildings", "dwellings", "residents", "residents_male", "residents_female", "businesses", "cameras",
    "workers", "disabled", "low_income", "pregnant", "elderly_70", "elderly_80", "age_0_14", "age_15_59",
    "age_60_plus",
)
CREDIT_COLOURS = ("green", "yellow", "red")
KINDS = ("buildings", "cameras", "workers", "cells")


@dataclass(frozen=True)
class PointSet:
    """Points sorted by raster bin: ``x``/``y`` lng/lat degrees, ``kind`` (index into :data:`KINDS`), ``rec`` row
    position in the source frame, ``cell_pos`` row in ``t.cells`` (-1 if the point's cell is not in the
    partition), ``bin`` (``row * nx + col``) and ``bin_start`` (nx·ny + 1) slice offsets per bin."""

    x: np.ndarray
    y: np.ndarray
    kind: np.ndarray
    rec: np.ndarray
    cell_pos: np.ndarray
    bin: np.ndarray
    bin_start: np.ndarray


@dataclass(frozen=True)
class PointIndex:
    """The raster (origin ``x0``, ``y0``; ``nx`` × ``ny`` bins of ``dx`` × ``dy`` degrees) and two point sets.

    ``records`` holds buildings, cameras and workers with ``feats`` (n, len(columns)) int32 counts: a building
    carries its residents, dwellings, businesses…, a camera or worker a single 1 in its own column; the
    :data:`COUNT_KEYS` columns come first. ``cum`` (n + 1, len(columns)) int64 are prefix sums of ``feats`` so
    a contiguous slice sums in O(1); ``totals`` are the column sums. ``cells`` holds the partition cell centres.
    """

    x0: float
    y0: float
    dx: float
    dy: float
    nx: int
    ny: int
    columns: tuple[str, ...]
    records: PointSet
    feats: np.ndarray
    cum: np.ndarray
    totals: np.ndarray
    cells: PointSet
    uses: tuple[str, ...]
    n_cells: int
    cell_ids: np.ndarray  # uint64 cell of each t.cells row

    def col(self, name: str) -> int:
        """Column number of a feature name (``residents``, ``credit_red``, ``use_residential``…)."""
        return self.columns.index(name)


@dataclass(frozen=True)
class PartitionIndex:
    """Cell → grid lookups for the partition in force and per-grid totals of every PointIndex column."""

    grid_codes: np.ndarray  # object array, t.grids order
    grid_names: np.ndarray
    grid_community: np.ndarray  # int index into community_codes
    grid_town: np.ndarray  # int index into town_codes
    community_codes: np.ndarray
    community_names: np.ndarray
    community_town: np.ndarray
    town_codes: np.ndarray
    town_names: np.ndarray
    cell_grid: np.ndarray  # int32 per t.cells row, -1 = no grid
    point_grid: np.ndarray  # int16/int32 per record point (PointIndex.records order), -1 = no grid
    grid_totals: np.ndarray  # (n_grids, n_columns) int64
    community_of_grid: np.ndarray  # (n_communities, n_grids) float64 one-hot, for matrix roll-ups
    town_of_grid: np.ndarray  # (n_towns, n_grids) float64 one-hot


# --- partition-independent index ------------------------------------------------------------------------------

def point_index(t: Any) -> PointIndex:
    """The cached :class:`PointIndex` of twin ``t`` (built on first use, ≈ 0.5 s for the default twin)."""
    frames = (t.buildings, t.persons, t.dwellings, t.businesses, t.cameras, t.workers)
    hit = t.cache.get("query.point_index")
    if hit is not None and all(a is b for a, b in zip(hit[0], frames)) and hit[1] == t.as_of:
        if hit[2] is t.cells:
            return hit[4]
        cells = t.cells["cell"].to_numpy()
        if np.array_equal(hit[3], cells):  # a new partition frame over the same cells
            t.cache["query.point_index"] = (frames, t.as_of, t.cells, hit[3], hit[4])
            return hit[4]
    idx = _build_point_index(t)
    t.cache["query.point_index"] = (frames, t.as_of, t.cells, idx.cell_ids, idx)
    return idx


def _building_features(t: Any) -> tuple[tuple[str, ...], np.ndarray, tuple[str, ...]]:
    b = t.buildings
    nb = len(b)
    ids = b["building_id"].to_numpy()
    if np.array_equal(ids, np.arange(nb)):
        def pos(bid: np.ndarray) -> np.ndarray:
            return np.asarray(bid, dtype=np.int64)
    else:
        order = np.argsort(ids)

        def pos(bid: np.ndarray) -> np.ndarray:
            return order[np.searchsorted(ids, bid, sorter=order)]

    p = t.persons
    pb = pos(p["building_id"].to_numpy())
    age = ages_on(p["birth_date"].to_numpy(), t.as_of)
    male = (p["sex"] == "M").to_numpy()

    def count(mask: np.ndarray | None, where: np.ndarray = pb) -> np.ndarray:
        return np.bincount(where if mask is None else where[mask], minlength=nb).astype(np.int64)

    uses = tuple(sorted(str(u) for u in pd.unique(b["use"].astype(str))))
    use_codes = pd.Categorical(b["use"].astype(str), categories=list(uses)).codes
    credit = t.businesses["credit"].astype(str).to_numpy()
    bb = pos(t.businesses["building_id"].to_numpy())
    cols: dict[str, np.ndarray] = {
        "buildings": np.ones(nb, dtype=np.int64),
        "dwellings": count(None, pos(t.dwellings["building_id"].to_numpy())),
        "residents": count(None),
        "residents_male": count(male),
        "residents_female": count(~male),
        "businesses": count(None, bb),
        "disabled": count(p["disabled"].to_numpy()),
        "low_income": count(p["low_income"].to_numpy()),
        "pregnant": count(p["pregnant"].to_numpy()),
        "elderly_70": count(age >= 70),
        "elderly_80": count(age >= 80),
        "age_0_14": count(age < 15),
        "age_15_59": count((age >= 15) & (age < 60)),
        "age_60_plus": count(age >= 60),
    }
    for c in CREDIT_COLOURS:
        cols[f"credit_{c}"] = count(credit == c, bb)
    for i, u in enumerate(uses):
        cols[f"use_{u}"] = (use_codes == i).astype(np.int64)
    names = tuple(cols)
    return names, np.column_stack([cols[n] for n in names]), uses


def _cell_positions(t: Any, cells: np.ndarray) -> np.ndarray:
    table = t.cells["cell"].to_numpy()
    pos = np.searchsorted(table, cells)
    pos[pos >= len(table)] = 0
    return np.where(table[pos] == cells, pos, -1).astype(np.int32) if len(table) else np.full(len(cells), -1)


def _build_point_index(t: Any) -> PointIndex:
    b = t.buildings
    bcols, bfeats, uses = _building_features(t)
    columns = tuple(COUNT_KEYS) + tuple(c for c in bcols if c not in COUNT_KEYS)
    parts = []
    for k, kind in enumerate(KINDS):
        if kind == "buildings":
            x, y, cells = b["lng"].to_numpy(float), b["lat"].to_numpy(float), b["cell"].to_numpy(np.uint64)
            f = np.zeros((len(b), len(columns)), dtype=np.int32)
            for i, c in enumerate(bcols):
                f[:, columns.index(c)] = bfeats[:, i]
        else:
            frame = t.cells if kind == "cells" else getattr(t, kind)
            x, y = frame["lng"].to_numpy(float), frame["lat"].to_numpy(float)
            cells = frame["cell"].to_numpy(np.uint64) if kind == "cells" else latlng_to_cells(y, x, PARTITION_RES)
            f = np.zeros((len(frame), len(columns)), dtype=np.int32)
            if kind != "cells":
                f[:, columns.index(kind)] = 1
        parts.append((x, y, np.full(len(x), k, dtype=np.int8), np.arange(len(x), dtype=np.int32), cells, f))
    allx = np.concatenate([p[0] for p in parts])
    ally = np.concatenate([p[1] for p in parts])
    dx = dy = BIN_DEG
    x0, y0 = float(allx.min()) - dx, float(ally.min()) - dy
    nx = int(np.floor((allx.max() - x0) / dx)) + 2
    ny = int(np.floor((ally.max() - y0) / dy)) + 2

    def point_set(ps: list[Any]) -> tuple[PointSet, np.ndarray]:
        x, y, kind, rec, cells, feats = (np.concatenate([p[i] for p in ps]) for i in range(6))
        binid = np.floor((y - y0) / dy).astype(np.int64) * nx + np.floor((x - x0) / dx).astype(np.int64)
        o = np.argsort(binid, kind="stable")
        bin_start = np.searchsorted(binid[o], np.arange(nx * ny + 1)).astype(np.int64)
        return (PointSet(x[o], y[o], kind[o], rec[o], _cell_positions(t, cells[o]), binid[o].astype(np.int32),
                         bin_start), np.ascontiguousarray(feats[o]))

    records, feats = point_set(parts[:3])
    cells, _ = point_set(parts[3:])
    cum = np.zeros((len(feats) + 1, feats.shape[1]), dtype=np.int64)
    np.cumsum(feats, axis=0, dtype=np.int64, out=cum[1:])
    return PointIndex(x0, y0, dx, dy, nx, ny, columns, records, feats, cum, cum[-1].copy(), cells, uses,
                      len(t.cells), t.cells["cell"].to_numpy(np.uint64).copy())


# --- partition-dependent index --------------------------------------------------------------------------------

def partition_index(t: Any) -> PartitionIndex:
    """The cached :class:`PartitionIndex` for the partition currently in ``t.cells`` / ``t.grids``."""
    pidx = point_index(t)
    key = (t.cells, t.cells["grid_code"].array, t.grids, pidx)
    hit = t.cache.get("query.partition_index")
    if hit is not None and all(a is b for a, b in zip(hit[0], key)):
        return hit[1]
    idx = _build_partition_index(t, pidx)
    t.cache["query.partition_index"] = (key, idx)
    return idx


def _build_partition_index(t: Any, pidx: PointIndex) -> PartitionIndex:
    g = t.grids
    grid_codes = g["grid_code"].astype(str).to_numpy(dtype=object)
    grid_names = (g["grid_name"].astype(str) if "grid_name" in g else g["grid_code"].astype(str)).to_numpy(object)
    com = t.communities
    community_codes = com["community_code"].astype(str).to_numpy(dtype=object)
    community_names = com["community_name"].astype(str).to_numpy(dtype=object)
    tw = t.towns
    town_codes = tw["town_code"].astype(str).to_numpy(dtype=object)
    town_names = tw["town_name"].astype(str).to_numpy(dtype=object)

    def lookup(values: pd.Series, table: np.ndarray) -> np.ndarray:
        return pd.Index(table).get_indexer(values.astype(str).to_numpy(dtype=object)).astype(np.int32)

    grid_community = lookup(g["community_code"], community_codes)
    grid_town = lookup(g["town_code"], town_codes)
    community_town = lookup(com["town_code"], town_codes)
    cell_grid = lookup(t.cells["grid_code"].fillna(""), grid_codes)
    small = len(grid_codes) < np.iinfo(np.int16).max
    cp = pidx.records.cell_pos
    point_grid = np.where(cp >= 0, cell_grid[np.maximum(cp, 0)], -1).astype(
        np.int16 if small else np.int32)  # int16 sorts by radix sort
    grid_totals = group_sum(point_grid, pidx.feats, len(grid_codes))
    return PartitionIndex(grid_codes, grid_names, grid_community, grid_town, community_codes, community_names,
                          community_town, town_codes, town_names, cell_grid, point_grid, grid_totals,
                          _one_hot(grid_community, len(community_codes)), _one_hot(grid_town, len(town_codes)))


def _one_hot(parent: np.ndarray, n: int) -> np.ndarray:
    m = np.zeros((n, len(parent)))
    ok = parent >= 0
    m[parent[ok], np.flatnonzero(ok)] = 1.0
    return m


def group_sum(group: np.ndarray, feats: np.ndarray, n_groups: int, rows: np.ndarray | None = None) -> np.ndarray:
    """Sum ``feats[rows]`` (all rows if ``None``) per ``group[rows]``; negative groups are dropped.

    Returns an (n_groups, n_columns) int64 array. Sorts the group ids (radix sort for int16) and reduces
    contiguous runs, which beats a weighted bincount per column.
    """
    g = group if rows is None else group[rows]
    order = np.argsort(g, kind="stable")
    gs = g[order]
    first = int(np.searchsorted(gs, 0))  # drop negative groups
    order, gs = order[first:], gs[first:]
    out = np.zeros((n_groups, feats.shape[1]), dtype=np.int64)
    if len(gs) == 0:
        return out
    starts = np.flatnonzero(np.concatenate([[True], gs[1:] != gs[:-1]]))
    sel = order if rows is None else rows[order]
    out[gs[starts]] = np.add.reduceat(feats[sel], starts, axis=0, dtype=np.int64)
    return out


# --- exact point-in-area --------------------------------------------------------------------------------------

_EPS = 1e-9  # degrees (≈ 0.1 mm): margin that makes the bin classification conservative


@dataclass(frozen=True)
class Inside:
    """Which points an area covers: record points in ``full`` bin runs (slices ``starts[i]:stops[i]`` of
    ``PointIndex.records``, no test needed) plus tested ``edge`` record indices, and covered cell-centre indices."""

    starts: np.ndarray
    stops: np.ndarray
    edge: np.ndarray
    cells: np.ndarray

    def records(self) -> np.ndarray:
        """All covered record indices (unsorted)."""
        return np.concatenate([_ranges(self.starts, self.stops), self.edge])

    @property
    def n_records(self) -> int:
        return int((self.stops - self.starts).sum()) + len(self.edge)


def points_inside(pidx: PointIndex, geom: BaseGeometry) -> Inside:
    """The record points and cell centres covered by ``geom``, a valid WGS84 (Multi)Polygon.

    "Covered" is :func:`shapely.intersects_xy` (a point on the boundary counts as inside). The polygon is
    rasterised onto the index's bins: bins no edge comes within 1e-9° of are wholly inside or outside (decided by
    even–odd crossings along the bin row's centre line) and their points are taken or dropped without a test;
    only points in bins the boundary passes through are tested with shapely, so the answer is exact.
    """
    empty = np.empty(0, dtype=np.int64)
    status, (r0, r1, c0, c1) = _classify_bins(pidx, geom)
    if status is None:
        return Inside(empty, empty, empty, empty)
    nr, nc = status.shape
    padded = np.zeros((nr, nc + 2), dtype=np.int8)
    padded[:, 1:-1] = status
    w = nc + 1
    runs = []
    for value in (1, 2):
        d = np.diff((padded == value).view(np.int8), axis=1).ravel()  # +1 where a run starts, -1 after it ends
        s = np.flatnonzero(d == 1)
        e = np.flatnonzero(d == -1)
        runs.append(((r0 + s // w) * pidx.nx + c0 + s % w, (r0 + e // w) * pidx.nx + c0 + e % w))
    shapely.prepare(geom)

    def edge_points(ps: PointSet) -> np.ndarray:
        idx = _ranges(ps.bin_start[runs[1][0]], ps.bin_start[runs[1][1]])
        return idx[shapely.intersects_xy(geom, ps.x[idx], ps.y[idx])] if len(idx) else idx

    rec, cel = pidx.records, pidx.cells
    cells = np.concatenate([_ranges(cel.bin_start[runs[0][0]], cel.bin_start[runs[0][1]]), edge_points(cel)])
    return Inside(rec.bin_start[runs[0][0]], rec.bin_start[runs[0][1]], edge_points(rec), cells)


def _ranges(starts: np.ndarray, stops: np.ndarray) -> np.ndarray:
    """Concatenation of ``arange(a, b)`` for each pair."""
    lens = stops - starts
    keep = lens > 0
    starts, lens = starts[keep], lens[keep]
    total = int(lens.sum())
    if total == 0:
        return np.empty(0, dtype=np.int64)
    offs = np.repeat(starts - np.concatenate([[0], np.cumsum(lens)[:-1]]), lens)
    return np.arange(total, dtype=np.int64) + offs


def _edges(geom: BaseGeometry) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rings = shapely.get_rings(shapely.get_parts(geom))
    coords, ring = shapely.get_coordinates(rings, return_index=True)
    same = ring[:-1] == ring[1:]
    a, b = coords[:-1][same], coords[1:][same]
    return a[:, 0], a[:, 1], b[:, 0], b[:, 1]


def _classify_bins(pidx: PointIndex, geom: BaseGeometry) -> tuple[np.ndarray | None, tuple[int, int, int, int]]:
    """Status of each bin in the area's bounding window: 0 outside, 1 wholly inside, 2 cut by the boundary."""
    x0, y0, dx, dy = pidx.x0, pidx.y0, pidx.dx, pidx.dy
    minx, miny, maxx, maxy = geom.bounds
    c0 = max(int(np.floor((minx - _EPS - x0) / dx)), 0)
    c1 = min(int(np.floor((maxx + _EPS - x0) / dx)), pidx.nx - 1)
    r0 = max(int(np.floor((miny - _EPS - y0) / dy)), 0)
    r1 = min(int(np.floor((maxy + _EPS - y0) / dy)), pidx.ny - 1)
    if c1 < c0 or r1 < r0:
        return None, (0, -1, 0, -1)
    nr, nc = r1 - r0 + 1, c1 - c0 + 1
    ex1, ey1, ex2, ey2 = _edges(geom)
    ylo, yhi = np.minimum(ey1, ey2), np.maximum(ey1, ey2)
    flat = ey1 == ey2
    slope = np.divide(ex2 - ex1, ey2 - ey1, out=np.zeros_like(ex1), where=~flat)
    info = np.column_stack([ex1, ey1, slope, ylo, yhi, np.minimum(ex1, ex2), np.maximum(ex1, ex2), flat])

    # every (edge, bin row) pair whose row strip, widened by _EPS, the edge reaches
    jlo = np.maximum(np.floor((ylo - _EPS - y0) / dy).astype(np.int64), r0)
    jhi = np.minimum(np.floor((yhi + _EPS - y0) / dy).astype(np.int64), r1)
    n = np.maximum(jhi - jlo + 1, 0)
    j = _ranges(jlo, jlo + n)
    x1, y1, sl, lo, hi, exlo, exhi, fl = info[np.repeat(np.arange(len(ex1)), n)].T

    # 1. bins the boundary passes through: the edge clipped to the widened strip, widened by _EPS in x
    ys = y0 + j * dy
    xa = x1 + (np.maximum(ys - _EPS, lo) - y1) * sl
    xb = x1 + (np.minimum(ys + dy + _EPS, hi) - y1) * sl
    xlo = np.where(fl > 0, exlo, np.maximum(np.minimum(xa, xb), exlo))
    xhi = np.where(fl > 0, exhi, np.minimum(np.maximum(xa, xb), exhi))
    clo = np.maximum(np.floor((xlo - _EPS - x0) / dx).astype(np.int64), c0)
    chi = np.minimum(np.floor((xhi + _EPS - x0) / dx).astype(np.int64), c1)
    ok = chi >= clo
    base = (j[ok] - r0) * nc - c0
    size = nr * nc + 1
    diff = np.bincount(base + clo[ok], minlength=size) - np.bincount(base + chi[ok] + 1, minlength=size)
    boundary = (np.cumsum(diff[:size - 1]) > 0).reshape(nr, nc)

    # 2. inside/outside of every bin centre: even-odd crossings along each row's centre line (half-open rule)
    yc = ys + 0.5 * dy
    hit = (lo <= yc) & (yc < hi)
    xc = x1[hit] + (yc[hit] - y1[hit]) * sl[hit]
    k = np.clip(np.floor((xc - x0) / dx - 0.5).astype(np.int64) + 1 - c0, 0, nc)
    flips = np.bincount((j[hit] - r0) * (nc + 1) + k, minlength=nr * (nc + 1)).reshape(nr, nc + 1)
    inside = (np.cumsum(flips[:, :nc], axis=1) & 1).astype(bool)

    status = np.where(boundary, 2, np.where(inside, 1, 0)).astype(np.int8)
    return status, (r0, r1, c0, c1)


# --- cell areas -----------------------------------------------------------------------------------------------

def cell_areas_km2(cells: np.ndarray) -> np.ndarray:
    """Area in km² (EPSG:4547) of each H3 cell (any resolution), from its boundary polygon."""
    arr = np.asarray(cells, dtype=np.uint64)
    if len(arr) == 0:
        return np.empty(0)
    rings = cell_boundaries(arr)
    lens = np.array([len(r) for r in rings])
    lnglat = np.array([p for r in rings for p in r], dtype=float)
    x, y = lnglat_to_xy(lnglat[:, 0], lnglat[:, 1])
    ring_id = np.repeat(np.arange(len(arr)), lens)
    # shoelace per ring, vertices in order (closing edge included by rolling within each ring)
    start = np.concatenate([[0], np.cumsum(lens)[:-1]])
    nxt = np.arange(len(x)) + 1
    nxt[start + lens - 1] = start
    cross = x * y[nxt] - x[nxt] * y
    return np.abs(np.bincount(ring_id, weights=cross, minlength=len(arr))) / 2 / 1e6


def partition_cell_areas_km2(t: Any) -> np.ndarray:
    """:func:`cell_areas_km2` of every row of ``t.cells`` (cached)."""
    cells = t.cells["cell"].to_numpy()
    hit = t.cache.get("query.cell_areas")
    if hit is not None and (hit[0] is cells or np.array_equal(hit[0], cells)):
        return hit[1]
    areas = cell_areas_km2(cells)
    t.cache["query.cell_areas"] = (cells, areas)
    return areas
