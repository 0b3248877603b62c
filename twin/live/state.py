"""The live twin: the snapshot plus every committed change, as of any date (:class:`LiveTwin`).

The state on date ``D`` is the snapshot plus all committed changes with ``effective_date <= D`` (per record,
effective dates never go back, so that is well defined). Ages (70+, 80+, 0–14 …) are computed on ``D``; the
default ``D`` is today, so the default answers move with the calendar (the frozen snapshot keeps
:data:`twin.model.AS_OF`).

Queries (:func:`twin.summarize_area`, :func:`twin.records_in_area`, :func:`twin.overlay`,
:func:`twin.query.dossier.grid_dossier` …) run unchanged on :meth:`LiveTwin.twin_on`, a :class:`twin.Twin` whose
frames are the state on ``D``. Its compiled point index is derived from a base index plus a delta
(:mod:`twin.query._delta`: new feature rows of the touched buildings, new and demolished building points), so a
commit is visible at once and queries keep the base's speed; when the delta grows past ``compact_after`` changed
records, a background thread folds it into a new base (queries keep using the views they hold: never blocked).

>>> live = LiveTwin(twin.load())                                                  # doctest: +SKIP
>>> live.apply([PersonDies(person_id=7, effective_date=dt.date(2026, 12, 1), author="李敏", reason="certificate")])
>>> twin.summarize_area(live.twin_on(), area).totals["residents"]                 # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from twin.errors import ValidationError
from twin.live import events as ev
from twin.live._frames import Frames, id_positions, index_delta, materialise
from twin.live._rules import resolve
from twin.live._world import COLUMNS, TABLES, World, record_key
from twin.live.changes import Change
from twin.model import Twin
from twin.query._delta import apply_building_delta, building_point_positions, derive_partition_index
from twin.query._index import partition_index, point_index, seed_partition_index, seed_point_index
from twin.store.sql import Store, Transaction, open_store

__all__ = ["LiveTwin", "EVENT_COLUMNS"]

EVENT_COLUMNS = ("seq", "set_id", "kind", "effective_date", "author", "reason", "person_id", "household_id",
                 "dwelling_id", "building_id", "business_id", "fields")
"""Columns of :meth:`LiveTwin.events_between`."""
_ID_COLUMNS = ("person_id", "household_id", "dwelling_id", "building_id", "business_id")
_COMMON = {"kind", "effective_date", "author", "reason", "expected_version"}


@dataclass
class _Base:
    """Frames of a date at event ``seq`` and (lazily) their point index."""

    seq: int
    frames: dict[str, pd.DataFrame]
    pidx: Any = None
    positions: np.ndarray | None = None
    part: Any = None


@dataclass
class _DateState:
    date: dt.date
    base: _Base
    view_seq: int = -1
    frames: Frames | None = None
    view: Twin | None = None
    view_index: tuple[Any, Any] | None = None  # (derived PointIndex, BuildingDelta) of ``view``; None: none
    base_parts: dict[int, tuple[Twin, _Base, Any]] = field(default_factory=dict)  # per partition twin (id)
    parts: dict[int, tuple[Twin, Twin, Twin]] = field(default_factory=dict)  # (partition twin, view, its view)
    lock: threading.Lock = field(default_factory=threading.Lock)


class LiveTwin:
    """A twin that changes: ``t`` (the snapshot, never rewritten) + the change events in ``store``.

    Parameters
    ----------
    t
        The loaded snapshot twin (its partition in force is used for grids).
    store
        The shared store (default: :func:`twin.store.sql.open_store` for ``t``'s directory).
    compact_after
        Fold the delta into a new base (background thread) when more than this many records differ from it.
    """

    def __init__(self, t: Twin, store: Store | None = None, *, compact_after: int = 20_000) -> None:
        self.t = t
        self.store = store if store is not None else open_store(twin_root=t.root)
        ev.ensure_schema(self.store)
        self.world = World(t)
        self.compact_after = int(compact_after)
        self._events: list[tuple[int, dt.date, list[list[Any]]]] = []
        self._lock = threading.RLock()
        self._dates: dict[dt.date, _DateState] = {}
        self._snapshot = {table: getattr(t, table) for table in TABLES}
        self._cells = t.cells["cell"].to_numpy(np.uint64)
        self._compacting: threading.Thread | None = None
        self._persons_cache: dict[int, tuple[Frames, pd.DataFrame]] = {}
        self._listeners: list[Callable[[int], None]] = []
        self.refresh()

    # -- writing ---------------------------------------------------------------------------------------------
    def apply(self, changes: Change | Sequence[Change], *, role: str = "district") -> ev.CommitResult:
        """Validate and commit a change set atomically (all changes or none); returns the set's id and seqs.

        Each change is checked against the records including every change committed before it (by any process)
        and the earlier changes of the same set. Raises :class:`ValidationError`/:class:`NotFoundError` naming the
        record and the rule, or :class:`ConflictError` when an ``expected_version`` is stale; nothing is stored then.
        """
        cs = [changes] if isinstance(changes, Change) else list(changes)
        if not cs or not all(isinstance(c, Change) for c in cs):
            raise ValidationError("a change set is a non-empty list of changes (twin.live.changes).")
        with self._lock:
            out: list[list[list[Any]]] = []

            def resolve_all(tx: Transaction) -> list[list[list[Any]]]:
                self.world.begin()
                out.clear()
                for i, c in enumerate(cs):
                    try:
                        w = resolve(self.world, c, district=self.t.district, cells=self._cells)
                    except Exception as e:
                        if len(cs) > 1:
                            e.args = (f"change {i + 1} of {len(cs)}: {e.args[0] if e.args else e}",)
                        raise
                    self.world.apply_event(0, c.effective_date, c.kind, w)
                    out.append(w)
                return out

            try:
                res = ev.write_change_set(self.store, cs, role=role, resolve=resolve_all, after_lock=self._catch_up)
            except BaseException:
                if self.world.journal is not None:
                    self.world.rollback()
                raise
            self.world.commit()
            for seq, c, w in zip(res.seqs, cs, out):
                self._events.append((seq, c.effective_date, w))
            self.world.seq = max(self.world.seq, res.seqs[-1])
        for fn in list(self._listeners):
            try:
                fn(res.seqs[-1])
            except Exception:  # noqa: BLE001 - a listener must not fail a committed change set
                pass
        return res

    def on_commit(self, fn: Callable[[int], None]) -> None:
        """Call ``fn(newest seq)`` after each change set this object commits (in the committing thread)."""
        self._listeners.append(fn)

    def refresh(self) -> int:
        """Read changes committed by other processes; returns the newest seq known."""
        with self._lock:
            self._catch_up(self.store)
            return self.world.seq

    def _catch_up(self, src: Store | Transaction) -> None:
        for r in ev.read_events(src, since_seq=self.world.seq):
            self.world.apply_event(r.seq, r.effective_date, r.kind, r.writes)
            self._events.append((r.seq, r.effective_date, r.writes))

    def version(self, table: str, rid: int) -> int:
        """A record's version: the number of committed changes that touched it (0 = never changed)."""
        self.refresh()
        return self.world.version(record_key(table, rid))

    # -- reading ---------------------------------------------------------------------------------------------
    def _state(self, date: dt.date | None) -> _DateState:
        d = dt.date.today() if date is None else _as_date(date)
        self.refresh()
        with self._lock:
            ds = self._dates.get(d)
            if ds is None:
                if len(self._dates) >= 4:
                    self._dates.pop(next(iter(self._dates)))
                ds = self._dates[d] = _DateState(d, _Base(0, dict(self._snapshot)))
            return ds

    def _overrides(self, ds: _DateState) -> tuple[int, dict[str, dict[int, dict[str, Any] | None]]]:
        over: dict[str, dict[int, dict[str, Any] | None]] = {table: {} for table in TABLES}
        with self._lock:
            head = self.world.seq
            events = [e for e in self._events if e[0] > ds.base.seq and e[1] <= ds.date]
        for _, _, writes in events:
            for table, rid, row, _ in writes:
                over[table][int(rid)] = row
        return head, over

    def frames_on(self, date: dt.date | None = None) -> Frames:
        """The record frames (persons, dwellings, buildings, businesses) on ``date`` (default today)."""
        ds = self._state(date)
        with ds.lock:
            if ds.frames is None or ds.view_seq != self.world.seq:
                head, over = self._overrides(ds)
                fr = dataclasses.replace(materialise(self.t, ds.base.frames, over), seq=head)
                ds.frames, ds.view, ds.view_seq = fr, None, head
            return ds.frames

    def persons_on(self, date: dt.date | None = None) -> pd.DataFrame:
        """Residents present on ``date`` (default today): the columns of ``twin.persons`` plus ``grid_code``,
        ``community_code``, ``town_code`` of their building (partition in force). SYNTHETIC people.

        The codes are looked up once per building grid (integer positions, numpy takes), not per person; the
        result is cached per state (a shallow copy is returned: add columns freely, do not edit values)."""
        fr = self.frames_on(date)
        hit = self._persons_cache.get(id(fr))
        if hit is not None and hit[0] is fr:
            return hit[1].copy(deep=False)
        out = _persons_with_codes(fr.persons, fr.buildings, self.t.grids)
        with self._lock:
            if len(self._persons_cache) >= 4:
                self._persons_cache.pop(next(iter(self._persons_cache)))
            self._persons_cache[id(fr)] = (fr, out)
        return out.copy(deep=False)

    def events_between(self, start: dt.date, end: dt.date) -> pd.DataFrame:
        """Committed changes effective ``start`` … ``end`` (inclusive), by seq: :data:`EVENT_COLUMNS`; the id
        columns name the records a change is about (a created record's new id included; nullable Int64),
        ``fields`` the change's other fields (dict)."""
        s, e = _as_date(start), _as_date(end)
        if e < s:
            raise ValidationError(f"events_between: end {e} is before start {s}.")
        rows = []
        for r in ev.read_events(self.store, start=s, end=e):
            ids: dict[str, Any] = {k: r.change.get(k) for k in _ID_COLUMNS}
            for table, rid, row, flag in r.writes:
                col = COLUMNS[table][0]
                if flag == "created" and (ids.get(col) is None or table == "persons"):
                    ids[col] = rid
                    if row is not None and table == "persons":
                        ids["household_id"] = row["household_id"]
                        ids["dwelling_id"] = ids.get("dwelling_id") or row["dwelling_id"]
                        ids["building_id"] = row["building_id"]
            fields = {k: v for k, v in r.change.items() if k not in _COMMON and k not in _ID_COLUMNS}
            rows.append({"seq": r.seq, "set_id": r.set_id, "kind": r.kind, "effective_date": r.effective_date,
                         "author": r.author, "reason": r.reason, **ids, "fields": fields})
        out = pd.DataFrame(rows, columns=list(EVENT_COLUMNS))
        for c in _ID_COLUMNS:
            out[c] = pd.array(out[c].tolist(), dtype="Int64")
        out["effective_date"] = pd.to_datetime(out["effective_date"]).astype("datetime64[s]")
        return out

    def twin_on(self, date: dt.date | None = None) -> Twin:
        """A :class:`twin.Twin` of the state on ``date`` (default today) for every query; its point index is the
        base index plus the delta (built on the first call for a date). ``manifest["live_seq"]``: the newest
        change event it includes."""
        fr = self.frames_on(date)
        ds = self._state(date)
        with ds.lock:
            if ds.view is not None and ds.frames is fr:
                return ds.view
            view = self._view(ds.date, fr)
            view.manifest["live_seq"] = fr.seq
            base = ds.base
            if base.pidx is None:
                base_view = self._view(ds.date, None, frames=base.frames)
                base.pidx = point_index(base_view)
                base.positions = building_point_positions(base.pidx)
                base.part = partition_index(base_view)
            delta = index_delta(fr, base.frames["buildings"], base.pidx, ds.date, self._cells)
            idx = None if delta is None else apply_building_delta(base.pidx, delta, positions=base.positions)
            if idx is not None and delta is not None and base.positions is not None:
                seed_point_index(view, idx)
                seed_partition_index(view, derive_partition_index(base.part, base.pidx, idx, delta,
                                                                  positions=base.positions))
            if ds.frames is fr:
                ds.view = view
                ds.view_index = None if idx is None else (idx, delta)
            n_changed = len(fr.touched) + len(fr.removed_rows)
        if n_changed > self.compact_after:
            self._compact_in_background(ds)
        return view

    def twin_for(self, pt: Twin, date: dt.date | None = None) -> Twin:
        """:meth:`twin_on` with the partition of ``pt`` (a :func:`twin.partition.versions.twin_with_partition` of
        the snapshot: same cells, other grids): cells, grids, workers and buildings' ``grid_code`` follow ``pt``;
        its partition index is derived from the version's base partition index by the same delta (no full
        build). ``pt`` the snapshot itself: :meth:`twin_on`."""
        if pt is self.t:
            return self.twin_on(date)
        view = self.twin_on(date)
        ds = self._state(date)
        key = id(pt)
        with ds.lock:
            hit = ds.parts.get(key)
            if hit is not None and hit[0] is pt and hit[1] is view:
                return hit[2]
            manifest = {**view.manifest, "partition_version": pt.manifest.get("partition_version"),
                        "counts": pt.manifest.get("counts", view.manifest.get("counts"))}
            out = dataclasses.replace(view, cells=pt.cells, grids=pt.grids, workers=pt.workers, manifest=manifest,
                                      buildings=_regrid(view.buildings, pt), cache={})
            vi = ds.view_index if ds.view is view else None
            base = ds.base
            if vi is not None and base.pidx is not None and base.positions is not None:
                bp = ds.base_parts.get(key)
                if bp is None or bp[0] is not pt or bp[1] is not base:
                    bview = dataclasses.replace(self._view(ds.date, None, frames=base.frames), cells=pt.cells,
                                                grids=pt.grids, workers=pt.workers,
                                                buildings=_regrid(base.frames["buildings"], pt))
                    seed_point_index(bview, base.pidx)
                    bp = ds.base_parts[key] = (pt, base, partition_index(bview))
                seed_point_index(out, vi[0])
                seed_partition_index(out, derive_partition_index(bp[2], base.pidx, vi[0], vi[1],
                                                                 positions=base.positions))
            for k in [k for k, v in ds.parts.items() if v[1] is not view]:
                del ds.parts[k]
            ds.parts[key] = (pt, view, out)
            if len(ds.base_parts) > 8:
                ds.base_parts.pop(next(iter(ds.base_parts)))
        return out

    def _view(self, d: dt.date, fr: Frames | None, *, frames: dict[str, pd.DataFrame] | None = None) -> Twin:
        f = frames if frames is not None else {"persons": fr.persons, "dwellings": fr.dwellings,  # type: ignore[union-attr]
                                              "buildings": fr.buildings, "businesses": fr.businesses}  # type: ignore[union-attr]
        manifest = {**self.t.manifest, "as_of": d.isoformat(), "live": True}
        return dataclasses.replace(self.t, manifest=manifest, cache={}, **f)

    # -- compaction ------------------------------------------------------------------------------------------
    def compact(self, date: dt.date | None = None) -> None:
        """Fold the changes so far into a new base for ``date`` (its frames and point index); the next delta starts
        there. Safe while queries run (they hold their own views)."""
        view = self.twin_on(date)
        ds = self._state(date)
        pidx = point_index(view)
        base = _Base(int(ds.view_seq), {table: getattr(view, table) for table in TABLES}, pidx,
                     building_point_positions(pidx), partition_index(view))
        with ds.lock:
            if base.seq >= ds.base.seq:
                ds.base = base

    def _compact_in_background(self, ds: _DateState) -> None:
        with self._lock:
            if self._compacting is not None and self._compacting.is_alive():
                return
            self._compacting = threading.Thread(target=self.compact, args=(ds.date,), daemon=True,
                                                name="twin-live-compact")
            self._compacting.start()

    def wait_compaction(self, timeout: float | None = None) -> None:
        """Wait for a background compaction to finish (tests, benchmarks)."""
        th = self._compacting
        if th is not None:
            th.join(timeout)


def _regrid(b: pd.DataFrame, pt: Twin) -> pd.DataFrame:
    """Buildings ``b`` with ``grid_code`` from ``pt``'s cells (as :func:`twin.partition.versions.twin_with_partition`
    assigns it: ``""`` for a cell outside every grid)."""
    cells = pt.cells
    pos = pd.Index(cells["cell"].to_numpy()).get_indexer(b["cell"].to_numpy())
    codes = cells["grid_code"].astype(str).to_numpy(dtype=object)
    out = b.copy(deep=False)
    out["grid_code"] = pd.Categorical(np.where(pos >= 0, codes[np.maximum(pos, 0)], "").astype(str))
    return out


def _persons_with_codes(p: pd.DataFrame, b: pd.DataFrame, grids: pd.DataFrame) -> pd.DataFrame:
    """``p`` (persons) plus the ``grid_code``, ``community_code``, ``town_code`` (object str; NaN when the grid is
    unknown) of each person's building in ``b``: one lookup per distinct grid code, then integer takes."""
    bpos = id_positions(b, "buildings", p["building_id"].to_numpy())
    gc = b["grid_code"]
    if isinstance(gc.dtype, pd.CategoricalDtype):
        codes, cats = gc.cat.codes.to_numpy(), gc.cat.categories.astype(str)
    else:
        codes, cats = pd.factorize(gc.astype(str).to_numpy(dtype=object))
        cats = pd.Index(cats, dtype=object)
    pcode = codes[bpos].astype(np.intp)
    pcode[pcode < 0] = len(cats)  # a NaN grid code: the "nan" entry appended below
    g = grids.drop_duplicates("grid_code").set_index(grids["grid_code"].drop_duplicates().astype(str))
    lut = [np.append(cats.to_numpy(dtype=object), "nan")]
    for c in ("community_code", "town_code"):
        lut.append(np.append(g[c].astype(str).reindex(cats).to_numpy(dtype=object), np.nan))
    ix = p.index
    plain = isinstance(ix, pd.RangeIndex) and ix.start == 0 and ix.step == 1
    out = p.copy(deep=False) if plain else p.reset_index(drop=True)
    out["grid_code"], out["community_code"], out["town_code"] = (pd.array(a, dtype="str").take(pcode)
                                                                   for a in lut)
    return out


def _as_date(v: object) -> dt.date:
    if isinstance(v, dt.datetime):
        return v.date()
    if isinstance(v, dt.date):
        return v
    if isinstance(v, str):
        try:
            return dt.date.fromisoformat(v)
        except ValueError as e:
            raise ValidationError(f"not an ISO date: {v!r} (use e.g. 2026-12-01).") from e
    raise ValidationError(f"expected a date, got {v!r}.")
