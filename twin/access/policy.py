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

import functools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import numpy as np
import pandas as pd

from twin.access.roles import DEFAULT_K, Role, grids_in_scope
from twin.access.scope import (
    grid_scope_mask,
    in_record_scope,
    is_scoped,
    record_scope,
    record_scope_mask,
    sees_everything,
)
from twin.access.suppression import ADDITIVE_GROUPS, NESTED_PAIRS, Suppressed, suppress_cells, suppress_counts
from twin.access.units import (
    OVERLAY_BASE_RES,
    as_int_or_none,
    base_units,
    closed_cells,
    counted_units,
    outside_of,
    publish,
    publish_counts,
    publish_groups,
    published_sum,
    register_cell_values,
    unit_table,
)
from twin.errors import PermissionDenied, ValidationError
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


def check_outside(role: Role, policy: AccessPolicy, outside_grids: Sequence[str], *, what: str) -> None:
    """Raise :class:`PermissionDenied` under the ``deny`` policy when ``outside_grids`` is not empty."""
    if policy.outside == "deny" and is_scoped(role) and len(outside_grids):
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
    count_keys, cj, use_keys, credit_keys = _key_groups(keys)
    by_grid = {c: dict(zip(count_keys, row)) for c, row in zip(codes[inside_mask].tolist(),
                                                                 vals[inside_mask][:, cj].tolist())}
    pub: dict[str, int | None]
    if has_outside:
        out_rows = ~inside_mask
        if counts.cell_rows is not None:
            out_pub, units = outside_of(t, role, k, counts.cell_rows, keys)
        else:  # no cells given (callers that only need the deny check): the touched parts, as units
            out_pub = published_sum(publish(vals[out_rows], k).reshape(-1, len(keys)))
            units = sorted(str(c) for c in codes[out_rows])
        pub = {c: as_int_or_none(v) for c, v in zip(keys, out_pub.tolist())}
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
        {c[4:]: margin(c) for c in use_keys},
        {c[7:]: margin(c) for c in credit_keys}, cells)


@functools.lru_cache(maxsize=64)
def _key_groups(keys: tuple[str, ...]) -> tuple[list[str], list[int], list[str], list[str]]:
    """The count keys of an index's columns (neither ``use_*`` nor ``credit_*``) and their positions, and the
    ``use_*`` and ``credit_*`` keys (a pure function of the column tuple: cached, it runs on every summary)."""
    count_keys = [c for c in keys if not c.startswith(("use_", "credit_"))]
    return (count_keys, [keys.index(c) for c in count_keys], [c for c in keys if c.startswith("use_")],
            [c for c in keys if c.startswith("credit_")])


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
    pub, _ = outside_of(t, role, k, rows, keys)
    values: dict[str, int | None] = {c: as_int_or_none(v) for c, v in zip(keys, pub.tolist())}
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

