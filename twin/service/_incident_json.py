"""Incidents as JSON-ready dicts: ISO times (CST), hex cells, ``overdue`` and ``allowed_actions``; personal fields
removed for roles that read aggregates only. Other values go to :func:`twin.encoding.dumps` as they are."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

import numpy as np
import pandas as pd

from twin.access.roles import Role
from twin.encoding import loads
from twin.incidents.lifecycle import CST, STATES, Incident, allowed_actions, as_time
from twin.incidents.store import TIME_COLUMNS

__all__ = ["PERSONAL_FIELDS", "iso", "incident_dict", "frame_rows", "stored_rows"]

#: Fields about people (the reporter and what they said); never shown to analysts.
PERSONAL_FIELDS = ("reporter", "description", "attachments")
_CODES = ("grid_code", "community_code", "town_code", "assignee", "level", "handler_code")
_ACTIONS = {s: tuple(allowed_actions(s)) for s in STATES}  # per state, made once


def iso(v: object) -> str | None:
    """A time as ISO-8601 in CST (``None`` for missing values)."""
    if v is None or v is pd.NaT or (isinstance(v, float) and np.isnan(v)):
        return None
    if isinstance(v, pd.Timestamp | dt.datetime):
        return as_time(v).isoformat()
    return str(v)


def incident_dict(inc: Incident, role: Role, now: dt.datetime) -> dict[str, Any]:
    """One incident with ``overdue`` (at ``now``) and ``allowed_actions``."""
    d = dataclasses.asdict(inc)
    for k, v in list(d.items()):
        if isinstance(v, dt.datetime):
            d[k] = v.isoformat()
    d["cell"] = format(int(inc.cell), "x") if inc.cell else None
    d["attachments"] = [dict(a) for a in inc.attachments]
    d["overdue"] = inc.overdue(now)
    d["allowed_actions"] = allowed_actions(inc.state)
    if not role.can_see_records:
        for k in PERSONAL_FIELDS:
            d.pop(k, None)
    return d


def frame_rows(df: pd.DataFrame, role: Role, overdue: np.ndarray) -> list[dict[str, Any]]:
    """Rows of an incident frame (:meth:`twin.incidents.store.IncidentStore.frame`) with their ``overdue`` flags."""
    cols = [c for c in df.columns if not c.endswith("_now")]
    if not role.can_see_records:
        cols = [c for c in cols if c not in PERSONAL_FIELDS]
    out = []
    for r, late in zip(df[cols].to_dict("records"), overdue, strict=True):
        row: dict[str, Any] = {}
        for k, v in r.items():
            if k == "cell":
                row[k] = format(int(v), "x") if v else None
            elif k == "attachments":
                row[k] = loads(v or "[]") if isinstance(v, str) else list(v or [])
            elif isinstance(v, pd.Timestamp | dt.datetime) or v is pd.NaT:
                row[k] = iso(v)
            else:
                row[k] = v
        row["overdue"] = bool(late)
        row["allowed_actions"] = allowed_actions(str(r["state"]))
        out.append(row)
    return out


def _time_text(v: str | None) -> str | None:
    """Stored CST text (``…T09:00:00.000000+08:00``) as ``datetime.isoformat`` writes it (no ``.000000``)."""
    if v is None:
        return None
    if len(v) == 32 and v.endswith("+08:00") and v[19] == ".":  # the stored fixed width: no parse needed
        return v[:19] + v[26:] if v[20:26] == "000000" else v
    return dt.datetime.fromisoformat(v).astimezone(CST).isoformat()


def _bool(v: Any) -> bool:
    return bool(v)


def _code(v: Any) -> str:
    return "" if v is None else str(v)


_STORED = {"cell": lambda v: format(int(v), "x") if v else None, "attachments": lambda v: loads(v or "[]"),
           "answered_at_once": _bool, "synthetic": _bool,
           "satisfaction": lambda v: None if v is None else float(v),
           **{k: _time_text for k in TIME_COLUMNS}, **{k: _code for k in _CODES}}


def stored_rows(rows: list[dict[str, Any]], role: Role, overdue: list[bool]) -> list[dict[str, Any]]:
    """Rows of stored values (:func:`twin.incidents.queries.list_page`) as :func:`frame_rows` writes them: the same
    keys in the same order and the same JSON values, without a frame."""
    if not rows:
        return []
    cols = [k for k in rows[0] if not k.endswith("_now") and (role.can_see_records or k not in PERSONAL_FIELDS)]
    conv = [(k, f) for k in cols if (f := _STORED.get(k)) is not None]  # the other values are written as stored
    out = []
    for r, late in zip(rows, overdue, strict=True):
        row: dict[str, Any] = {k: r[k] for k in cols}
        for k, f in conv:
            row[k] = f(row[k])  # replacing a value keeps the key's place
        row["overdue"] = bool(late)
        acts = _ACTIONS.get(r["state"])
        row["allowed_actions"] = list(acts) if acts is not None else allowed_actions(str(r["state"]))
        out.append(row)
    return out
