"""The push feed: a ``feed`` table of change events, written inside the writer's transaction, read by sequence.

An event exists if and only if the change it announces committed: call :func:`publish` with the writer's own
:class:`~twin.store.sql.Transaction`, **as the last statement before commit** (on PostgreSQL it takes a
transaction-scoped advisory lock so that sequence order is commit order; taking it last keeps the lock short and
never behind another row lock). Readers (``GET /events``, :mod:`twin.service.events`) poll :func:`read_since`.

Columns: ``seq`` (1, 2, … never reused), ``ts`` (UTC ISO-8601 with microseconds), ``kind`` (e.g.
``incident.created``, ``incident.updated``, ``worker.status``, ``version.ready``, ``record.changed``), ``payload``
(JSON object written by :func:`twin.encoding.dumps`; no personal fields — screens filter by scope only) and the
scope keys ``grid_code``/``community_code``/``town_code`` (``None`` = not tied to a unit: visible to every scope).

>>> with store.transaction() as tx:                                                   # doctest: +SKIP
...     tx.execute("UPDATE ...")
...     publish(tx, "record.changed", {"table": "persons", "id": 7}, grid_code="440604001001001")
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from twin.encoding import dumps, loads
from twin.errors import ValidationError
from twin.store.pg import schema_lock_statement
from twin.store.sql import Store, Transaction

__all__ = ["FeedEvent", "KINDS", "publish", "read_since", "head_seq", "ensure_feed"]

#: The event kinds screens understand (others are allowed: a kind is ``word.word``).
KINDS = ("incident.created", "incident.updated", "worker.status", "version.ready", "record.changed")
_SCOPE_KEYS = ("grid_code", "community_code", "town_code")
_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS feed (
        seq INTEGER PRIMARY KEY AUTOINCREMENT, ts TEXT NOT NULL, kind TEXT NOT NULL, payload TEXT NOT NULL,
        grid_code TEXT, community_code TEXT, town_code TEXT)""",
)
_PG_ORDER_LOCK = "SELECT pg_advisory_xact_lock(7007002)"  # one publisher at a time until commit: seq = commit order
_LOCK = threading.Lock()


@dataclass(frozen=True)
class FeedEvent:
    """One committed change: ``seq``, ``ts`` (UTC ISO), ``kind``, ``payload`` (dict) and its scope keys."""

    seq: int
    ts: str
    kind: str
    payload: dict[str, Any]
    grid_code: str | None = None
    community_code: str | None = None
    town_code: str | None = None

    def scope(self) -> dict[str, str]:
        """The scope keys that are set."""
        return {k: v for k in _SCOPE_KEYS if (v := getattr(self, k))}


def ensure_feed(store: Store) -> None:
    """Create the ``feed`` table if it is missing (once per process; safe across processes)."""
    with _LOCK:
        store.ensure_schema("feed", schema_lock_statement(store) + _SCHEMA)


def publish(tx: Transaction, kind: str, payload: Mapping[str, Any], *, grid_code: str | None = None,
            community_code: str | None = None, town_code: str | None = None) -> int:
    """Append one event to the feed inside ``tx`` (the writer's transaction) and return its ``seq``.

    Parameters
    ----------
    tx : the transaction that makes the change (the event commits or rolls back with it). Call this last.
    kind : ``"incident.created"``, ``"incident.updated"``, ``"worker.status"``, ``"version.ready"``,
        ``"record.changed"`` (or another ``word.word``).
    payload : a JSON-able mapping (encoded with :func:`twin.encoding.dumps`); keep personal fields out of it.
    grid_code, community_code, town_code : the units the change belongs to; subscribers see it only when it is in
        their scope. Give every level you know; none at all means a district-wide event everyone may see.
    """
    if not isinstance(kind, str) or kind.count(".") != 1 or not all(kind.split(".")):
        raise ValidationError(f"feed kind must look like 'incident.created', got {kind!r}.")
    if not isinstance(payload, Mapping):
        raise ValidationError(f"feed payload must be a mapping, got {type(payload).__name__}.")
    store = tx._store
    if "feed" not in store._schemas:  # inside the caller's transaction: no nested BEGIN
        for st in schema_lock_statement(store) + _SCHEMA:
            tx.execute(store.ddl(st))
    if store.dialect == "postgresql":
        tx.execute(_PG_ORDER_LOCK)
    ts = dt.datetime.now(dt.UTC).isoformat(timespec="microseconds")
    codes = [None if v in (None, "") else str(v) for v in (grid_code, community_code, town_code)]
    sql = "INSERT INTO feed (ts, kind, payload, grid_code, community_code, town_code) VALUES (?, ?, ?, ?, ?, ?)"
    params = (ts, kind, dumps(dict(payload)).decode(), *codes)
    if store.dialect == "postgresql":
        return int(tx.execute(sql + " RETURNING seq", params).fetchone()[0])
    return int(tx.execute(sql, params).lastrowid)


def read_since(store: Store, seq: int, limit: int = 1000) -> list[FeedEvent]:
    """Committed events with ``seq`` greater than ``seq``, oldest first, at most ``limit``."""
    ensure_feed(store)
    rows = store.query("SELECT seq, ts, kind, payload, grid_code, community_code, town_code FROM feed "
                       "WHERE seq > ? ORDER BY seq LIMIT ?", (int(seq), int(limit)))
    return [FeedEvent(int(r[0]), str(r[1]), str(r[2]), loads(r[3]), r[4], r[5], r[6]) for r in rows]


def head_seq(store: Store) -> int:
    """The newest committed ``seq`` (0 for an empty feed)."""
    ensure_feed(store)
    return int(store.query("SELECT COALESCE(MAX(seq), 0) FROM feed")[0][0])
