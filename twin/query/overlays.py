"""Key-population overlays: per-H3-cell counts and densities at res 8–10 for map layers.

Each building's records count in the res-``res`` parent of the building's res-11 cell, so the cell counts of a
category sum exactly to the twin's total. What a role sees is decided by :mod:`twin.access.policy` (the same
rules as the HTTP ``/overlays`` route): cells wholly inside the role's record scope are exact; the other cells —
every cell for analysts — have counts ``0 < count < k`` suppressed, plus as many more of the smallest as it takes
for the suppressed cells to add up to ≥ k (:func:`twin.access.suppression.suppress_cells`), so the district total
minus the published cells does not reveal them. A suppressed row says ``suppressed=True`` and
``count``/``density_km2`` are missing (``<NA>``), never 0.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from twin.access.policy import DEFAULT_POLICY, AccessPolicy, record_scope_mask, sees_everything, suppress_cells
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

    if sees_everything(role):
        hide = np.zeros(len(parents), dtype=bool)
    else:
        cell_grid = partition_index(t).cell_grid
        mask = record_scope_mask(role, t)
        cell_ok = (cell_grid >= 0) & mask[np.maximum(cell_grid, 0)]
        out_of_scope = np.bincount(parent_of_cell, weights=(~cell_ok).astype(float), minlength=len(parents))
        hide = suppress_cells(counts, out_of_scope == 0, int(k))
    density = counts / areas
    return pd.DataFrame({
        "cell": parents,
        "count": pd.arrays.IntegerArray(counts.astype(np.int64), hide.copy()),
        "density_km2": pd.arrays.FloatingArray(np.where(hide, 0.0, density), hide.copy()),
        "suppressed": hide,
    })


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
