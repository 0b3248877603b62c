"""The status of each person on a service's work list, in the shared store (SQLite or PostgreSQL).

One row per (service, person, qualifying date) in ``service_status``; every change also goes to
``service_status_log`` (from, to, who, when, note) and to the audit chain (:func:`twin.access.audit.append`), all in
one transaction. The states::

    identified ──notify──▶ notified ──▶ delivered
                                   └──▶ declined

A change the current state does not allow raises :class:`twin.errors.InvalidTransition`; a change from a stale
version (``expected_version``) raises :class:`twin.errors.ConflictError` (compare-and-set, no lost update); a
person outside the caller's record scope raises :class:`twin.errors.PermissionDenied`
(:func:`twin.access.scope.in_record_scope`). Times are ISO-8601 text in CST (UTC+08:00).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass

import pandas as pd

from twin.access import audit
from twin.access.roles import DISTRICT, Role
from twin.access.scope import in_record_scope, record_scope, sees_everything
from twin.errors import ConflictError, InvalidTransition, NotFoundError, PermissionDenied, ValidationError
from twin.incidents.lifecycle import CST, as_time
from twin.model import Twin
from twin.services.view import as_date
from twin.store.pg import schema_lock_statement
from twin.store.sql import Store, Transaction

__all__ = ["STATES", "NEXT", "StatusRecord", "ServiceStatusStore", "STATUS_COLUMNS"]

STATES = ("identified", "notified", "delivered", "declined")
NEXT: Mapping[str, tuple[str, ...]] = {"identified": ("notified",), "notified": ("delivered", "declined"),
                                       "delivered": (), "declined": ()}
STATUS_COLUMNS = ("service", "person_id", "qualifying_date", "status", "version", "grid_code", "community_code",
                  "updated_by", "updated_at", "note")

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS service_status (
        service TEXT NOT NULL, person_id BIGINT NOT NULL, qualifying_date TEXT NOT NULL, status TEXT NOT NULL,
        version INTEGER NOT NULL, grid_code TEXT NOT NULL, community_code TEXT NOT NULL, updated_by TEXT NOT NULL,
        updated_at TEXT NOT NULL, note TEXT NOT NULL, PRIMARY KEY (service, person_id, qualifying_date))""",
    "CREATE INDEX IF NOT EXISTS service_status_grid ON service_status (grid_code)",
    """CREATE TABLE IF NOT EXISTS service_status_log (
        id INTEGER PRIMARY KEY AUTOINCREMENT, service TEXT NOT NULL, person_id BIGINT NOT NULL,
        qualifying_date TEXT NOT NULL, from_status TEXT NOT NULL, to_status TEXT NOT NULL, actor TEXT NOT NULL,
        at TEXT NOT NULL, note TEXT NOT NULL)""",
)


@dataclass(frozen=True)
class StatusRecord:
    """One person's status on one service's list."""

    service: str
    person_id: int
    qualifying_date: dt.date
    status: str
    version: int
    grid_code: str
    community_code: str
    updated_by: str
    updated_at: str
    note: str

    @property
    def key(self) -> str:
        return f"{self.service}/{self.person_id}/{self.qualifying_date}"


def _now(at: dt.datetime | str | None) -> str:
    return as_time(dt.datetime.now(CST) if at is None else at).isoformat(timespec="microseconds")


class ServiceStatusStore:
    """Work-list statuses on a :class:`twin.store.sql.Store` (creates the tables on first use)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        store.ensure_schema("service_status", (*schema_lock_statement(store), *_SCHEMA))

    def identify(self, rows: pd.DataFrame, *, role: Role = DISTRICT, t: Twin | None = None,
                 at: dt.datetime | str | None = None) -> int:
        """Record every row of a work list (``service``, ``person_id``, ``qualifying_date``, ``grid_code``,
        ``community_code``) as ``identified`` unless it is already recorded; returns how many were new.
        Idempotent: running the same month twice adds nothing. A scoped ``role`` (needs ``t``) may identify rows
        of its record scope only (:class:`PermissionDenied` names a grid outside it)."""
        if not sees_everything(role):
            if t is None or not role.can_see_records:
                raise PermissionDenied(f"role {role.name!r} needs its twin (for its scope) and the record right.")
            outside = sorted(set(rows["grid_code"].astype(str)) - record_scope(role, t))
            if outside:
                raise PermissionDenied(f"user {role.user!r} may not identify persons of grid(s) "
                                       f"{', '.join(outside[:5])}: outside {role.scope_level} "
                                       f"{', '.join(role.scope_codes)}.")
        when = _now(at)
        new = 0
        with self.store.transaction() as tx:
            for r in rows[["service", "person_id", "qualifying_date", "grid_code", "community_code"]].itertuples(
                    index=False):
                q = as_date(r.qualifying_date).isoformat()
                cur = tx.execute(
                    "INSERT INTO service_status (service, person_id, qualifying_date, status, version, grid_code, "
                    "community_code, updated_by, updated_at, note) VALUES (?, ?, ?, 'identified', 1, ?, ?, ?, ?, '') "
                    "ON CONFLICT (service, person_id, qualifying_date) DO NOTHING",
                    (str(r.service), int(r.person_id), q, str(r.grid_code), str(r.community_code), role.user, when))
                if cur.rowcount == 1:
                    new += 1
                    self._log(tx, str(r.service), int(r.person_id), q, "", "identified", role.user, when, "")
            if new:
                audit.append(self.store, user=role.user, role=role.name, endpoint="services.identify",
                             method="POST", counts={"identified": new}, tx=tx)
        return new

    def get(self, service: str, person_id: int, qualifying_date: dt.date | str) -> StatusRecord:
        """The stored status; :class:`NotFoundError` when the person is not on that list."""
        rows = self.store.query(
            f"SELECT {', '.join(STATUS_COLUMNS)} FROM service_status WHERE service = ? AND person_id = ? "
            "AND qualifying_date = ?", (service, int(person_id), as_date(qualifying_date).isoformat()))
        if not rows:
            raise NotFoundError(f"person {person_id} is not on the {service!r} list for {qualifying_date}; run the "
                                f"services for that month and identify the list first.")
        return _record(rows[0])

    def advance(self, service: str, person_id: int, qualifying_date: dt.date | str, to: str, *, t: Twin,
                role: Role = DISTRICT, note: str = "", at: dt.datetime | str | None = None,
                expected_version: int | None = None) -> StatusRecord:
        """Move one person's status to ``to`` (who = ``role.user``, when = ``at`` or now) and return it.

        Raises
        ------
        InvalidTransition
            ``to`` is not a state the current one may go to (e.g. identified → delivered).
        ConflictError
            ``expected_version`` is not the stored version, or another writer changed it meanwhile.
        PermissionDenied
            The person's grid is outside ``role``'s record scope.
        """
        if to not in STATES:
            raise ValidationError(f"unknown status {to!r}; use one of {', '.join(STATES)}.")
        q = as_date(qualifying_date).isoformat()
        with self.store.transaction() as tx:
            rows = tx.query(f"SELECT {', '.join(STATUS_COLUMNS)} FROM service_status WHERE service = ? AND "
                            f"person_id = ? AND qualifying_date = ?{self.store.lock_clause()}",
                            (service, int(person_id), q))
            if not rows:
                raise NotFoundError(f"person {person_id} is not on the {service!r} list for {q}.")
            cur = _record(rows[0])
            if not sees_everything(role) and not in_record_scope(role, t, cur.grid_code):
                raise PermissionDenied(f"user {role.user!r} may not change {cur.key}: grid {cur.grid_code} is "
                                       f"outside {role.scope_level} {', '.join(role.scope_codes)}.")
            if expected_version is not None and int(expected_version) != cur.version:
                raise ConflictError(f"{cur.key} is at version {cur.version} ({cur.status}, by {cur.updated_by} at "
                                    f"{cur.updated_at}), not {expected_version}; reload and try again.")
            if to not in NEXT[cur.status]:
                allowed = " or ".join(NEXT[cur.status]) or "nothing (final)"
                raise InvalidTransition(f"{cur.key}: cannot go from {cur.status!r} to {to!r}; next may be {allowed}. "
                                        "The order is identified → notified → delivered / declined.")
            when = _now(at)
            done = tx.execute("UPDATE service_status SET status = ?, version = ?, updated_by = ?, updated_at = ?, "
                              "note = ? WHERE service = ? AND person_id = ? AND qualifying_date = ? AND version = ?",
                              (to, cur.version + 1, role.user, when, note, service, int(person_id), q, cur.version))
            if done.rowcount != 1:  # pragma: no cover - the row lock / BEGIN IMMEDIATE makes this unreachable
                raise ConflictError(f"{cur.key} changed while it was being updated; reload and try again.")
            self._log(tx, service, int(person_id), q, cur.status, to, role.user, when, note)
            audit.append(self.store, user=role.user, role=role.name, endpoint="services.status", method="POST",
                         detail=f"{cur.key}: {cur.status} → {to}", tx=tx)
        return StatusRecord(service, int(person_id), as_date(q), to, cur.version + 1, cur.grid_code,
                            cur.community_code, role.user, when, note)

    def frame(self, *, t: Twin | None = None, role: Role = DISTRICT, service: str | None = None) -> pd.DataFrame:
        """All statuses ``role`` may see (:data:`STATUS_COLUMNS`), optionally of one service."""
        sql, params = f"SELECT {', '.join(STATUS_COLUMNS)} FROM service_status", []
        if service is not None:
            sql, params = sql + " WHERE service = ?", [service]
        out = pd.DataFrame(self.store.query(sql + " ORDER BY service, person_id, qualifying_date", params),
                           columns=list(STATUS_COLUMNS))
        if not sees_everything(role):
            if t is None or not role.can_see_records:
                raise PermissionDenied(f"role {role.name!r} needs its twin (for its scope) and the record right.")
            out = out.loc[out["grid_code"].isin(record_scope(role, t))].reset_index(drop=True)
        return out

    def history(self, service: str, person_id: int, qualifying_date: dt.date | str) -> pd.DataFrame:
        """Every change of one person's status, oldest first: from_status, to_status, actor, at, note."""
        rows = self.store.query("SELECT from_status, to_status, actor, at, note FROM service_status_log WHERE "
                                "service = ? AND person_id = ? AND qualifying_date = ? ORDER BY id",
                                (service, int(person_id), as_date(qualifying_date).isoformat()))
        return pd.DataFrame(rows, columns=["from_status", "to_status", "actor", "at", "note"])

    @staticmethod
    def _log(tx: Transaction, service: str, pid: int, q: str, frm: str, to: str, actor: str, at: str,
             note: str) -> None:
        tx.execute("INSERT INTO service_status_log (service, person_id, qualifying_date, from_status, to_status, "
                   "actor, at, note) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", (service, pid, q, frm, to, actor, at, note))


def _record(row: tuple) -> StatusRecord:
    d = dict(zip(STATUS_COLUMNS, row))
    return StatusRecord(str(d["service"]), int(d["person_id"]), as_date(d["qualifying_date"]), str(d["status"]),
                        int(d["version"]), str(d["grid_code"]), str(d["community_code"]), str(d["updated_by"]),
                        str(d["updated_at"]), str(d["note"]))
