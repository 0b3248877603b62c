"""Scope policy (分权分域, 可用不可见): what a caller may see of a query result.

Rules (the service applies them to every response; see ``docs/service.md``):

* **Record scope.** A role's *record scope* is the set of grids inside its scope (``twin.access.roles.grids_in_scope``)
  when the role may see records, and empty for the read-only ``analyst``. Record-level data (residents,
  businesses, buildings with their people, grid workers' names) is returned only for grids in the record scope.
* **Outside the scope** an area query, a dossier or a record list either
  - ``outside="aggregate"`` (default): returns one aggregate for the outside part with small counts suppressed, or
  - ``outside="deny"``: raises :class:`twin.errors.PermissionDenied` (HTTP 403) naming the grids outside.
  Analysts never see records and always get suppressed aggregates (``deny`` does not apply to them: aggregates
  are their whole use). Record lists outside the record scope are always refused.
* **Suppression** (:func:`suppress_counts`): a published count is 0 or ≥ ``k`` (default 5, the larger of the
  policy's and the role's ``k``); a suppressed count is ``None`` and listed in ``suppressed``, never shown as 0.
  Complementary suppression covers counts that add up (residents = male + female = the three age bands;
  businesses = the three credit colours; buildings = the uses) and nested counts (60+ ⊇ 70+ ⊇ 80+, residents ⊇
  disabled / low-income, women ⊇ pregnant), so that no small count can be recovered by subtraction within one
  response. Totals of an area that reaches outside the scope are published only where the outside part is.
* **Editing** grids needs ``role.can_edit`` and every touched grid inside the role's scope (:func:`check_edit`).

Known limit: differencing *across* queries (area A, then A plus one building) is not prevented; the audit log
records every area so such probing is traceable.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from twin.access.roles import DEFAULT_K, Role, grids_in_scope
from twin.errors import PermissionDenied, ValidationError
from twin.model import COUNT_KEYS, Twin

__all__ = [
    "AccessPolicy",
    "Suppressed",
    "ADDITIVE_GROUPS",
    "NESTED_PAIRS",
    "record_scope",
    "in_record_scope",
    "suppress_counts",
    "split_by_scope",
    "scoped_dossier",
    "scoped_summary",
    "check_edit",
    "check_outside",
]

OutsidePolicy = Literal["aggregate", "deny"]
_MATRICES: dict[int, tuple[weakref.ref, np.ndarray, np.ndarray]] = {}

ADDITIVE_GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("residents", ("residents_male", "residents_female")),
    ("residents", ("age_0_14", "age_15_59", "age_60_plus")),
    ("businesses", ("credit_green", "credit_yellow", "credit_red")),
)
"""``total = sum(parts)`` relations used for complementary suppression (``use_*`` keys sum to ``buildings``)."""

NESTED_PAIRS: tuple[tuple[str, str], ...] = (
    ("age_60_plus", "elderly_70"),
    ("elderly_70", "elderly_80"),
    ("residents", "disabled"),
    ("residents", "low_income"),
    ("residents_female", "pregnant"),
)
"""``(big, small)`` with ``small ⊆ big``: ``big − small`` must not be a small count either."""


@dataclass(frozen=True)
class AccessPolicy:
    """What the service does with the parts of a query outside the caller's scope.

    ``outside``: ``"aggregate"`` (suppressed aggregates) or ``"deny"`` (403). ``k``: smallest published count.
    """

    outside: OutsidePolicy = "aggregate"
    k: int = DEFAULT_K

    def __post_init__(self) -> None:
        if self.outside not in ("aggregate", "deny"):
            raise ValidationError(f"outside policy must be 'aggregate' or 'deny', got {self.outside!r}.")
        if int(self.k) < 1:
            raise ValidationError(f"suppression threshold k must be ≥ 1, got {self.k}.")

    def k_for(self, role: Role) -> int:
        return max(int(self.k), int(role.k))


@dataclass
class Suppressed:
    """Counts after suppression: ``values`` (int or ``None`` = suppressed) and the ``suppressed`` keys."""

    values: dict[str, int | None]
    suppressed: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"counts": self.values, "suppressed": self.suppressed}


# --- scope ---------------------------------------------------------------------------------------------------

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
    scope = frozenset(codes[grids_in_scope(role, t.grids)])
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


# --- suppression ---------------------------------------------------------------------------------------------

def _groups(keys: Iterable[str]) -> list[tuple[str, tuple[str, ...]]]:
    keys = set(keys)
    groups = [(tot, parts) for tot, parts in ADDITIVE_GROUPS if tot in keys and all(p in keys for p in parts)]
    uses = tuple(sorted(k for k in keys if k.startswith("use_")))
    if "buildings" in keys and uses:
        groups.append(("buildings", uses))
    return groups


def suppress_counts(counts: Mapping[str, int], k: int = DEFAULT_K) -> Suppressed:
    """Suppress small counts (1 … k−1) and the counts that would reveal them by subtraction.

    Parameters
    ----------
    counts : non-negative integer counts keyed by name (``residents``, ``disabled``, ``use_residential`` …).
    k : smallest count that may be published.

    Returns
    -------
    Suppressed : the same keys; a suppressed value is ``None``. Guarantees, for every additive group
    (:data:`ADDITIVE_GROUPS`) and nested pair (:data:`NESTED_PAIRS`) present: no member is the only suppressed
    one, and no sum or difference of suppressed members derivable from published ones is in 1 … k−1.
    """
    vals = {str(key): int(v) for key, v in counts.items()}
    bad = {key: v for key, v in vals.items() if v < 0}
    if bad:
        raise ValidationError(f"counts must be ≥ 0, got {bad}.")
    hidden = {key for key, v in vals.items() if 0 < v < k}
    groups = _groups(vals)
    pairs = [(a, b) for a, b in NESTED_PAIRS if a in vals and b in vals]

    def hide_smallest(candidates: Iterable[str]) -> bool:
        pool = [c for c in candidates if c not in hidden and vals[c] > 0]
        if not pool:
            return False
        hidden.add(min(pool, key=lambda c: (vals[c], c)))
        return True

    changed = True
    while changed:
        changed = False
        for tot, parts in groups:
            members = (tot, *parts)
            hid = [m for m in members if m in hidden]
            if not hid:
                continue
            hidden_parts_sum = sum(vals[p] for p in parts if p in hidden)
            lone = len(hid) == 1 and vals[hid[0]] > 0
            small_sum = tot not in hidden and 0 < hidden_parts_sum < k
            if lone or small_sum:
                changed = hide_smallest(parts) or hide_smallest((tot,)) or changed
        for big, small in pairs:
            diff = vals[big] - vals[small]
            if big not in hidden and small not in hidden and 0 < diff < k:
                hidden.add(small)
                changed = True
    values: dict[str, int | None] = {key: (None if key in hidden else v) for key, v in vals.items()}
    return Suppressed(values, sorted(hidden))


# --- area results split by scope -----------------------------------------------------------------------------

def split_by_scope(by_grid: pd.DataFrame, role: Role, t: Twin, policy: AccessPolicy, *,
                   what: str = "the area") -> dict[str, Any]:
    """Split per-grid counts of an area into the caller's scope (exact) and one suppressed outside aggregate.

    Parameters
    ----------
    by_grid : exact counts inside the area, one row per grid the area touches (index = grid code), one
        integer column per count key.
    role, t, policy : the caller, the twin (for the grid → scope lookup) and the policy.

    Returns
    -------
    dict with ``inside_scope`` (``counts``: exact sums over grids in the record scope; ``by_grid``: their rows;
    ``grids``: their codes), ``outside_scope`` (``None`` when the area holds nothing outside, else ``counts``
    with suppression, ``suppressed``, ``n_grids``) and ``totals`` (inside + outside where the outside value is
    published, else ``None``), plus ``k``.
    """
    keys = [str(c) for c in by_grid.columns]
    num = by_grid.to_numpy(dtype=np.int64) if len(by_grid) else np.zeros((0, len(keys)), dtype=np.int64)
    return _split(np.asarray(by_grid.index.to_numpy(), dtype=str), keys, num, role, t, policy, what=what)


def _split(codes: np.ndarray, keys: list[str], num: np.ndarray, role: Role, t: Twin, policy: AccessPolicy, *,
           what: str) -> dict[str, Any]:
    k = policy.k_for(role)
    scope = record_scope(role, t)
    inside_mask = np.fromiter((c in scope for c in codes), dtype=bool, count=len(codes))
    outside_codes = list(codes[~inside_mask])
    check_outside(role, policy, outside_codes, what=what)
    inside = dict(zip(keys, (int(v) for v in num[inside_mask].sum(axis=0))))
    outside_raw = dict(zip(keys, (int(v) for v in num[~inside_mask].sum(axis=0))))
    inside_rows = {str(c): dict(zip(keys, (int(v) for v in row))) for c, row in zip(codes[inside_mask],
                                                                                     num[inside_mask])}
    out: dict[str, Any] = {"k": k, "inside_scope": {"grids": sorted(inside_rows), "counts": inside,
                                                    "by_grid": inside_rows}}
    if not outside_codes:
        out["outside_scope"] = None
        out["totals"] = dict(inside)
        return out
    sup = suppress_counts(outside_raw, k)
    out["outside_scope"] = {"n_grids": len(outside_codes), "counts": sup.values, "suppressed": sup.suppressed}
    out["totals"] = {key: (None if sup.values[key] is None else inside[key] + outside_raw[key]) for key in keys}
    return out


def scoped_summary(t: Twin, raw: Any, role: Role, policy: AccessPolicy, *,
                   include_cells: bool = False) -> dict[str, Any]:
    """What ``role`` may see of an unsuppressed area summary ``raw`` (:func:`twin.query.summary.summarize_parsed` with
    the ``DISTRICT`` role): :func:`split_by_scope` of its per-grid counts plus ``buildings_by_use`` and
    ``businesses_by_credit`` — exact when the area lies inside the record scope, else suppressed like an outside
    aggregate (``<name>_suppressed`` lists the hidden parts) — and, with ``include_cells``, the touched H3 cells
    (hex) of grids in the record scope only.
    """
    keys = list(COUNT_KEYS)
    tb = (getattr(raw, "tables", None) or {}).get("by_grid")
    if tb is not None and len(tb.get("grid_code", ())):  # the raw columns: no DataFrame to build (≈ 4 ms saved)
        codes = np.asarray(tb["grid_code"], dtype=str)
        num = np.column_stack([_int_column(tb[c]) for c in keys])
        out = _split(codes, keys, num, role, t, policy, what="the area")
        return _finish_scoped(t, raw, role, policy, out, include_cells=include_cells)
    bg = raw.by_grid
    hit = _MATRICES.get(id(bg))
    if hit is not None and hit[0]() is bg:
        codes, num = hit[1], hit[2]
    elif len(bg):
        num = np.column_stack([np.asarray(bg[c].array.to_numpy(dtype=np.int64, na_value=0)) for c in keys])
        codes = np.asarray(bg["grid_code"].to_numpy(), dtype=str)
        if len(_MATRICES) > 64:
            _MATRICES.clear()
        _MATRICES[id(bg)] = (weakref.ref(bg), codes, num)  # one summary is often scoped for several callers
    else:
        num, codes = np.zeros((0, len(keys)), dtype=np.int64), np.zeros(0, dtype=str)
    out = _split(codes, keys, num, role, t, policy, what="the area")
    return _finish_scoped(t, raw, role, policy, out, include_cells=include_cells)


def _int_column(v: Any) -> np.ndarray:
    if isinstance(v, tuple):  # (values, mask): masked = missing, counted as 0
        vals, mask = np.asarray(v[0]), np.asarray(v[1], dtype=bool)
        return np.where(mask, 0, vals).astype(np.int64)
    return np.asarray(v, dtype=np.int64)


def _finish_scoped(t: Twin, raw: Any, role: Role, policy: AccessPolicy, out: dict[str, Any], *,
                   include_cells: bool) -> dict[str, Any]:
    k = out["k"]
    exact = out["outside_scope"] is None and role.can_see_records
    for name, total_key, prefix, parts in (("buildings_by_use", "buildings", "use_", raw.buildings_by_use),
                                           ("businesses_by_credit", "businesses", "credit_",
                                            raw.businesses_by_credit)):
        vals = {str(p): int(v) for p, v in parts.items()}
        if exact:
            out[name] = vals
            continue
        # Mixed inside/outside (or an analyst): publish like an outside aggregate; total = sum of the parts.
        sup = suppress_counts({total_key: int(raw.totals[total_key]),
                               **{prefix + p: v for p, v in vals.items()}}, k)
        out[name] = {p: sup.values[prefix + p] for p in vals}
        out[name + "_suppressed"] = [s[len(prefix):] for s in sup.suppressed if s.startswith(prefix)]
    if include_cells:
        scope = record_scope(role, t)
        cells = np.asarray(raw.cells, dtype=np.uint64)
        codes = t.grid_of_cells(cells)
        keep = np.fromiter((c in scope for c in codes), dtype=bool, count=len(codes))
        out["cells"] = [format(int(c), "x") for c in cells[keep]]
    return out


# --- dossier and edits ---------------------------------------------------------------------------------------

def scoped_dossier(dossier: Mapping[str, Any], role: Role, t: Twin, policy: AccessPolicy) -> dict[str, Any]:
    """What ``role`` may see of a raw :func:`twin.query.dossier.grid_dossier`.

    In the record scope: everything (workers with names). Outside: PermissionDenied under ``deny``; else the
    grid's identity and outline, suppressed counts, and no worker names.
    """
    code = str(dossier["grid"]["grid_code"])
    if in_record_scope(role, t, code):
        return {**dossier, "in_scope": True, "suppressed": [], "k": policy.k_for(role)}
    check_outside(role, policy, [code], what=f"grid {code}")
    sup = suppress_counts(dossier["counts"], policy.k_for(role))
    return {"grid": dossier["grid"], "geometry": dossier["geometry"], "counts": sup.values,
            "suppressed": sup.suppressed, "workers": None, "in_scope": False, "k": policy.k_for(role)}


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
