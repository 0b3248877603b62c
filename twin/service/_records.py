"""Record rows (persons, buildings, businesses) as JSON-ready dicts: the columns the API shows, looked up by id."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import pandas as pd

from twin.errors import NotFoundError
from twin.model import Twin

__all__ = ["RECORD_KINDS", "RecordKind", "grid_record_ids", "record_rows"]

RecordKind = Literal["persons", "buildings", "businesses"]
RECORD_KINDS = "^(persons|buildings|businesses)$"  # the ``kind`` query pattern

_RECORD_COLUMNS: dict[str, tuple[str, list[str]]] = {
    "persons": ("person_id", ["person_id", "household_id", "dwelling_id", "building_id", "sex", "birth_date",
                              "disabled", "low_income", "pregnant"]),
    "buildings": ("building_id", ["building_id", "use", "floors", "height_m", "dwellings", "residents",
                                  "businesses", "lng", "lat", "grid_code"]),
    "businesses": ("business_id", ["business_id", "building_id", "kind", "industry", "credit"]),
}


def _id_positions(t: Twin, kind: str, ids: np.ndarray) -> np.ndarray:
    id_col, _ = _RECORD_COLUMNS[kind]
    frame = getattr(t, kind)
    key = f"api.id_index.{kind}"
    hit = t.cache.get(key)
    if hit is None or hit[0] is not frame:
        hit = (frame, pd.Index(frame[id_col].to_numpy()))
        t.cache[key] = hit
    pos = hit[1].get_indexer(np.asarray(ids))
    if (pos < 0).any():
        raise NotFoundError(f"unknown {kind} id(s) {np.asarray(ids)[pos < 0][:5].tolist()}.")
    return pos


def grid_record_ids(t: Twin, grid_code: str, kind: str) -> np.ndarray:
    """Sorted ids of the ``kind`` records in the buildings of grid ``grid_code``."""
    b = t.buildings
    bids = b["building_id"].to_numpy()[(b["grid_code"].astype(str) == grid_code).to_numpy()]
    if kind == "buildings":
        return np.sort(bids)
    frame = getattr(t, kind)
    id_col = _RECORD_COLUMNS[kind][0]
    mask = np.isin(frame["building_id"].to_numpy(), bids)
    return np.sort(frame[id_col].to_numpy()[mask])


def record_rows(t: Twin, kind: str, ids: np.ndarray) -> list[dict[str, Any]]:
    """The API columns of the ``kind`` records ``ids``, in that order (``birth_date`` as ``YYYY-MM-DD``);
    :class:`NotFoundError` for unknown ids."""
    if len(ids) == 0:
        return []
    _, cols = _RECORD_COLUMNS[kind]
    frame = getattr(t, kind)
    rows = frame.iloc[_id_positions(t, kind, ids)][[c for c in cols if c in frame.columns]]
    if "birth_date" in rows:
        rows = rows.assign(birth_date=rows["birth_date"].astype(str).str[:10])
    return rows.to_dict("records")
