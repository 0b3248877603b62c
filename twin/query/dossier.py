"""A grid's dossier (网格档案): who and what one grid holds, for the partition in force.

A record belongs to the grid of its building's H3 cell (``t.buildings["grid_code"]``), so the per-grid counts
of all grids add up to the twin's totals. The table of per-grid counts is computed once per twin object
(≈ 0.5 s for the default twin; a checked-out version is its own twin object) and cached in ``t.cache``.
What a caller sees of a dossier is decided by :func:`twin.access.policy.scoped_dossier` (the same call the HTTP
``/grids/{code}`` route makes): inside the record scope everything; outside it no workers and counts answered
from whole fixed units (the built grids), each suppressed below k or rounded to a multiple of k.
"""

from __future__ import annotations

import datetime as dt
import json
import weakref
from typing import Any

import numpy as np
import pandas as pd
import shapely

from twin.access.policy import DEFAULT_POLICY, AccessPolicy, scoped_dossier
from twin.access.roles import DISTRICT, Role
from twin.model import Twin, ages_on
from twin.query._cells import ensure_cell_values
from twin.query._index import group_sum

__all__ = ["grid_dossier", "grid_counts", "DOSSIER_COUNTS"]

DOSSIER_COUNTS = (
    "buildings", "dwellings", "residents", "residents_male", "residents_female", "age_0_14", "age_15_59",
    "age_60_plus", "elderly_70", "elderly_80", "disabled", "low_income", "pregnant", "businesses", "credit_green",
    "credit_yellow", "credit_red", "workers",
)


_PER_BUILDING: dict[tuple[int, dt.date], tuple[tuple[weakref.ref[pd.DataFrame], ...], np.ndarray, np.ndarray,
                                                dt.date]] = {}


def _per_building(t: Twin) -> tuple[np.ndarray, np.ndarray]:
    """(building ids, int64 matrix buildings × DOSSIER_COUNTS without ``workers``), shared by every partition
    version of one twin (versions share the person/dwelling/business frames)."""
    key = (id(t.persons), t.as_of)
    hit = _PER_BUILDING.get(key)
    frames = (t.persons, t.dwellings, t.businesses)
    bids = t.buildings["building_id"].to_numpy()
    if (hit is not None and all(a() is b for a, b in zip(hit[0], frames)) and hit[3] == t.as_of
            and np.array_equal(hit[1], bids)):  # as_of: a live view shares the frames on a later day (ages)
        return hit[1], hit[2]
    bidx = pd.Index(bids)
    n = len(bids)

    def per_b(building_ids: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        pos = bidx.get_indexer(building_ids)
        if mask is not None:
            pos = pos[mask]
        return np.bincount(pos[pos >= 0], minlength=n).astype(np.int64)

    p = t.persons
    pb = p["building_id"].to_numpy()
    age = ages_on(p["birth_date"].to_numpy(), t.as_of)
    male = (p["sex"].astype(str) == "M").to_numpy()
    credit = t.businesses["credit"].astype(str).to_numpy()
    bb = t.businesses["building_id"].to_numpy()
    cols = [
        np.ones(n, dtype=np.int64),
        per_b(t.dwellings["building_id"].to_numpy()),
        per_b(pb), per_b(pb, male), per_b(pb, ~male),
        per_b(pb, age < 15), per_b(pb, (age >= 15) & (age < 60)), per_b(pb, age >= 60),
        per_b(pb, age >= 70), per_b(pb, age >= 80),
        per_b(pb, p["disabled"].to_numpy()), per_b(pb, p["low_income"].to_numpy()), per_b(pb, p["pregnant"].to_numpy()),
        per_b(bb), per_b(bb, credit == "green"), per_b(bb, credit == "yellow"), per_b(bb, credit == "red"),
    ]
    mat = np.column_stack(cols)
    if len(_PER_BUILDING) > 4:
        _PER_BUILDING.clear()
    _PER_BUILDING[key] = (tuple(weakref.ref(f) for f in frames), bids, mat, t.as_of)
    return bids, mat


def grid_counts(t: Twin, *, like: Twin | None = None) -> pd.DataFrame:
    """Counts per grid: index ``grid_code`` (every grid of ``t.grids``), one int64 column per
    :data:`DOSSIER_COUNTS` key. Cached in ``t.cache`` keyed on the identity of the frames it reads; the
    per-building counts behind it are shared by all partition versions of a twin.

    ``like``: a twin with the same records and grid codes whose counts are cached (e.g. the twin a partition
    version was made from): only the buildings whose grid differs are summed again (integer sums: exactly the
    full count)."""
    frames = (t.buildings, t.persons, t.dwellings, t.businesses, t.workers, t.grids)
    hit = t.cache.get(_GRID_COUNTS)
    if hit is not None and all(a is b for a, b in zip(hit[0], frames)):
        return hit[1]
    codes = pd.Index(t.grids["grid_code"].astype(str))
    b_grid = _grid_positions(codes, t.buildings["grid_code"])
    _, mat = _per_building(t)
    n = len(codes)
    prev = _counts_like(like, t, codes, mat)
    if prev is not None:
        moved = np.flatnonzero(prev[0] != b_grid)
        sums = prev[1] - group_sum(prev[0], mat, n, rows=moved) + group_sum(b_grid, mat, n, rows=moved)
    else:
        sums = group_sum(b_grid, mat, n)
    w = codes.get_indexer(t.workers["grid_code"].astype(str))
    workers = np.bincount(w[w >= 0], minlength=n).astype(np.int64)
    out = pd.DataFrame(np.column_stack([sums, workers]), index=codes, columns=list(DOSSIER_COUNTS))
    out.index.name = "grid_code"
    t.cache[_GRID_COUNTS] = (frames, out, b_grid, sums)
    return out


_GRID_COUNTS = "dossier.grid_counts"


def grid_count_state(t: Twin) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """:func:`grid_counts` of ``t`` with what a later version derives from (each building's grid position, the
    per-grid sums), to seed another process's copy of ``t`` (:func:`seed_grid_counts`)."""
    grid_counts(t)
    hit = t.cache[_GRID_COUNTS]
    return hit[1], hit[2], hit[3]


def seed_grid_counts(t: Twin, state: tuple[pd.DataFrame, np.ndarray, np.ndarray]) -> bool:
    """Install :func:`grid_count_state` of an equal twin made elsewhere as ``t``'s :func:`grid_counts`; ``False``
    (nothing done) when it does not fit ``t`` (other grids or buildings)."""
    out, b_grid, sums = state
    if (len(b_grid) != len(t.buildings) or len(out) != len(t.grids) or sums.shape[0] != len(t.grids)
            or not out.index.equals(pd.Index(t.grids["grid_code"].astype(str)))):
        return False
    frames = (t.buildings, t.persons, t.dwellings, t.businesses, t.workers, t.grids)
    t.cache[_GRID_COUNTS] = (frames, out, b_grid, sums)
    return True


def _counts_like(like: Twin | None, t: Twin, codes: pd.Index, mat: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray] | None:
    """``like``'s cached building grid positions and per-grid sums when they can be updated into ``t``'s: the same
    record frames (so the same per-building counts ``mat``), buildings and grid codes in the same order."""
    if like is None:
        return None
    hit = like.cache.get(_GRID_COUNTS)
    frames = (like.buildings, like.persons, like.dwellings, like.businesses, like.workers, like.grids)
    if hit is None or len(hit) < 4 or not all(a is b for a, b in zip(hit[0], frames)):
        return None
    same = (like.persons is t.persons and like.dwellings is t.dwellings and like.businesses is t.businesses
            and _per_building(like)[1] is mat and hit[1].index.equals(codes))  # mat: same building ids too
    return (hit[2], hit[3]) if same else None


def _grid_positions(codes: pd.Index, grid_code: pd.Series) -> np.ndarray:
    """Position in ``codes`` of each value of ``grid_code`` (-1: none); a categorical column is looked up per
    category (a partition version's buildings: ≈ 450 lookups instead of one per building)."""
    if isinstance(grid_code.dtype, pd.CategoricalDtype):
        per_cat = codes.get_indexer(grid_code.cat.categories.astype(str))
        c = grid_code.cat.codes.to_numpy()
        return np.where(c >= 0, per_cat[np.maximum(c, 0)], -1)
    return codes.get_indexer(grid_code.astype(str))


def grid_dossier(t: Twin, grid_code: str, *, role: Role = DISTRICT,
                 policy: AccessPolicy = DEFAULT_POLICY) -> dict[str, Any]:
    """One grid's sheet as ``role`` may see it: codes and names, area (km², EPSG:4547), cells, counts, workers.

    Returns a dict with ``grid`` (code, name, community/town code and name, ``area_km2``, ``n_cells``),
    ``geometry`` (the grid polygon as a GeoJSON dict, WGS84), ``counts`` (every key of :data:`DOSSIER_COUNTS`),
    ``workers`` (worker_id, name, status, lng, lat: personal data), ``in_scope``, ``suppressed`` and ``k``.
    In the role's record scope (every grid for the default district role) counts are exact and workers listed;
    outside it counts are suppressed and ``workers`` is ``None`` (:func:`twin.access.policy.scoped_dossier`).

    Raises
    ------
    NotFoundError
        Unknown grid code.
    PermissionDenied
        ``policy.outside == "deny"`` and the grid is outside a scoped role's record scope.
    """
    ensure_cell_values(t)  # the engine answers out-of-scope dossiers from them (also for the service's re-scoping)
    return scoped_dossier(_raw_dossier(t, str(grid_code)), role, t, policy)


def _raw_dossier(t: Twin, grid_code: str) -> dict[str, Any]:
    row = t.grid(str(grid_code))
    counts = grid_counts(t).loc[str(grid_code)]
    com = t.community(str(row["community_code"]))
    town = t.town(str(row["town_code"]))
    w = t.workers.loc[t.workers["grid_code"].astype(str) == str(grid_code)]
    workers = [{"worker_id": str(r.worker_id), "name": str(r.name), "status": str(r.status),
                "lng": float(r.lng), "lat": float(r.lat)} for r in w.itertuples(index=False)]
    return {
        "grid": {
            "grid_code": str(row["grid_code"]), "grid_name": str(row.get("grid_name", row["grid_code"])),
            "community_code": str(row["community_code"]), "community_name": str(com["community_name"]),
            "town_code": str(row["town_code"]), "town_name": str(town["town_name"]),
            "area_km2": float(row["area_km2"]), "n_cells": int(row["n_cells"]),
        },
        "counts": {k: int(counts[k]) for k in DOSSIER_COUNTS},
        "workers": workers,
        "geometry": json.loads(shapely.to_geojson(row.geometry)),
    }
