"""Record scope (分权分域): which grids and cells a role sees exactly — everything else goes through the fixed unit
table (:mod:`twin.access.units`) and the policy (:mod:`twin.access.policy`)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from twin.access.roles import Role, grids_in_scope
from twin.model import Twin

__all__ = ["sees_everything", "is_scoped", "record_scope_mask", "grid_scope_mask", "record_scope", "in_record_scope"]


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


def is_scoped(role: Role) -> bool:
    """Roles whose record scope is less than the whole district (the ``deny`` policy applies to them)."""
    return role.can_see_records and role.scope_level != "district"
