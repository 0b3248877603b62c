"""Incidents, their audit trail and live worker status in the shared transactional store (:mod:`twin.store.sql`).

Tables (portable SQL; SQLite by default, PostgreSQL by URL):

* ``incidents`` — one row per case, with a ``version`` column. Every update is a compare-and-set
  (``UPDATE … WHERE id = ? AND version = ?``): a writer that started from a stale copy gets
  :class:`twin.errors.ConflictError` instead of silently overwriting the other writer's change (no lost updates).
* ``incident_transitions`` — every action with time, actor, reason and details (操作日志留痕), written in the same
  transaction as the change it records.
* ``incident_links`` — near-duplicate reports linked to the first incident instead of becoming new cases.
* ``worker_status`` — live on/offline status and last position of grid workers (overrides ``t.workers``).
* derived, kept current in the same transaction as each write (:mod:`twin.incidents._derived`): per-month counts
  by unit and indexed handling times, which the queue and statistics read (:mod:`twin.incidents.queries`).

Every incident write and worker status change also appends a feed event (``incident.created``,
``incident.updated``, ``worker.status``; :func:`twin.store.feed.publish`) last in its transaction, scoped by the
case's units, for ``GET /events``. Bulk imports (:meth:`IncidentStore.add_many`) publish nothing.

Times are ISO-8601 strings in CST (UTC+08:00), so text order is time order. Locations are WGS84 degrees.

The ``*_incident`` functions are the operations the CLI, the app and the service call: each reads the current
row, applies the pure rules of :mod:`twin.incidents.lifecycle`/:mod:`twin.incidents.dispatch`, and writes with compare-and-set.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from twin.access.roles import DISTRICT, Role
from twin.errors import ConflictError, NotFoundError, TwinError, ValidationError
from twin.incidents import _derived
from twin.incidents._rows import (
    FEED_FIELDS,
    FIELDS,
    LIST_INDEXES,
    SCHEMA,
    TIME_COLUMNS,
    feed_payload,
    frame_to_rows,
    incident_to_row,
    iso,
    iso_column,
    row_to_incident,
    stored_values,
    typed_frame,
)
from twin.incidents.dispatch import (
    DUPLICATE_RADIUS_M,
    DUPLICATE_WINDOW_H,
    dispatch,
    escalate,
    find_duplicate,
    locate,
    reassign,
    visible_to,
    worker_board,
)
from twin.incidents.lifecycle import OPEN_STATES, Incident, Transition, as_time, new_incident, transition
from twin.model import Twin
from twin.store.feed import ensure_feed, publish
from twin.store.sql import Store, Transaction, open_store

_BATCH = 100  # rows per multi-row INSERT (7 parameters each; well under SQLite's and PostgreSQL's limits)

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
    "FEED_FIELDS",
    "feed_payload",
]

_UNITS = ("grid_code", "community_code", "town_code")



class IncidentStore:
    """Incident tables on a :class:`twin.store.sql.Store` (creates them on first use)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        store.ensure_schema("incidents", SCHEMA + _derived.SCHEMA + LIST_INDEXES)
        ensure_feed(store)
        _derived.rebuild_if_missing(store)

    # -- incidents -----------------------------------------------------------------------------------------
    def add(self, incident: Incident, *, actor: str, tx: Transaction | None = None,
            units: Mapping[str, str] | None = None) -> Incident:
        """Insert a new incident (state ``reported`` or later for imported history) and its ``report`` record.

        ``units`` (``grid_code``/``community_code``/``town_code`` of the point in the current partition) scopes the
        ``incident.created`` feed event of a case not dispatched yet; without it such an event is district-only.
        """
        if incident.id is not None:
            raise ValidationError(f"incident already has id {incident.id}; add() stores new incidents only.")
        inc = dataclasses.replace(incident, version=1, updated_at=incident.updated_at or incident.reported_at)
        if tx is None:
            with self.store.transaction() as tx2:
                return self._add(tx2, inc, actor, units)
        return self._add(tx, inc, actor, units)

    def _add(self, tx: Transaction, inc: Incident, actor: str, units: Mapping[str, str] | None = None) -> Incident:
        cols = ", ".join(FIELDS)
        marks = ", ".join("?" for _ in FIELDS)
        new_id = tx.insert(f"INSERT INTO incidents ({cols}) VALUES ({marks})", incident_to_row(inc))
        inc = dataclasses.replace(inc, id=new_id)
        self._log(tx, Transition(new_id, "report", "", "reported", actor, inc.reported_at,
                                 f"via {inc.channel}", {"category": inc.category}))
        _derived.apply_change(tx, None, stored_values(inc))
        self._publish(tx, "incident.created", inc, units)
        return inc

    def _publish(self, tx: Transaction, kind: str, inc: Incident, units: Mapping[str, str] | None = None) -> None:
        """The feed event of an incident write (last in ``tx``), scoped by its stored units (else ``units``)."""
        codes = {k: getattr(inc, k) for k in _UNITS} if inc.grid_code else {k: (units or {}).get(k) for k in _UNITS}
        publish(tx, kind, feed_payload(inc), **codes)

    def get(self, incident_id: int) -> Incident:
        """The stored incident; :class:`NotFoundError` for an unknown id."""
        cols = ["id", *FIELDS]
        rows = self.store.query(f"SELECT {', '.join(cols)} FROM incidents WHERE id = ?", (int(incident_id),))
        if not rows:
            n = self.store.query("SELECT COUNT(*), MIN(id), MAX(id) FROM incidents")[0]
            raise NotFoundError(f"no incident {incident_id!r} ({n[0]} stored, ids {n[1]}–{n[2]}).")
        return row_to_incident(cols, rows[0])

    def save(self, new: Incident, record: Transition) -> Incident:
        """Write ``new`` if the stored row is still at ``new.version`` (compare-and-set), with its audit record.

        Returns the incident at its new version. Raises :class:`ConflictError` when someone else changed it first:
        re-read with :meth:`get` and apply the action again.
        """
        with self.store.transaction() as tx:
            return self._save(tx, new, record)

    def _save(self, tx: Transaction, new: Incident, record: Transition) -> Incident:
        if new.id is None:
            raise ValidationError("save() needs a stored incident (id is None); use add() first.")
        sets = ", ".join(f"{c} = ?" for c in FIELDS if c != "version")
        vals = [v for c, v in zip(FIELDS, incident_to_row(new), strict=True) if c != "version"]
        old = tx.query(f"SELECT {', '.join(_derived.ROW_COLUMNS)} FROM incidents WHERE id = ? AND version = ?",
                       (new.id, new.version))
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
        saved = dataclasses.replace(new, version=new.version + 1)
        _derived.apply_change(tx, dict(zip(_derived.ROW_COLUMNS, old[0], strict=True)), stored_values(saved))
        self._publish(tx, "incident.updated", saved)
        return saved

    def _log(self, tx: Transaction, r: Transition) -> None:
        tx.execute(
            "INSERT INTO incident_transitions (incident_id, action, from_state, to_state, actor, at, reason, detail) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (r.incident_id, r.action, r.from_state, r.to_state, r.actor, iso(r.at), r.reason,
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
            params.append(iso(as_time(since)))
        if until is not None:
            where.append("reported_at < ?")
            params.append(iso(as_time(until)))
        if assignee is not None:
            where.append("assignee = ?")
            params.append(assignee)
        cols = ["id", *FIELDS]
        sql = f"SELECT {', '.join(cols)} FROM incidents"
        if where:
            sql += " WHERE " + " AND ".join(where)
        df = pd.DataFrame(self.store.query(sql + " ORDER BY id", params), columns=cols)
        return typed_frame(df)

    def open_cases(self) -> pd.Series:
        """Open incidents per assigned worker id."""
        marks = ", ".join("?" for _ in OPEN_STATES)
        rows = self.store.query(
            f"SELECT assignee, COUNT(*) FROM incidents WHERE state IN ({marks}) AND assignee <> '' GROUP BY assignee",
            OPEN_STATES)
        return pd.Series({r[0]: int(r[1]) for r in rows}, dtype="int64")

    def count(self) -> int:
        """Number of stored incidents."""
        return int(self.store.query("SELECT COUNT(*) FROM incidents")[0][0])

    # -- near-duplicates ------------------------------------------------------------------------------------
    def link(self, tx: Transaction, master: Incident, report: Incident, *, actor: str) -> Incident:
        """Record ``report`` as a repeat of ``master`` (``linked_reports`` + 1, compare-and-set)."""
        tx.execute(
            "INSERT INTO incident_links (incident_id, category, lng, lat, reported_at, channel, reporter, "
            "description, actor) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (master.id, report.category, report.lng, report.lat, iso(report.reported_at), report.channel,
             report.reporter, report.description, actor),
        )
        new = dataclasses.replace(master, linked_reports=master.linked_reports + 1)
        rec = Transition(master.id, "link", master.state, master.state, actor, report.reported_at,
                         f"near-duplicate report via {report.channel}", {"reporter": report.reporter})
        return self._save(tx, new, rec)

    def links(self, incident_id: int) -> pd.DataFrame:
        """Near-duplicate reports linked to an incident (WGS84 points), oldest first."""
        rows = self.store.query("SELECT incident_id, category, lng, lat, reported_at, channel, reporter, description, "
                                "actor FROM incident_links WHERE incident_id = ? ORDER BY id", (int(incident_id),))
        return pd.DataFrame(rows, columns=["incident_id", "category", "lng", "lat", "reported_at", "channel",
                                           "reporter", "description", "actor"])

    # -- workers --------------------------------------------------------------------------------------------
    def set_worker_status(
        self, worker_id: str, *, status: str, now: dt.datetime | str, lng: float | None = None,
        lat: float | None = None, expected_version: int | None = None, grid_code: str | None = None,
        community_code: str | None = None, town_code: str | None = None,
    ) -> int:
        """Set a worker's live status (``online``/``offline``) and last position; returns the new version.

        With ``expected_version`` the write is a compare-and-set (:class:`ConflictError` when stale). The change is
        published as a ``worker.status`` feed event scoped by the worker's ``grid_code`` (and ``community_code``,
        ``town_code`` when given) in the same transaction.
        """
        if status not in ("online", "offline"):
            raise ValidationError(f"worker status must be 'online' or 'offline', got {status!r}.")
        at = iso(as_time(now))
        with self.store.transaction() as tx:
            row = tx.query("SELECT version, lng, lat FROM worker_status WHERE worker_id = ?" + self.store.lock_clause(),
                           (worker_id,))
            if not row:
                if expected_version not in (None, 0):
                    raise ConflictError(f"worker {worker_id} has no stored status (version 0), "
                                        f"you expected version {expected_version}.")
                tx.execute("INSERT INTO worker_status (worker_id, status, lng, lat, updated_at, version) "
                           "VALUES (?, ?, ?, ?, ?, 1)", (worker_id, status, lng, lat, at))
                ver, pos = 1, (lng, lat)
            else:
                ver = int(row[0][0])
                if expected_version is not None and expected_version != ver:
                    raise ConflictError(f"worker {worker_id} status changed (version {ver}, you had {expected_version}).")
                pos = (row[0][1] if lng is None else lng, row[0][2] if lat is None else lat)
                tx.execute("UPDATE worker_status SET status = ?, lng = ?, lat = ?, updated_at = ?, version = ? "
                           "WHERE worker_id = ? AND version = ?", (status, *pos, at, ver + 1, worker_id, ver))
                ver += 1
            publish(tx, "worker.status", {"worker_id": worker_id, "status": status, "lng": pos[0], "lat": pos[1],
                                          "updated_at": as_time(now).isoformat(), "status_version": ver,
                                          "grid_code": grid_code},
                    grid_code=grid_code, community_code=community_code, town_code=town_code)
            return ver

    def worker_status(self) -> pd.DataFrame:
        """Stored live status and last position (WGS84) per worker: ``worker_id``, ``status``, ``lng``, ``lat``,
        ``updated_at``, ``version``."""
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
        rows, reported_at = frame_to_rows(incidents)
        cols = ", ".join(FIELDS)
        marks = ", ".join("?" for _ in FIELDS)
        ids = np.empty(len(rows), dtype=np.int64)
        with self.store.transaction() as tx:
            for i, r in enumerate(rows):
                ids[i] = tx.insert(f"INSERT INTO incidents ({cols}) VALUES ({marks})", r)
            if transitions is None:
                tr = pd.DataFrame({"row": np.arange(len(rows)), "action": "report", "from_state": "",
                                   "to_state": "reported", "actor": actor, "at": reported_at,
                                   "reason": "imported"})
            else:
                tr = transitions.copy()
                tr["at"] = iso_column(tr["at"])
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
            _derived.add_rows(tx, [{"id": int(i), **dict(zip(FIELDS, r, strict=True))} for i, r in zip(ids, rows)])
        if self.store.dialect == "postgresql" and len(rows) > 1000:  # fresh planner statistics after a bulk load
            self.store.connection.execute("ANALYZE incidents, incident_handling, incident_agg")
        return ids

    def delete_synthetic(self) -> int:
        """Remove the synthetic history (incidents flagged ``synthetic`` and their records); returns the count."""
        with self.store.transaction() as tx:
            n = int(tx.query("SELECT COUNT(*) FROM incidents WHERE synthetic = 1")[0][0])
            sub = "SELECT id FROM incidents WHERE synthetic = 1"
            tx.execute(f"DELETE FROM incident_transitions WHERE incident_id IN ({sub})")
            tx.execute(f"DELETE FROM incident_links WHERE incident_id IN ({sub})")
            tx.execute("DELETE FROM incidents WHERE synthetic = 1")
            _derived.rebuild(tx)
        return n


def open_incident_store(*, url: str | None = None, twin_root: str | Path | None = None) -> IncidentStore:
    """The incident tables in the shared store (``url``, ``$TWIN_DATABASE_URL`` or ``<twin>/state.sqlite``)."""
    return IncidentStore(open_store(url, twin_root=twin_root))


# -- operations ---------------------------------------------------------------------------------------------
def board_for(istore: IncidentStore, t: Twin) -> pd.DataFrame:
    """The live worker board: ``t.workers`` + stored status/positions + open cases per worker."""
    return worker_board(t.workers, status=istore.worker_status(), open_cases=istore.open_cases())


def report_incident(
    istore: IncidentStore, t: Twin, catalogue: pd.DataFrame, *, actor: str, auto_dispatch: bool = True,
    radius_m: float = DUPLICATE_RADIUS_M, window_h: float = DUPLICATE_WINDOW_H, now: dt.datetime | str | None = None,
    role: Role = DISTRICT, **fields: Any,
) -> tuple[Incident, bool]:
    """Record a report: validate, check it is inside a grid, link it to an open near-duplicate or store it new.

    ``fields`` are :func:`twin.incidents.lifecycle.new_incident` arguments (``category``, ``lng``, ``lat``, ``reported_at``,
    ``channel``, ``severity``, ``reporter``, ``description``, ``attachments``, ``answered_at_once``). With
    ``auto_dispatch`` a new case is dispatched at ``now`` (default: the report time) in the same transaction, so
    no reader sees it stored but not dispatched; if dispatching fails the report is kept undispatched and the
    error is raised. Returns
    ``(incident, linked)``; ``linked`` is True when the report was attached to an existing incident.
    The duplicate check and the insert run in one write transaction, so two simultaneous identical reports
    cannot both become new cases. A report is linked only to an incident inside the reporter's units
    (``role``, :func:`twin.incidents.dispatch.visible_to`); near an incident the reporter may not see it
    becomes a new case, so linking never reveals another unit's incident.
    """
    inc = new_incident(catalogue, **fields)
    loc = locate(t, inc.lng, inc.lat)  # reject points outside every grid before writing anything
    lo = iso(inc.reported_at - dt.timedelta(hours=window_h))
    marks = ", ".join("?" for _ in OPEN_STATES)
    cols = ["id", *FIELDS]
    board = board_for(istore, t) if auto_dispatch else None  # read before the write lock is taken
    failed: TwinError | None = None
    with istore.store.transaction() as tx:
        rows = tx.query(
            f"SELECT {', '.join(cols)} FROM incidents WHERE category = ? AND state IN ({marks}) "
            "AND reported_at >= ? AND reported_at <= ?",
            (inc.category, *OPEN_STATES, lo, iso(inc.reported_at)),
        )
        cands = pd.DataFrame(rows, columns=cols)
        if rows:
            cands = cands[visible_to(cands, t, role)]
        dup = find_duplicate(cands, inc, radius_m=radius_m, window_h=window_h) if len(cands) else None
        if dup is not None:
            master = row_to_incident(cols, next(r for r in rows if r[0] == dup))
            return istore.link(tx, master, inc, actor=actor), True
        stored = istore.add(inc, actor=actor, tx=tx, units={"grid_code": loc.grid_code,
                                                             "community_code": loc.community_code,
                                                             "town_code": loc.town_code})
        if board is not None:  # dispatched in the same commit: no reader ever sees the case without its level
            try:
                new, rec = dispatch(t, stored, board=board, catalogue=catalogue, actor=actor,
                                    now=now or stored.reported_at)
            except TwinError as e:  # the report is kept (reported, not dispatched); the caller hears why
                failed = e
            else:
                stored = istore._save(tx, new, rec)
    if failed is not None:
        raise failed
    return stored, False


def dispatch_incident(
    istore: IncidentStore, t: Twin, catalogue: pd.DataFrame, incident_id: int, *, actor: str,
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
    istore: IncidentStore, t: Twin, incident_id: int, worker_id: str, *, actor: str, now: dt.datetime | str,
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
