"""Append-only, tamper-evident audit log (操作日志留痕) in the shared store.

Every query and edit appends one :class:`Entry`: who (user, role), when (UTC, microseconds), what (endpoint,
method, area hash and area in km² measured in EPSG:4547, counts returned, partition version), outcome and HTTP
status. Entries are numbered ``seq = 1, 2, …`` and each carries ``prev_hash`` (the previous entry's ``hash``) and
``hash = sha256(canonical JSON of its own fields + prev_hash)``; the first entry's ``prev_hash`` is
:data:`GENESIS`. A one-row head table holds the last ``seq``/``hash``: appenders lock it, so concurrent writers
(threads, processes, PostgreSQL sessions) never fork the chain, and deleting the newest entries is detected too.

Append-only is enforced by database triggers (UPDATE/DELETE abort). Someone with raw database access can drop the
triggers, but then :func:`verify` reports the first entry whose hash or link no longer matches.

Area footprints are kept once per distinct area in ``audit_areas`` (GeoJSON text; on PostgreSQL with PostGIS also
a ``geometry(Geometry, 4326)`` column with a GiST index) so that "who looked at this place?" is one query
(:func:`entries_touching`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import threading
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import shapely
from shapely.geometry.base import BaseGeometry

from twin.crs import area_km2 as _area_km2
from twin.store.pg import schema_lock_statement
from twin.store.sql import Store

_SCHEMA_LOCK = threading.Lock()

__all__ = [
    "Entry",
    "VerifyReport",
    "GENESIS",
    "append",
    "entries",
    "verify",
    "area_hash",
    "entries_touching",
    "head_seq",
]

GENESIS = "0" * 64
_FIELDS = ("seq", "ts", "user_name", "role", "endpoint", "method", "area_hash", "area_km2", "counts", "version",
           "outcome", "status", "detail", "prev_hash")

_SCHEMA_COMMON = (
    """CREATE TABLE IF NOT EXISTS audit_log (
        seq BIGINT PRIMARY KEY,
        ts TEXT NOT NULL,
        user_name TEXT NOT NULL,
        role TEXT NOT NULL,
        endpoint TEXT NOT NULL,
        method TEXT NOT NULL,
        area_hash TEXT,
        area_km2 DOUBLE PRECISION,
        counts TEXT NOT NULL,
        version TEXT,
        outcome TEXT NOT NULL,
        status INTEGER NOT NULL,
        detail TEXT NOT NULL,
        prev_hash TEXT NOT NULL,
        hash TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS audit_log_user ON audit_log(user_name, seq)",
    "CREATE INDEX IF NOT EXISTS audit_log_area ON audit_log(area_hash)",
    """CREATE TABLE IF NOT EXISTS audit_head (
        id INTEGER PRIMARY KEY,
        seq BIGINT NOT NULL,
        hash TEXT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS audit_areas (
        area_hash TEXT PRIMARY KEY,
        geojson TEXT NOT NULL,
        area_km2 DOUBLE PRECISION NOT NULL
    )""",
)

_SQLITE_GUARDS = (
    """CREATE TRIGGER IF NOT EXISTS audit_log_no_update BEFORE UPDATE ON audit_log
       BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END""",
    """CREATE TRIGGER IF NOT EXISTS audit_log_no_delete BEFORE DELETE ON audit_log
       BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END""",
)

_PG_GUARDS = (
    """CREATE OR REPLACE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
       BEGIN RAISE EXCEPTION 'audit_log is append-only'; END $$""",
    """CREATE OR REPLACE TRIGGER audit_log_no_change BEFORE UPDATE OR DELETE ON audit_log
       FOR EACH ROW EXECUTE FUNCTION audit_log_append_only()""",
)

_PG_GEOM = (
    "ALTER TABLE audit_areas ADD COLUMN IF NOT EXISTS geom geometry(Geometry, 4326)",
    "CREATE INDEX IF NOT EXISTS audit_areas_geom ON audit_areas USING GIST (geom)",
)


@dataclass(frozen=True)
class Entry:
    """One audit entry. ``area_km2`` is measured in EPSG:4547; ``counts`` maps what was returned to how many."""

    seq: int
    ts: str
    user_name: str
    role: str
    endpoint: str
    method: str
    area_hash: str | None
    area_km2: float | None
    counts: dict[str, int]
    version: str | None
    outcome: str
    status: int
    detail: str
    prev_hash: str
    hash: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class VerifyReport:
    """Result of :func:`verify`: ``ok``, how many entries were checked and the first broken one (if any)."""

    ok: bool
    n_entries: int
    first_broken_seq: int | None = None
    reason: str = ""
    head_seq: int = 0
    problems: list[str] = field(default_factory=list)

    def to_text(self) -> str:
        if self.ok:
            return f"audit log OK: {self.n_entries} entries, chain intact up to seq {self.head_seq}."
        return f"audit log BROKEN at seq {self.first_broken_seq}: {self.reason}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _ensure(store: Store) -> None:
    if "audit_postgis" in store._schemas or ("audit" in store._schemas and store.dialect == "sqlite"):
        return
    guards = _PG_GUARDS if store.dialect == "postgresql" else _SQLITE_GUARDS
    with _SCHEMA_LOCK:  # threads of one process; processes are serialised by schema_lock_statement()
        store.ensure_schema("audit", schema_lock_statement(store) + _SCHEMA_COMMON + guards + (
            f"INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, '{GENESIS}') ON CONFLICT (id) DO NOTHING",
        ))
        if store.dialect == "postgresql":
            store.ensure_schema("audit_postgis",
                                schema_lock_statement(store) + (_PG_GEOM if _postgis(store) else ()))


def _canonical_km2(x: float | None) -> float | None:
    return None if x is None else round(float(x), 6)


def _entry_hash(fields: Mapping[str, Any]) -> str:
    payload = {k: fields[k] for k in _FIELDS}
    text = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def area_hash(geom: BaseGeometry) -> str:
    """SHA-256 of the area's normalised WKB (WGS84, coordinates rounded to 1e-7°, ≈ 1 cm)."""
    g = shapely.normalize(shapely.set_precision(geom, 1e-7))
    return hashlib.sha256(shapely.to_wkb(g, hex=False)).hexdigest()


def append(store: Store, *, user: str, role: str, endpoint: str, method: str = "GET",
           area: BaseGeometry | None = None, area_km2: float | None = None, counts: Mapping[str, int] | None = None,
           version: str | int | None = None, outcome: str = "ok", status: int = 200, detail: str = "") -> Entry:
    """Append one entry in its own transaction and return it.

    ``area`` (WGS84) is hashed and its footprint kept in ``audit_areas``; ``area_km2`` defaults to its area
    measured in EPSG:4547. ``counts`` are the numbers of things returned (suppressed cells are not counted).
    """
    _ensure(store)
    ahash = None
    footprint = None
    if area is not None:
        ahash = area_hash(area)
        if area_km2 is None:
            area_km2 = _area_km2(area)
        footprint = shapely.to_geojson(area)
    cnt = {str(k): int(v) for k, v in (counts or {}).items()}
    fields: dict[str, Any] = {
        "ts": dt.datetime.now(dt.UTC).isoformat(timespec="microseconds"),
        "user_name": str(user), "role": str(role), "endpoint": str(endpoint), "method": str(method).upper(),
        "area_hash": ahash, "area_km2": _canonical_km2(area_km2), "counts": cnt,
        "version": None if version is None else str(version), "outcome": str(outcome), "status": int(status),
        "detail": str(detail)[:500],
    }
    with store.transaction() as tx:
        seq0, prev = tx.query("SELECT seq, hash FROM audit_head WHERE id = 1" + store.lock_clause())[0]
        fields["seq"] = int(seq0) + 1
        fields["prev_hash"] = str(prev)
        h = _entry_hash(fields)
        tx.execute(
            "INSERT INTO audit_log (seq, ts, user_name, role, endpoint, method, area_hash, area_km2, counts, version, "
            "outcome, status, detail, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (fields["seq"], fields["ts"], fields["user_name"], fields["role"], fields["endpoint"], fields["method"],
             ahash, fields["area_km2"], json.dumps(cnt, sort_keys=True), fields["version"], fields["outcome"],
             fields["status"], fields["detail"], fields["prev_hash"], h))
        tx.execute("UPDATE audit_head SET seq = ?, hash = ? WHERE id = 1", (fields["seq"], h))
        if footprint is not None and ahash is not None:
            _store_area(store, tx, ahash, footprint, fields["area_km2"])
    return Entry(**{**fields, "hash": h})


def _store_area(store: Store, tx: Any, ahash: str, geojson: str, km2: float) -> None:
    if tx.query("SELECT 1 FROM audit_areas WHERE area_hash = ?", (ahash,)):
        return
    if store.dialect == "postgresql" and _postgis(store):
        tx.execute("INSERT INTO audit_areas (area_hash, geojson, area_km2, geom) "
                   "VALUES (?, ?, ?, ST_SetSRID(ST_GeomFromGeoJSON(?), 4326)) ON CONFLICT DO NOTHING",
                   (ahash, geojson, km2, geojson))
    else:
        tx.execute("INSERT INTO audit_areas (area_hash, geojson, area_km2) VALUES (?, ?, ?)", (ahash, geojson, km2))


def _postgis(store: Store) -> bool:
    from twin.store.pg import has_postgis

    return has_postgis(store)


def _row_to_entry(row: tuple) -> Entry:
    (seq, ts, user, role, endpoint, method, ahash, km2, counts, version, outcome, status, detail, prev, h) = row
    return Entry(int(seq), str(ts), str(user), str(role), str(endpoint), str(method), ahash,
                 None if km2 is None else float(km2), json.loads(counts), version, str(outcome), int(status),
                 str(detail), str(prev), str(h))


_SELECT = ("SELECT seq, ts, user_name, role, endpoint, method, area_hash, area_km2, counts, version, outcome, "
           "status, detail, prev_hash, hash FROM audit_log")


def head_seq(store: Store) -> int:
    """Number of the last entry (0 for an empty log)."""
    _ensure(store)
    return int(store.query("SELECT seq FROM audit_head WHERE id = 1")[0][0])


def entries(store: Store, *, since_seq: int = 0, user: str | None = None, limit: int | None = None,
            batch: int = 5000) -> Iterator[Entry]:
    """Entries with ``seq > since_seq`` in order (optionally one user's), read in batches."""
    _ensure(store)
    last = since_seq
    n = 0
    while True:
        sql = _SELECT + " WHERE seq > ?" + (" AND user_name = ?" if user else "") + " ORDER BY seq LIMIT ?"
        params: tuple = (last, user, batch) if user else (last, batch)
        rows = store.query(sql, params)
        if not rows:
            return
        for r in rows:
            e = _row_to_entry(r)
            yield e
            n += 1
            if limit is not None and n >= limit:
                return
        last = int(rows[-1][0])


def verify(store: Store) -> VerifyReport:
    """Walk the chain from seq 1: recompute every hash, check links, numbering and the head.

    Returns a :class:`VerifyReport`; ``first_broken_seq`` is the first entry that was altered, inserted,
    removed (a gap) or whose link to its predecessor is broken.
    """
    _ensure(store)
    prev = GENESIS
    expect = 1
    n = 0
    for e in entries(store):
        n += 1
        if e.seq != expect:
            return VerifyReport(False, n, expect, f"entry seq {expect} is missing (next stored entry is {e.seq}).",
                                expect - 1)
        if e.prev_hash != prev:
            return VerifyReport(False, n, e.seq, "prev_hash does not match the previous entry's hash "
                                f"({e.prev_hash[:12]}… ≠ {prev[:12]}…): an earlier entry was changed or removed.",
                                e.seq - 1)
        fields = e.to_dict()
        fields["area_km2"] = _canonical_km2(e.area_km2)
        if _entry_hash(fields) != e.hash:
            return VerifyReport(False, n, e.seq, "the entry's content does not match its hash (it was edited).",
                                e.seq - 1)
        prev = e.hash
        expect += 1
    head_seq, head_hash = store.query("SELECT seq, hash FROM audit_head WHERE id = 1")[0]
    if int(head_seq) != expect - 1 or str(head_hash) != prev:
        return VerifyReport(False, n, expect, f"the head says the last entry is seq {head_seq} but the log ends at "
                            f"seq {expect - 1}: entries were removed from the end (or the head was altered).",
                            expect - 1)
    return VerifyReport(True, n, None, "", expect - 1)


def entries_touching(store: Store, geom: BaseGeometry, *, limit: int = 1000) -> list[Entry]:
    """Entries whose area intersects ``geom`` (WGS84): "who looked at this place?".

    Uses the PostGIS GiST index when the store is PostgreSQL with PostGIS, else shapely over stored footprints.
    """
    _ensure(store)
    if store.dialect == "postgresql" and _postgis(store):
        rows = store.query(
            "SELECT area_hash FROM audit_areas WHERE ST_Intersects(geom, ST_SetSRID(ST_GeomFromGeoJSON(?), 4326))",
            (shapely.to_geojson(geom),))
        hashes = [r[0] for r in rows]
    else:
        rows = store.query("SELECT area_hash, geojson FROM audit_areas")
        shapely.prepare(geom)
        hashes = [h for h, gj in rows if geom.intersects(shapely.from_geojson(gj))]
    if not hashes:
        return []
    marks = ",".join("?" * len(hashes))
    found = store.query(_SELECT + f" WHERE area_hash IN ({marks}) ORDER BY seq LIMIT ?", (*hashes, limit))
    return [_row_to_entry(r) for r in found]
