"""Key-population overlays: per-H3-cell counts and densities at res 8–10 for map layers.

Each building's records count in the res-``res`` parent of the building's res-11 cell, so the cell counts of a
category sum exactly to the twin's total. What a role sees is decided by :mod:`twin.access.policy` (the same
rules as the HTTP ``/overlays`` route). A role that sees everything gets every cell exactly. For any other role
the part of the district outside its record scope is published **once, at one base resolution**
(:data:`twin.access.policy.OVERLAY_BASE_RES`, res 9): the out-of-scope part of each base cell is one publishable
unit (:func:`twin.access.policy.publish`: suppressed below ``k``, else rounded to a multiple of ``k``), and

* at the base resolution a cell shows its exact in-scope part plus its published out-of-scope part;
* a coarser cell (res 8) shows the exact in-scope part plus the sum of its base children's published
  out-of-scope parts (:func:`twin.access.policy.published_sum`), so a coarse cell minus its published children
  is always 0 outside the scope;
* a finer cell (res 10) is shown only when it lies wholly inside the record scope; any other finer cell is
  suppressed (finer out-of-scope units would split the base units).

A suppressed row says ``suppressed=True`` and ``count``/``density_km2`` are missing (``<NA>``), never 0.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from twin.access.policy import (
    DEFAULT_POLICY,
    OVERLAY_BASE_RES,
    AccessPolicy,
    publish,
    record_scope_mask,
    sees_everything,
)
from twin.access.roles import DISTRICT, Role
from twin.cells import cells_to_parent
from twin.errors import ValidationError
from twin.model import Twin
from twin.query._index import cell_areas_km2, group_sum, partition_index, point_index

__all__ = ["OVERLAY_CATEGORIES", "OVERLAY_RES", "overlay"]

OVERLAY_CATEGORIES = ("residents", "dwellings", "businesses", "disabled", "low_income", "pregnant", "elderly_70",
                      "elderly_80")
OVERLAY_RES = (8, 9, 10)


def overlay(t: Twin, category: str, *, res: int = 9, role: Role = DISTRICT, k: int | None = None,
            policy: AccessPolicy = DEFAULT_POLICY) -> pd.DataFrame:
    """Counts and densities of one category per H3 cell at ``res`` over the whole district.

    Parameters
    ----------
    t
        A loaded :class:`twin.Twin`.
    category
        One of :data:`OVERLAY_CATEGORIES`.
    res
        H3 resolution 8, 9 or 10 (mean cell ≈ 0.74, 0.11, 0.015 km²).
    role
        Who looks; decides suppression.
    k
        Suppression threshold (default ``policy.k_for(role)``: the larger of the policy's and the role's).
    policy
        The access policy (default: as the service's, k = 5).

    Returns
    -------
    pandas.DataFrame
        ``cell`` (uint64 H3 at ``res``), ``count`` (nullable Int64), ``density_km2`` (count per km², cell area
        measured in EPSG:4547; nullable Float64), ``suppressed`` (bool); one row per cell covering the district,
        sorted by cell.

    Raises
    ------
    ValidationError
        Unknown category, resolution outside 8–10, or ``k < 1``.
    """
    if category not in OVERLAY_CATEGORIES:
        raise ValidationError(f"unknown overlay category {category!r}; use one of {', '.join(OVERLAY_CATEGORIES)}.")
    if isinstance(res, bool) or not isinstance(res, (int, np.integer)) or res not in OVERLAY_RES:
        raise ValidationError(f"overlay resolution must be 8, 9 or 10, got {res!r}.")
    k = policy.k_for(role) if k is None else k
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValidationError(f"suppression threshold k must be an integer ≥ 1, got {k!r}.")

    pidx = point_index(t)
    parents, parent_of_cell, areas = _parents(t, int(res))
    cp = pidx.points.cell_pos  # cell centres carry no counts: they add zeros
    group = np.where(cp >= 0, parent_of_cell[np.maximum(cp, 0)], -1)
    col = pidx.col(category)
    counts = group_sum(group, pidx.feats[:, col:col + 1], len(parents))[:, 0]

    if not sees_everything(role):
        counts, hide = _scoped_counts(t, role, int(res), int(k), col, counts, parent_of_cell, len(parents))
    else:
        hide = np.zeros(len(parents), dtype=bool)
    density = counts / areas
    return pd.DataFrame({
        "cell": parents,
        "count": pd.arrays.IntegerArray(counts.astype(np.int64), hide.copy()),
        "density_km2": pd.arrays.FloatingArray(np.where(hide, 0.0, density), hide.copy()),
        "suppressed": hide,
    })


def _scoped_counts(t: Twin, role: Role, res: int, k: int, col: int, counts: np.ndarray,  # noqa: PLR0913
                   parent_of_cell: np.ndarray, n_parents: int) -> tuple[np.ndarray, np.ndarray]:
    """Counts and suppression flags at ``res`` for a role that does not see everything (module docstring)."""
    pidx = point_index(t)
    cell_grid = partition_index(t).cell_grid
    mask = record_scope_mask(role, t)
    cell_open = (cell_grid >= 0) & mask[np.maximum(cell_grid, 0)]
    closed_cells = np.bincount(parent_of_cell, weights=(~cell_open).astype(float), minlength=n_parents) > 0
    if res > OVERLAY_BASE_RES:  # finer than the base: only cells wholly inside the record scope
        return np.where(closed_cells, 0, counts), closed_cells
    cp = pidx.points.cell_pos
    point_open = np.where(cp >= 0, cell_open[np.maximum(cp, 0)], False)
    base_parents, base_of_cell, _ = _parents(t, OVERLAY_BASE_RES)
    base = np.where(cp >= 0, base_of_cell[np.maximum(cp, 0)], -1)
    feat = pidx.feats[:, col:col + 1]
    closed = group_sum(np.where(point_open, -1, base), feat, len(base_parents))[:, 0]
    pub = publish(closed, k)  # one published unit per base cell: its out-of-scope part
    if res == OVERLAY_BASE_RES:
        up = np.arange(len(base_parents))
    else:  # each base cell's parent at ``res`` (both sorted unique sets of the partition cells' parents)
        up = np.searchsorted(_parents(t, res)[0], cells_to_parent(base_parents, res))
    open_counts = group_sum(np.where(cp >= 0, parent_of_cell[np.maximum(cp, 0)], -1),
                            np.where(point_open[:, None], feat, 0), n_parents)[:, 0]
    closed_sum = np.bincount(up, weights=np.maximum(pub, 0), minlength=n_parents).astype(np.int64)
    any_hidden = np.bincount(up, weights=(pub < 0).astype(float), minlength=n_parents) > 0
    hide = (closed_sum == 0) & any_hidden
    return np.where(hide, 0, open_counts + closed_sum), hide


def _parents(t: Twin, res: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sorted parent cells at ``res`` of the partition cells, each partition cell's parent index, parent areas."""
    pidx = point_index(t)
    key = f"overlay.parents.{res}"
    hit = t.cache.get(key)
    if hit is not None and hit[0] is pidx:
        return hit[1]
    par = cells_to_parent(pidx.cell_ids, res)
    parents, inverse = np.unique(par, return_inverse=True)
    value = (parents, inverse.astype(np.int64), cell_areas_km2(parents))
    t.cache[key] = (pidx, value)
    return value
