"""Materialise the records on a date: base frames + row overrides → frames, and the index delta for them.

:func:`materialise` replaces the overridden rows of the base frames (persons, dwellings, businesses: dropped and
appended; buildings: replaced in place, demolished dropped, new appended, so base buildings keep their order),
and returns what changed per building for :func:`index_delta`, which computes the new feature rows of the touched
buildings only (from their residents, dwellings and businesses on the date) as a
:class:`twin.query._delta.BuildingDelta`.
"""

from __future__ import annotations

import datetime as dt
import threading
from dataclasses import dataclass
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
from shapely.geometry import shape

from twin.live._world import COLUMNS, TABLES
from twin.model import Twin
from twin.query._delta import BuildingDelta
from twin.query._index import PointIndex, building_feature_matrix

__all__ = ["Frames", "materialise", "index_delta", "id_positions"]


@dataclass(frozen=True)
class Frames:
    """The four record frames on a date, plus what changed in buildings relative to the base frames:
    ``touched`` building ids (contents or row changed, still standing), ``removed_rows`` (base rows demolished),
    ``new_rows`` (rows of new buildings in ``buildings``); ``seq``: the change head they reflect."""

    persons: pd.DataFrame
    dwellings: pd.DataFrame
    buildings: gpd.GeoDataFrame
    businesses: pd.DataFrame
    touched: np.ndarray
    removed_rows: np.ndarray
    new_rows: np.ndarray
    seq: int = -1  # the newest change event these frames include (set by the live twin)


def id_positions(frame: pd.DataFrame, table: str, ids: np.ndarray) -> np.ndarray:
    """Row positions of ``ids`` in ``frame`` (-1 if absent); positional when ids are 0 … n-1 in order. The lookup
    (range or hash index) is kept per frame for the last few frames (base frames are looked up on every commit;
    their ids never change)."""
    ids = np.asarray(ids, dtype=np.int64)
    hit = _LOOKUPS.get(id(frame))
    if hit is None or hit[0] is not frame:
        col = frame[COLUMNS[table][0]].to_numpy()
        n = len(col)
        ranged = bool(n and col[0] == 0 and col[-1] == n - 1 and (n < 2 or col[1] == 1) and _is_range(col))
        hit = (frame, n, None if ranged else pd.Index(col.astype(np.int64)))  # int64 like the ids: engine kept
        with _LOOKUPS_LOCK:
            if len(_LOOKUPS) >= 6:
                _LOOKUPS.pop(next(iter(_LOOKUPS)))
            _LOOKUPS[id(frame)] = hit
    _, n, index = hit
    if index is None:
        return np.where((ids >= 0) & (ids < n), ids, -1)
    return index.get_indexer(ids)


_LOOKUPS: dict[int, tuple[pd.DataFrame, int, pd.Index | None]] = {}
_LOOKUPS_LOCK = threading.Lock()


def _is_range(col: np.ndarray) -> bool:
    return bool(np.array_equal(col, np.arange(len(col), dtype=col.dtype)))


def _typed(rows: list[dict[str, Any]], like: pd.DataFrame, table: str) -> pd.DataFrame:
    cols = [c for c in COLUMNS[table] if c in like.columns]
    new = pd.DataFrame([{c: r[c] for c in cols} for r in rows], columns=cols)
    for c in cols:
        dtype = like[c].dtype
        if isinstance(dtype, pd.CategoricalDtype):
            cats = dtype.categories.union(pd.Index(new[c].astype(str).unique()), sort=False)
            new[c] = pd.Categorical(new[c].astype(str), categories=cats)
        else:
            new[c] = new[c].astype(dtype)
    return new


def _concat(base: pd.DataFrame, keep: np.ndarray, new: pd.DataFrame) -> pd.DataFrame:
    kept = base.loc[keep] if not keep.all() else base
    if len(new) == 0:
        return kept.reset_index(drop=True) if kept is not base else base
    for c in new.columns:
        if isinstance(new[c].dtype, pd.CategoricalDtype) and isinstance(kept[c].dtype, pd.CategoricalDtype):
            cats = kept[c].cat.categories.union(new[c].cat.categories, sort=False)
            if len(cats) != len(kept[c].cat.categories):
                kept = kept.assign(**{c: kept[c].cat.set_categories(cats)})
            new[c] = new[c].cat.set_categories(cats)
    return pd.concat([kept, new], ignore_index=True)


def materialise(t: Twin, base: dict[str, pd.DataFrame],
                overrides: dict[str, dict[int, dict[str, Any] | None]]) -> Frames:
    """The frames of ``base`` with ``overrides`` applied (``t``: the snapshot twin, for the partition)."""
    out: dict[str, pd.DataFrame] = {}
    touched: set[int] = set()
    for table in TABLES:
        f = base[table]
        over = overrides.get(table, {})
        if not over:
            out[table] = f
            continue
        ids = np.fromiter(over, dtype=np.int64, count=len(over))
        pos = id_positions(f, table, ids)
        if table != "buildings":
            if "building_id" in f:
                old = pos[pos >= 0]
                touched.update(f["building_id"].to_numpy()[old].tolist())
                touched.update(int(r["building_id"]) for r in over.values() if r is not None)
            keep = np.ones(len(f), dtype=bool)
            keep[pos[pos >= 0]] = False
            out[table] = _concat(f, keep, _typed([r for r in over.values() if r is not None], f, table))
    b, removed_rows, new_rows = _buildings(t, base["buildings"], overrides.get("buildings", {}), touched)
    if b is base["buildings"] and touched:  # index_delta refreshes the count columns: never in the base frame
        b = b.copy(deep=False)
    out["buildings"] = b
    alive = np.asarray(sorted(touched), dtype=np.int64)
    if len(removed_rows):
        gone = set(base["buildings"]["building_id"].to_numpy()[removed_rows].tolist())
        alive = np.asarray([i for i in alive.tolist() if i not in gone], dtype=np.int64)
    return Frames(out["persons"], out["dwellings"], b, out["businesses"], alive, removed_rows, new_rows)


def _buildings(t: Twin, f: gpd.GeoDataFrame, over: dict[int, dict[str, Any] | None],
               touched: set[int]) -> tuple[gpd.GeoDataFrame, np.ndarray, np.ndarray]:
    empty = np.empty(0, dtype=np.int64)
    if not over:
        return f, empty, empty
    ids = np.fromiter(over, dtype=np.int64, count=len(over))
    pos = id_positions(f, "buildings", ids)
    touched.update(ids.tolist())
    rows = list(over.values())
    changed = [(p, r) for p, r in zip(pos.tolist(), rows) if p >= 0 and r is not None]
    removed = np.asarray(sorted(p for p, r in zip(pos.tolist(), rows) if p >= 0 and r is None), dtype=np.int64)
    new = [r for p, r in zip(pos.tolist(), rows) if p < 0 and r is not None]
    b = f.copy()
    if changed:
        at = np.asarray([p for p, _ in changed])
        for c in ("use", "floors", "height_m"):
            vals = b[c].to_numpy().copy()
            vals[at] = np.asarray([r[c] for _, r in changed], dtype=vals.dtype)
            b[c] = vals
    if len(removed):
        keep = np.ones(len(b), dtype=bool)
        keep[removed] = False
        b = b.loc[keep].reset_index(drop=True)
    n_kept = len(b)
    if new:
        cells = np.asarray([r["cell"] for r in new], dtype=np.uint64)
        extra = pd.DataFrame({
            "building_id": np.asarray([r["building_id"] for r in new], dtype=b["building_id"].dtype),
            "use": [r["use"] for r in new], "floors": np.asarray([r["floors"] for r in new], dtype=b["floors"].dtype),
            "height_m": np.asarray([r["height_m"] for r in new], dtype=b["height_m"].dtype),
            "footprint_m2": np.asarray([r["footprint_m2"] for r in new], dtype=b["footprint_m2"].dtype),
            "dwellings": 0, "residents": 0, "businesses": 0, "cell": cells,
            "lng": [r["lng"] for r in new], "lat": [r["lat"] for r in new], "source": "live",
            "grid_code": pd.Categorical(t.grid_of_cells(cells)),
        })
        extra = gpd.GeoDataFrame(extra, geometry=[shape(r["footprint"]) for r in new], crs=b.crs)
        for c in ("dwellings", "residents", "businesses"):
            extra[c] = extra[c].astype(b[c].dtype)
        b = _concat(b, np.ones(len(b), dtype=bool), extra[list(b.columns)])
        b = gpd.GeoDataFrame(b, geometry="geometry", crs=f.crs)
    return b, removed, np.arange(n_kept, len(b), dtype=np.int64)


def index_delta(fr: Frames, base_buildings: pd.DataFrame, base_idx: PointIndex, as_of: dt.date,
                cell_table: np.ndarray) -> BuildingDelta | None:
    """The :class:`BuildingDelta` taking ``base_idx`` (built on ``base_buildings``) to ``fr`` on ``as_of``;
    ``None`` when a building's use has no column in the base index (build from scratch then)."""
    b = fr.buildings
    live_pos = id_positions(b, "buildings", fr.touched)
    ok = live_pos >= 0
    ids, live_pos = fr.touched[ok], live_pos[ok]
    use = b["use"].astype(str).to_numpy()[live_pos]
    if not set(use.tolist()) <= set(base_idx.uses):
        return None
    lookup = pd.Index(ids)

    def pos(bid: np.ndarray) -> np.ndarray:
        return lookup.get_indexer(bid)

    def near(frame: pd.DataFrame) -> pd.DataFrame:
        return frame.loc[np.isin(frame["building_id"].to_numpy(), ids)]

    names, mat, _ = building_feature_matrix(near(fr.persons), near(fr.dwellings), near(fr.businesses), use, pos,
                                            base_idx.uses, as_of)
    rows = np.zeros((len(ids), len(base_idx.columns)), dtype=np.int64)
    for j, n in enumerate(names):
        rows[:, base_idx.col(n)] = mat[:, j]
    for c in ("dwellings", "residents", "businesses"):  # keep the frame's denormalised counts current
        vals = b[c].to_numpy().copy()
        vals[live_pos] = rows[:, base_idx.col(c)]
        b[c] = vals
    base_rows = id_positions(base_buildings, "buildings", ids)
    is_new = np.isin(live_pos, fr.new_rows)
    old = ~is_new & (base_rows >= 0)
    rec_map = None
    if len(fr.removed_rows):
        keep = np.ones(len(base_buildings), dtype=bool)
        keep[fr.removed_rows] = False
        rec_map = np.where(keep, np.cumsum(keep) - 1, -1)
    new_rows = live_pos[is_new]
    nb = b.iloc[new_rows] if len(new_rows) else b.iloc[:0]
    cells = nb["cell"].to_numpy(np.uint64)
    cpos = np.searchsorted(cell_table, cells)
    cpos = np.where((cpos < len(cell_table)) & (cell_table[np.minimum(cpos, len(cell_table) - 1)] == cells), cpos, -1)
    return BuildingDelta(base_rows[old], rows[old], fr.removed_rows, rec_map, nb["lng"].to_numpy(float),
                         nb["lat"].to_numpy(float), cpos, new_rows, rows[is_new])

