"""The fixed table of publishable units (可用不可见): outside a caller's record scope every figure is a sum of
published unit values — whole grids of the built partition (overlays: H3 cells at :data:`OVERLAY_BASE_RES`), each
0, suppressed (1 … k−1) or rounded half-up to a multiple of k — so any difference of two answers is a multiple of k.
See :mod:`twin.access.policy` and ``docs/privacy.md``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from twin.access.roles import Role
from twin.access.scope import record_scope_mask
from twin.access.suppression import Suppressed
from twin.errors import ValidationError
from twin.io import read_table
from twin.model import Twin

__all__ = ["SUPPRESSED", "OVERLAY_BASE_RES", "publish", "published_sum", "publish_counts", "counted_units",
           "base_units", "register_cell_values", "closed_cells", "unit_table", "publish_groups", "outside_of",
           "as_int_or_none"]

OVERLAY_BASE_RES = 9
"""H3 resolution at which out-of-scope overlay counts are published for every role that does not see
everything: coarser cells are sums of these published cells, finer cells are not published outside the scope."""

SUPPRESSED = -1
"""Marker of a suppressed value in the int64 arrays of :func:`publish` / :func:`published_sum`."""


"""The policy of the Python API when none is given (suppressed aggregates outside the scope, k = 5)."""


# --- the publication rule for out-of-scope figures -----------------------------------------------------------

def publish(values: np.ndarray | Sequence[int] | int, k: int) -> np.ndarray:
    """Published value of each unit count: 0 → 0, 1 … k−1 → :data:`SUPPRESSED` (−1), else rounded half-up to a
    multiple of ``k`` (≥ ``k``). Element-wise on an int array of any shape; ``k = 1`` publishes exactly."""
    v = np.asarray(values, dtype=np.int64)
    if k <= 1:
        return v.copy()
    rounded = (v + k // 2) // k * k
    return np.where(v == 0, 0, np.where(v < k, SUPPRESSED, np.maximum(rounded, k)))


def published_sum(pub: np.ndarray, axis: int = 0) -> np.ndarray:
    """Sum of published unit values along ``axis``: suppressed units add 0; a sum of 0 that has a suppressed
    unit is :data:`SUPPRESSED`. A function of the published values only, so differencing sums gives nothing
    the unit table does not."""
    pub = np.asarray(pub, dtype=np.int64)
    hidden = pub < 0
    s = np.where(hidden, 0, pub).sum(axis=axis)
    return np.where((s == 0) & hidden.any(axis=axis), SUPPRESSED, s)


def publish_counts(counts: Mapping[str, int], k: int) -> Suppressed:
    """:func:`publish` of one unit's named counts: ``None`` for suppressed values, listed in ``suppressed``."""
    keys = list(counts)
    pub = publish(np.array([int(counts[c]) for c in keys], dtype=np.int64), k)
    values: dict[str, int | None] = {c: (None if p < 0 else int(p)) for c, p in zip(keys, pub.tolist())}
    return Suppressed(values, sorted(c for c, v in values.items() if v is None))


def counted_units(touched_cells: np.ndarray, unit_cells: np.ndarray) -> np.ndarray:
    """Which units an area counts outside the scope: those with more than half of their (out-of-scope) cells
    touched — then the whole unit. A small hole or bump in an area changes no count unless it moves a unit
    across one half; in a partition each unit is counted by at most one part."""
    touched = np.asarray(touched_cells, dtype=np.int64)
    return 2 * touched > np.asarray(unit_cells, dtype=np.int64)


_BASE_UNITS: dict[tuple[str, int], tuple[np.ndarray, np.ndarray, np.ndarray]] = {}


def base_units(t: Twin) -> tuple[np.ndarray, np.ndarray]:
    """The fixed publishable units outside a record scope: the grids of the twin's *built* partition (its
    ``cells.parquet``; version 1), which no partition version changes. Returns (unit codes, unit index per
    ``t.cells`` row, −1 for cells of no grid). Cached per twin directory."""
    cells = t.cells["cell"].to_numpy()
    key = (str(Path(t.root).resolve()), len(cells))
    hit = _BASE_UNITS.get(key)
    if hit is not None and np.array_equal(hit[0], cells):
        return hit[1], hit[2]
    path = Path(t.root) / "cells.parquet"
    base = read_table(path, columns=["cell", "grid_code"]) if path.exists() else t.cells[["cell", "grid_code"]]
    pos = pd.Index(base["cell"].to_numpy()).get_indexer(cells)
    codes_per_cell = np.where(pos >= 0, base["grid_code"].fillna("").astype(str).to_numpy()[np.maximum(pos, 0)], "")
    codes, unit = np.unique(codes_per_cell.astype(str), return_inverse=True)
    unit = unit.astype(np.int64)
    if codes[0] == "":  # cells of no built grid belong to no unit
        unit, codes = unit - 1, codes[1:]
    _BASE_UNITS[key] = (cells, codes.astype(str), unit)
    return codes.astype(str), unit


def register_cell_values(t: Twin, keys: Sequence[str], values: np.ndarray) -> None:
    """Give the engine the exact per-cell counts of ``t`` (rows aligned with ``t.cells``, one column per key);
    the query layer does this once per twin. Partition-independent: shared by every version."""
    t.cache["access.cell_values"] = (tuple(keys), np.asarray(values))


def _cell_values(t: Twin, keys: Sequence[str]) -> np.ndarray:
    hit = t.cache.get("access.cell_values")
    if hit is None:
        raise ValidationError("the per-cell counts of this twin are not registered; query it through "
                              "twin.query (summarize_area, grid_dossier) first.")
    cols = [hit[0].index(k) for k in keys]
    return hit[1][:, cols]


def closed_cells(role: Role, t: Twin) -> np.ndarray:
    """Boolean per ``t.cells`` row: the cell lies outside ``role``'s record scope (or in no grid)."""
    key = ("access.closed", role.scope_level, role.scope_codes, role.can_see_records)
    cache = t.cache.setdefault("access.scopes", {})
    hit = cache.get(key)
    if hit is not None and hit[0] is t.cells and hit[1] is t.grids:
        return hit[2]
    pos = pd.Index(t.grids["grid_code"].astype(str)).get_indexer(t.cells["grid_code"].fillna("").astype(str))
    closed = ~((pos >= 0) & record_scope_mask(role, t)[np.maximum(pos, 0)])
    cache[key] = (t.cells, t.grids, closed)
    return closed


def unit_table(cell_values: np.ndarray, closed: np.ndarray, cell_unit: np.ndarray, n_units: int, k: int
               ) -> tuple[np.ndarray, np.ndarray]:
    """The table every out-of-scope figure is made from: per fixed unit (:func:`base_units`) the number of its
    out-of-scope cells and :func:`publish` of its out-of-scope counts ((n_units, m) int64, −1 = suppressed)."""
    vals = np.asarray(cell_values, dtype=np.int64)
    ok = np.asarray(closed, dtype=bool) & (cell_unit >= 0)
    unit_cells = np.bincount(cell_unit[ok], minlength=n_units)
    unit_vals = np.zeros((n_units, vals.shape[1]), dtype=np.int64)
    np.add.at(unit_vals, cell_unit[ok], vals[ok])
    return unit_cells, publish(unit_vals, k)


def publish_groups(table: tuple[np.ndarray, np.ndarray], closed: np.ndarray, cell_unit: np.ndarray,
                   cell_group: np.ndarray, n_groups: int) -> tuple[np.ndarray, np.ndarray]:
    """The published out-of-scope part of each group of cells (an area: one group; a partition: one group per
    grid), answered from whole units of ``table`` (:func:`unit_table`).

    ``closed`` (n_cells bool): cells outside the record scope; ``cell_unit``: each cell's unit (−1 none);
    ``cell_group``: each cell's group (−1 none). Returns ``published`` (n_groups, m) int64, −1 = suppressed —
    per group the :func:`published_sum` of the published units whose out-of-scope cells lie more than half in
    the group (:func:`counted_units`) — and ``counted`` (n_groups, n_units) bool.
    """
    unit_cells, pub = table
    n_units, m = pub.shape
    sel = np.asarray(closed, dtype=bool) & (cell_unit >= 0) & (cell_group >= 0)
    pair = cell_group[sel].astype(np.int64) * n_units + cell_unit[sel]
    pairs, touched = np.unique(pair, return_counts=True)
    g, u = pairs // n_units, pairs % n_units
    keep = counted_units(touched, unit_cells[u])
    g, u = g[keep], u[keep]
    total = np.zeros((n_groups, m), dtype=np.int64)
    np.add.at(total, g, np.maximum(pub[u], 0))
    hidden = np.zeros((n_groups, m), dtype=bool)
    np.logical_or.at(hidden, g, pub[u] < 0)
    counted = np.zeros((n_groups, n_units), dtype=bool)
    counted[g, u] = True
    return np.where((total == 0) & hidden, SUPPRESSED, total), counted


def outside_of(t: Twin, role: Role, k: int, cell_rows: np.ndarray, keys: Sequence[str]
                ) -> tuple[np.ndarray, list[str]]:
    """Published out-of-scope part of the cells ``cell_rows`` (``t.cells`` positions) and the units counted."""
    codes, unit = base_units(t)
    closed = closed_cells(role, t)
    ckey = ("access.units", role.scope_level, role.scope_codes, role.can_see_records, tuple(keys), k)
    cache = t.cache.setdefault("access.scopes", {})
    hit = cache.get(ckey)
    if hit is not None and hit[0] is t.cells and hit[1] is closed:
        table = hit[2]
    else:
        table = unit_table(_cell_values(t, keys), closed, unit, len(codes), k)
        cache[ckey] = (t.cells, closed, table)
    rows = np.asarray(cell_rows, dtype=np.int64)
    pub, counted = publish_groups(table, closed[rows], unit[rows], np.zeros(len(rows), dtype=np.int64), 1)
    out = pub[0]
    touched = unit[rows][closed[rows] & (unit[rows] >= 0)]
    if len(touched) and not counted[0][touched].all():  # parts of units too small to publish: never a bare 0
        out = np.where(out == 0, SUPPRESSED, out)
    return out, [str(c) for c in codes[counted[0]]]


def as_int_or_none(v: int) -> int | None:
    return None if v < 0 else int(v)


# --- scope ---------------------------------------------------------------------------------------------------
