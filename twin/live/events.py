"""Changes as events in the shared store (SQLite WAL embedded, PostgreSQL by URL), in commit order.

Tables (portable SQL, :mod:`twin.store.sql`):

* ``live_sets`` — one row per committed change set: ``id``, ``committed_at`` (UTC ISO), ``author``, ``role``,
  ``n_changes``, ``audit_seq`` (its entry in the tamper-evident audit chain, :mod:`twin.access.audit`).
* ``live_events`` — one row per change: ``seq`` (commit order, 1, 2, …), ``set_id``, ``kind``, ``effective_date``
  (ISO), ``author``, ``reason``, ``change`` (the change as JSON, :func:`twin.live.changes.change_to_dict`) and
  ``writes`` (JSON ``[[table, id, row | null, flag], …]``: the record rows it set, replayed to rebuild the state).

A change set is written in ONE transaction together with its audit entry and one ``record.changed`` row of the
push feed (:mod:`twin.store.feed`): all or nothing — a crash mid-set leaves none of it visible. Writers are
serialised (SQLite ``BEGIN IMMEDIATE``; PostgreSQL a transaction-scoped advisory lock), so ``seq`` order is
commit order and every change is validated against all changes committed before it (compare-and-set).
The snapshot's parquet files are never touched.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from twin.access import audit
from twin.encoding import dumps, loads
from twin.live._world import record_key
from twin.live.changes import Change, change_to_dict
from twin.store import feed
from twin.store.pg import schema_lock_statement
from twin.store.sql import Store, Transaction

__all__ = ["CommitResult", "EventRow", "ensure_schema", "read_events", "write_change_set", "head_seq"]

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS live_sets (
        id INTEGER PRIMARY KEY AUTOINCREMENT, committed_at TEXT NOT NULL, author TEXT NOT NULL, role TEXT NOT NULL,
        n_changes INTEGER NOT NULL, audit_seq BIGINT)""",
    """CREATE TABLE IF NOT EXISTS live_events (
        seq INTEGER PRIMARY KEY AUTOINCREMENT, set_id BIGINT NOT NULL, kind TEXT NOT NULL,
        effective_date TEXT NOT NULL, author TEXT NOT NULL, reason TEXT NOT NULL, change TEXT NOT NULL,
        writes TEXT NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS live_events_effective ON live_events (effective_date)",
)
_PG_WRITER_LOCK = "SELECT pg_advisory_xact_lock(7007012)"  # one change-set writer at a time until commit
_BATCH = 100


@dataclass(frozen=True)
class EventRow:
    """One committed change as stored."""

    seq: int
    set_id: int
    kind: str
    effective_date: dt.date
    author: str
    reason: str
    change: dict[str, Any]
    writes: list[list[Any]]


@dataclass(frozen=True)
class CommitResult:
    """A committed change set: its id, the ``seq`` of each change, the records each created (``"person:1330001"``
    …) and its audit entry's ``seq``."""

    set_id: int
    seqs: tuple[int, ...]
    created: tuple[tuple[str, ...], ...]
    audit_seq: int | None


def ensure_schema(store: Store) -> None:
    """Create the event tables if missing (once per process; safe across processes)."""
    store.ensure_schema("live_events", schema_lock_statement(store) + _SCHEMA)


def head_seq(store: Store) -> int:
    """The newest committed change's ``seq`` (0 when there is none)."""
    ensure_schema(store)
    return int(store.query("SELECT COALESCE(MAX(seq), 0) FROM live_events")[0][0])


def _row(r: tuple) -> EventRow:
    return EventRow(int(r[0]), int(r[1]), str(r[2]), dt.date.fromisoformat(str(r[3])), str(r[4]), str(r[5]),
                    loads(r[6]), loads(r[7]))


_SELECT = "SELECT seq, set_id, kind, effective_date, author, reason, change, writes FROM live_events"


def read_events(store: Store | Transaction, *, since_seq: int = 0, start: dt.date | None = None,
                end: dt.date | None = None) -> list[EventRow]:
    """Committed events with ``seq > since_seq`` (and ``start <= effective_date <= end`` when given), by seq."""
    sql = _SELECT + " WHERE seq > ?"
    params: list[Any] = [int(since_seq)]
    if start is not None:
        sql, params = sql + " AND effective_date >= ?", [*params, start.isoformat()]
    if end is not None:
        sql, params = sql + " AND effective_date <= ?", [*params, end.isoformat()]
    return [_row(r) for r in store.query(sql + " ORDER BY seq", params)]


def write_change_set(store: Store, changes: Sequence[Change], *, role: str,
                     resolve: Callable[[Transaction], list[list[list[Any]]]],
                     after_lock: Callable[[Transaction], None]) -> CommitResult:
    """Commit one change set atomically.

    Inside one transaction: take the writer lock, call ``after_lock(tx)`` (the caller catches up with changes
    committed by others), ``resolve(tx)`` (validate every change in order; returns each change's writes; raising
    aborts the whole set), insert the set and its events, append the audit entry and the feed row, commit.
    """
    ensure_schema(store)
    feed.ensure_feed(store)
    author = changes[0].author
    with store.transaction() as tx:
        if store.dialect == "postgresql":
            tx.execute(_PG_WRITER_LOCK)
        after_lock(tx)
        writes = resolve(tx)
        now = dt.datetime.now(dt.UTC).isoformat(timespec="microseconds")
        set_id = tx.insert("INSERT INTO live_sets (committed_at, author, role, n_changes) VALUES (?, ?, ?, ?)",
                           (now, author, role, len(changes)))
        _insert_events(tx, set_id, changes, writes)
        seqs = tuple(int(r[0]) for r in tx.query("SELECT seq FROM live_events WHERE set_id = ? ORDER BY seq",
                                                 (set_id,)))
        kinds: dict[str, int] = {}
        for c in changes:
            kinds[c.kind] = kinds.get(c.kind, 0) + 1
        entry = audit.append(store, user=author, role=role, endpoint="live.changes", method="POST",
                             counts={"changes": len(changes)}, outcome="ok", status=200,
                             detail=f"change set {set_id}: seq {seqs[0]}–{seqs[-1]} " + dumps(kinds).decode(),
                             tx=tx)
        tx.execute("UPDATE live_sets SET audit_seq = ? WHERE id = ?", (int(entry.seq), set_id))
        feed.publish(tx, "record.changed", {"set_id": set_id, "first_seq": seqs[0], "last_seq": seqs[-1],
                                            "changes": len(changes), "kinds": kinds})
    created = tuple(tuple(record_key(w[0], w[1]) for w in ws if w[3] == "created") for ws in writes)
    return CommitResult(set_id, seqs, created, int(entry.seq))


def _insert_events(tx: Transaction, set_id: int, changes: Sequence[Change], writes: list[list[list[Any]]]) -> None:
    rows = [(set_id, c.kind, c.effective_date.isoformat(), c.author, c.reason, dumps(change_to_dict(c)).decode(),
             dumps(w).decode()) for c, w in zip(changes, writes)]
    for i in range(0, len(rows), _BATCH):
        chunk = rows[i:i + _BATCH]
        values = ", ".join(["(?, ?, ?, ?, ?, ?, ?)"] * len(chunk))
        tx.execute("INSERT INTO live_events (set_id, kind, effective_date, author, reason, change, writes) VALUES "
                   + values, [v for r in chunk for v in r])
