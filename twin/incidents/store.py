"""Incidents, their audit trail and live worker status in the shared transactional store (:mod:`twin.store.sql`).

Tables (portable SQL; SQLite by default, PostgreSQL by URL):

* ``incidents`` — one row per case, with a ``version`` column. Every update is a compare-and-set
  (``UPDATE … WHERE id = ? AND version = ?``): a writer that started from a stale copy gets
  :class:`twin.errors.ConflictError` instead of silently overwriting the other writer's change (no lost updates).
* ``incident_transitions`` — every action with time, actor, reason and details (操作日志留痕), written in the same
  transaction as the change it records.
* ``incident_links`` — near-duplicate reports linked to the first incident instead of becoming new cases.
* ``worker_status`` — live on/offline status and last position of grid workers (overrides ``t.workers``).

Times are ISO-8601 strings in CST (UTC+08:00), so text order is time order. Locations are WGS84 degrees.

The ``*_incident`` functions are the operations the CLI, the app and the service call: each reads the current
row, applies the pure rules of :mod:`twin.incidents.lifecycle`/:mod:`twin.incidents.dispatch`, and writes with compare-and-set.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from twin.errors import ConflictError, NotFoundError, ValidationError
from twin.incidents.dispatch import (
    DUPLICATE_RADIUS_M,
    DUPLICATE_WINDOW_H,
    dispatch,
    escalate,
    find_duplicate,
    locate,
    reassign,
    worker_board,
)
from twin.incidents.lifecycle import CST, OPEN_STATES, Incident, Transition, as_time, new_incident, transition
from twin.store.sql import Store

__all__ = [
    "IncidentStore",
    "open_incident_store",
    "report_incident",
    "dispatch_incident",
    "act_on_incident",
    "reassign_incident",
    "escalate_incident",
    "board_for",
    "TIME_COLUMNS",
]

_BATCH = 100  # rows per multi-row INSERT (7 parameters each; well under SQLite's and PostgreSQL's limits)
TIME_COLUMNS = ("reported_at", "deadline", "dispatched_at", "started_at", "resolved_at", "followed_up_at",
                "updated_at")
_FIELDS = [f.name for f in dataclasses.fields(Incident) if f.name != "id"]
_SCHEMA = [
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


def _iso(v: dt.datetime | None) -> str | None:
    """Fixed-width ISO text in CST with microseconds, so text order is time order."""
    return None if v is None else as_time(v).isoformat(timespec="microseconds")


def _to_row(inc: Incident) -> list[Any]:
    out: list[Any] = []
    for name in _FIELDS:
        v = getattr(inc, name)
        if isinstance(v, dt.datetime):
            v = _iso(v)
        elif name == "attachments":
            v = json.dumps(list(v), ensure_ascii=False)
        elif isinstance(v, bool):
            v = int(v)
        out.append(v)
    return out


def _from_row(cols: Sequence[str], row: Sequence[Any]) -> Incident:
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


class IncidentStore:
    """Incident tables on a :class:`twin.store.sql.Store` (creates them on first use)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        store.ensure_schema("incidents", _SCHEMA)

    # -- incidents -----------------------------------------------------------------------------------------
    def add(self, incident: Incident, *, actor: str, tx: Any = None) -> Incident:
        """Insert a new incident (state ``reported`` or later for imported history) and its ``report`` record."""
        if incident.id is not None:
            raise ValidationError(f"incident already has id {incident.id}; add() stores new incidents only.")
        inc = dataclasses.replace(incident, version=1, updated_at=incident.updated_at or incident.reported_at)
        if tx is None:
            with self.store.transaction() as tx2:
                return self._add(tx2, inc, actor)
        return self._add(tx, inc, actor)

    def _add(self, tx: Any, inc: Incident, actor: str) -> Incident:
        cols = ", ".join(_FIELDS)
        marks = ", ".join("?" for _ in _FIELDS)
        new_id = tx.insert(f"INSERT INTO incidents ({cols}) VALUES ({marks})", _to_row(inc))
        inc = dataclasses.replace(inc, id=new_id)
        self._log(tx, Transition(new_id, "report", "", "reported", actor, inc.reported_at,
                                 f"via {inc.channel}", {"category": inc.category}))
        return inc

    def get(self, incident_id: int) -> Incident:
        """The stored incident; :class:`NotFoundError` for an unknown id."""
        cols = ["id", *_FIELDS]
        rows = self.store.query(f"SELECT {', '.join(cols)} FROM incidents WHERE id = ?", (int(incident_id),))
        if not rows:
            n = self.store.query("SELECT COUNT(*), MIN(id), MAX(id) FROM incidents")[0]
            raise NotFoundError(f"no incident {incident_id!r} ({n[0]} stored, ids {n[1]}–{n[2]}).")
        return _from_row(cols, rows[0])

    def save(self, new: Incident, record: Transition) -> Incident:
        """Write ``new`` if the stored row is still at ``new.version`` (compare-and-set), with its audit record.

        Returns the incident at its new version. Raises :class:`ConflictError` when someone else changed it first:
        re-read with :meth:`get` and apply the action again.
        """
        with self.store.transaction() as tx:
            return self._save(tx, new, record)

    def _save(self, tx: Any, new: Incident, record: Transition) -> Incident:
        if new.id is None:
            raise ValidationError("save() needs a stored incident (id is None); use add() first.")
        sets = ", ".join(f"{c} = ?" for c in _FIELDS if c != "version")
        vals = [v for c, v in zip(_FIELDS, _to_row(new), strict=True) if c != "version"]
        cur = tx.execute(f"UPDATE incidents SET {sets}, version = version + 1 WHERE id = ? AND version = ?",
                         [*vals, new.id, new.version])
        if cur.rowcount != 1:
            row = tx.query("SELECT version, state FROM incidents WHERE id = ?", (new.id,))
            if not row:
                raise NotFoundError(f"no incident {new.id}.")
            raise ConflictError(
                f"incident {new.id} changed since you read it (you had version {new.version}, stored is version "
                f"{row[0][0]} in state {row[0][1]!r}); reload it and try {record.action!r} again."
            )
        self._log(tx, dataclasses.replace(record, incident_id=new.id))
        return dataclasses.replace(new, version=new.version + 1)

    def _log(self, tx: Any, r: Transition) -> None:
        tx.execute(
            "INSERT INTO incident_transitions (incident_id, action, from_state, to_state, actor, at, reason, detail) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (r.incident_id, r.action, r.from_state, r.to_state, r.actor, _iso(r.at), r.reason,
             json.dumps(dict(r.detail), ensure_ascii=False, default=str)),
        )

    def transitions(self, incident_id: int | None = None) -> pd.DataFrame:
        """The audit trail (all incidents, or one), oldest first."""
        sql = "SELECT incident_id, action, from_state, to_state, actor, at, reason, detail FROM incident_transitions"
        params: tuple = ()
        if incident_id is not None:
            sql += " WHERE incident_id = ?"
            params = (int(incident_id),)
        rows = self.store.query(sql + " ORDER BY id", params)
        df = pd.DataFrame(rows, columns=["incident_id", "action", "from_state", "to_state", "actor", "at", "reason",
                                         "detail"])
        df["at"] = pd.to_datetime(df["at"], format="ISO8601")
        return df

    def frame(
        self, *, states: Iterable[str] | None = None, grid_codes: Iterable[str] | None = None,
        categories: Iterable[str] | None = None, since: dt.datetime | str | None = None,
        until: dt.datetime | str | None = None, assignee: str | None = None,
    ) -> pd.DataFrame:
        """Stored incidents as a frame (time columns tz-aware CST), filtered in SQL; reported in ``[since, until)``."""
        where: list[str] = []
        params: list[Any] = []
        for col, vals in (("state", states), ("grid_code", grid_codes), ("category", categories)):
            if vals is not None:
                vs = [str(v) for v in vals]
                if not vs:
                    where.append("1 = 0")
                    continue
                where.append(f"{col} IN ({', '.join('?' for _ in vs)})")
                params.extend(vs)
        if since is not None:
            where.append("reported_at >= ?")
            params.append(_iso(as_time(since)))
        if until is not None:
            where.append("reported_at < ?")
            params.append(_iso(as_time(until)))
        if assignee is not None:
            where.append("assignee = ?")
            params.append(assignee)
        cols = ["id", *_FIELDS]
        sql = f"SELECT {', '.join(cols)} FROM incidents"
        if where:
            sql += " WHERE " + " AND ".join(where)
        df = pd.DataFrame(self.store.query(sql + " ORDER BY id", params), columns=cols)
        return _typed(df)

    def open_cases(self) -> pd.Series:
        """Open incidents per assigned worker id."""
        marks = ", ".join("?" for _ in OPEN_STATES)
        rows = self.store.query(
            f"SELECT assignee, COUNT(*) FROM incidents WHERE state IN ({marks}) AND assignee <> '' GROUP BY assignee",
            OPEN_STATES)
        return pd.Series({r[0]: int(r[1]) for r in rows}, dtype="int64")

    def count(self) -> int:
        return int(self.store.query("SELECT COUNT(*) FROM incidents")[0][0])

    # -- near-duplicates ------------------------------------------------------------------------------------
    def link(self, tx: Any, master: Incident, report: Incident, *, actor: str) -> Incident:
        """Record ``report`` as a repeat of ``master`` (``linked_reports`` + 1, compare-and-set)."""
        tx.execute(
            "INSERT INTO incident_links (incident_id, category, lng, lat, reported_at, channel, reporter, "
            "description, actor) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (master.id, report.category, report.lng, report.lat, _iso(report.reported_at), report.channel,
             report.reporter, report.description, actor),
        )
        new = dataclasses.replace(master, linked_reports=master.linked_reports + 1)
        rec = Transition(master.id, "link", master.state, master.state, actor, report.reported_at,
                         f"near-duplicate report via {report.channel}", {"reporter": report.reporter})
        return self._save(tx, new, rec)

    def links(self, incident_id: int) -> pd.DataFrame:
        rows = self.store.query("SELECT incident_id, category, lng, lat, reported_at, channel, reporter, description, "
                                "actor FROM incident_links WHERE incident_id = ? ORDER BY id", (int(incident_id),))
        return pd.DataFrame(rows, columns=["incident_id", "category", "lng", "lat", "reported_at", "channel",
                                           "reporter", "description", "actor"])

    # -- workers --------------------------------------------------------------------------------------------
    def set_worker_status(
        self, worker_id: str, *, status: str, now: dt.datetime | str, lng: float | None = None,
        lat: float | None = None, expected_version: int | None = None,
    ) -> int:
        """Set a worker's live status (``online``/``offline``) and last position; returns the new version.

        With ``expected_version`` the write is a compare-and-set (:class:`ConflictError` when stale).
        """
        if status not in ("online", "offline"):
            raise ValidationError(f"worker status must be 'online' or 'offline', got {status!r}.")
        at = _iso(as_time(now))
        with self.store.transaction() as tx:
            row = tx.query("SELECT version, lng, lat FROM worker_status WHERE worker_id = ?" + self.store.lock_clause(),
                           (worker_id,))
            if not row:
                if expected_version not in (None, 0):
                    raise ConflictError(f"worker {worker_id} has no stored status (version 0), "
                                        f"you expected version {expected_version}.")
                tx.execute("INSERT INTO worker_status (worker_id, status, lng, lat, updated_at, version) "
                           "VALUES (?, ?, ?, ?, ?, 1)", (worker_id, status, lng, lat, at))
                return 1
            ver = int(row[0][0])
            if expected_version is not None and expected_version != ver:
                raise ConflictError(f"worker {worker_id} status changed (version {ver}, you had {expected_version}).")
            tx.execute("UPDATE worker_status SET status = ?, lng = ?, lat = ?, updated_at = ?, version = ? "
                       "WHERE worker_id = ? AND version = ?",
                       (status, row[0][1] if lng is None else lng, row[0][2] if lat is None else lat, at, ver + 1,
                        worker_id, ver))
            return ver + 1

    def worker_status(self) -> pd.DataFrame:
        rows = self.store.query("SELECT worker_id, status, lng, lat, updated_at, version FROM worker_status")
        return pd.DataFrame(rows, columns=["worker_id", "status", "lng", "lat", "updated_at", "version"])

    # -- bulk (synthetic history, imports) ------------------------------------------------------------------
    def add_many(self, incidents: pd.DataFrame, transitions: pd.DataFrame | None = None, *,
                 actor: str = "import") -> np.ndarray:
        """Insert many incidents (a frame with :class:`Incident` columns, no ``id``) in one transaction.

        ``transitions`` (``row``, ``action``, ``from_state``, ``to_state``, ``actor``, ``at``, ``reason``) gives the
        audit trail of each row (``row`` = position in ``incidents``); without it one ``report`` record per incident
        is written. Returns the new ids in row order.
        """
        df = incidents.copy()
        for c in TIME_COLUMNS:
            if c in df:
                df[c] = _iso_col(df[c])
        if "updated_at" not in df or df["updated_at"].isna().any():
            df["updated_at"] = df.get("updated_at", pd.Series(None, index=df.index)).fillna(df["reported_at"])
        defaults: dict[str, Any] = {"reporter": "", "description": "", "attachments": "[]", "answered_at_once": 0,
                                    "state": "reported", "cell": 0, "satisfaction": None, "reopen_count": 0,
                                    "escalations": 0, "linked_reports": 0, "synthetic": 0, "version": 1,
                                    "deadline": None, "dispatched_at": None, "started_at": None,
                                    "resolved_at": None, "followed_up_at": None}
        for c in _FIELDS:
            if c not in df:
                df[c] = defaults.get(c, "")
        for c in ("answered_at_once", "synthetic"):
            df[c] = df[c].astype(bool).astype(int)
        df["attachments"] = df["attachments"].map(
            lambda a: a if isinstance(a, str) else json.dumps(list(a or ()), ensure_ascii=False))
        df["version"] = 1
        colvals = []
        for c in _FIELDS:
            v = df[c].to_numpy(dtype=object)
            colvals.append([None if m else x for m, x in zip(pd.isna(v).tolist(), v.tolist())])
        rows = [list(r) for r in zip(*colvals, strict=True)]
        cols = ", ".join(_FIELDS)
        marks = ", ".join("?" for _ in _FIELDS)
        ids = np.empty(len(rows), dtype=np.int64)
        with self.store.transaction() as tx:
            for i, r in enumerate(rows):
                ids[i] = tx.insert(f"INSERT INTO incidents ({cols}) VALUES ({marks})", r)
            if transitions is None:
                tr = pd.DataFrame({"row": np.arange(len(df)), "action": "report", "from_state": "",
                                   "to_state": "reported", "actor": actor, "at": df["reported_at"],
                                   "reason": "imported"})
            else:
                tr = transitions.copy()
                tr["at"] = _iso_col(tr["at"])
            cols_t = [ids[tr["row"].to_numpy(dtype=np.int64)].tolist()] + [
                tr[c].to_numpy(dtype=object).tolist() for c in ("action", "from_state", "to_state", "actor", "at",
                                                               "reason")]
            flat = list(zip(*cols_t, strict=True))
            head = ("INSERT INTO incident_transitions (incident_id, action, from_state, to_state, actor, at, reason, "
                    "detail) VALUES ")
            for i in range(0, len(flat), _BATCH):
                chunk = flat[i:i + _BATCH]
                tx.execute(head + ", ".join(["(?, ?, ?, ?, ?, ?, ?, '{}')"] * len(chunk)),
                           [v for row in chunk for v in row])
        return ids

    def delete_synthetic(self) -> int:
        """Remove the synthetic history (incidents flagged ``synthetic`` and their records); returns the count."""
        with self.store.transaction() as tx:
            n = int(tx.query("SELECT COUNT(*) FROM incidents WHERE synthetic = 1")[0][0])
            sub = "SELECT id FROM incidents WHERE synthetic = 1"
            tx.execute(f"DELETE FROM incident_transitions WHERE incident_id IN ({sub})")
            tx.execute(f"DELETE FROM incident_links WHERE incident_id IN ({sub})")
            tx.execute("DELETE FROM incidents WHERE synthetic = 1")
        return n


def _iso_col(s: pd.Series) -> np.ndarray:
    """Datetime-like column → fixed-width ISO strings in CST, like :func:`_iso` (missing → None); vectorised."""
    if s.dtype == object and s.map(lambda v: v is None or isinstance(v, dt.datetime)).all():
        s = s.map(lambda v: None if v is None else as_time(v))
    ts = pd.to_datetime(s, format="ISO8601") if not pd.api.types.is_datetime64_any_dtype(s) else s
    ts = ts.dt.tz_localize(CST) if ts.dt.tz is None else ts.dt.tz_convert(CST)
    local = ts.dt.tz_localize(None).to_numpy().astype("datetime64[us]")
    text = np.char.add(np.datetime_as_string(local, unit="us").astype(object), "+08:00")
    out = text.astype(object)
    out[ts.isna().to_numpy()] = None
    return out


def _typed(df: pd.DataFrame) -> pd.DataFrame:
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


def open_incident_store(*, url: str | None = None, twin_root: Any = None) -> IncidentStore:
    """The incident tables in the shared store (``url``, ``$TWIN_DATABASE_URL`` or ``<twin>/state.sqlite``)."""
    from twin.store.sql import open_store

    return IncidentStore(open_store(url, twin_root=twin_root))


# -- operations ---------------------------------------------------------------------------------------------
def board_for(istore: IncidentStore, t: Any) -> pd.DataFrame:
    """The live worker board: ``t.workers`` + stored status/positions + open cases per worker."""
    return worker_board(t.workers, status=istore.worker_status(), open_cases=istore.open_cases())


def report_incident(
    istore: IncidentStore, t: Any, catalogue: pd.DataFrame, *, actor: str, auto_dispatch: bool = True,
    radius_m: float = DUPLICATE_RADIUS_M, window_h: float = DUPLICATE_WINDOW_H, now: dt.datetime | str | None = None,
    **fields: Any,
) -> tuple[Incident, bool]:
    """Record a report: validate, check it is inside a grid, link it to an open near-duplicate or store it new.

    ``fields`` are :func:`twin.incidents.lifecycle.new_incident` arguments (``category``, ``lng``, ``lat``, ``reported_at``,
    ``channel``, ``severity``, ``reporter``, ``description``, ``attachments``, ``answered_at_once``). With
    ``auto_dispatch`` a new case is dispatched at ``now`` (default: the report time). Returns
    ``(incident, linked)``; ``linked`` is True when the report was attached to an existing incident.
    The duplicate check and the insert run in one write transaction, so two simultaneous identical reports
    cannot both become new cases.
    """
    inc = new_incident(catalogue, **fields)
    locate(t, inc.lng, inc.lat)  # reject points outside every grid before writing anything
    lo = _iso(inc.reported_at - dt.timedelta(hours=window_h))
    marks = ", ".join("?" for _ in OPEN_STATES)
    cols = ["id", *_FIELDS]
    with istore.store.transaction() as tx:
        rows = tx.query(
            f"SELECT {', '.join(cols)} FROM incidents WHERE category = ? AND state IN ({marks}) "
            "AND reported_at >= ? AND reported_at <= ?",
            (inc.category, *OPEN_STATES, lo, _iso(inc.reported_at)),
        )
        cands = pd.DataFrame(rows, columns=cols)
        dup = find_duplicate(cands, inc, radius_m=radius_m, window_h=window_h) if rows else None
        if dup is not None:
            master = _from_row(cols, next(r for r in rows if r[0] == dup))
            return istore.link(tx, master, inc, actor=actor), True
        stored = istore.add(inc, actor=actor, tx=tx)
    if auto_dispatch and stored.id is not None:
        stored = dispatch_incident(istore, t, catalogue, stored.id, actor=actor, now=now or stored.reported_at)
    return stored, False


def dispatch_incident(
    istore: IncidentStore, t: Any, catalogue: pd.DataFrame, incident_id: int, *, actor: str,
    now: dt.datetime | str, level: str | None = None,
) -> Incident:
    """Dispatch a stored incident (automatic level and worker unless ``level`` is given)."""
    inc = istore.get(incident_id)
    new, rec = dispatch(t, inc, board=board_for(istore, t), catalogue=catalogue, actor=actor, now=now, level=level)
    return istore.save(new, rec)


def act_on_incident(
    istore: IncidentStore, incident_id: int, action: str, *, actor: str, now: dt.datetime | str, reason: str = "",
    satisfaction: int | None = None, catalogue: pd.DataFrame | None = None, expected_version: int | None = None,
) -> Incident:
    """Apply ``start``/``resolve``/``follow_up``/``reopen`` (or the target state name) to a stored incident.

    ``expected_version`` (from the copy the user was looking at) turns a stale screen into a
    :class:`ConflictError` instead of acting on a case that changed meanwhile.
    """
    inc = istore.get(incident_id)
    if expected_version is not None and inc.version != expected_version:
        raise ConflictError(f"incident {incident_id} is at version {inc.version} (state {inc.state!r}), you had "
                            f"version {expected_version}; reload it.")
    new, rec = transition(inc, action, actor=actor, now=now, reason=reason, satisfaction=satisfaction,
                          catalogue=catalogue)
    return istore.save(new, rec)


def reassign_incident(
    istore: IncidentStore, t: Any, incident_id: int, worker_id: str, *, actor: str, now: dt.datetime | str,
    reason: str, allow_offline: bool = False,
) -> Incident:
    """Manually hand an incident to another worker (audited with ``reason``)."""
    inc = istore.get(incident_id)
    new, rec = reassign(inc, worker_id, board=board_for(istore, t), actor=actor, now=now, reason=reason,
                        allow_offline=allow_offline)
    return istore.save(new, rec)


def escalate_incident(
    istore: IncidentStore, catalogue: pd.DataFrame, incident_id: int, *, actor: str, now: dt.datetime | str,
    reason: str, to_level: str | None = None,
) -> Incident:
    """Escalate a stored incident one level (or to ``to_level``), recomputing its deadline."""
    inc = istore.get(incident_id)
    new, rec = escalate(inc, actor=actor, now=now, reason=reason, to_level=to_level, catalogue=catalogue)
    return istore.save(new, rec)
