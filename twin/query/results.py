"""The answer of an area query: :class:`AreaSummary` (counts inside a drawn area, as the caller's role may see
them) and its JSON form. Built by :func:`twin.query.summary.summarize_area`."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from twin.access.policy import AreaCounts
from twin.errors import PermissionDenied
from twin.model import COUNT_KEYS

__all__ = ["AreaSummary", "COUNT_KEYS"]

_COUNT_COL = {k: j for j, k in enumerate(COUNT_KEYS)}


@dataclass
class AreaSummary:
    """What lies inside a drawn area, as the caller's role may see it (:mod:`twin.access.policy` decides).

    Counts are ints, or ``None`` where suppressed. For a role that sees the whole district every count is exact;
    for other roles the breakdowns hold only grids (and communities/towns wholly) inside the role's record scope,
    exact, and the rest of the area is one suppressed aggregate, :attr:`outside` — the same answer, value for
    value, as ``POST /area/summary`` of the HTTP service.

    Attributes
    ----------
    area_km2
        Area of the (clipped) query polygon in km², measured in EPSG:4547.
    clipped, warnings
        Whether the input was clipped to the district; notes about repairs, clipping, GCJ-02 conversion.
    totals
        :data:`COUNT_KEYS` → count inside the area.
    buildings_by_use, businesses_by_credit
        Buildings per use, businesses per credit colour (green/yellow/red).
    by_grid, by_community, by_town
        (properties, built on first access from :attr:`tables`) One row per unit the area touches (a unit is touched when one of its cells has its centre or a record
        inside the area): codes, names, parent codes, the :data:`COUNT_KEYS` columns (nullable ``Int64``) and,
        for grids, ``share_of_grid_residents`` = residents inside / all residents of that grid (missing when
        the grid has no residents or its residents count is suppressed).
    cells
        ``uint64`` H3 res-11 partition cells touched: centre inside the area, or holding a building, camera or
        worker inside it; sorted.
    density
        With ``density=True``: per touched cell, the :data:`DENSITY_KEYS` counts inside, the cell's
        ``area_km2`` (EPSG:4547) and ``<key>_per_km2``; else ``None``.
    suppressed
        Names of suppressed values, e.g. ``"totals.pregnant"``, ``"buildings_by_use.industrial"``.
    version
        Partition version the grid breakdown used (``None`` for the twin's built partition).
    outside
        ``None`` when the whole area lies in the role's record scope; else the aggregate of the rest:
        ``n_grids``, suppressed ``counts`` (``None`` = suppressed) and the ``suppressed`` keys.
    k
        The suppression threshold that applied (smallest published count outside the record scope).
    """

    area_km2: float
    clipped: bool
    warnings: list[str]
    totals: dict[str, int | None]
    buildings_by_use: dict[str, int | None]
    businesses_by_credit: dict[str, int | None]
    cells: np.ndarray
    suppressed: list[str] = field(default_factory=list)
    version: str | None = None
    density: pd.DataFrame | None = None
    tables: dict[str, Mapping[str, Any]] = field(default_factory=dict, repr=False)
    """Column arrays of the breakdowns (``by_grid``…); count columns are ``(values, suppressed_mask)`` pairs."""
    outside: dict[str, Any] | None = None
    k: int | None = None
    _counts: Callable[[], AreaCounts] | None = field(default=None, repr=False, compare=False)
    _frames: dict[str, pd.DataFrame] = field(default_factory=dict, repr=False, compare=False)

    def area_counts(self) -> AreaCounts:
        """The exact, role-independent per-grid counts of the area (:class:`twin.access.policy.AreaCounts`),
        which :func:`twin.access.policy.scope_area` scopes for a caller. Only summaries made for a role that
        sees everything carry them.

        Raises
        ------
        PermissionDenied
            The summary was made for a role that does not see every count.
        """
        if self._counts is None:
            raise PermissionDenied("this summary is already scoped to a role; exact counts come only from a "
                                   "summary made with the district role.")
        return self._counts()

    @property
    def by_grid(self) -> pd.DataFrame:
        """Per grid touched: codes, names, counts (nullable Int64) and ``share_of_grid_residents`` (Float64)."""
        return self._frame("by_grid")

    @property
    def by_community(self) -> pd.DataFrame:
        """Per community touched: code, name, town code and counts (nullable Int64)."""
        return self._frame("by_community")

    @property
    def by_town(self) -> pd.DataFrame:
        """Per town touched: code, name and counts (nullable Int64)."""
        return self._frame("by_town")

    def _frame(self, name: str) -> pd.DataFrame:
        # built on first access: making a DataFrame costs more than the whole query
        if name not in self._frames:
            cols = self.tables.get(name)
            if cols is None:
                self._frames[name] = pd.DataFrame()
            else:
                data: dict[str, Any] = {}
                for k, v in cols.items():
                    if isinstance(v, tuple):  # (values, mask) views into shared matrices: copy
                        vals, mask = np.array(v[0]), np.array(v[1], dtype=bool)
                        data[k] = (pd.arrays.IntegerArray(vals, mask) if vals.dtype.kind == "i"
                                   else pd.arrays.FloatingArray(vals, mask))
                    else:
                        data[k] = v
                self._frames[name] = pd.DataFrame(data)
        return self._frames[name]

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict (cells as H3 hex strings, suppressed values as ``None``)."""
        out: dict[str, Any] = {
            "area_km2": self.area_km2,
            "clipped": self.clipped,
            "warnings": list(self.warnings),
            "totals": dict(self.totals),
            "buildings_by_use": dict(self.buildings_by_use),
            "businesses_by_credit": dict(self.businesses_by_credit),
            "by_grid": _records(self.tables.get("by_grid")),
            "by_community": _records(self.tables.get("by_community")),
            "by_town": _records(self.tables.get("by_town")),
            "cells": [format(int(c), "x") for c in self.cells],
            "suppressed": list(self.suppressed),
            "version": self.version,
            "outside_scope": self.outside,
            "k": self.k,
        }
        if self.density is not None:
            d = self.density.assign(cell=[format(int(c), "x") for c in self.density["cell"]])
            out["density"] = _frame_records(d)
        return out



class _Table(Mapping[str, Any]):
    """A breakdown's columns: ``head`` (codes, names), then each COUNT_KEYS column as a ``(values, suppressed
    mask)`` pair of views into ``counts``/``hidden`` (made on access: most callers never look), then ``tail``."""

    def __init__(self, head: dict[str, Any], values: np.ndarray, hide: np.ndarray) -> None:
        self.head, self.counts, self.hidden = head, values, hide
        self.tail: dict[str, Any] = {}

    def __getitem__(self, key: str) -> Any:
        if key in self.head:
            return self.head[key]
        if key in self.tail:
            return self.tail[key]
        j = _COUNT_COL.get(key)
        if j is None:
            raise KeyError(key)
        return self.counts[:, j], self.hidden[:, j]

    def __iter__(self) -> Iterator[str]:
        yield from self.head
        yield from COUNT_KEYS
        yield from self.tail

    def __len__(self) -> int:
        return len(self.head) + len(COUNT_KEYS) + len(self.tail)



def _records(cols: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """Rows of a breakdown's column arrays as JSON-able dicts (suppressed → None)."""
    if not cols:
        return []
    n = len(next(iter(cols.values())))
    out: list[dict[str, Any]] = [{} for _ in range(n)]
    for k, v in cols.items():
        if isinstance(v, tuple):
            vals = [None if m else _plain(x) for x, m in zip(v[0].tolist(), v[1].tolist())]
        else:
            vals = [_plain(x) for x in (v.tolist() if isinstance(v, np.ndarray) else list(v))]
        for row, x in zip(out, vals):
            row[k] = x
    return out


def _frame_records(df: pd.DataFrame) -> list[dict[str, Any]]:
    out = df.astype(object).where(df.notna(), None)
    return [{k: _plain(v) for k, v in r.items()} for r in out.to_dict(orient="records")]


def _plain(v: Any) -> Any:
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, np.floating):
        return float(v)
    return v


