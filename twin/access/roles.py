"""Who is asking: roles and area scopes (分权分域) shared by queries, the app and the service.

A :class:`Role` says which part of the district a caller owns (``scope_level`` + ``scope_codes``) and whether
they may see individual records. Aggregates outside the caller's scope — and all aggregates for roles that may
not see individuals — have counts below ``k`` suppressed (shown as suppressed, never as 0).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from twin.errors import PermissionDenied, ValidationError

__all__ = ["Role", "ScopeLevel", "DISTRICT", "ANALYST", "DEFAULT_K", "make_role", "grids_in_scope"]

ScopeLevel = Literal["district", "town", "community", "grid"]
DEFAULT_K = 5
ROLE_NAMES = ("district", "town", "community", "grid_worker", "analyst")


@dataclass(frozen=True)
class Role:
    """A caller's role. ``scope_codes`` are town/community/grid codes for those levels (empty for district)."""

    name: str
    scope_level: ScopeLevel = "district"
    scope_codes: tuple[str, ...] = ()
    can_see_records: bool = True
    can_edit: bool = False
    user: str = "anonymous"
    k: int = DEFAULT_K

    @property
    def suppresses(self) -> bool:
        """True when aggregates shown to this role suppress small counts everywhere."""
        return not self.can_see_records


DISTRICT = Role("district", "district", (), can_see_records=True, can_edit=True, user="district-admin")
ANALYST = Role("analyst", "district", (), can_see_records=False, can_edit=False, user="analyst")


def make_role(name: str, scope_codes: tuple[str, ...] | list[str] = (), *, user: str = "anonymous",
              can_edit: bool | None = None, k: int = DEFAULT_K) -> Role:
    """Build a role by name: ``district``, ``town``, ``community``, ``grid_worker`` or ``analyst``."""
    levels: dict[str, ScopeLevel] = {"district": "district", "town": "town", "community": "community",
                                     "grid_worker": "grid", "analyst": "district"}
    if name not in levels:
        raise ValidationError(f"unknown role {name!r}; use one of {', '.join(ROLE_NAMES)}.")
    codes = tuple(str(c) for c in scope_codes)
    if levels[name] != "district" and not codes:
        raise ValidationError(f"role {name!r} needs scope codes (which {levels[name]}s it owns).")
    if k < 1:
        raise ValidationError(f"suppression threshold k must be ≥ 1, got {k}.")
    return Role(name, levels[name], codes, can_see_records=name != "analyst",
                can_edit=(name in ("district", "town", "community")) if can_edit is None else can_edit,
                user=user, k=k)


def grids_in_scope(role: Role, grids: pd.DataFrame) -> np.ndarray:
    """Boolean mask over ``grids`` rows (needs grid_code, community_code, town_code) inside the role's scope."""
    if role.scope_level == "district":
        return np.ones(len(grids), dtype=bool)
    col = {"town": "town_code", "community": "community_code", "grid": "grid_code"}[role.scope_level]
    mask = grids[col].astype(str).isin(role.scope_codes).to_numpy()
    if not mask.any():
        raise PermissionDenied(f"role {role.name!r} scope {list(role.scope_codes)} matches no {role.scope_level}.")
    return mask
