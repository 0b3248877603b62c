"""The incident tables' schema and the conversion between :class:`~twin.incidents.lifecycle.Incident` values,
SQL rows and frames (private to :mod:`twin.incidents.store`).

Times are stored as fixed-width ISO-8601 text in CST (UTC+08:00) with microseconds, so text order is time order;
locations are WGS84 degrees; ``attachments`` is JSON text; booleans are 0/1.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from twin.incidents.lifecycle import CST, Incident, as_time

__all__ = ["TIME_COLUMNS", "FIELDS", "SCHEMA", "LIST_INDEXES", "FEED_FIELDS", "feed_payload", "stored_values", "iso", "incident_to_row", "row_to_incident", "iso_column",
           "typed_frame", "frame_to_rows"]

TIME_COLUMNS = ("reported_at", "deadline", "dispatched_at", "started_at", "resolved_at", "followed_up_at",
                "updated_at")
FIELDS = [f.name for f in dataclasses.fields(Incident) if f.name != "id"]
SCHEMA = [
    """CREATE TABLE IF NOT EXISTS incidents (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        category TEXT NOT NULL, lng REAL NOT NULL, lat REAL NOT NULL, reported_at TEXT NOT NULL,
        channel TEXT NOT NULL, severity INTEGER NOT NULL, reporter TEXT, description TEXT, attachments TEXT,
        answered_at_once INTEGER NOT NULL, state TEXT NOT NULL, cell BIGINT, grid_code TEXT, community_code TEXT,
        town_code TEXT, level TEXT, handler_code TEXT, assignee TEXT, deadline TEXT, dispatched_at TEXT,
        started_at TEXT, resolved_at TEXT, followed_up_at TEXT, updated_at TEXT, satisfaction INTEGER,
        reopen_count INTEGER NOT NULL, escalations INTEGER NOT NULL, linked_reports INTEGER NOT NULL,
        synthetic INTEGER NOT NULL, version INTEGER NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS incidents_state ON incidents (state)",
    "CREATE INDEX IF NOT EXISTS incidents_grid ON incidents (grid_code)",
    "CREATE INDEX IF NOT EXISTS incidents_assignee ON incidents (assignee)",
    "CREATE INDEX IF NOT EXISTS incidents_cat_time ON incidents (category, reported_at)",
    """CREATE TABLE IF NOT EXISTS incident_transitions (
        id INTEGER PRIMARY KEY AUTOINCREMENT, incident_id BIGINT NOT NULL, action TEXT NOT NULL,
        from_state TEXT NOT NULL, to_state TEXT NOT NULL, actor TEXT NOT NULL, at TEXT NOT NULL, reason TEXT,
        detail TEXT)""",
    "CREATE INDEX IF NOT EXISTS incident_transitions_incident ON incident_transitions (incident_id)",
    """CREATE TABLE IF NOT EXISTS incident_links (
        id INTEGER PRIMARY KEY AUTOINCREMENT, incident_id BIGINT NOT NULL, category TEXT NOT NULL,
        lng REAL NOT NULL, lat REAL NOT NULL, reported_at TEXT NOT NULL, channel TEXT, reporter TEXT,
        description TEXT, actor TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS worker_status (
        worker_id TEXT PRIMARY KEY, status TEXT NOT NULL, lng REAL, lat REAL, updated_at TEXT NOT NULL,
        version INTEGER NOT NULL)""",
]


def iso(v: dt.datetime | None) -> str | None:
    """Fixed-width ISO text in CST with microseconds, so text order is time order."""
    return None if v is None else as_time(v).isoformat(timespec="microseconds")


def incident_to_row(inc: Incident) -> list[Any]:
    """The values of :data:`FIELDS` for an INSERT/UPDATE."""
    out: list[Any] = []
    for name in FIELDS:
        v = getattr(inc, name)
        if isinstance(v, dt.datetime):
            v = iso(v)
        elif name == "attachments":
            v = json.dumps(list(v), ensure_ascii=False)
        elif isinstance(v, bool):
            v = int(v)
        out.append(v)
    return out


def row_to_incident(cols: Sequence[str], row: Sequence[Any]) -> Incident:
    """An :class:`Incident` from a SELECT row with columns ``cols``."""
    d = dict(zip(cols, row, strict=True))
    for k in TIME_COLUMNS:
        d[k] = None if d[k] is None else as_time(d[k])
    d["attachments"] = tuple(json.loads(d["attachments"] or "[]"))
    for k in ("answered_at_once", "synthetic"):
        d[k] = bool(d[k])
    for k in ("reporter", "description", "grid_code", "community_code", "town_code", "level", "handler_code",
              "assignee"):
        d[k] = d[k] or ""
    d["cell"] = int(d["cell"] or 0)
    return Incident(**d)


def _cst_timestamp(v: dt.datetime) -> pd.Timestamp:
    """A datetime (or a Timestamp with nanoseconds, kept) in CST; naive = CST."""
    t = pd.Timestamp(v)
    return t.tz_localize(CST) if t.tzinfo is None else t.tz_convert(CST)


def iso_column(s: pd.Series) -> np.ndarray:
    """Datetime-like column → fixed-width ISO strings in CST, like :func:`iso` (missing → None); vectorised."""
    if s.dtype == object and s.map(lambda v: v is None or isinstance(v, dt.datetime)).all():
        s = s.map(lambda v: None if v is None else _cst_timestamp(v))
    ts = pd.to_datetime(s, format="ISO8601") if not pd.api.types.is_datetime64_any_dtype(s) else s
    ts = ts.dt.tz_localize(CST) if ts.dt.tz is None else ts.dt.tz_convert(CST)
    local = ts.dt.tz_localize(None).to_numpy().astype("datetime64[us]")
    text = np.char.add(np.datetime_as_string(local, unit="us").astype(object), "+08:00")
    out = text.astype(object)
    out[ts.isna().to_numpy()] = None
    return out


def typed_frame(df: pd.DataFrame) -> pd.DataFrame:
    """Stored rows as a frame: time columns tz-aware CST, flags bool, ``satisfaction`` nullable, codes str."""
    for c in TIME_COLUMNS:
        df[c] = pd.to_datetime(df[c], format="ISO8601")
        if df[c].dt.tz is None:
            df[c] = df[c].dt.tz_localize(CST)
        else:
            df[c] = df[c].dt.tz_convert(CST)
    for c in ("answered_at_once", "synthetic"):
        df[c] = df[c].astype(bool)
    df["satisfaction"] = pd.to_numeric(df["satisfaction"]).astype("Float64")
    for c in ("grid_code", "community_code", "town_code", "assignee", "level", "handler_code"):
        df[c] = df[c].fillna("").astype(str)
    return df


def frame_to_rows(incidents: pd.DataFrame) -> tuple[list[list[Any]], np.ndarray]:
    """Rows (values of :data:`FIELDS`, missing → ``None``) for a frame with :class:`Incident` columns (no ``id``),
    and the stored ``reported_at`` text per row. Missing columns take the :class:`Incident` defaults; ``version``
    is 1 and ``updated_at`` defaults to ``reported_at``."""
    df = incidents.copy()
    for c in TIME_COLUMNS:
        if c in df:
            df[c] = iso_column(df[c])
    if "updated_at" not in df or df["updated_at"].isna().any():
        df["updated_at"] = df.get("updated_at", pd.Series(None, index=df.index)).fillna(df["reported_at"])
    defaults: dict[str, Any] = {"reporter": "", "description": "", "attachments": "[]", "answered_at_once": 0,
                                "state": "reported", "cell": 0, "satisfaction": None, "reopen_count": 0,
                                "escalations": 0, "linked_reports": 0, "synthetic": 0, "version": 1,
                                "deadline": None, "dispatched_at": None, "started_at": None,
                                "resolved_at": None, "followed_up_at": None}
    for c in FIELDS:
        if c not in df:
            df[c] = defaults.get(c, "")
    for c in ("answered_at_once", "synthetic"):
        df[c] = df[c].astype(bool).astype(int)
    for c in ("grid_code", "community_code", "town_code"):  # '' (never NULL) until dispatched: queries rely on it
        df[c] = df[c].fillna("").astype(str)
    df["attachments"] = df["attachments"].map(
        lambda a: a if isinstance(a, str) else json.dumps(list(a or ()), ensure_ascii=False))
    df["version"] = 1
    colvals = []
    for c in FIELDS:
        v = df[c].to_numpy(dtype=object)
        colvals.append([None if m else x for m, x in zip(pd.isna(v).tolist(), v.tolist())])
    rows = [list(r) for r in zip(*colvals, strict=True)]
    return rows, df["reported_at"].to_numpy(dtype=object)


#: Incident fields in a feed event (no personal fields: reporter, description and attachments stay out).
FEED_FIELDS = ("id", "version", "state", "category", "severity", "channel", "level", "handler_code", "assignee",
               "grid_code", "community_code", "town_code", "lng", "lat", "reported_at", "updated_at", "deadline",
               "linked_reports")
# the queue's keyset order (newest report first) inside the caller's units
LIST_INDEXES = [
    "CREATE INDEX IF NOT EXISTS incidents_time_id ON incidents (reported_at, id)",
    "CREATE INDEX IF NOT EXISTS incidents_grid_time ON incidents (grid_code, reported_at, id)",
    "CREATE INDEX IF NOT EXISTS incidents_comm_time ON incidents (community_code, reported_at, id)",
    "CREATE INDEX IF NOT EXISTS incidents_town_time ON incidents (town_code, reported_at, id)",
]


def feed_payload(inc: Incident) -> dict[str, Any]:
    """The incident as a feed event payload (:data:`FEED_FIELDS`; times ISO-8601 CST)."""
    out: dict[str, Any] = {}
    for k in FEED_FIELDS:
        v = getattr(inc, k)
        out[k] = v.isoformat() if isinstance(v, dt.datetime) else v
    return out


def stored_values(inc: Incident) -> dict[str, Any]:
    """The stored values of ``inc`` by column (what :mod:`._derived` reads)."""
    d = dict(zip(FIELDS, incident_to_row(inc), strict=True))
    d["id"] = inc.id
    return d
