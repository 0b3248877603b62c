"""Precomputed arrays that make area queries exact and fast, cached in ``Twin.cache``.

Two caches with different keys:

* :class:`PointIndex` (partition-independent, keyed on the identity of the record frames): one point set
  holding every point record — buildings (with per-building aggregates of their residents, dwellings and
  businesses), cameras, workers — and every partition cell centre, bucketed into a regular lng/lat raster of
  :data:`BIN_DEG` bins and sorted by bin, with ``bin_start`` offsets so the points of a run of bins are one
  contiguous slice, and prefix sums of their counts so a run's totals cost two row reads.
* :class:`PartitionIndex` (keyed on the identity of ``t.cells``, its ``grid_code`` column and ``t.grids``): each
  cell's and each point's grid, the grids' community/town, and per-grid totals. Time travel swaps those frames,
  so this is rebuilt at most once per partition version. Replace the frames (or the column) to change the
  partition; writing into the array in place is not detected.

A query is then: rasterise the polygon onto the bins in its bounding window (compiled, :mod:`twin.query._kernels`;
the work grows with the window in bins, not with the points), take the wholly-inside bin runs from the prefix
sums, test only the points in bins the boundary cuts (one :func:`shapely.intersects_xy` call), and sum the
covered points per grid in one compiled pass.
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
from twin.model import COUNT_KEYS, CREDIT_COLOURS, Twin, ages_on
from twin.query._kernels import classify_bins

__all__ = [
    "BIN_DEG",
    "COUNT_KEYS",
    "CREDIT_COLOURS",
    "KINDS",
    "CELL_KIND",
    "PointIndex",
    "PartitionIndex",
    "point_index",
    "partition_index",
    "points_inside",
    "Inside",
    "decide_unsure",
    "polygon_edges",
    "EDGE_EPS_DEG",
    "PointSet",
    "group_sum",
    "cell_areas_km2",
    "partition_cell_areas_km2",
    "seed_point_index",
    "seed_partition_index",
    "building_feature_matrix",
]

BIN_DEG = 0.00025
"""Raster bin size in degrees (≈ 26 m east–west × 28 m north–south at 23°N)."""

KINDS = ("buildings", "cameras", "workers", "cells")
CELL_KIND = KINDS.index("cells")
"""``kind`` of the partition cell centres in the point set (they carry no counts)."""


@dataclass(frozen=True)
class PointSet:
    """Points sorted by raster bin: ``x``/``y`` lng/lat degrees, ``kind`` (index into :data:`KINDS`), ``rec`` row
    position in the source frame (``t.buildings``, ``t.cameras``, ``t.workers`` or ``t.cells``), ``cell_pos``
    row in ``t.cells`` of the point's res-11 cell (-1 if that cell is not in the partition), ``bin``
    (``row * nx + col``) and ``bin_start`` (nx·ny + 1) slice offsets per bin."""

    x: np.ndarray
    y: np.ndarray
    kind: np.ndarray
    rec: np.ndarray
    cell_pos: np.ndarray
    bin: np.ndarray
    bin_start: np.ndarray


@dataclass(frozen=True)
class PointIndex:
    """The raster (origin ``x0``, ``y0``; ``nx`` × ``ny`` bins of ``dx`` × ``dy`` degrees) and its points.

    ``points`` holds buildings, cameras, workers and the partition cell centres with ``feats``
    (n, len(columns)) int32 counts: a building carries its residents, dwellings, businesses…, a camera or worker
    a single 1 in its own column, a cell centre nothing; the :data:`COUNT_KEYS` columns come first. ``cum``
    (n + 1, len(columns)) are prefix sums of ``feats`` so a contiguous slice sums in O(1) (int32 while every
    column's total fits, else int64: half the memory a query reads); ``totals`` are the int64 column sums.
    """

    x0: float
    y0: float
    dx: float
    dy: float
    nx: int
    ny: int
    columns: tuple[str, ...]
    points: PointSet
    feats: np.ndarray
    cum: np.ndarray
    totals: np.ndarray
    uses: tuple[str, ...]
    n_cells: int
    cell_ids: np.ndarray  # uint64 cell of each t.cells row
    use_cols: tuple[int, ...]  # column of use_<u> for each of ``uses``
    credit_cols: tuple[int, ...]  # column of credit_<c> for each of CREDIT_COLOURS

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
    point_grid: np.ndarray  # int16/int32 per point (PointIndex.points order; cell centres too), -1 = no grid
    grid_totals: np.ndarray  # (n_grids, n_columns) int64
    grid_totals_k: np.ndarray  # contiguous grid_totals[:, :len(COUNT_KEYS)]
    grid_community_code: np.ndarray  # object: each grid's community code ("" if none)
    grid_town_code: np.ndarray
    community_town_code: np.ndarray


# --- partition-independent index ------------------------------------------------------------------------------

def point_index(t: Twin) -> PointIndex:
    """The cached :class:`PointIndex` of twin ``t`` (built on first use, ≈ 0.5 s for the default twin)."""
    hit = t.cache.get("query.point_index")
    if hit is not None:  # checked on every query: keep it cheap
        f = hit[0]
        if (f[0] is t.buildings and f[1] is t.persons and f[2] is t.dwellings and f[3] is t.businesses
                and f[4] is t.cameras and f[5] is t.workers and hit[1] == t.manifest.get("as_of")):
            if hit[2] is t.cells:
                return hit[4]
            cells = t.cells["cell"].to_numpy()
            if np.array_equal(hit[3], cells):  # a new partition frame over the same cells
                t.cache["query.point_index"] = (f, hit[1], t.cells, hit[3], hit[4])
                return hit[4]
    frames = (t.buildings, t.persons, t.dwellings, t.businesses, t.cameras, t.workers)
    idx = _build_point_index(t)
    t.cache["query.point_index"] = (frames, t.manifest.get("as_of"), t.cells, idx.cell_ids, idx)
    return idx


def seed_point_index(t: Twin, idx: PointIndex) -> None:
    """Install ``idx`` as the cached :class:`PointIndex` of ``t`` (its current frames): the live twin derives the
    index of a changed state from a base index plus a delta (:mod:`twin.query._delta`) instead of a full build."""
    frames = (t.buildings, t.persons, t.dwellings, t.businesses, t.cameras, t.workers)
    t.cache["query.point_index"] = (frames, t.manifest.get("as_of"), t.cells, idx.cell_ids, idx)


def _building_features(t: Twin) -> tuple[tuple[str, ...], np.ndarray, tuple[str, ...]]:
    b = t.buildings
    nb = len(b)
    ids = b["building_id"].to_numpy()
    if np.array_equal(ids, np.arange(nb)):
        def pos(bid: np.ndarray) -> np.ndarray:
            return np.asarray(bid, dtype=np.int64)
    else:
        lookup = pd.Index(ids)

        def pos(bid: np.ndarray) -> np.ndarray:
            return lookup.get_indexer(bid)

    uses = tuple(sorted(str(u) for u in pd.unique(b["use"].astype(str))))
    return building_feature_matrix(t.persons, t.dwellings, t.businesses, b["use"].astype(str).to_numpy(), pos,
                                   uses, t.as_of)


def building_feature_matrix(persons: pd.DataFrame, dwellings: pd.DataFrame, businesses: pd.DataFrame,
                            use: np.ndarray, pos: Any, uses: tuple[str, ...],
                            as_of: Any) -> tuple[tuple[str, ...], np.ndarray, tuple[str, ...]]:
    """Per-building feature columns (counts of residents by key population on ``as_of``, dwellings, businesses
    by credit colour, one-hot use over ``uses``) for the buildings whose ``use`` is given; ``pos`` maps
    ``building_id`` values to rows (-1 = none of these buildings). The one rule of what a building point carries:
    the full index and the live delta (:mod:`twin.query._delta`) both call it."""
    nb = len(use)
    p = persons
    pb = pos(p["building_id"].to_numpy())
    age = ages_on(p["birth_date"].to_numpy(), as_of)
    male = (p["sex"] == "M").to_numpy()
    keep = pb >= 0

    def count(mask: np.ndarray | None, where: np.ndarray = pb) -> np.ndarray:
        ok = where >= 0 if mask is None else mask & (where >= 0)
        return np.bincount(where[ok], minlength=nb).astype(np.int64)

    use_codes = pd.Categorical(use, categories=list(uses)).codes
    credit = businesses["credit"].astype(str).to_numpy()
    bb = pos(businesses["building_id"].to_numpy())
    cols: dict[str, np.ndarray] = {
        "buildings": np.ones(nb, dtype=np.int64),
        "dwellings": count(None, pos(dwellings["building_id"].to_numpy())),
        "residents": count(keep),
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


def _cell_positions(t: Twin, cells: np.ndarray) -> np.ndarray:
    table = t.cells["cell"].to_numpy()
    pos = np.searchsorted(table, cells)
    pos[pos >= len(table)] = 0
    return np.where(table[pos] == cells, pos, -1).astype(np.int32) if len(table) else np.full(len(cells), -1)


def _build_point_index(t: Twin) -> PointIndex:
    b = t.buildings
    bcols, bfeats, uses = _building_features(t)
    columns = tuple(COUNT_KEYS) + tuple(c for c in bcols if c not in COUNT_KEYS)
    parts = []
    for k, name in enumerate(KINDS):
        if name == "buildings":
            x, y, cells = b["lng"].to_numpy(float), b["lat"].to_numpy(float), b["cell"].to_numpy(np.uint64)
            f = np.zeros((len(b), len(columns)), dtype=np.int32)
            for i, c in enumerate(bcols):
                f[:, columns.index(c)] = bfeats[:, i]
        else:
            frame = t.cells if name == "cells" else getattr(t, name)
            x, y = frame["lng"].to_numpy(float), frame["lat"].to_numpy(float)
            cells = frame["cell"].to_numpy(np.uint64) if name == "cells" else latlng_to_cells(y, x, PARTITION_RES)
            f = np.zeros((len(frame), len(columns)), dtype=np.int32)
            if name != "cells":
                f[:, columns.index(name)] = 1
        parts.append((x, y, np.full(len(x), k, dtype=np.int8), np.arange(len(x), dtype=np.int32), cells, f))
    x, y, kind, rec, cells, feats = (np.concatenate([p[i] for p in parts]) for i in range(6))
    dx = dy = BIN_DEG
    x0, y0 = float(x.min()) - dx, float(y.min()) - dy
    nx = int(np.floor((x.max() - x0) / dx)) + 2
    ny = int(np.floor((y.max() - y0) / dy)) + 2
    binid = np.floor((y - y0) / dy).astype(np.int64) * nx + np.floor((x - x0) / dx).astype(np.int64)
    o = np.argsort(binid, kind="stable")
    bin_start = np.searchsorted(binid[o], np.arange(nx * ny + 1)).astype(
        np.int32 if len(o) < np.iinfo(np.int32).max else np.int64)
    points = PointSet(x[o], y[o], kind[o], rec[o], _cell_positions(t, cells[o]), binid[o].astype(np.int32),
                      bin_start)
    feats = np.ascontiguousarray(feats[o])
    totals = feats.sum(axis=0, dtype=np.int64)
    small = len(totals) == 0 or int(totals.max()) < np.iinfo(np.int32).max
    cum = np.zeros((len(feats) + 1, feats.shape[1]), dtype=np.int32 if small else np.int64)
    np.cumsum(feats, axis=0, dtype=cum.dtype, out=cum[1:])
    return PointIndex(x0, y0, dx, dy, nx, ny, columns, points, feats, cum, totals, uses,
                      len(t.cells), t.cells["cell"].to_numpy(np.uint64).copy(),
                      tuple(columns.index(f"use_{u}") for u in uses),
                      tuple(columns.index(f"credit_{c}") for c in CREDIT_COLOURS))


# --- partition-dependent index --------------------------------------------------------------------------------

def partition_index(t: Twin) -> PartitionIndex:
    """The cached :class:`PartitionIndex` for the partition currently in ``t.cells`` / ``t.grids``."""
    pidx = point_index(t)
    cells = t.cells
    hit = t.cache.get("query.partition_index")
    if (hit is not None and hit[0][0] is cells and hit[0][2] is t.grids and hit[0][3] is pidx
            and hit[0][1] is _column_token(cells, "grid_code")):
        return hit[1]
    key = (cells, _column_token(cells, "grid_code"), t.grids, pidx)
    idx = _build_partition_index(t, pidx)
    t.cache["query.partition_index"] = (key, idx)
    return idx


def seed_partition_index(t: Twin, part: PartitionIndex) -> None:
    """Install ``part`` as the cached :class:`PartitionIndex` of ``t``'s partition and current point index (the live
    twin derives it from a base's by the delta, :func:`twin.query._delta.derive_partition_index`)."""
    key = (t.cells, _column_token(t.cells, "grid_code"), t.grids, point_index(t))
    t.cache["query.partition_index"] = (key, part)


def _column_token(frame: pd.DataFrame, column: str) -> Any:
    """An object whose identity changes when ``frame[column]`` is replaced (per query: keep it cheap).

    pandas replaces the block-manager's ``blocks`` tuple whenever a column is set (≈ 0.1 µs to read, where
    ``frame[column]`` costs ≈ 20 µs); falls back to the column's array on other pandas versions.
    """
    mgr = getattr(frame, "_mgr", None)
    blocks = getattr(mgr, "blocks", None)
    return blocks if isinstance(blocks, tuple) else frame[column].array


def _build_partition_index(t: Twin, pidx: PointIndex) -> PartitionIndex:
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
    pts = pidx.points
    cp = pts.cell_pos
    # cell centres get their cell's grid too (they carry no counts): runs of one grid stay unbroken
    point_grid = np.where(cp >= 0, cell_grid[np.maximum(cp, 0)], -1).astype(np.int16 if small else np.int32)
    grid_totals = group_sum(point_grid, pidx.feats, len(grid_codes))
    return PartitionIndex(grid_codes, grid_names, grid_community, grid_town, community_codes, community_names,
                          community_town, town_codes, town_names, cell_grid, point_grid, grid_totals,
                          np.ascontiguousarray(grid_totals[:, :len(COUNT_KEYS)]),
                          _codes(community_codes, grid_community), _codes(town_codes, grid_town),
                          _codes(town_codes, community_town))


def _codes(table: np.ndarray, idx: np.ndarray) -> np.ndarray:
    return np.where(idx >= 0, table[np.maximum(idx, 0)], "").astype(object)


def group_sum(group: np.ndarray, feats: np.ndarray, n_groups: int, rows: np.ndarray | None = None) -> np.ndarray:
    """Sum ``feats[rows]`` (all rows if ``None``) per ``group[rows]``; negative groups are dropped.

    Returns an (n_groups, n_columns) int64 array. Sorts the group ids (radix sort for int16) and reduces
    contiguous runs, which beats a weighted bincount per column.
    """
    g = group if rows is None else group[rows]
    order = np.argsort(g, kind="stable")
    gs = g[order]
    out = np.zeros((n_groups, feats.shape[1]), dtype=np.int64)
    if len(gs) == 0 or gs[-1] < 0:
        return out
    if gs[0] < 0:  # drop negative groups
        first = int(np.searchsorted(gs, 0))
        order, gs = order[first:], gs[first:]
    starts = np.flatnonzero(gs[1:] != gs[:-1]) + 1
    starts = np.concatenate([[0], starts])
    sel = order if rows is None else rows[order]
    out[gs[starts]] = np.add.reduceat(feats[sel], starts, axis=0, dtype=np.int64)
    return out


# --- exact point-in-area --------------------------------------------------------------------------------------

EDGE_EPS_DEG = 1e-9
"""Margin in degrees (≈ 0.1 mm) that makes the bin classification conservative; points this close to an edge
are decided by shapely."""


@dataclass(frozen=True)
class Inside:
    """Which points of ``PointIndex.points`` an area covers: the points in wholly-inside bin runs (slices
    ``starts[i]:stops[i]``, no test needed) plus the tested ``edge`` indices; ``n_points`` is the size of the
    point set. Cell centres are included (``kind == CELL_KIND``; they carry no counts)."""

    starts: np.ndarray
    stops: np.ndarray
    edge: np.ndarray
    n_points: int

    def indices(self) -> np.ndarray:
        """All covered point indices (unsorted)."""
        return np.concatenate([_ranges(self.starts, self.stops), self.edge])


def points_inside(pidx: PointIndex, geom: BaseGeometry) -> Inside:
    """The points (records and cell centres) covered by ``geom``, a valid WGS84 (Multi)Polygon.

    "Covered" is :func:`shapely.intersects_xy` (a point on the boundary counts as inside). The polygon is
    rasterised onto the index's bins (:func:`twin.query._kernels.classify_bins`): bins no edge comes within 1e-9°
    of are wholly inside or outside and their points are taken or dropped without a test; points in bins the
    boundary passes through are tested by crossing parity, and the rare points within 1e-9° (≈ 0.1 mm) of an
    edge by shapely, so the answer is exact.
    """
    pts = pidx.points
    starts, stops, edge, unsure = classify_bins(polygon_edges(geom), geom.bounds, pidx.x0, pidx.y0, pidx.dx, pidx.dy,
                                                pidx.nx, pidx.ny, pts.bin_start, pts.x, pts.y, EDGE_EPS_DEG)
    if len(unsure):
        edge = decide_unsure(pidx, geom, edge, unsure)
    return Inside(starts, stops, edge, len(pts.x))


def decide_unsure(pidx: PointIndex, geom: BaseGeometry, inside: np.ndarray, unsure: np.ndarray) -> np.ndarray:
    """``inside`` plus the ``unsure`` points (within 1e-9° of ``geom``'s boundary) that GEOS's robust predicate
    finds covered, ascending."""
    pts = pidx.points
    shapely.prepare(geom)
    return np.sort(np.concatenate([inside, unsure[shapely.intersects_xy(geom, pts.x[unsure], pts.y[unsure])]]))


def _ranges(starts: np.ndarray, stops: np.ndarray) -> np.ndarray:
    """Concatenation of ``arange(a, b)`` for each pair."""
    lens = stops - starts
    total = int(lens.sum())
    if total == 0:
        return np.empty(0, dtype=np.int64)
    ends = np.cumsum(lens)
    return np.arange(total, dtype=np.int64) + np.repeat(starts - (ends - lens), lens)


def polygon_edges(geom: BaseGeometry) -> np.ndarray:
    """(n_edges, 4) array of x1, y1, x2, y2 of every ring edge."""
    if geom.geom_type == "Polygon" and shapely.get_num_interior_rings(geom) == 0:
        c = shapely.get_coordinates(geom)  # one closed ring
        return np.concatenate([c[:-1], c[1:]], axis=1)
    coords, ring = shapely.get_coordinates(shapely.get_rings(shapely.get_parts(geom)), return_index=True)
    same = ring[:-1] == ring[1:]
    return np.concatenate([coords[:-1][same], coords[1:][same]], axis=1)


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


def partition_cell_areas_km2(t: Twin) -> np.ndarray:
    """:func:`cell_areas_km2` of every row of ``t.cells`` (cached)."""
    cells = t.cells["cell"].to_numpy()
    hit = t.cache.get("query.cell_areas")
    if hit is not None and (hit[0] is cells or np.array_equal(hit[0], cells)):
        return hit[1]
    areas = cell_areas_km2(cells)
    t.cache["query.cell_areas"] = (cells, areas)
    return areas
