"""Draw an area, see what is inside: exact counts, per-grid/community/town breakdowns, paged record ids.

"Inside" is exact point-in-polygon on WGS84 (lng, lat) treated as planar coordinates (what shapely and
geopandas do): a building — and every resident, dwelling and business in it — counts by its point
(``buildings.lng/lat``, the footprint centroid); cameras and grid workers count by their own point. A point
**on the boundary counts as inside** (shapely ``covers`` / ``intersects_xy``), everywhere in this module.

Suppression (分权分域, "usable but not visible"): for a role that may not see individuals (``role.suppresses``)
every count, and for any role the counts of grids outside its scope, with ``0 < count < role.k`` are replaced by
``None`` and named in :attr:`AreaSummary.suppressed`. A community/town row, and the area totals, count as in
scope only when every grid they cover (for totals: every grid the area touches) is in the role's scope.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
import shapely

from twin.access.roles import DISTRICT, Role, grids_in_scope
from twin.errors import PermissionDenied, ValidationError
from twin.query._index import (
    COUNT_KEYS,
    CREDIT_COLOURS,
    EDGE_EPS_DEG,
    KINDS,
    Inside,
    PartitionIndex,
    PointIndex,
    decide_unsure,
    group_sum,
    partition_cell_areas_km2,
    partition_index,
    point_index,
    points_inside,
    polygon_edges,
)
from twin.query._kernels import cover_and_sum, sum_covered
from twin.query.areas import ParsedArea, area_geometry, parse_area

__all__ = [
    "AreaSummary",
    "RecordPage",
    "summarize_area",
    "records_in_area",
    "COUNT_KEYS",
    "RECORD_KINDS",
    "DENSITY_KEYS",
    "MAX_PAGE_SIZE",
]

RECORD_KINDS = ("persons", "buildings", "businesses")
DENSITY_KEYS = ("residents", "disabled", "low_income", "pregnant", "elderly_70", "elderly_80")
MAX_PAGE_SIZE = 10_000
By = Literal["grid", "community", "town"] | None


@dataclass
class AreaSummary:
    """What lies inside a drawn area. Counts are ints, or ``None`` where suppressed for the caller's role.

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
        Names of suppressed values, e.g. ``"totals.pregnant"``, ``"by_grid[440604010001001].disabled"``.
    version
        Partition version the grid breakdown used (``None`` for the twin's built partition).
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
    _frames: dict[str, pd.DataFrame] = field(default_factory=dict, repr=False, compare=False)

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
        }
        if self.density is not None:
            d = self.density.assign(cell=[format(int(c), "x") for c in self.density["cell"]])
            out["density"] = _frame_records(d)
        return out


@dataclass
class RecordPage:
    """One page of record ids inside an area (ascending ids)."""

    kind: str
    ids: list[int]
    page: int
    page_size: int
    total: int

    @property
    def pages(self) -> int:
        return (self.total + self.page_size - 1) // self.page_size

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "ids": self.ids, "page": self.page, "page_size": self.page_size,
                "total": self.total, "pages": self.pages}


# --- summarize ------------------------------------------------------------------------------------------------

def summarize_area(
    t: Any,
    area: Any,
    *,
    role: Role = DISTRICT,
    by: By = "grid",
    density: bool = False,
    from_gcj02: bool = False,
) -> AreaSummary:
    """Exact counts of everything inside a drawn area.

    Parameters
    ----------
    t
        A loaded :class:`twin.Twin`.
    area
        WGS84 (lng, lat) shapely Polygon/MultiPolygon or GeoJSON (geometry, Feature, FeatureCollection; dict or
        str) — see :func:`twin.query.areas.parse_area`; clipped to the district.
    role
        Who asks; decides suppression (see the module docstring).
    by
        Finest breakdown to build: ``"grid"`` (grids, communities and towns), ``"community"`` (communities and
        towns), ``"town"``, or ``None`` (no breakdown; fastest).
    density
        Also return per-cell key-population counts and densities per km² (EPSG:4547 cell areas).
    from_gcj02
        The area's coordinates are GCJ-02 (Amap); convert to WGS84 first.

    Returns
    -------
    AreaSummary

    Raises
    ------
    ValidationError, CRSError, OutsideDistrictError
        Bad area (see :func:`twin.query.areas.parse_area`) or bad ``by``.

    Examples
    --------
    >>> s = summarize_area(t, {"type": "Polygon", "coordinates": [[[113.10, 23.02], [113.12, 23.02],
    ...                         [113.12, 23.04], [113.10, 23.02]]]})          # doctest: +SKIP
    >>> s.totals["residents"], s.by_grid[["grid_code", "residents"]].head(2)   # doctest: +SKIP
    """
    if by not in ("grid", "community", "town", None):
        raise ValidationError(f"by must be 'grid', 'community', 'town' or None, got {by!r}.")
    geom = area_geometry(area)
    units = None if from_gcj02 else _units(t)
    entry = units.parse(geom, geom.bounds, t.district) if units is not None else None
    parsed = entry if entry is not None else parse_area(geom, district=t.district, from_gcj02=from_gcj02)
    return _summarize(t, parsed, role=role, by=by, density=density, units=units)


def summarize_parsed(t: Any, parsed: ParsedArea, *, role: Role = DISTRICT, by: By = "grid",
                     density: bool = False) -> AreaSummary:
    """:func:`summarize_area` for an already validated :class:`twin.query.areas.ParsedArea`."""
    return _summarize(t, parsed, role=role, by=by, density=density, units=_units(t))


@dataclass(frozen=True)
class _Breakdown:
    """Touched grids ``gi`` (ascending, PartitionIndex order) with their COUNT_KEYS sums inside the area and
    their share of residents inside; their communities ``ci`` and towns ``ti`` with summed rows."""

    gi: np.ndarray
    grid_values: np.ndarray
    share: np.ndarray
    ci: np.ndarray
    community_values: np.ndarray
    ti: np.ndarray
    town_values: np.ndarray


@dataclass(frozen=True)
class _Core:
    """The role-independent part of a summary: column sums, the touched ``t.cells`` rows (sorted), the touched
    grids and, when asked for, the breakdown by grid/community/town."""

    inside: Inside
    sums: np.ndarray
    cell_pos: np.ndarray
    gi: np.ndarray
    breakdown: _Breakdown | None


def _core(pidx: PointIndex, part: PartitionIndex, parsed: ParsedArea, *, with_grids: bool) -> _Core:
    pts = pidx.points
    geom = parsed.geometry
    sum_args = (pidx.cum, pidx.feats, part.point_grid, pts.cell_pos, part.cell_grid, part.grid_totals_k,
                part.grid_community, len(part.community_codes), part.grid_town, len(part.town_codes),
                _COUNT_COL["residents"], with_grids)
    starts, stops, edge, unsure, sums, cell_pos, gi, *rest = cover_and_sum(
        polygon_edges(geom), parsed.bounds, pidx.x0, pidx.y0, pidx.dx, pidx.dy, pidx.nx, pidx.ny, pts.bin_start,
        pts.x, pts.y, EDGE_EPS_DEG, *sum_args)
    if len(unsure):  # points within 1e-9° of the boundary (rare): shapely decides them, then sum again
        edge = decide_unsure(pidx, geom, edge, unsure)
        sums, cell_pos, gi, *rest = sum_covered(starts, stops, edge, *sum_args)
    inside = Inside(starts, stops, edge, len(pts.x))
    return _Core(inside, sums, np.sort(cell_pos), gi, _Breakdown(gi, *rest) if with_grids else None)


def _summarize(t: Any, parsed: ParsedArea, *, role: Role, by: By, density: bool,  # noqa: PLR0913
               units: _Units | None) -> AreaSummary:
    pidx = point_index(t)
    part = partition_index(t)
    core = units.core(parsed, pidx, part) if units is not None else None
    if core is None or (by is not None and core.breakdown is None):
        core = _core(pidx, part, parsed, with_grids=by is not None)
    sums, cell_pos, gi = core.sums, core.cell_pos, core.gi
    cells = pidx.cell_ids[cell_pos]

    scope = _scope(t, role, part)
    sup = _Suppressor(role)
    open_all = not role.suppresses and scope.everything
    totals_open = open_all or (not role.suppresses and bool(scope.grids[gi].all()))
    nk = len(COUNT_KEYS)  # the PointIndex puts the COUNT_KEYS columns first
    sums_list = sums.tolist()
    if totals_open:
        totals = dict(zip(COUNT_KEYS, sums_list[:nk]))
        by_use = {u: sums_list[pidx.use_cols[i]] for i, u in enumerate(pidx.uses)}
        by_credit = {c: sums_list[pidx.credit_cols[i]] for i, c in enumerate(CREDIT_COLOURS)}
    else:
        totals = {k: sup.value(sums_list[i], False, f"totals.{k}") for i, k in enumerate(COUNT_KEYS)}
        by_use = {u: sup.value(sums_list[pidx.use_cols[i]], False, f"buildings_by_use.{u}")
                  for i, u in enumerate(pidx.uses)}
        by_credit = {c: sup.value(sums_list[pidx.credit_cols[i]], False, f"businesses_by_credit.{c}")
                     for i, c in enumerate(CREDIT_COLOURS)}

    tables: dict[str, Mapping[str, Any]] = {}
    bd = core.breakdown
    if by is not None and bd is not None:
        if by == "grid":
            head: dict[str, Any] = {
                "grid_code": part.grid_codes[gi],
                "grid_name": part.grid_names[gi],
                "community_code": part.grid_community_code[gi],
                "town_code": part.grid_town_code[gi],
            }
            tab = sup.table(head, bd.grid_values, None if open_all else scope.grids[gi] & (not role.suppresses),
                            "by_grid", head["grid_code"])
            # None where the grid has no residents (NaN from the kernel) or its count inside is suppressed
            tab.tail["share_of_grid_residents"] = (bd.share, tab.hidden[:, _COUNT_COL["residents"]] | np.isnan(bd.share))
            tables["by_grid"] = tab
        if by in ("grid", "community"):
            ci = bd.ci
            head = {"community_code": part.community_codes[ci], "community_name": part.community_names[ci],
                    "town_code": part.community_town_code[ci]}
            tables["by_community"] = sup.table(
                head, bd.community_values, None if open_all else scope.communities[ci] & (not role.suppresses),
                "by_community", head["community_code"])
        ti = bd.ti
        head = {"town_code": part.town_codes[ti], "town_name": part.town_names[ti]}
        tables["by_town"] = sup.table(head, bd.town_values, None if open_all else scope.towns[ti] & (not role.suppresses),
                                      "by_town", head["town_code"])

    dens = None
    if density:
        dens = _density(t, pidx, core.inside.indices(), cell_pos, cells, sup,
                        open_cells=(not role.suppresses) & _cells_in_scope(part, scope.grids, cell_pos))
    return AreaSummary(parsed.area_km2, parsed.clipped, list(parsed.warnings), totals, by_use, by_credit,
                       cells, sup.names, _version(t), dens, tables)


# --- known units: the district, towns, communities and grids are often asked for as drawn --------------------

_MAX_CACHED = 256


class _Units:
    """Parse results and role-independent cores of areas that are exactly a unit outline (district, town,
    community, grid), found by bounds then WKB of the geometry. Only these are cached — never an arbitrary
    lasso — so repeated queries of a community or of the whole district skip parsing, clipping and point tests.
    """

    def __init__(self, wkbs: set[bytes], bounds: set[tuple[float, ...]]) -> None:
        self.wkbs = wkbs
        self.bounds = set(bounds)  # cheap prefilter: a geometry's bounds (≈ 1 µs) before its WKB
        self.parsed: dict[bytes, ParsedArea] = {}
        self.cores: dict[bytes, tuple[PointIndex, PartitionIndex, _Core]] = {}
        self.core_keys: set[bytes] = set(wkbs)  # plus clipped geometries of units

    def _key(self, geom: Any, bounds: tuple[float, ...], keys: set[bytes]) -> bytes | None:
        if bounds not in self.bounds:
            return None
        key = shapely.to_wkb(geom)
        return key if key in keys else None

    def parse(self, geom: Any, bounds: tuple[float, ...], district: Any) -> ParsedArea | None:
        key = self._key(geom, bounds, self.wkbs)
        if key is None:
            return None
        hit = self.parsed.get(key)
        if hit is None:
            hit = parse_area(geom, district=district)
            if len(self.parsed) >= _MAX_CACHED:
                self.parsed.pop(next(iter(self.parsed)))
            self.parsed[key] = hit
            self.core_keys.add(shapely.to_wkb(hit.geometry))
            self.bounds.add(hit.geometry.bounds)
        return hit

    def core(self, parsed: ParsedArea, pidx: PointIndex, part: PartitionIndex) -> _Core | None:
        key = self._key(parsed.geometry, parsed.bounds, self.core_keys)
        if key is None:
            return None
        hit = self.cores.get(key)
        if hit is not None and hit[0] is pidx and hit[1] is part:
            return hit[2]
        core = _core(pidx, part, parsed, with_grids=True)
        if len(self.cores) >= _MAX_CACHED:
            self.cores.pop(next(iter(self.cores)))
        self.cores[key] = (pidx, part, core)
        return core


def _units(t: Any) -> _Units:
    hit = t.cache.get("query.units")
    if hit is not None:  # checked on every query: keep it cheap
        f = hit[0]
        if f[0] is t.district and f[1] is t.towns and f[2] is t.communities and f[3] is t.grids:
            return hit[1]
    frames = (t.district, t.towns, t.communities, t.grids)
    geoms = [t.district] + [g for f in frames[1:] if "geometry" in f for g in np.asarray(f.geometry.values)]
    units = _Units(set(shapely.to_wkb(np.asarray(geoms, dtype=object)).tolist()),
                   {tuple(b) for b in shapely.bounds(np.asarray(geoms, dtype=object)).tolist()})
    t.cache["query.units"] = (frames, units)
    return units


# --- records --------------------------------------------------------------------------------------------------

def records_in_area(
    t: Any,
    area: Any,
    kind: str,
    *,
    role: Role = DISTRICT,
    page: int = 0,
    page_size: int = 1000,
    from_gcj02: bool = False,
) -> RecordPage:
    """Ids of the persons, buildings or businesses inside an area, one page at a time (ascending ids).

    Only records in grids inside the role's scope are returned. Inside = the building's point is covered by
    the area (module docstring).

    Raises
    ------
    PermissionDenied
        The role may not see individual records (``role.can_see_records`` is False).
    ValidationError
        Unknown ``kind``, bad ``page``/``page_size``, or a bad area.
    """
    if not role.can_see_records:
        raise PermissionDenied(f"role {role.name!r} may not see individual records; use summarize_area for "
                               f"aggregate counts.")
    if kind not in RECORD_KINDS:
        raise ValidationError(f"unknown record kind {kind!r}; use one of {', '.join(RECORD_KINDS)}.")
    if isinstance(page, bool) or not isinstance(page, (int, np.integer)) or page < 0:
        raise ValidationError(f"page must be an integer ≥ 0, got {page!r}.")
    if (isinstance(page_size, bool) or not isinstance(page_size, (int, np.integer))
            or not 1 <= page_size <= MAX_PAGE_SIZE):
        raise ValidationError(f"page_size must be an integer from 1 to {MAX_PAGE_SIZE}, got {page_size!r}.")
    parsed = parse_area(area, district=t.district, from_gcj02=from_gcj02)
    pidx = point_index(t)
    part = partition_index(t)
    inside = points_inside(pidx, parsed.geometry).indices()
    inside = inside[pidx.points.kind[inside] == KINDS.index("buildings")]
    scope = _scope(t, role, part)
    pg = part.point_grid[inside]
    inside = inside[(pg >= 0) & scope.grids[np.maximum(pg, 0)]] if role.scope_level != "district" else inside
    bpos = np.sort(pidx.points.rec[inside].astype(np.int64))
    if kind == "buildings":
        ids = t.buildings["building_id"].to_numpy()[bpos]
    else:
        order, offsets, id_col = _by_building(t, kind)
        rows = order[_concat_ranges(offsets[bpos], offsets[bpos + 1])]
        ids = getattr(t, kind)[id_col].to_numpy()[rows]
    ids = np.sort(ids)
    chunk = ids[page * page_size:(page + 1) * page_size]
    return RecordPage(kind, [int(i) for i in chunk], int(page), int(page_size), len(ids))


def _by_building(t: Any, kind: str) -> tuple[np.ndarray, np.ndarray, str]:
    """Rows of ``t.persons``/``t.businesses`` grouped by building position: (order, offsets, id column)."""
    frame = getattr(t, kind)
    key = f"query.by_building.{kind}"
    hit = t.cache.get(key)
    if hit is not None and hit[0] is frame and hit[1] is t.buildings:
        return hit[2]
    ids = t.buildings["building_id"].to_numpy()
    sorter = np.argsort(ids, kind="stable")
    bpos = sorter[np.searchsorted(ids, frame["building_id"].to_numpy(), sorter=sorter)]
    order = np.argsort(bpos, kind="stable")
    offsets = np.concatenate([[0], np.cumsum(np.bincount(bpos, minlength=len(ids)))]).astype(np.int64)
    value = (order, offsets, "person_id" if kind == "persons" else "business_id")
    t.cache[key] = (frame, t.buildings, value)
    return value


def _concat_ranges(starts: np.ndarray, stops: np.ndarray) -> np.ndarray:
    from twin.query._index import _ranges

    return _ranges(starts, stops)


# --- helpers --------------------------------------------------------------------------------------------------

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


_COUNT_COL = {k: j for j, k in enumerate(COUNT_KEYS)}


class _Suppressor:
    """Replaces 0 < count < k by None where a value is not open to the role, and remembers what it hid."""

    def __init__(self, role: Role) -> None:
        self.k = role.k
        self.names: list[str] = []

    def value(self, v: int, open_: bool, name: str) -> int | None:
        if not open_ and 0 < v < self.k:
            self.names.append(name)
            return None
        return v

    def table(self, head: dict[str, Any], values: np.ndarray, open_rows: np.ndarray | None, table: str,
              codes: np.ndarray) -> _Table:
        """The COUNT_KEYS ``values`` (rows × keys) with ``head`` columns; rows not in ``open_rows`` (``None``:
        all open) hide their small counts, which are named in :attr:`names`."""
        if open_rows is None or bool(open_rows.all()):
            hide = np.zeros(values.shape, dtype=bool)
        else:
            hide = (~open_rows)[:, None] & (values > 0) & (values < self.k)
            if hide.any():
                r, c = np.nonzero(hide)
                self.names.extend(f"{table}[{codes[i]}].{COUNT_KEYS[j]}" for i, j in zip(r.tolist(), c.tolist()))
        return _Table(head, values, hide)


@dataclass(frozen=True)
class _Scope:
    """Per grid / community / town (PartitionIndex order): inside the role's scope (for a community or town:
    every one of its grids is); ``everything`` when the role sees the whole district."""

    grids: np.ndarray
    communities: np.ndarray
    towns: np.ndarray
    everything: bool


def _scope(t: Any, role: Role, part: PartitionIndex) -> _Scope:
    """What lies inside the role's scope. Cached per role scope and partition."""
    key = ("query.scope", role.scope_level, role.scope_codes)
    hit = t.cache.get(key)
    if hit is not None and hit[0] is part:
        return hit[1]
    if role.scope_level == "district":
        mask = np.ones(len(part.grid_codes), dtype=bool)
    else:
        mask = np.asarray(grids_in_scope(role, t.grids), dtype=bool)

    def all_in(parent: np.ndarray, n: int) -> np.ndarray:
        ok = parent >= 0
        return np.bincount(parent[ok], weights=(~mask[ok]).astype(float), minlength=n) == 0

    value = _Scope(mask, all_in(part.grid_community, len(part.community_codes)),
                   all_in(part.grid_town, len(part.town_codes)), bool(mask.all()))
    t.cache[key] = (part, value)
    return value


def _cells_in_scope(part: PartitionIndex, scope: np.ndarray, cell_pos: np.ndarray) -> np.ndarray:
    g = part.cell_grid[cell_pos]
    return (g >= 0) & scope[np.maximum(g, 0)]


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


def _version(t: Any) -> str | None:
    v = getattr(t, "partition_version", None)
    if v is None:
        v = t.manifest.get("partition_version")
    return None if v is None else str(v)


def _density(t: Any, pidx: PointIndex, inside: np.ndarray, cell_pos: np.ndarray, cells: np.ndarray,  # noqa: PLR0913
             sup: _Suppressor, open_cells: np.ndarray) -> pd.DataFrame:
    cp = pidx.points.cell_pos[inside]
    ok = cp >= 0
    slot = np.searchsorted(cell_pos, cp[ok])
    cols = [pidx.col(k) for k in DENSITY_KEYS]
    counts = group_sum(slot, pidx.feats[inside[ok]][:, cols], len(cell_pos))
    areas = partition_cell_areas_km2(t)[cell_pos]
    out: dict[str, Any] = {"cell": cells, "area_km2": areas}
    hide = (~open_cells)[:, None] & (counts > 0) & (counts < sup.k)
    for j, k in enumerate(DENSITY_KEYS):
        m = hide[:, j]
        out[k] = pd.arrays.IntegerArray(counts[:, j], m.copy())
        out[f"{k}_per_km2"] = pd.array(np.where(m, np.nan, counts[:, j] / np.where(areas > 0, areas, np.nan)),
                                       dtype="Float64")
    if hide.any():
        r, c = np.nonzero(hide)
        sup.names.extend(f"density[{int(cells[i]):x}].{DENSITY_KEYS[j]}" for i, j in zip(r.tolist(), c.tolist()))
    return pd.DataFrame(out)
