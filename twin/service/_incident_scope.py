"""Scope of incidents (分权分域) and client times, shared by the incident, worker and inspection routes.

An incident belongs to the grid, community and town stored on it at dispatch (the partition then in force); an
undispatched case is located in the current partition. Grid workers see their grids' incidents, community/town
users their units', the district all. Out-of-scope incidents are answered like unknown ids (404, not revealed).
Times are ISO-8601; naive = CST (UTC+08:00).
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from twin.access.roles import Role
from twin.errors import NotFoundError, PermissionDenied, ValidationError
from twin.incidents.dispatch import locate_points
from twin.incidents.lifecycle import CST, Incident
from twin.incidents.store import IncidentStore
from twin.model import Twin
from twin.service._params import client_time

__all__ = ["LEVEL_COL", "now", "when", "unit_codes", "in_scope", "get_scoped", "scope_text", "scoped_frame",
           "need_actor"]

LEVEL_COL = {"grid": "grid_code", "community": "community_code", "town": "town_code"}
_UNIT_COLS = ("grid_code", "community_code", "town_code")
_FUTURE_SLACK = dt.timedelta(minutes=5)


def now() -> dt.datetime:
    """The current time in CST."""
    return dt.datetime.now(CST)


def when(value: str | None, what: str) -> dt.datetime:
    """Client time (ISO; naive = CST) or now; never more than a few minutes in the future."""
    if value is None or not str(value).strip():
        return now()
    t = client_time(value, what=what)
    if t > now() + _FUTURE_SLACK:
        raise ValidationError(f"{what} {value!r} is in the future (server time {now().isoformat()}).")
    return t


def unit_codes(t: Twin, inc: Incident) -> dict[str, str]:
    """Grid/community/town of a case: stored at dispatch, else located in the current partition."""
    if inc.grid_code:
        return {"grid_code": inc.grid_code, "community_code": inc.community_code, "town_code": inc.town_code}
    row = locate_points(t, np.array([inc.lng]), np.array([inc.lat])).iloc[0]
    return {k: str(row[k]) for k in _UNIT_COLS}


def in_scope(role: Role, t: Twin, inc: Incident) -> bool:
    """Whether ``inc`` is in ``role``'s units."""
    if role.scope_level == "district":
        return True
    return unit_codes(t, inc)[LEVEL_COL[role.scope_level]] in role.scope_codes


def scope_text(role: Role) -> str:
    """``district`` or e.g. ``community 440604010001`` (for messages)."""
    return "district" if role.scope_level == "district" else f"{role.scope_level} {', '.join(role.scope_codes)}"


def get_scoped(istore: IncidentStore, role: Role, t: Twin, incident_id: int) -> Incident:
    """The incident, or :class:`NotFoundError` both for unknown ids and for cases outside the caller's scope."""
    try:
        inc: Incident | None = istore.get(incident_id)
    except NotFoundError:
        inc = None
    if inc is None or not in_scope(role, t, inc):
        raise NotFoundError(f"no incident {incident_id} in your scope ({scope_text(role)}).")
    return inc


def scoped_frame(istore: IncidentStore, role: Role, t: Twin, *, grid_codes: list[str] | None = None,
                 states: list[str] | None = None, categories: list[str] | None = None,
                 since: dt.datetime | str | None = None, until: dt.datetime | str | None = None) -> pd.DataFrame:
    """Stored incidents inside the caller's scope (SQL pre-filter on the stored grid codes in scope), with
    ``grid_code_now``/``community_code_now``/``town_code_now`` (undispatched cases located now)."""
    codes: set[str] | list[str] | None = grid_codes
    if role.scope_level != "district":
        col = LEVEL_COL[role.scope_level]
        rows = istore.store.query("SELECT DISTINCT grid_code, community_code, town_code FROM incidents")
        known = pd.DataFrame(rows, columns=list(_UNIT_COLS)).fillna("")
        mine = set(known.loc[known[col].astype(str).isin(role.scope_codes), "grid_code"].astype(str))
        mine.add("")  # undispatched cases: located below
        codes = mine if grid_codes is None else mine & set(grid_codes) | {""}
    df = istore.frame(grid_codes=codes, states=states, categories=categories, since=since, until=until)
    blank = (df["grid_code"] == "").to_numpy()
    if blank.any():
        loc = locate_points(t, df["lng"].to_numpy()[blank], df["lat"].to_numpy()[blank])
        for c in _UNIT_COLS:
            v = df[c].to_numpy(dtype=object).copy()
            v[blank] = loc[c].to_numpy(dtype=object)
            df[c + "_now"] = v
    else:
        for c in _UNIT_COLS:
            df[c + "_now"] = df[c]
    if role.scope_level != "district":
        df = df[df[LEVEL_COL[role.scope_level] + "_now"].astype(str).isin(role.scope_codes).to_numpy()]
    return df


def need_actor(role: Role, what: str) -> None:
    """:class:`PermissionDenied` for roles that read aggregates only (analysts)."""
    if not role.can_see_records:
        raise PermissionDenied(f"role {role.name!r} reads aggregates only and may not {what}.")
