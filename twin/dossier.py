"""A grid's dossier (网格档案): who and what one grid holds, for the partition in force.

A record belongs to the grid of its building's H3 cell (``t.buildings["grid_code"]``), so the per-grid counts
of all grids add up to the twin's totals. The table of per-grid counts is computed once per twin object
(≈ 0.5 s for the default twin; a checked-out version is its own twin object) and cached in ``t.cache``.
The dossier is raw and unscoped; :mod:`twin.access` decides what a caller may see of it.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd
import shapely

from twin.model import Twin
from twin.residents import ages_on

__all__ = ["grid_dossier", "grid_counts", "DOSSIER_COUNTS"]

DOSSIER_COUNTS = (
    "buildings", "dwellings", "residents", "residents_male", "residents_female", "age_0_14", "age_15_59",
    "age_60_plus", "elderly_70", "elderly_80", "disabled", "low_income", "pregnant", "businesses", "credit_green",
    "credit_yellow", "credit_red", "workers",
)


def grid_counts(t: Twin) -> pd.DataFrame:
    """Counts per grid: index ``grid_code`` (every grid of ``t.grids``), one int64 column per
    :data:`DOSSIER_COUNTS` key. Cached in ``t.cache`` keyed on the identity of the frames it reads."""
    frames = (t.buildings, t.persons, t.dwellings, t.businesses, t.workers, t.grids)
    hit = t.cache.get("dossier.grid_counts")
    if hit is not None and all(a is b for a, b in zip(hit[0], frames)):
        return hit[1]
    codes = pd.Index(t.grids["grid_code"].astype(str))
    b_grid = codes.get_indexer(t.buildings["grid_code"].astype(str))
    bid = pd.Index(t.buildings["building_id"].to_numpy())
    n = len(codes)

    def per_grid(building_ids: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        g = b_grid[bid.get_indexer(building_ids)]
        if mask is not None:
            g = g[mask]
        return np.bincount(g[g >= 0], minlength=n).astype(np.int64)

    p = t.persons
    pb = p["building_id"].to_numpy()
    age = ages_on(p["birth_date"].to_numpy(), t.as_of)
    male = (p["sex"].astype(str) == "M").to_numpy()
    credit = t.businesses["credit"].astype(str).to_numpy()
    bb = t.businesses["building_id"].to_numpy()
    cols = {
        "buildings": np.bincount(b_grid[b_grid >= 0], minlength=n).astype(np.int64),
        "dwellings": per_grid(t.dwellings["building_id"].to_numpy()),
        "residents": per_grid(pb),
        "residents_male": per_grid(pb, male),
        "residents_female": per_grid(pb, ~male),
        "age_0_14": per_grid(pb, age < 15),
        "age_15_59": per_grid(pb, (age >= 15) & (age < 60)),
        "age_60_plus": per_grid(pb, age >= 60),
        "elderly_70": per_grid(pb, age >= 70),
        "elderly_80": per_grid(pb, age >= 80),
        "disabled": per_grid(pb, p["disabled"].to_numpy()),
        "low_income": per_grid(pb, p["low_income"].to_numpy()),
        "pregnant": per_grid(pb, p["pregnant"].to_numpy()),
        "businesses": per_grid(bb),
        "credit_green": per_grid(bb, credit == "green"),
        "credit_yellow": per_grid(bb, credit == "yellow"),
        "credit_red": per_grid(bb, credit == "red"),
        "workers": np.bincount(np.maximum(codes.get_indexer(t.workers["grid_code"].astype(str)), 0),
                               weights=(codes.get_indexer(t.workers["grid_code"].astype(str)) >= 0),
                               minlength=n).astype(np.int64),
    }
    out = pd.DataFrame(cols, index=codes)
    out.index.name = "grid_code"
    t.cache["dossier.grid_counts"] = (frames, out)
    return out


def grid_dossier(t: Twin, grid_code: str) -> dict[str, Any]:
    """One grid's sheet: codes and names, area (km², EPSG:4547), cells, counts and its grid workers.

    Returns a dict with ``grid`` (code, name, community/town code and name, ``area_km2``, ``n_cells``),
    ``counts`` (every key of :data:`DOSSIER_COUNTS`, exact), ``workers`` (worker_id, name, status, lng, lat:
    personal data) and ``geometry`` (the grid polygon as a GeoJSON dict, WGS84). Raises
    :class:`twin.errors.NotFoundError` for an unknown code.
    """
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
