"""Scope policy (分权分域, 可用不可见): what a caller may see of a query result — the one place that decides.

Rules (the Python API — :func:`twin.summarize_area`, :func:`twin.overlay`, :func:`twin.query.dossier.grid_dossier`
— and the HTTP service apply the same functions, so both give the same answer; see ``docs/privacy.md``):

* **Record scope.** A role's *record scope* is the set of grids inside its scope (``twin.access.roles.grids_in_scope``)
  when the role may see records, and empty for the read-only ``analyst``. Record-level data (residents,
  businesses, buildings with their people, grid workers' names) is returned only for grids in the record scope.
* **Inside the record scope everything is exact** (the caller may list those records anyway); a role whose record
  scope is the whole district (``district``) sees every count exactly.
* **Outside the scope** an area query, a dossier or a record list either
  - ``outside="aggregate"`` (default): returns one aggregate for the outside part with small counts suppressed, or
  - ``outside="deny"``: raises :class:`twin.errors.PermissionDenied` (HTTP 403) naming the grids outside.
  Analysts never see records and always get suppressed aggregates (``deny`` does not apply to them: aggregates
  are their whole use). Record lists outside the record scope are always refused.
* **Outside the record scope every figure comes from a fixed table of publishable units, rounded**
  (:func:`publish`): a unit's count is published as 0 (when 0), ``None`` (1 … k−1: suppressed, never shown as
  0) or rounded half-up to a multiple of ``k`` (default 5, the larger of the policy's and the role's ``k``).
  Units are whole grids of the partition in force (areas, dossiers, exports, version diffs, worker boards) and,
  for overlays, the out-of-scope part of each H3 cell at the role's base resolution
  (:data:`OVERLAY_BASE_RES`). A figure made of several units is the sum of their *published* values
  (:func:`published_sum`): a suppressed unit adds 0, and a sum of 0 with a suppressed unit is ``None``. An area
  counts an outside grid only when it touches at least half of the grid's cells (:func:`counted_units`), and
  then the whole grid. So every outside number is a multiple of ``k`` made from the same unit table whatever
  the area, version or resolution: the difference of any two published numbers, minus the caller's exact
  inside part, is a multiple of ``k`` — never a count 1 … k−1 (``docs/privacy.md``).
* Every published total or breakdown of an area is the exact inside part plus the published outside part, or
  ``None`` where the outside part is suppressed.
* **Editing** grids needs ``role.can_edit`` and every touched grid inside the role's scope (:func:`check_edit`).

Differencing across queries (area A, then A minus a hole around one building; versions N and N+1; overlays
at res r and r+1; two overlay categories) gives multiples of ``k`` only: ``tests/access/test_differencing.py``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
import pandas as pd

from twin.access.roles import DEFAULT_K, Role, grids_in_scope
from twin.access.suppression import ADDITIVE_GROUPS, NESTED_PAIRS, Suppressed, suppress_cells, suppress_counts
from twin.errors import PermissionDenied, ValidationError
from twin.io import read_table
from twin.model import Twin

__all__ = [
    "AccessPolicy",
    "DEFAULT_POLICY",
    "MAX_PAGE_SIZE",
    "OVERLAY_BASE_RES",
    "publish",
    "publish_counts",
    "published_sum",
    "counted_units",
    "base_units",
    "register_cell_values",
    "publish_groups",
    "unit_table",
    "closed_cells",
    "worker_summary",
    "grid_scope_mask",
    "OutsidePolicy",
    "Suppressed",
    "AreaCounts",
    "ScopedArea",
    "SupportsAreaCounts",
    "ADDITIVE_GROUPS",
    "NESTED_PAIRS",
    "record_scope",
    "record_scope_mask",
    "sees_everything",
    "in_record_scope",
    "suppress_counts",
    "suppress_cells",
    "scope_area",
    "split_by_scope",
    "scoped_dossier",
    "scoped_summary",
    "check_edit",
    "check_outside",
    "check_page",
]

OutsidePolicy = Literal["aggregate", "deny"]

MAX_PAGE_SIZE = 1_000
"""Most records in one page, for every record list (Python API, CLI and HTTP)."""

OVERLAY_BASE_RES = 9
"""H3 resolution at which out-of-scope overlay counts are published for every role that does not see
everything: coarser cells are sums of these published cells, finer cells are not published outside the scope."""

SUPPRESSED = -1
"""Marker of a suppressed value in the int64 arrays of :func:`publish` / :func:`published_sum`."""


@dataclass(frozen=True)
class AccessPolicy:
    """What callers get of the parts of a query outside their scope.

    ``outside``: ``"aggregate"`` (suppressed aggregates) or ``"deny"`` (403). ``k``: smallest published count.
    """

    outside: OutsidePolicy = "aggregate"
    k: int = DEFAULT_K

    def __post_init__(self) -> None:
        if self.outside not in ("aggregate", "deny"):
            raise ValidationError(f"outside policy must be 'aggregate' or 'deny', got {self.outside!r}.")
        if isinstance(self.k, bool) or not isinstance(self.k, (int, np.integer)) or int(self.k) < 1:
            raise ValidationError(f"suppression threshold k must be an integer ≥ 1, got {self.k!r}.")

    def k_for(self, role: Role) -> int:
        """The threshold for ``role``: the larger of the policy's and the role's ``k``."""
        return max(int(self.k), int(role.k))


DEFAULT_POLICY = AccessPolicy()
"""The policy of the Python API when none is given (suppressed aggregates outside the scope, k = 5)."""


# --- the publication rule for out-of-scope figures -----------------------------------------------------------

def publish(values: np.ndarray | Sequence[int] | int, k: int) -> np.ndarray:
    """Published value of each unit count: 0 → 0, 1 … k−1 → :data:`SUPPRESSED` (−1), else rounded half-up to a
    multiple of ``k`` (≥ ``k``). Element-wise on an int array of any shape; ``k = 1`` publishes exactly."""
    v = np.asarray(values, dtype=np.int64)
    if k <= 1:
        return v.copy()
    rounded = (v + k // 2) // k * k
    return np.where(v == 0, 0, np.where(v < k, SUPPRESSED, np.maximum(rounded, k)))


def published_sum(pub: np.ndarray, axis: int = 0) -> np.ndarray:
    """Sum of published unit values along ``axis``: suppressed units add 0; a sum of 0 that has a suppressed
    unit is :data:`SUPPRESSED`. A function of the published values only, so differencing sums gives nothing
    the unit table does not."""
    pub = np.asarray(pub, dtype=np.int64)
    hidden = pub < 0
    s = np.where(hidden, 0, pub).sum(axis=axis)
    return np.where((s == 0) & hidden.any(axis=axis), SUPPRESSED, s)


def publish_counts(counts: Mapping[str, int], k: int) -> Suppressed:
    """:func:`publish` of one unit's named counts: ``None`` for suppressed values, listed in ``suppressed``."""
    keys = list(counts)
    pub = publish(np.array([int(counts[c]) for c in keys], dtype=np.int64), k)
    values: dict[str, int | None] = {c: (None if p < 0 else int(p)) for c, p in zip(keys, pub.tolist())}
    return Suppressed(values, sorted(c for c, v in values.items() if v is None))


def counted_units(touched_cells: np.ndarray, unit_cells: np.ndarray) -> np.ndarray:
    """Which units an area counts outside the scope: those with more than half of their (out-of-scope) cells
    touched — then the whole unit. A small hole or bump in an area changes no count unless it moves a unit
    across one half; in a partition each unit is counted by at most one part."""
    touched = np.asarray(touched_cells, dtype=np.int64)
    return 2 * touched > np.asarray(unit_cells, dtype=np.int64)


_BASE_UNITS: dict[tuple[str, int], tuple[np.ndarray, np.ndarray, np.ndarray]] = {}


def base_units(t: Twin) -> tuple[np.ndarray, np.ndarray]:
    """The fixed publishable units outside a record scope: the grids of the twin's *built* partition (its
    ``cells.parquet``; version 1), which no partition version changes. Returns (unit codes, unit index per
    ``t.cells`` row, −1 for cells of no grid). Cached per twin directory."""
    cells = t.cells["cell"].to_numpy()
    key = (str(Path(t.root).resolve()), len(cells))
    hit = _BASE_UNITS.get(key)
    if hit is not None and np.array_equal(hit[0], cells):
        return hit[1], hit[2]
    path = Path(t.root) / "cells.parquet"
    base = read_table(path, columns=["cell", "grid_code"]) if path.exists() else t.cells[["cell", "grid_code"]]
    pos = pd.Index(base["cell"].to_numpy()).get_indexer(cells)
    codes_per_cell = np.where(pos >= 0, base["grid_code"].fillna("").astype(str).to_numpy()[np.maximum(pos, 0)], "")
    codes, unit = np.unique(codes_per_cell.astype(str), return_inverse=True)
    unit = unit.astype(np.int64)
    if codes[0] == "":  # cells of no built grid belong to no unit
        unit, codes = unit - 1, codes[1:]
    _BASE_UNITS[key] = (cells, codes.astype(str), unit)
    return codes.astype(str), unit


def register_cell_values(t: Twin, keys: Sequence[str], values: np.ndarray) -> None:
    """Give the engine the exact per-cell counts of ``t`` (rows aligned with ``t.cells``, one column per key);
    the query layer does this once per twin. Partition-independent: shared by every version."""
    t.cache["access.cell_values"] = (tuple(keys), np.asarray(values))


def _cell_values(t: Twin, keys: Sequence[str]) -> np.ndarray:
    hit = t.cache.get("access.cell_values")
    if hit is None:
        raise ValidationError("the per-cell counts of this twin are not registered; query it through "
                              "twin.query (summarize_area, grid_dossier) first.")
    cols = [hit[0].index(k) for k in keys]
    return hit[1][:, cols]


def closed_cells(role: Role, t: Twin) -> np.ndarray:
    """Boolean per ``t.cells`` row: the cell lies outside ``role``'s record scope (or in no grid)."""
    key = ("access.closed", role.scope_level, role.scope_codes, role.can_see_records)
    cache = t.cache.setdefault("access.scopes", {})
    hit = cache.get(key)
    if hit is not None and hit[0] is t.cells and hit[1] is t.grids:
        return hit[2]
    pos = pd.Index(t.grids["grid_code"].astype(str)).get_indexer(t.cells["grid_code"].fillna("").astype(str))
    closed = ~((pos >= 0) & record_scope_mask(role, t)[np.maximum(pos, 0)])
    cache[key] = (t.cells, t.grids, closed)
    return closed


def unit_table(cell_values: np.ndarray, closed: np.ndarray, cell_unit: np.ndarray, n_units: int, k: int
               ) -> tuple[np.ndarray, np.ndarray]:
    """The table every out-of-scope figure is made from: per fixed unit (:func:`base_units`) the number of its
    out-of-scope cells and :func:`publish` of its out-of-scope counts ((n_units, m) int64, −1 = suppressed)."""
    vals = np.asarray(cell_values, dtype=np.int64)
    ok = np.asarray(closed, dtype=bool) & (cell_unit >= 0)
    unit_cells = np.bincount(cell_unit[ok], minlength=n_units)
    unit_vals = np.zeros((n_units, vals.shape[1]), dtype=np.int64)
    np.add.at(unit_vals, cell_unit[ok], vals[ok])
    return unit_cells, publish(unit_vals, k)


def publish_groups(table: tuple[np.ndarray, np.ndarray], closed: np.ndarray, cell_unit: np.ndarray,
                   cell_group: np.ndarray, n_groups: int) -> tuple[np.ndarray, np.ndarray]:
    """The published out-of-scope part of each group of cells (an area: one group; a partition: one group per
    grid), answered from whole units of ``table`` (:func:`unit_table`).

    ``closed`` (n_cells bool): cells outside the record scope; ``cell_unit``: each cell's unit (−1 none);
    ``cell_group``: each cell's group (−1 none). Returns ``published`` (n_groups, m) int64, −1 = suppressed —
    per group the :func:`published_sum` of the published units whose out-of-scope cells lie more than half in
    the group (:func:`counted_units`) — and ``counted`` (n_groups, n_units) bool.
    """
    unit_cells, pub = table
    n_units, m = pub.shape
    sel = np.asarray(closed, dtype=bool) & (cell_unit >= 0) & (cell_group >= 0)
    pair = cell_group[sel].astype(np.int64) * n_units + cell_unit[sel]
    pairs, touched = np.unique(pair, return_counts=True)
    g, u = pairs // n_units, pairs % n_units
    keep = counted_units(touched, unit_cells[u])
    g, u = g[keep], u[keep]
    total = np.zeros((n_groups, m), dtype=np.int64)
    np.add.at(total, g, np.maximum(pub[u], 0))
    hidden = np.zeros((n_groups, m), dtype=bool)
    np.logical_or.at(hidden, g, pub[u] < 0)
    counted = np.zeros((n_groups, n_units), dtype=bool)
    counted[g, u] = True
    return np.where((total == 0) & hidden, SUPPRESSED, total), counted


def _outside_of(t: Twin, role: Role, k: int, cell_rows: np.ndarray, keys: Sequence[str]
                ) -> tuple[np.ndarray, list[str]]:
    """Published out-of-scope part of the cells ``cell_rows`` (``t.cells`` positions) and the units counted."""
    codes, unit = base_units(t)
    closed = closed_cells(role, t)
    ckey = ("access.units", role.scope_level, role.scope_codes, role.can_see_records, tuple(keys), k)
    cache = t.cache.setdefault("access.scopes", {})
    hit = cache.get(ckey)
    if hit is not None and hit[0] is t.cells and hit[1] is closed:
        table = hit[2]
    else:
        table = unit_table(_cell_values(t, keys), closed, unit, len(codes), k)
        cache[ckey] = (t.cells, closed, table)
    rows = np.asarray(cell_rows, dtype=np.int64)
    pub, counted = publish_groups(table, closed[rows], unit[rows], np.zeros(len(rows), dtype=np.int64), 1)
    out = pub[0]
    touched = unit[rows][closed[rows] & (unit[rows] >= 0)]
    if len(touched) and not counted[0][touched].all():  # parts of units too small to publish: never a bare 0
        out = np.where(out == 0, SUPPRESSED, out)
    return out, [str(c) for c in codes[counted[0]]]


def _as_int_or_none(v: int) -> int | None:
    return None if v < 0 else int(v)


# --- scope ---------------------------------------------------------------------------------------------------

def sees_everything(role: Role) -> bool:
    """True when ``role``'s record scope is the whole district: every count is exact, nothing is suppressed."""
    return role.can_see_records and role.scope_level == "district"


def record_scope_mask(role: Role, t: Twin) -> np.ndarray:
    """Boolean mask over ``t.grids`` rows: grids whose records ``role`` may see (all False for analysts).
    Cached per twin grid table."""
    key = ("access.scope_mask", role.scope_level, role.scope_codes, role.can_see_records)
    cache = t.cache.setdefault("access.scopes", {})
    hit = cache.get(key)
    if hit is not None and hit[0] is t.grids:
        return hit[1]
    mask = (np.asarray(grids_in_scope(role, t.grids), dtype=bool) if role.can_see_records
            else np.zeros(len(t.grids), dtype=bool))
    mask.setflags(write=False)
    cache[key] = (t.grids, mask)
    return mask


def grid_scope_mask(role: Role, grids: pd.DataFrame) -> np.ndarray:
    """Boolean mask over the rows of any grid table (``grid_code``, ``community_code``, ``town_code``; e.g. a
    partition version's): grids whose records ``role`` may see (all False for analysts)."""
    if not role.can_see_records:
        return np.zeros(len(grids), dtype=bool)
    if role.scope_level == "district":
        return np.ones(len(grids), dtype=bool)
    col = {"town": "town_code", "community": "community_code", "grid": "grid_code"}[role.scope_level]
    return grids[col].astype(str).isin(role.scope_codes).to_numpy()


def record_scope(role: Role, t: Twin) -> frozenset[str]:
    """Grid codes whose records ``role`` may see (empty for roles that never see records). Cached per twin."""
    if not role.can_see_records:
        return frozenset()
    key = ("access.scope", role.scope_level, role.scope_codes)
    cache = t.cache.setdefault("access.scopes", {})
    hit = cache.get(key)
    if hit is not None and hit[0] is t.grids:
        return hit[1]
    codes = t.grids["grid_code"].astype(str).to_numpy()
    scope = frozenset(codes[record_scope_mask(role, t)])
    cache[key] = (t.grids, scope)
    return scope


def in_record_scope(role: Role, t: Twin, grid_code: str) -> bool:
    """True when ``role`` may see the records of ``grid_code``."""
    return str(grid_code) in record_scope(role, t)


def _is_scoped(role: Role) -> bool:
    """Roles whose record scope is less than the whole district (the ``deny`` policy applies to them)."""
    return role.can_see_records and role.scope_level != "district"


def check_outside(role: Role, policy: AccessPolicy, outside_grids: Sequence[str], *, what: str) -> None:
    """Raise :class:`PermissionDenied` under the ``deny`` policy when ``outside_grids`` is not empty."""
    if policy.outside == "deny" and _is_scoped(role) and len(outside_grids):
        shown = ", ".join(sorted(outside_grids)[:5]) + (" …" if len(outside_grids) > 5 else "")
        raise PermissionDenied(
            f"{what} reaches {len(outside_grids)} grid(s) outside the scope of {role.user!r} "
            f"({role.scope_level} {', '.join(role.scope_codes)}): {shown}. The policy denies access outside "
            "the scope; draw the area inside your scope.")


def check_page(page: object, page_size: object) -> None:
    """Raise :class:`ValidationError` unless ``page`` ≥ 0 and 1 ≤ ``page_size`` ≤ :data:`MAX_PAGE_SIZE` (ints)."""
    if isinstance(page, bool) or not isinstance(page, (int, np.integer)) or page < 0:
        raise ValidationError(f"page must be an integer ≥ 0, got {page!r}.")
    if (isinstance(page_size, bool) or not isinstance(page_size, (int, np.integer))
            or not 1 <= page_size <= MAX_PAGE_SIZE):
        raise ValidationError(f"page_size must be an integer from 1 to {MAX_PAGE_SIZE}, got {page_size!r}; "
                              f"ask for the next page instead.")


# --- area results split by scope -----------------------------------------------------------------------------

@dataclass(frozen=True)
class AreaCounts:
    """Exact, role-independent counts inside one area — the input of :func:`scope_area`.

    ``values`` (len(grid_codes) × len(keys), int64): one row per grid the area touches (``grid_codes``), one
    column per key — the count keys (:data:`twin.model.COUNT_KEYS`) and, when known, ``use_<use>`` (buildings
    per use) and ``credit_<colour>`` (businesses per credit colour). ``unassigned``: the records inside the area
    whose cell belongs to no grid. ``cells`` (uint64 H3) and ``cell_grids`` (grid code per cell, ``""`` for
    none): the cells the area touches; ``cell_rows``: their positions in ``t.cells``, from which the outside
    part is answered in whole fixed units (:func:`publish_groups`).
    """

    grid_codes: np.ndarray
    keys: tuple[str, ...]
    values: np.ndarray
    unassigned: np.ndarray | None = None
    cells: np.ndarray | None = None
    cell_grids: np.ndarray | None = None
    cell_rows: np.ndarray | None = None


class SupportsAreaCounts(Protocol):
    """Anything that can give the exact :class:`AreaCounts` of an area (an unsuppressed ``AreaSummary``)."""

    def area_counts(self) -> AreaCounts: ...


@dataclass
class ScopedArea:
    """What one role may see of an area (:func:`scope_area`); ``None`` values are suppressed.

    ``inside_mask`` (over :attr:`AreaCounts.grid_codes`): grids in the record scope, whose rows
    ``inside_by_grid`` and sum ``inside_counts`` are exact. ``outside``: ``None`` when nothing lies outside the
    record scope, else ``n_grids``, suppressed ``counts`` and the ``suppressed`` keys. ``totals``,
    ``buildings_by_use``, ``businesses_by_credit``: inside + outside where the outside part is published.
    ``cells``: touched cells of grids in the record scope (all for roles that see everything).
    """

    k: int
    exact: bool
    inside_mask: np.ndarray
    inside_counts: dict[str, int]
    inside_by_grid: dict[str, dict[str, int]]
    outside: dict[str, Any] | None
    totals: dict[str, int | None]
    buildings_by_use: dict[str, int | None] = field(default_factory=dict)
    businesses_by_credit: dict[str, int | None] = field(default_factory=dict)
    cells: np.ndarray | None = None

    @property
    def inside_grids(self) -> list[str]:
        return sorted(self.inside_by_grid)

    @property
    def suppressed(self) -> list[str]:
        """Names of the suppressed values: ``totals.<key>``, ``buildings_by_use.<use>``,
        ``businesses_by_credit.<colour>``."""
        return ([f"totals.{k}" for k, v in self.totals.items() if v is None]
                + [f"buildings_by_use.{u}" for u, v in self.buildings_by_use.items() if v is None]
                + [f"businesses_by_credit.{c}" for c, v in self.businesses_by_credit.items() if v is None])

    def to_dict(self, *, include_cells: bool = False) -> dict[str, Any]:
        """The JSON-able answer of ``POST /area/summary`` (without the area's km², warnings and version)."""
        out: dict[str, Any] = {
            "k": self.k,
            "inside_scope": {"grids": self.inside_grids, "counts": dict(self.inside_counts),
                             "by_grid": self.inside_by_grid},
            "outside_scope": self.outside,
            "totals": dict(self.totals),
            "buildings_by_use": dict(self.buildings_by_use),
            "businesses_by_credit": dict(self.businesses_by_credit),
            "suppressed": self.suppressed,
        }
        if not self.exact:
            for name in ("buildings_by_use", "businesses_by_credit"):
                out[name + "_suppressed"] = [p for p, v in getattr(self, name).items() if v is None]
        if include_cells:
            cells = self.cells if self.cells is not None else np.zeros(0, dtype=np.uint64)
            out["cells"] = [format(int(c), "x") for c in cells]
        return out


def _in_scope(codes: np.ndarray, role: Role, t: Twin) -> np.ndarray:
    """Which grid ``codes`` lie in ``role``'s record scope (unknown codes: no)."""
    if sees_everything(role):
        return np.ones(len(codes), dtype=bool)
    pos = pd.Index(t.grids["grid_code"].astype(str)).get_indexer(np.asarray(codes, dtype=str))
    return (pos >= 0) & record_scope_mask(role, t)[np.maximum(pos, 0)]


def scope_area(counts: AreaCounts, role: Role, t: Twin, policy: AccessPolicy = DEFAULT_POLICY, *,
               what: str = "the area") -> ScopedArea:
    """What ``role`` may see of an area's exact ``counts`` — the one disclosure engine for area queries.

    Rows of grids in the record scope are exact. The rest of the area is answered from whole fixed units (the
    built partition's grids, :func:`base_units`): every unit whose out-of-scope cells the area touches more
    than half of (:func:`counted_units`) adds its *whole* out-of-scope counts, each unit published on its own
    (:func:`publish`: suppressed below ``k``, else rounded to a multiple of ``k``) and summed
    (:func:`published_sum`) into one outside vector — count keys, ``use_*`` and ``credit_*`` together. Units
    touched but not counted are left out; when they are, a sum of 0 is suppressed rather than shown as 0. Totals and the use/credit breakdowns are inside + outside, ``None`` where the outside is suppressed.
    Every outside number is a sum over one fixed table of rounded grid counts, whatever the area: two areas
    (or an area and a dossier, or two versions) differ outside the scope by a multiple of ``k``.

    Raises
    ------
    PermissionDenied
        Under ``policy.outside == "deny"`` when the area reaches outside a scoped role's record scope.
    """
    k = policy.k_for(role)
    codes = np.asarray(counts.grid_codes, dtype=str)
    keys = tuple(counts.keys)
    vals = np.asarray(counts.values, dtype=np.int64).reshape(len(codes), len(keys))
    everything = sees_everything(role)
    inside_mask = _in_scope(codes, role, t)
    check_outside(role, policy, list(codes[~inside_mask]), what=what)
    extra = np.zeros(len(keys), dtype=np.int64) if counts.unassigned is None else np.asarray(counts.unassigned)
    inside = vals[inside_mask].sum(axis=0) + (extra if everything else 0)
    has_outside = bool((~inside_mask).any()) or (not everything and bool(extra.any()))
    ins = dict(zip(keys, inside.tolist()))
    count_keys = [c for c in keys if not c.startswith(("use_", "credit_"))]
    cj = [keys.index(c) for c in count_keys]
    by_grid = {str(c): dict(zip(count_keys, row[cj].tolist())) for c, row in zip(codes[inside_mask],
                                                                                   vals[inside_mask])}
    pub: dict[str, int | None]
    if has_outside:
        out_rows = ~inside_mask
        if counts.cell_rows is not None:
            out_pub, units = _outside_of(t, role, k, counts.cell_rows, keys)
        else:  # no cells given (callers that only need the deny check): the touched parts, as units
            out_pub = published_sum(publish(vals[out_rows], k).reshape(-1, len(keys)))
            units = sorted(str(c) for c in codes[out_rows])
        pub = {c: _as_int_or_none(v) for c, v in zip(keys, out_pub.tolist())}
        outside_block: dict[str, Any] | None = {
            "n_grids": len(units), "n_grids_touched": int(out_rows.sum()), "grids": units, "rounded_to": k,
            "counts": {c: pub[c] for c in count_keys},
            "suppressed": [c for c in count_keys if pub[c] is None]}
    else:
        pub, outside_block = {c: 0 for c in keys}, None

    def margin(key: str) -> int | None:
        p = pub[key]
        return None if p is None else ins[key] + p

    cells = None
    if counts.cells is not None:
        cells = np.asarray(counts.cells, dtype=np.uint64)
        if not everything and counts.cell_grids is not None:
            cells = cells[_in_scope(np.asarray(counts.cell_grids, dtype=str), role, t)]
    return ScopedArea(
        k, not has_outside, inside_mask, {c: ins[c] for c in count_keys}, by_grid, outside_block,
        {c: margin(c) for c in count_keys},
        {c[4:]: margin(c) for c in keys if c.startswith("use_")},
        {c[7:]: margin(c) for c in keys if c.startswith("credit_")}, cells)


def split_by_scope(by_grid: pd.DataFrame, role: Role, t: Twin, policy: AccessPolicy, *,
                   what: str = "the area") -> dict[str, Any]:
    """Split per-grid counts of an area into the caller's scope (exact) and one suppressed outside aggregate.

    Parameters
    ----------
    by_grid : exact counts inside the area, one row per grid the area touches (index = grid code), one
        integer column per count key (may be empty: then only the ``deny`` check is done).
    role, t, policy : the caller, the twin (for the grid → scope lookup) and the policy.

    Returns
    -------
    dict with ``inside_scope``, ``outside_scope``, ``totals`` and ``k`` as in :meth:`ScopedArea.to_dict`.
    """
    keys = tuple(str(c) for c in by_grid.columns)
    num = by_grid.to_numpy(dtype=np.int64) if len(by_grid) else np.zeros((0, len(keys)), dtype=np.int64)
    counts = AreaCounts(np.asarray(by_grid.index.to_numpy(), dtype=str), keys, num)
    out = scope_area(counts, role, t, policy, what=what).to_dict()
    for name in ("buildings_by_use", "businesses_by_credit", "buildings_by_use_suppressed",
                 "businesses_by_credit_suppressed"):
        out.pop(name, None)
    return out


def scoped_summary(t: Twin, raw: SupportsAreaCounts, role: Role, policy: AccessPolicy, *,
                   include_cells: bool = False) -> dict[str, Any]:
    """What ``role`` may see of an unsuppressed area summary ``raw`` (an :class:`twin.query.summary.AreaSummary`
    from the ``DISTRICT`` role): :meth:`ScopedArea.to_dict` of :func:`scope_area` of its counts — the same
    answer :func:`twin.summarize_area` gives the role.
    """
    return scope_area(raw.area_counts(), role, t, policy).to_dict(include_cells=include_cells)


# --- dossier and edits ---------------------------------------------------------------------------------------

def scoped_dossier(dossier: Mapping[str, Any], role: Role, t: Twin, policy: AccessPolicy) -> dict[str, Any]:
    """What ``role`` may see of a grid dossier (:func:`twin.query.dossier.grid_dossier`).

    In the record scope: everything (workers with names). Outside: PermissionDenied under ``deny``; else the
    grid's identity and outline, no workers, and its counts answered from whole fixed units like the outside
    part of an area (the built grids it covers more than half of, each suppressed below ``k`` or rounded to a
    multiple of ``k``): the same numbers at every partition version that leaves the grid mostly unchanged.
    """
    code = str(dossier["grid"]["grid_code"])
    k = policy.k_for(role)
    if in_record_scope(role, t, code):
        return {**dossier, "in_scope": True, "suppressed": [], "k": k}
    check_outside(role, policy, [code], what=f"grid {code}")
    keys = list(dossier["counts"])
    rows = np.flatnonzero(t.cells["grid_code"].astype(str).to_numpy() == code)
    pub, _ = _outside_of(t, role, k, rows, keys)
    values: dict[str, int | None] = {c: _as_int_or_none(v) for c, v in zip(keys, pub.tolist())}
    sup = Suppressed(values, sorted(c for c, v in values.items() if v is None))
    return {"grid": dossier["grid"], "geometry": dossier["geometry"], "counts": sup.values,
            "suppressed": sup.suppressed, "workers": None, "in_scope": False, "k": k}


def worker_summary(board: pd.DataFrame, role: Role, t: Twin, policy: AccessPolicy = DEFAULT_POLICY, *,
                   grid_code: str | None = None) -> dict[str, int | None]:
    """Workers by status (``online``/``offline``) of a worker board (``grid_code``, ``status``) as ``role`` may
    see them: exact for grids in the record scope. Outside it the units are whole towns (a grid holds one to
    three workers, always below ``k``): each town's out-of-scope workers are published on their own
    (:func:`publish`: suppressed below ``k``, else rounded to a multiple of ``k``) and summed
    (:func:`published_sum`). A board filtered to one outside grid (``grid_code``) covers no whole unit: its
    counts are suppressed."""
    online = (board["status"].astype(str) == "online").to_numpy()
    if sees_everything(role):
        return {"online": int(online.sum()), "offline": int((~online).sum())}
    k = policy.k_for(role)
    codes = board["grid_code"].astype(str).to_numpy()
    inside = np.isin(codes, np.asarray(sorted(record_scope(role, t)), dtype=str))
    partial = grid_code is not None and not in_record_scope(role, t, grid_code)
    g = t.grids.set_index(t.grids["grid_code"].astype(str))["town_code"].astype(str)
    town = pd.Series(codes).map(g).fillna("").to_numpy(dtype=str)
    out: dict[str, int | None] = {}
    for name, m in (("online", online), ("offline", ~online)):
        if partial:
            out[name] = None if (m & ~inside).any() or not (m & inside).any() else int((m & inside).sum())
            continue
        units, per_unit = np.unique(town[m & ~inside], return_counts=True)
        pub = int(published_sum(publish(per_unit, k))) if len(units) else 0
        out[name] = None if pub < 0 else int((m & inside).sum()) + pub
    return out


def check_edit(role: Role, t: Twin, grid_codes: Iterable[str]) -> None:
    """Raise :class:`PermissionDenied` unless ``role`` may edit every grid in ``grid_codes``.

    Editing needs the editor right (``role.can_edit``: district, town and community roles by default, never
    analysts or grid workers) and each grid inside the role's scope (town/community editors edit their own).
    """
    if not role.can_edit:
        raise PermissionDenied(f"user {role.user!r} (role {role.name}) has no editor right; grid edits need a "
                               "district, town or community editor.")
    if role.scope_level == "district":
        return
    codes = t.grids["grid_code"].astype(str).to_numpy()
    scope = set(codes[grids_in_scope(role, t.grids)])
    outside = sorted({str(c) for c in grid_codes} - scope)
    if outside:
        raise PermissionDenied(f"user {role.user!r} may edit grids of {role.scope_level} "
                               f"{', '.join(role.scope_codes)} only; outside: {', '.join(outside[:5])}.")

