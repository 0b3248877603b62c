"""The grid workload measure: a weighted sum of what a grid worker looks after, per H3 cell.

``workload = Σ weight[k] × count[k]`` over residents, dwellings, businesses and key persons (disabled, low-income,
pregnant, 80+) — each key person counts again on top of being a resident because they need visits. Incidents can
be added with their own weight. Weights are configurable; :data:`DEFAULT_WEIGHTS` is what the default twin's 451
grids were balanced on.

Counts are per H3 res-11 cell (a record's cell is its building's cell), so the workload of any partition is a sum
over its cells: :func:`cell_counts` and :func:`cell_workload` give the per-cell figures every partition module
(:mod:`twin.partition.model`, :mod:`~twin.partition.balance`, :mod:`~twin.partition.rebalance`) sums.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from twin.cells import PARTITION_RES, latlng_to_cells
from twin.errors import ValidationError
from twin.model import Twin, ages_on

__all__ = ["DEFAULT_WEIGHTS", "COUNT_COLUMNS", "workload", "check_weights", "cell_counts", "cell_workload"]

DEFAULT_WEIGHTS: Mapping[str, float] = {
    "residents": 1.0,
    "dwellings": 0.5,
    "businesses": 2.0,
    "key_persons": 5.0,
    "incidents": 0.0,
}
COUNT_COLUMNS = ("residents", "dwellings", "businesses", "key_persons", "incidents")
"""The per-cell counts :func:`cell_counts` gives, in this order (the keys of :data:`DEFAULT_WEIGHTS`)."""


def check_weights(weights: Mapping[str, float] | None) -> None:
    """Raise :class:`ValidationError` for an unknown weight name or a weight that is negative or not finite."""
    if not weights:
        return
    unknown = sorted(set(weights) - set(DEFAULT_WEIGHTS))
    if unknown:
        raise ValidationError(f"unknown workload weight(s) {unknown}; known: {sorted(DEFAULT_WEIGHTS)}.")
    bad = {k: v for k, v in weights.items() if not np.isfinite(v) or v < 0}
    if bad:
        raise ValidationError(f"workload weights must be finite and ≥ 0; got {bad}.")


def workload(counts: Mapping[str, np.ndarray], weights: Mapping[str, float] | None = None) -> np.ndarray:
    """Workload per unit from count arrays keyed like :data:`DEFAULT_WEIGHTS` (missing keys count 0).

    Parameters
    ----------
    counts : mapping of str to np.ndarray
        Count per unit (cell, grid, …) for some of the :data:`DEFAULT_WEIGHTS` keys; arrays of equal length.
    weights : mapping, optional
        Updates to :data:`DEFAULT_WEIGHTS`, e.g. ``{"incidents": 3.0}``; see :func:`check_weights`.

    Returns
    -------
    np.ndarray
        ``float`` workload per unit (zeros when no weighted count is given).
    """
    check_weights(weights)
    w = {**DEFAULT_WEIGHTS, **(weights or {})}
    out: np.ndarray | None = None
    for k, wk in w.items():
        if k in counts and wk:
            term = wk * np.asarray(counts[k], dtype=float)
            out = term if out is None else out + term
    if out is None:
        n = len(next(iter(counts.values()))) if counts else 0
        return np.zeros(n)
    return out


def cell_counts(twin: Twin, *, incidents: pd.DataFrame | None = None) -> pd.DataFrame:
    """Counts per cell (rows aligned with ``twin.cells``): :data:`COUNT_COLUMNS`.

    Key persons are disabled, low-income or pregnant residents or residents aged 80+ on ``twin.as_of``.
    ``incidents`` (optional) has a ``cell`` column (``uint64`` H3 res 11) or ``lng``/``lat`` columns (WGS84
    degrees); each row counts one incident in its cell. Without it the column is 0. The incident-free counts are
    cached in ``twin.cache["cell_counts"]``.
    """
    base = twin.cache.get("cell_counts")
    if base is None:
        base = twin.cache["cell_counts"] = _record_counts(twin)
    out = base.copy()
    if incidents is not None:
        out["incidents"] = _incident_counts(twin, incidents)
    return out


def cell_workload(twin: Twin, *, weights: Mapping[str, float] | None = None,
                  incidents: pd.DataFrame | None = None) -> np.ndarray:
    """Workload per cell (aligned with ``twin.cells``): :func:`workload` of :func:`cell_counts`.

    ``weights`` update :data:`DEFAULT_WEIGHTS` (e.g. ``{"incidents": 3.0}``); an unknown weight name raises
    :class:`ValidationError`.
    """
    check_weights(weights)
    counts = cell_counts(twin, incidents=incidents)
    return workload({k: counts[k].to_numpy() for k in COUNT_COLUMNS}, weights)


def _record_counts(twin: Twin) -> pd.DataFrame:
    cells = twin.cells["cell"].to_numpy()
    n = len(cells)
    b = twin.buildings
    b_idx = _cell_index(cells, b["cell"].to_numpy())
    ok = b_idx >= 0
    p = twin.persons
    age = ages_on(p["birth_date"].to_numpy(), twin.as_of)
    key = (p["disabled"].to_numpy() | p["low_income"].to_numpy() | p["pregnant"].to_numpy()) | (age >= 80)
    # persons → building row → cell
    bid = b["building_id"].to_numpy()
    if np.array_equal(bid, np.arange(len(b))):
        p_b = p["building_id"].to_numpy()
    else:
        p_b = pd.Index(bid).get_indexer(p["building_id"].to_numpy())
    res_b = np.bincount(p_b[p_b >= 0], minlength=len(b))
    key_b = np.bincount(p_b[(p_b >= 0) & key], minlength=len(b))
    return pd.DataFrame({
        "residents": np.bincount(b_idx[ok], weights=res_b[ok], minlength=n),
        "dwellings": np.bincount(b_idx[ok], weights=b["dwellings"].to_numpy(float)[ok], minlength=n),
        "businesses": np.bincount(b_idx[ok], weights=b["businesses"].to_numpy(float)[ok], minlength=n),
        "key_persons": np.bincount(b_idx[ok], weights=key_b[ok], minlength=n),
        "incidents": np.zeros(n),
    })


def _cell_index(table: np.ndarray, cells: np.ndarray) -> np.ndarray:
    """Row of each cell in ``table`` (-1 for cells not in it)."""
    return pd.Index(np.asarray(table, dtype=np.uint64)).get_indexer(np.asarray(cells, dtype=np.uint64))


def _incident_counts(twin: Twin, incidents: pd.DataFrame) -> np.ndarray:
    table = twin.cells["cell"].to_numpy()
    if "cell" in incidents.columns:
        cells = incidents["cell"].to_numpy(np.uint64)
    elif {"lng", "lat"} <= set(incidents.columns):
        cells = latlng_to_cells(incidents["lat"].to_numpy(float), incidents["lng"].to_numpy(float), PARTITION_RES)
    else:
        raise ValidationError(f"incidents need a 'cell' column or 'lng'/'lat' columns; got {list(incidents.columns)}.")
    idx = _cell_index(table, cells)
    return np.bincount(idx[idx >= 0], minlength=len(table)).astype(float)
