"""Synthetic grid workers (网格员) and cameras, labelled synthetic.

Workers: 648, at least one per grid, the rest to the grids with the most workload (largest remainder);
85 % online. Each starts at a building of its grid. Cameras: ≈ 18,000 at street corners (H3 cell vertices, a
proxy for the street network between blocks), sampled with weight ∝ residents + 2 × businesses + 5 of the cell.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from twin.cells import cell_boundaries
from twin.partition.regions import allocate_counts

__all__ = ["generate_workers", "generate_cameras", "CAMERA_KINDS"]

CAMERA_KINDS = ("public_security", "traffic", "community")


def generate_workers(
    grid_codes: np.ndarray, grid_workload: np.ndarray, buildings: pd.DataFrame, total: int, *, seed: int
) -> pd.DataFrame:
    """Grid workers with ``worker_id``, ``name``, ``grid_code``, ``status``, ``lng``, ``lat``.

    ``buildings`` needs ``grid_code``, ``lng``, ``lat``. A worker of a grid with no building gets NaN
    coordinates and the caller places it (at the grid's centroid).
    """
    rng = np.random.default_rng(seed)
    per_grid = allocate_counts(np.maximum(grid_workload, 1e-9), total, minimum=1)
    codes = np.repeat(np.asarray(grid_codes), per_grid)
    n = len(codes)
    by_grid = buildings.groupby("grid_code", observed=True).indices
    lng = np.empty(n)
    lat = np.empty(n)
    b_lng = buildings["lng"].to_numpy()
    b_lat = buildings["lat"].to_numpy()
    for i, g in enumerate(codes.tolist()):
        idx = by_grid.get(g)
        if idx is None or len(idx) == 0:
            lng[i], lat[i] = np.nan, np.nan
            continue
        j = idx[rng.integers(0, len(idx))]
        lng[i] = b_lng[j] + rng.normal(0, 0.0002)
        lat[i] = b_lat[j] + rng.normal(0, 0.0002)
    status = np.where(rng.random(n) < 0.85, "online", "offline")
    return pd.DataFrame(
        {
            "worker_id": [f"W{i + 1:04d}" for i in range(n)],
            "name": [f"网格员{i + 1:04d}" for i in range(n)],
            "grid_code": codes,
            "status": status,
            "lng": lng,
            "lat": lat,
        }
    )


def generate_cameras(cells: np.ndarray, weight: np.ndarray, total: int, *, seed: int) -> pd.DataFrame:
    """``total`` cameras at vertices of cells drawn with probability ∝ ``weight``."""
    rng = np.random.default_rng(seed)
    p = np.asarray(weight, dtype=float)
    p = p / p.sum()
    pick = rng.choice(len(cells), size=total, replace=True, p=p)
    pick.sort()
    rings = cell_boundaries(cells[pick])
    vert = rng.integers(0, 6, total)
    lng = np.array([r[v % len(r)][0] for r, v in zip(rings, vert)]) + rng.normal(0, 0.00002, total)
    lat = np.array([r[v % len(r)][1] for r, v in zip(rings, vert)]) + rng.normal(0, 0.00002, total)
    kind = rng.choice(len(CAMERA_KINDS), size=total, p=[0.6, 0.15, 0.25])
    return pd.DataFrame(
        {
            "camera_id": np.arange(total, dtype=np.int32),
            "kind": pd.Categorical.from_codes(kind, categories=list(CAMERA_KINDS)),
            "lng": lng,
            "lat": lat,
        }
    )
