"""The records as changed so far: the snapshot's frames plus per-record overrides, with the counts the rules need.

A :class:`World` answers "what is person 5 now?" (the snapshot row unless an event overrode it), keeps the
per-dwelling / per-building / per-household counts the validation rules check (who still lives in a building
before it is demolished …), each record's version (the number of events that touched it), the effective date of
its latest change and of its creation or removal. Writes made while validating a change set are journalled so a
set that fails (or whose transaction rolls back) is undone exactly (:meth:`World.rollback`).

Rows are dicts of plain JSON values (dates ISO text); a building row's ``footprint`` is a GeoJSON dict for a new
building and ``None`` for a snapshot building (its geometry is the snapshot's).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
import pandas as pd

from twin.model import Twin

__all__ = ["World", "TABLES", "COLUMNS", "record_key", "snapshot_columns"]

TABLES = ("persons", "dwellings", "buildings", "businesses")
COLUMNS: dict[str, tuple[str, ...]] = {
    "persons": ("person_id", "household_id", "dwelling_id", "building_id", "sex", "birth_date", "disabled",
                "low_income", "pregnant"),
    "dwellings": ("dwelling_id", "building_id", "occupied", "household_id"),
    "buildings": ("building_id", "use", "floors", "height_m", "footprint_m2", "cell", "lng", "lat", "footprint"),
    "businesses": ("business_id", "building_id", "kind", "industry", "credit"),
}
_SINGULAR = {"persons": "person", "dwellings": "dwelling", "buildings": "building", "businesses": "business",
             "households": "household"}
_MISSING = object()


def record_key(table: str, rid: int) -> str:
    """``"person:5"``, ``"building:12"`` … (the key versions are kept under)."""
    return f"{_SINGULAR[table]}:{int(rid)}"


def snapshot_columns(t: Twin) -> dict[str, dict[str, np.ndarray]]:
    """The snapshot's row values per table as numpy arrays (row position = id: ids are 0 … n-1)."""
    out: dict[str, dict[str, np.ndarray]] = {}
    for table in TABLES:
        f = getattr(t, table)
        cols = {}
        for c in COLUMNS[table]:
            if c == "footprint":
                continue
            v = f[c]
            if c == "birth_date":
                cols[c] = v.to_numpy().astype("datetime64[D]")  # row() gives ISO text
            elif isinstance(v.dtype, pd.CategoricalDtype) or v.dtype == object or str(v.dtype).startswith("str"):
                cols[c] = v.astype(str).to_numpy(dtype=object)
            else:
                cols[c] = v.to_numpy()
        ids = f[COLUMNS[table][0]].to_numpy()
        if not np.array_equal(ids, np.arange(len(f))):
            raise ValueError(f"{table} ids are not 0 … n-1; the live twin needs positional ids (rebuild the twin).")
        out[table] = cols
    return out


class _Counter:
    """Counts per integer key: a snapshot bincount plus journalled deltas."""

    def __init__(self, world: World, base: np.ndarray) -> None:
        self.world, self.base = world, base
        self.delta: dict[int, int] = {}

    def get(self, i: int) -> int:
        return int(self.base[i] if 0 <= i < len(self.base) else 0) + self.delta.get(i, 0)

    def add(self, i: int, by: int) -> None:
        self.world._set(self.delta, i, self.delta.get(i, 0) + by)


class World:
    """Snapshot + overrides (latest state, every committed event regardless of its effective date)."""

    def __init__(self, t: Twin) -> None:
        self.snap = snapshot_columns(t)
        self.n = {table: len(getattr(t, table)) for table in TABLES}
        self.as_of = t.as_of
        self.over: dict[str, dict[int, dict[str, Any] | None]] = {table: {} for table in TABLES}
        self.journal: list[tuple[dict, Any, Any]] | None = None
        p, d, b = self.snap["persons"], self.snap["dwellings"], self.snap["businesses"]
        nd, nb = self.n["dwellings"], self.n["buildings"]
        self.res_by_dwelling = _Counter(self, np.bincount(p["dwelling_id"], minlength=nd))
        self.res_by_building = _Counter(self, np.bincount(p["building_id"], minlength=nb))
        self.biz_by_building = _Counter(self, np.bincount(b["building_id"], minlength=nb))
        self.dw_by_building = _Counter(self, np.bincount(d["building_id"], minlength=nb))
        hh = p["household_id"]
        self.hh_size = _Counter(self, np.bincount(hh[hh >= 0]) if len(hh) else np.zeros(0, np.int64))
        order = np.argsort(d["building_id"], kind="stable")
        self._dw_order = order
        self._dw_offsets = np.concatenate([[0], np.cumsum(np.bincount(d["building_id"], minlength=nb))])
        self.new_dwellings: dict[int, tuple[int, ...]] = {}  # building → dwellings created by events
        self.next_id = {table: self.n[table] for table in TABLES}
        self.next_id["households"] = int(hh.max()) + 1 if len(hh) else 0
        self.versions: dict[str, int] = {}
        self.last_eff: dict[str, dt.date] = {}
        self.created: dict[str, dt.date] = {}
        self.removed: dict[str, tuple[dt.date, str]] = {}
        self.seq = 0  # newest event applied

    # -- journal -------------------------------------------------------------------------------------------
    def _set(self, d: dict, k: Any, v: Any) -> None:
        if self.journal is not None:
            self.journal.append((d, k, d.get(k, _MISSING)))
        d[k] = v

    def begin(self) -> None:
        """Start journalling writes (a change set being validated)."""
        self.journal = []

    def commit(self) -> None:
        self.journal = None

    def rollback(self) -> None:
        """Undo every write since :meth:`begin`."""
        for d, k, old in reversed(self.journal or []):
            if old is _MISSING:
                d.pop(k, None)
            else:
                d[k] = old
        self.journal = None

    # -- reads ---------------------------------------------------------------------------------------------
    def row(self, table: str, rid: int) -> dict[str, Any] | None:
        """The record now (``None`` if it never existed or is gone)."""
        over = self.over[table]
        if rid in over:
            return over[rid]
        if 0 <= rid < self.n[table]:
            cols = self.snap[table]
            out = {c: cols[c].item(rid) for c in COLUMNS[table] if c in cols}
            if table == "persons":
                out["birth_date"] = out["birth_date"].isoformat()
            elif table == "buildings":
                out["footprint"] = None
            return out
        return None

    def dwellings_of(self, building_id: int) -> list[int]:
        """Dwelling ids in a building now (snapshot ones not removed plus created ones)."""
        out = []
        if 0 <= building_id < self.n["buildings"]:
            a, b = self._dw_offsets[building_id], self._dw_offsets[building_id + 1]
            out = [int(i) for i in self._dw_order[a:b]]
        out += list(self.new_dwellings.get(building_id, ()))
        return [i for i in out if self.row("dwellings", i) is not None]

    def version(self, key: str) -> int:
        return self.versions.get(key, 0)

    def new_id(self, table: str) -> int:
        i = self.next_id[table]
        self._set(self.next_id, table, i + 1)
        return i

    # -- writes --------------------------------------------------------------------------------------------
    def write(self, table: str, rid: int, row: dict[str, Any] | None) -> None:
        """Set a record's row (``None`` removes it), keeping the counts."""
        old = self.row(table, rid)
        self._count(table, old, -1)
        self._set(self.over[table], rid, row)
        self._count(table, row, +1)
        if table == "dwellings" and old is None and row is not None and rid >= self.n["dwellings"]:
            b = int(row["building_id"])
            self._set(self.new_dwellings, b, self.new_dwellings.get(b, ()) + (rid,))
        if rid >= self.next_id[table]:  # ids assigned by another process
            self._set(self.next_id, table, rid + 1)
        if table == "persons" and row is not None and row["household_id"] >= self.next_id["households"]:
            self._set(self.next_id, "households", int(row["household_id"]) + 1)

    def _count(self, table: str, row: dict[str, Any] | None, by: int) -> None:
        if row is None:
            return
        if table == "persons":
            self.res_by_dwelling.add(int(row["dwelling_id"]), by)
            self.res_by_building.add(int(row["building_id"]), by)
            if row["household_id"] >= 0:
                self.hh_size.add(int(row["household_id"]), by)
        elif table == "businesses":
            self.biz_by_building.add(int(row["building_id"]), by)
        elif table == "dwellings":
            self.dw_by_building.add(int(row["building_id"]), by)

    def touch(self, key: str, eff: dt.date, kind: str, *, created: bool = False, removed: bool = False) -> None:
        """Count one event on record ``key`` (its version) effective ``eff``."""
        self._set(self.versions, key, self.versions.get(key, 0) + 1)
        self._set(self.last_eff, key, eff)
        if created:
            self._set(self.created, key, eff)
        if removed:
            self._set(self.removed, key, (eff, kind))

    def apply_event(self, seq: int, eff: dt.date, kind: str, writes: list[list[Any]]) -> None:
        """Replay one committed event (its ``writes``: ``[table, id, row | None, flag]``)."""
        for table, rid, row, flag in writes:
            self.write(table, int(rid), row)
            self.touch(record_key(table, rid), eff, kind, created=flag == "created", removed=flag == "removed")
        self.seq = max(self.seq, seq)

