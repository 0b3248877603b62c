"""The audit log's schema and entry format: tables and guards (SQLite and PostgreSQL), the entry and checkpoint
records, canonical fields and their keyed hashes (HMAC-SHA256). :mod:`twin.access.audit` appends and verifies."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import shapely
from shapely.geometry.base import BaseGeometry

from twin.store.pg import has_postgis, schema_lock_statement
from twin.store.sql import Store, Transaction

__all__ = ["GENESIS", "FIELDS", "SCHEMA_LOCK", "Entry", "Checkpoint", "VerifyReport", "ensure_schema", "canonical_km2",
           "mac", "entry_hash", "normalised", "area_hash",
           "hash_normalised"]

SCHEMA_LOCK = threading.Lock()

GENESIS = "0" * 64
FIELDS = ("seq", "ts", "user_name", "role", "endpoint", "method", "area_hash", "area_km2", "counts", "version",
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

_SQLITE_GUARDS = tuple(
    f"""CREATE TRIGGER IF NOT EXISTS {table}_no_{op} BEFORE {op.upper()} ON {table}
       BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END"""
    for table in ("audit_log", "audit_areas") for op in ("update", "delete"))

_PG_GUARDS = (
    """CREATE OR REPLACE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
       BEGIN RAISE EXCEPTION USING MESSAGE = TG_TABLE_NAME || ' is append-only'; END $$""",
    """CREATE OR REPLACE TRIGGER audit_log_no_change BEFORE UPDATE OR DELETE ON audit_log
       FOR EACH ROW EXECUTE FUNCTION audit_log_append_only()""",
    """CREATE OR REPLACE TRIGGER audit_areas_no_change BEFORE UPDATE OR DELETE ON audit_areas
       FOR EACH ROW EXECUTE FUNCTION audit_log_append_only()""",
)

_PG_GEOM = (
    "ALTER TABLE audit_areas ADD COLUMN IF NOT EXISTS geom geometry(Geometry, 4326)",
    "CREATE INDEX IF NOT EXISTS audit_areas_geom ON audit_areas USING GIST (geom)",
)


@dataclass(frozen=True)
class Entry:
    """One audit entry. ``area_km2`` is measured in EPSG:4547; ``counts`` maps what was returned to how many;
    ``hash`` is the keyed HMAC-SHA256 of the other fields."""

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


@dataclass(frozen=True)
class Checkpoint:
    """A signed statement "log ``log`` had entry ``seq`` with hash ``hash`` at ``ts``", kept outside the database."""

    log: str
    seq: int
    hash: str
    ts: str
    reason: str


@dataclass
class VerifyReport:
    """Result of :func:`verify`: ``ok``, how many entries and checkpoints were checked, the first broken entry (if
    any), the first problem (``reason``), all problems found (up to 20) and warnings (they do not fail it)."""

    ok: bool
    n_entries: int
    first_broken_seq: int | None = None
    reason: str = ""
    head_seq: int = 0
    problems: list[str] = field(default_factory=list)
    n_checkpoints: int = 0
    warnings: list[str] = field(default_factory=list)

    def to_text(self) -> str:
        if self.ok:
            warn = "".join(f"\n  warning: {w}" for w in self.warnings)
            return (f"audit log OK: {self.n_entries} entries, chain intact up to seq {self.head_seq}, "
                    f"{self.n_checkpoints} checkpoint(s) match.{warn}")
        where = f" at seq {self.first_broken_seq}" if self.first_broken_seq is not None else ""
        more = "".join(f"\n  - {p}" for p in self.problems[1:])
        return f"audit log BROKEN{where}: {self.reason}{more}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def ensure_schema(store: Store, tx: Transaction | None = None) -> None:
    if "audit_postgis" in store._schemas or ("audit" in store._schemas and store.dialect == "sqlite"):
        return
    guards = _PG_GUARDS if store.dialect == "postgresql" else _SQLITE_GUARDS
    if tx is not None:  # inside the caller's transaction (idempotent DDL; the next own append marks it done)
        geom = _PG_GEOM if store.dialect == "postgresql" and has_postgis(store) else ()
        for st in schema_lock_statement(store) + _SCHEMA_COMMON + guards + geom + (
                f"INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, '{GENESIS}') ON CONFLICT (id) DO NOTHING",):
            tx.execute(store.ddl(st))
        return
    with SCHEMA_LOCK:  # threads of one process; processes are serialised by schema_lock_statement()
        store.ensure_schema("audit", schema_lock_statement(store) + _SCHEMA_COMMON + guards + (
            f"INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, '{GENESIS}') ON CONFLICT (id) DO NOTHING",
        ))
        if store.dialect == "postgresql":
            store.ensure_schema("audit_postgis",
                                schema_lock_statement(store) + (_PG_GEOM if has_postgis(store) else ()))


def canonical_km2(x: float | None) -> float | None:
    return None if x is None else round(float(x), 6)


def mac(key: bytes, kind: str, payload: Mapping[str, Any]) -> str:
    text = json.dumps({**payload, "kind": kind}, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hmac.new(key, text.encode("utf-8"), hashlib.sha256).hexdigest()


def entry_hash(key: bytes, fields: Mapping[str, Any]) -> str:
    return mac(key, "audit-entry", {k: fields[k] for k in FIELDS})


def normalised(geom: BaseGeometry) -> BaseGeometry:
    return shapely.normalize(shapely.set_precision(geom, 1e-7))


def area_hash(geom: BaseGeometry) -> str:
    """SHA-256 of the area's normalised WKB (WGS84, coordinates rounded to 1e-7°, ≈ 1 cm)."""
    return hash_normalised(normalised(geom))


def hash_normalised(norm: BaseGeometry) -> str:
    """:func:`area_hash` of an already :func:`normalised` geometry."""
    return hashlib.sha256(shapely.to_wkb(norm, hex=False)).hexdigest()
