"""Tables derived from ``incidents`` and kept current in the same transaction as every incident write, so that the
queue and the statistics never read the whole table (private to :mod:`twin.incidents.store`).

* ``incident_agg`` — additive counts per reporting month (``YYYY-MM``, CST) and stored grid/community/town
  (``''`` for a case not yet dispatched): ``n``, ``closed``, ``on_time``, ``handled`` (closed with a resolution time),
  ``answered`` (answered at once) and ``s1`` … ``s5`` (follow-ups per satisfaction score).
* ``incident_agg_town`` — the same per month and town only (≈ 50 rows a year): district- and town-wide figures.
* ``incident_handling`` — one row per closed case with its handling time in hours (report → resolution), indexed by
  unit and hours, so a median is an indexed ``ORDER BY … LIMIT/OFFSET``.
* ``incident_handling_hist`` — district-wide counts of handling times per quarter-hour bucket
  (:data:`BUCKETS_PER_H`), so the district median reads one bucket instead of half of the index.
* ``incident_handling_hist_wide`` — the same counts per :data:`WIDE` buckets (16 h), so finding the median's bucket
  reads ≈ 50 + 64 rows instead of every quarter-hour bucket (≈ 1,400 at 300,000 cases).

:func:`apply_change` subtracts a row's old contribution and adds its new one; :func:`rebuild` recomputes both tables
from ``incidents`` (bulk imports, deletions, and an existing store opened for the first time by this version).
The definitions are those of :func:`twin.incidents.stats.incident_stats`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

from twin.incidents.lifecycle import CLOSED_STATES
from twin.store.pg import schema_lock_statement
from twin.store.sql import Store, Transaction

__all__ = ["SCHEMA", "ROW_COLUMNS", "AGG_COLUMNS", "counts_of", "apply_change", "add_rows", "insert_handling", "rebuild", "rebuild_if_missing", "handling_h", "WIDE"]

ROW_COLUMNS = ("id", "reported_at", "grid_code", "community_code", "town_code", "state", "resolved_at", "deadline",
               "satisfaction", "answered_at_once")
AGG_COLUMNS = ("n", "closed", "on_time", "handled", "answered", "s1", "s2", "s3", "s4", "s5")
_KEY = ("month", "grid_code", "community_code", "town_code")
SCHEMA = [
    f"""CREATE TABLE IF NOT EXISTS incident_agg (
        month TEXT NOT NULL, grid_code TEXT NOT NULL, community_code TEXT NOT NULL, town_code TEXT NOT NULL,
        {", ".join(f"{c} BIGINT NOT NULL" for c in AGG_COLUMNS)},
        PRIMARY KEY (month, grid_code, community_code, town_code))""",
    f"""CREATE TABLE IF NOT EXISTS incident_agg_town (
        month TEXT NOT NULL, town_code TEXT NOT NULL, {", ".join(f"{c} BIGINT NOT NULL" for c in AGG_COLUMNS)},
        PRIMARY KEY (month, town_code))""",
    """CREATE TABLE IF NOT EXISTS incident_handling (
        id BIGINT PRIMARY KEY, grid_code TEXT NOT NULL, community_code TEXT NOT NULL, town_code TEXT NOT NULL,
        reported_at TEXT NOT NULL, handling_h DOUBLE PRECISION NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS incident_handling_h ON incident_handling (handling_h)",
    "CREATE TABLE IF NOT EXISTS incident_handling_hist (bucket BIGINT PRIMARY KEY, n BIGINT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS incident_handling_hist_wide (wide BIGINT PRIMARY KEY, n BIGINT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS incident_handling_grid ON incident_handling (grid_code, handling_h)",
    "CREATE INDEX IF NOT EXISTS incident_handling_comm ON incident_handling (community_code, handling_h)",
    "CREATE INDEX IF NOT EXISTS incident_handling_town ON incident_handling (town_code, handling_h)",
]
BUCKETS_PER_H = 4  # a power of two: bucket * 4 and bucket / 4 are exact in floating point
WIDE = 64  # quarter-hour buckets per incident_handling_hist_wide row (16 h)
_MAX_BUCKET = 10_000 * BUCKETS_PER_H
_CLOSED_SQL = ", ".join(f"'{s}'" for s in CLOSED_STATES)


def _upsert_sql(table: str, key: tuple[str, ...]) -> str:
    cols = key + AGG_COLUMNS
    return (f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))}) "
            f"ON CONFLICT ({', '.join(key)}) DO UPDATE SET "
            + ", ".join(f"{c} = {table}.{c} + excluded.{c}" for c in AGG_COLUMNS))


_UPSERT = _upsert_sql("incident_agg", _KEY)
_UPSERT_TOWN = _upsert_sql("incident_agg_town", ("month", "town_code"))


def _write_sums(tx: Transaction, delta: Mapping[tuple[str, str, str, str], list[int]]) -> None:
    """Add per-(month, grid, community, town) count changes to both aggregate tables (zero changes skipped)."""
    towns: dict[tuple[str, str], list[int]] = {}
    for key, vals in delta.items():
        acc = towns.setdefault((key[0], key[3]), [0] * len(AGG_COLUMNS))
        for i, v in enumerate(vals):
            acc[i] += v
        if any(vals):
            tx.execute(_UPSERT, (*key, *vals))
    for key2, vals in towns.items():
        if any(vals):
            tx.execute(_UPSERT_TOWN, (*key2, *vals))


def bucket_of(hours: float) -> int:
    """The ``incident_handling_hist`` bucket of a handling time (``floor(hours × 4)``, clipped to 0–40,000)."""
    return min(max(int(hours * BUCKETS_PER_H // 1), 0), _MAX_BUCKET)


def _hist(tx: Transaction, counts: Mapping[int, int]) -> None:
    """Add per-bucket count changes to both histogram levels (zero changes skipped)."""
    wide: dict[int, int] = {}
    for b, n in counts.items():
        if n:
            tx.execute("INSERT INTO incident_handling_hist (bucket, n) VALUES (?, ?) ON CONFLICT (bucket) "
                       "DO UPDATE SET n = incident_handling_hist.n + excluded.n", (b, n))
            wide[b // WIDE] = wide.get(b // WIDE, 0) + n
    for w, n in wide.items():
        if n:
            tx.execute("INSERT INTO incident_handling_hist_wide (wide, n) VALUES (?, ?) ON CONFLICT (wide) "
                       "DO UPDATE SET n = incident_handling_hist_wide.n + excluded.n", (w, n))


def handling_h(reported_at: str, resolved_at: str) -> float:
    """Hours from report to resolution (stored ISO texts), as pandas computes them."""
    return (dt.datetime.fromisoformat(resolved_at) - dt.datetime.fromisoformat(reported_at)).total_seconds() / 3600.0


def _key(row: Mapping[str, Any]) -> tuple[str, str, str, str]:
    return (str(row["reported_at"])[:7], row["grid_code"] or "", row["community_code"] or "", row["town_code"] or "")


def counts_of(row: Mapping[str, Any]) -> list[int]:
    """One incident's contribution to :data:`AGG_COLUMNS` (stored values by column)."""
    closed = row["state"] in CLOSED_STATES
    resolved, deadline = row["resolved_at"], row["deadline"]
    handled = closed and resolved is not None
    sat = row["satisfaction"]
    return [1, int(closed), int(handled and deadline is not None and resolved <= deadline), int(handled),
            int(bool(row["answered_at_once"]))] + [int(sat is not None and int(sat) == k) for k in range(1, 6)]


def _handling_row(row: Mapping[str, Any]) -> tuple[Any, ...] | None:
    if row["state"] not in CLOSED_STATES or row["resolved_at"] is None:
        return None
    k = _key(row)
    return (int(row["id"]), k[1], k[2], k[3], str(row["reported_at"]),
            handling_h(str(row["reported_at"]), str(row["resolved_at"])))


def apply_change(tx: Transaction, old: Mapping[str, Any] | None, new: Mapping[str, Any] | None) -> None:
    """Move one incident's contribution from ``old`` to ``new`` (stored values by :data:`ROW_COLUMNS`; ``None`` for
    an insert or a delete)."""
    delta: dict[tuple[str, str, str, str], list[int]] = {}
    for row, sign in ((old, -1), (new, 1)):
        if row is not None:
            acc = delta.setdefault(_key(row), [0] * len(AGG_COLUMNS))
            for i, v in enumerate(counts_of(row)):
                acc[i] += sign * v
    _write_sums(tx, delta)
    h_old = _handling_row(old) if old is not None else None
    h_new = _handling_row(new) if new is not None else None
    if h_old == h_new:
        return
    hist: dict[int, int] = {}
    if h_old is not None:
        tx.execute("DELETE FROM incident_handling WHERE id = ?", (h_old[0],))
        hist[bucket_of(h_old[5])] = hist.get(bucket_of(h_old[5]), 0) - 1
    if h_new is not None:
        tx.execute("INSERT INTO incident_handling (id, grid_code, community_code, town_code, reported_at, handling_h) "
                   "VALUES (?, ?, ?, ?, ?, ?)", h_new)
        hist[bucket_of(h_new[5])] = hist.get(bucket_of(h_new[5]), 0) + 1
    _hist(tx, hist)


def add_rows(tx: Transaction, rows: Sequence[Mapping[str, Any]]) -> None:
    """Add the contributions of many newly inserted incidents (bulk import) in a few statements."""
    acc: dict[tuple[str, str, str, str], list[int]] = {}
    handling = []
    for row in rows:
        a = acc.setdefault(_key(row), [0] * len(AGG_COLUMNS))
        for i, v in enumerate(counts_of(row)):
            a[i] += v
        h = _handling_row(row)
        if h is not None:
            handling.append(h)
    _write_sums(tx, acc)
    insert_handling(tx, handling)


def rebuild(tx: Transaction) -> None:
    """Recompute ``incident_agg`` and ``incident_handling`` from ``incidents`` (inside ``tx``)."""
    tx.execute("DELETE FROM incident_agg")
    tx.execute("DELETE FROM incident_agg_town")
    tx.execute("DELETE FROM incident_handling")
    tx.execute("DELETE FROM incident_handling_hist")
    tx.execute("DELETE FROM incident_handling_hist_wide")
    closed = f"state IN ({_CLOSED_SQL})"
    handled = f"({closed} AND resolved_at IS NOT NULL)"
    sums = [
        "COUNT(*)", f"SUM(CASE WHEN {closed} THEN 1 ELSE 0 END)",
        f"SUM(CASE WHEN {handled} AND deadline IS NOT NULL AND resolved_at <= deadline THEN 1 ELSE 0 END)",
        f"SUM(CASE WHEN {handled} THEN 1 ELSE 0 END)", "SUM(CASE WHEN answered_at_once <> 0 THEN 1 ELSE 0 END)",
    ] + [f"SUM(CASE WHEN satisfaction = {k} THEN 1 ELSE 0 END)" for k in range(1, 6)]
    keys = "substr(reported_at, 1, 7), COALESCE(grid_code, ''), COALESCE(community_code, ''), COALESCE(town_code, '')"
    tx.execute(f"INSERT INTO incident_agg ({', '.join(_KEY + AGG_COLUMNS)}) SELECT {keys}, {', '.join(sums)} "
               f"FROM incidents GROUP BY {keys}")
    tx.execute(f"INSERT INTO incident_agg_town (month, town_code, {', '.join(AGG_COLUMNS)}) SELECT month, town_code, "
               f"{', '.join(f'SUM({c})' for c in AGG_COLUMNS)} FROM incident_agg GROUP BY month, town_code")
    rows = tx.query("SELECT id, COALESCE(grid_code, ''), COALESCE(community_code, ''), COALESCE(town_code, ''), "
                    f"reported_at, resolved_at FROM incidents WHERE {handled}")
    insert_handling(tx, [(r[0], r[1], r[2], r[3], r[4], handling_h(r[4], r[5])) for r in rows])


def insert_handling(tx: Transaction, rows: Sequence[tuple[Any, ...]], batch: int = 150) -> None:
    """Insert ``incident_handling`` rows (id, grid, community, town, reported_at, hours) in multi-row batches, and
    count them in ``incident_handling_hist``."""
    hist: dict[int, int] = {}
    for r in rows:
        b = bucket_of(r[5])
        hist[b] = hist.get(b, 0) + 1
    _hist(tx, hist)
    head = "INSERT INTO incident_handling (id, grid_code, community_code, town_code, reported_at, handling_h) VALUES "
    for i in range(0, len(rows), batch):
        chunk = rows[i:i + batch]
        tx.execute(head + ", ".join(["(?, ?, ?, ?, ?, ?)"] * len(chunk)), [v for r in chunk for v in r])


def rebuild_if_missing(store: Store) -> None:
    """Build the derived tables of a store that has incidents but no aggregates yet (opened by an older version)."""
    def missing(q: Any) -> bool:
        return bool(q("SELECT 1 FROM incidents LIMIT 1")) and (
            not q("SELECT 1 FROM incident_agg_town LIMIT 1")
            or bool(q("SELECT 1 FROM incident_handling LIMIT 1")) and (
                not q("SELECT 1 FROM incident_handling_hist LIMIT 1")
                or not q("SELECT 1 FROM incident_handling_hist_wide LIMIT 1")))

    if not missing(store.query):
        return
    with store.transaction() as tx:
        for st in schema_lock_statement(store):
            tx.execute(st)
        if missing(tx.query):
            rebuild(tx)
