"""Append-only, tamper-evident audit log (操作日志留痕) in the shared store, anchored outside it.

Every query and edit appends one :class:`Entry`: who (user, role), when (UTC, microseconds), what (endpoint,
method, area hash and area in km² measured in EPSG:4547, counts returned, partition version), outcome and HTTP
status. Entries are numbered ``seq = 1, 2, …`` and each carries ``prev_hash`` (the previous entry's ``hash``) and
``hash = HMAC-SHA256(key, canonical JSON of its own fields + prev_hash)``; the first entry's ``prev_hash`` is
:data:`GENESIS`. The key is kept outside the database (``$TWIN_AUDIT_KEY`` or an ``audit.key`` file with mode 0600,
see :mod:`twin.access._audit_key`), so someone who can write the database cannot recompute hashes after an edit,
deletion or forged append. A one-row head table holds the last ``seq``/``hash``: appenders lock it, so concurrent
writers (threads, processes, PostgreSQL sessions) never fork the chain.

Truncation (deleting the newest entries and moving the head back, or emptying the log) leaves a valid shorter chain,
so signed **checkpoints** ``(log, seq, hash, time, reason, HMAC)`` are appended to ``audit_checkpoints.jsonl`` beside
the key: on a process's first append, then at least every :data:`CHECKPOINT_EVERY` entries and at most
:data:`CHECKPOINT_SECONDS` after an unanchored entry (a timer), at service shutdown and on demand (:func:`checkpoint`,
``twin audit checkpoint``). A process also remembers the newest entry it saw: if the head ever moves back under
it, it writes that entry as a checkpoint at once. :func:`verify` checks every HMAC, link and number, the head,
every checkpoint against the log (one at a seq the log no longer has, or with another hash, means truncation or
rewrite) and every area footprint against its hash.

Append-only is also enforced by database triggers (UPDATE/DELETE abort) on the log and the footprints.

Area footprints are kept once per distinct area in ``audit_areas`` (GeoJSON text of the normalised area; on
PostgreSQL with PostGIS also a ``geometry(Geometry, 4326)`` column with a GiST index) so that "who looked at this
place?" is one query (:func:`entries_touching`). The entry's ``area_hash`` (covered by its HMAC) is the hash of the
footprint, so a replaced footprint is detected.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import hmac
import json
import os
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import asdict, dataclass
from typing import Any

import shapely
from shapely.geometry.base import BaseGeometry

from twin.access._audit_key import (
    CHECKPOINT_FILE,
    append_line,
    audit_dir,
    load_key,
    log_id,
    read_lines,
    use_audit_dir,
)
from twin.access._audit_schema import (
    GENESIS,
    Checkpoint,
    Entry,
    VerifyReport,
    area_hash,
    canonical_km2,
    ensure_schema,
    entry_hash,
    mac,
    normalised,
)
from twin.access._audit_schema import (
    hash_normalised as _hash_normalised,
)
from twin.access._audit_writer import GroupWriter, WriterClosed, close_writers, writer_for
from twin.crs import area_km2 as _area_km2
from twin.store.pg import has_postgis
from twin.store.sql import Store, Transaction

__all__ = [
    "Entry",
    "Checkpoint",
    "VerifyReport",
    "GENESIS",
    "CHECKPOINT_EVERY",
    "CHECKPOINT_SECONDS",
    "append",
    "submit",
    "submit_on_loop",
    "expect",
    "settle",
    "close_writers",
    "AUDIT_LINGER_S",
    "checkpoint",
    "entries",
    "verify",
    "area_hash",
    "entries_touching",
    "head_seq",
    "audit_dir",
    "use_audit_dir",
]

#: a checkpoint at least every this many entries (per process) …
CHECKPOINT_EVERY = 1000
#: … and at most this many seconds after an entry that no checkpoint covers yet.
CHECKPOINT_SECONDS = 1.0
_MAX_PROBLEMS = 20

@dataclass
class _Anchor:
    """What this process knows of one log: the newest entry it saw and its last checkpoint."""

    seen_seq: int = 0
    seen_hash: str = GENESIS
    cp_seq: int = -1
    cp_time: float = 0.0
    timer: threading.Timer | None = None


_anchors: dict[str, _Anchor] = {}
_anchor_lock = threading.Lock()
#: area hashes this process has seen committed to ``audit_areas`` (per store URL; the table is append-only)
_known_areas: dict[str, set[str]] = {}


def append(store: Store, *, user: str, role: str, endpoint: str, method: str = "GET",
           area: BaseGeometry | None = None, area_km2: float | None = None, counts: Mapping[str, int] | None = None,
           version: str | int | None = None, outcome: str = "ok", status: int = 200, detail: str = "",
           tx: Transaction | None = None) -> Entry:
    """Append one entry and return it; durable when this returns (or, with ``tx``, when ``tx`` commits).

    ``area`` (WGS84) is hashed and its footprint kept in ``audit_areas``; ``area_km2`` defaults to its area
    measured in EPSG:4547. ``counts`` are the numbers of things returned (suppressed cells are not counted).
    ``tx``: write inside this open transaction of ``store`` (the entry then commits or rolls back with the change
    it records, e.g. a partition version: :func:`twin.partition.versions.commit`). Without ``tx`` the entry goes
    through the process's one group-commit writer (:func:`submit`) and this waits until its batch is durable.
    """
    if tx is None:
        return submit(store, user=user, role=role, endpoint=endpoint, method=method, area=area, area_km2=area_km2,
                      counts=counts, version=version, outcome=outcome, status=status, detail=detail).result()
    ensure_schema(store, tx)
    key = load_key(store, create=True)
    assert key is not None
    fields, footprint = _fields(user, role, endpoint, method, area, area_km2, counts, version, outcome, status,
                                detail)
    entry, regressed = _append_in(store, tx, key, fields, footprint)
    if regressed is not None:  # the head moved back under us: anchor what we saw before, at once
        _write_checkpoint(store, key, *regressed, reason=f"head moved back to seq {int(entry.seq) - 1}")
    with _anchor_lock:  # committed (or not) by the caller: the timer checkpoints the head as stored
        _schedule(store, key, _anchors.setdefault(store.url, _Anchor()))
    return entry


def submit(store: Store, *, user: str, role: str, endpoint: str, method: str = "GET",
           area: BaseGeometry | None = None, area_km2: float | None = None, counts: Mapping[str, int] | None = None,
           version: str | int | None = None, outcome: str = "ok", status: int = 200, detail: str = "") -> Future[Entry]:
    """Queue one entry for the process's group-commit writer (:mod:`._audit_writer`); the future resolves to the
    :class:`Entry` once the transaction holding it has committed (durable), or to the error that rolled it back.

    The area hash, footprint and km² are computed here, in the caller's thread; the writer thread only chains
    (reads the head inside its transaction, HMACs, inserts). From an event loop use :func:`submit_on_loop`.
    """
    ensure_schema(store)  # once per store object (as readers of this object expect), cheap after
    fields, footprint = _fields(user, role, endpoint, method, area, area_km2, counts, version, outcome, status,
                                detail)
    try:
        return writer_for(store, "audit", _make_writer).submit((fields, footprint))
    except WriterClosed:  # closed between lookup and submit (a shutdown of another user of this database)
        return writer_for(store, "audit", _make_writer).submit((fields, footprint))


def submit_on_loop(store: Store, *, user: str, role: str, endpoint: str, method: str = "GET",
                   area: BaseGeometry | None = None, area_km2: float | None = None,
                   counts: Mapping[str, int] | None = None, version: str | int | None = None, outcome: str = "ok",
                   status: int = 200, detail: str = "") -> asyncio.Future[Entry]:
    """:func:`submit` from the thread running an asyncio event loop: the entries of one loop turn commit together
    at the start of the next (on SQLite on the loop thread when no other writer holds the store, else through the
    writer thread; :meth:`~._audit_writer.GroupWriter.submit_on_loop`). Await the returned future."""
    ensure_schema(store)
    fields, footprint = _fields(user, role, endpoint, method, area, area_km2, counts, version, outcome, status,
                                detail)
    try:
        return writer_for(store, "audit", _make_writer).submit_on_loop((fields, footprint))
    except WriterClosed:  # as in submit
        return writer_for(store, "audit", _make_writer).submit_on_loop((fields, footprint))


#: how long (seconds) a batch of the audit writer waits for entries of requests still at work (see :func:`expect`)
AUDIT_LINGER_S = 0.006


def expect(store: Store) -> None:
    """A request that will submit an entry has started: the writer thread holds its next batch open for it (at most
    :data:`AUDIT_LINGER_S`), so that busy processes commit many entries per transaction. Pair with :func:`settle`.
    Nothing to do on SQLite: there a request's entry is submitted on the event loop, which batches per loop turn."""
    if store.dialect == "sqlite":
        return
    writer_for(store, "audit", _make_writer).expect(1)


def settle(store: Store) -> None:
    """The entry announced by :func:`expect` was submitted, or will not be."""
    if store.dialect == "sqlite":
        return
    writer_for(store, "audit", _make_writer).expect(-1)


def _fields(user: str, role: str, endpoint: str, method: str, area: BaseGeometry | None, area_km2: float | None,
            counts: Mapping[str, int] | None, version: str | int | None, outcome: str, status: int,
            detail: str) -> tuple[dict[str, Any], str | None]:
    """The entry's fields (without seq, prev_hash, hash) and the area footprint (GeoJSON text) to keep."""
    ahash = None
    footprint = None
    if area is not None:
        ahash, footprint = _footprint(shapely.to_wkb(area))
        if area_km2 is None:
            area_km2 = _area_km2(area)
    cnt = {str(k): int(v) for k, v in (counts or {}).items()}
    return {
        "ts": dt.datetime.now(dt.UTC).isoformat(timespec="microseconds"),
        "user_name": str(user), "role": str(role), "endpoint": str(endpoint)[:200], "method": str(method).upper()[:10],
        "area_hash": ahash, "area_km2": canonical_km2(area_km2), "counts": cnt,
        "version": None if version is None else str(version)[:40], "outcome": str(outcome), "status": int(status),
        "detail": str(detail)[:500],
    }, footprint


@functools.lru_cache(maxsize=2048)
def _footprint(wkb: bytes) -> tuple[str, str]:
    """The area hash and footprint (GeoJSON of the normalised area) of a geometry given as WKB (memoised: screens
    and lassos repeat the same areas; a pure function of the geometry)."""
    norm = normalised(shapely.from_wkb(wkb))
    return _hash_normalised(norm), shapely.to_geojson(norm)


def _make_writer(store: Store) -> GroupWriter[tuple[dict[str, Any], str | None], Entry]:
    regressed: list[tuple[int, str, int]] = []
    keys: list[bytes] = []

    def prepare(st: Store) -> None:  # once per batch, before its transaction (cheap after the first)
        ensure_schema(st)
        if not keys:
            key = load_key(st, create=True)
            assert key is not None
            keys.append(key)

    def apply_batch(tx: Transaction, items: Sequence[tuple[dict[str, Any], str | None]]) -> list[Entry]:
        done, back = _append_many(store, tx, keys[0], items)
        if back is not None:
            regressed.append((*back, int(done[0].seq) - 1))
        return done

    def after(done: Sequence[Entry]) -> None:
        key = keys[0]
        with _anchor_lock:
            known = _known_areas.setdefault(store.url, set())
            if len(known) > 100_000:
                known.clear()
            known.update(e.area_hash for e in done if e.area_hash is not None)
        while regressed:
            seq, h, now = regressed.pop(0)
            _write_checkpoint(store, key, seq, h, reason=f"head moved back to seq {now}")
        _after_commit(store, key, max(done, key=lambda e: e.seq))

    return GroupWriter(store, apply_batch=apply_batch, after=after, prepare=prepare, linger_s=AUDIT_LINGER_S)


_INSERT = ("INSERT INTO audit_log (seq, ts, user_name, role, endpoint, method, area_hash, area_km2, counts, version, "
           "outcome, status, detail, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")


def _append_in(store: Store, tx: Transaction, key: bytes, fields: dict[str, Any],
               footprint: str | None) -> tuple[Entry, tuple[int, str] | None]:
    done, regressed = _append_many(store, tx, key, [(fields, footprint)])
    return done[0], regressed


def _append_many(store: Store, tx: Transaction, key: bytes,
                 items: Sequence[tuple[dict[str, Any], str | None]]) -> tuple[list[Entry], tuple[int, str] | None]:
    """Chain ``items`` (fields without seq/prev_hash/hash, footprint) onto the head read inside ``tx`` (locked on
    PostgreSQL; SQLite's write transaction holds the database): one head read, one multi-row insert, one head
    update for the whole batch. Also returns what this process had seen if the head moved back under it."""
    seq, prev = tx.query("SELECT seq, hash FROM audit_head WHERE id = 1" + store.lock_clause())[0]
    seq, prev = int(seq), str(prev)
    with _anchor_lock:
        a = _anchors.setdefault(store.url, _Anchor())
        regressed = ((a.seen_seq, a.seen_hash) if a.seen_seq > seq or (a.seen_seq == seq and a.seen_hash != prev)
                     else None)
    rows: list[tuple[Any, ...]] = []
    done: list[Entry] = []
    areas: dict[str, tuple[str, float]] = {}
    for item, footprint in items:
        fields = dict(item)
        seq += 1
        fields["seq"], fields["prev_hash"] = seq, prev
        prev = entry_hash(key, fields)
        rows.append((seq, fields["ts"], fields["user_name"], fields["role"], fields["endpoint"], fields["method"],
                     fields["area_hash"], fields["area_km2"], json.dumps(fields["counts"], sort_keys=True),
                     fields["version"], fields["outcome"], fields["status"], fields["detail"], fields["prev_hash"],
                     prev))
        done.append(Entry(**{**fields, "hash": prev}))
        if footprint is not None and fields["area_hash"] is not None:
            areas.setdefault(fields["area_hash"], (footprint, fields["area_km2"]))
    tx.executemany(_INSERT, rows)
    tx.execute("UPDATE audit_head SET seq = ?, hash = ? WHERE id = 1", (seq, prev))
    for ahash, (footprint, km2) in areas.items():
        _store_area(store, tx, ahash, footprint, km2)
    return done, regressed


def _after_commit(store: Store, key: bytes, entry: Entry) -> None:
    """Remember the entry; checkpoint it now (first append of this process, every N entries, T seconds since
    the last checkpoint) or within T seconds (a timer)."""
    now = time.monotonic()
    due = False
    with _anchor_lock:
        a = _anchors.setdefault(store.url, _Anchor())
        if entry.seq > a.seen_seq:
            a.seen_seq, a.seen_hash = entry.seq, entry.hash
        if a.cp_seq < 0 or a.seen_seq - a.cp_seq >= CHECKPOINT_EVERY or now - a.cp_time >= CHECKPOINT_SECONDS:
            due = True
            a.cp_seq, a.cp_time = a.seen_seq, now
            seq, h = a.seen_seq, a.seen_hash
        else:
            _schedule(store, key, a)
    if due:
        _write_checkpoint(store, key, seq, h, reason="cadence")


def _schedule(store: Store, key: bytes, a: _Anchor) -> None:
    """Start the checkpoint timer of ``a`` unless one is pending (call with ``_anchor_lock`` held)."""
    if a.timer is None:
        a.timer = threading.Timer(CHECKPOINT_SECONDS, _flush, (store,))
        a.timer.daemon = True
        a.timer.start()


def _flush(store: Store) -> None:
    """Timer: checkpoint the stored head (and, if it moved back, the newest entry this process saw), unless a
    checkpoint since the timer started already anchors every entry this process saw."""
    with _anchor_lock:
        a = _anchors.setdefault(store.url, _Anchor())
        a.timer = None
        if 0 <= a.seen_seq <= a.cp_seq:
            return
    try:
        checkpoint(store, reason="timer")
    except Exception:  # noqa: BLE001 - a background flush must never raise (the next append retries)
        pass
    finally:
        store.close()  # this timer thread's connection


def _write_checkpoint(store: Store, key: bytes, seq: int, h: str, *, reason: str) -> Checkpoint:
    cp = Checkpoint(log_id(store), int(seq), str(h), dt.datetime.now(dt.UTC).isoformat(timespec="microseconds"),
                    reason)
    payload = {**asdict(cp), "pid": os.getpid()}
    line = json.dumps({**payload, "mac": mac(key, "audit-checkpoint", payload)}, sort_keys=True,
                      ensure_ascii=False, separators=(",", ":"))
    path = audit_dir(store)
    path.mkdir(parents=True, exist_ok=True)
    append_line(path / CHECKPOINT_FILE, line)
    return cp


def checkpoint(store: Store, *, reason: str = "on demand") -> Checkpoint | None:
    """Write a signed checkpoint of the current head to the checkpoint file (``None`` for an empty log).

    If this process saw a newer entry than the head now shows (the head moved back), that entry is checkpointed
    too, so :func:`verify` reports the truncation.
    """
    ensure_schema(store)
    key = load_key(store, create=True)
    assert key is not None
    seq, h = store.query("SELECT seq, hash FROM audit_head WHERE id = 1")[0]
    seq, h = int(seq), str(h)
    with _anchor_lock:
        a = _anchors.setdefault(store.url, _Anchor())
        seen = (a.seen_seq, a.seen_hash)
        if seq >= a.seen_seq:
            a.cp_seq, a.cp_time = seq, time.monotonic()
    if seen[0] > seq or (seen[0] == seq and seen[1] != h):
        _write_checkpoint(store, key, *seen, reason=f"head moved back to seq {seq}")
    if seq == 0:
        return None
    return _write_checkpoint(store, key, seq, h, reason=reason)


def _store_area(store: Store, tx: Any, ahash: str, geojson: str, km2: float) -> None:
    if ahash in _known_areas.get(store.url, ()):  # stored by an earlier committed batch of this process
        return
    if tx.query("SELECT 1 FROM audit_areas WHERE area_hash = ?", (ahash,)):
        return
    if store.dialect == "postgresql" and has_postgis(store):
        tx.execute("INSERT INTO audit_areas (area_hash, geojson, area_km2, geom) "
                   "VALUES (?, ?, ?, ST_SetSRID(ST_GeomFromGeoJSON(?), 4326)) ON CONFLICT DO NOTHING",
                   (ahash, geojson, km2, geojson))
    else:
        tx.execute("INSERT INTO audit_areas (area_hash, geojson, area_km2) VALUES (?, ?, ?)", (ahash, geojson, km2))


def _row_to_entry(row: tuple) -> Entry:
    (seq, ts, user, role, endpoint, method, ahash, km2, counts, version, outcome, status, detail, prev, h) = row
    return Entry(int(seq), str(ts), str(user), str(role), str(endpoint), str(method), ahash,
                 None if km2 is None else float(km2), json.loads(counts), version, str(outcome), int(status),
                 str(detail), str(prev), str(h))


_SELECT = ("SELECT seq, ts, user_name, role, endpoint, method, area_hash, area_km2, counts, version, outcome, "
           "status, detail, prev_hash, hash FROM audit_log")


def head_seq(store: Store) -> int:
    """Number of the last entry (0 for an empty log)."""
    ensure_schema(store)
    return int(store.query("SELECT seq FROM audit_head WHERE id = 1")[0][0])


def entries(store: Store, *, since_seq: int = 0, user: str | None = None, limit: int | None = None,
            batch: int = 5000) -> Iterator[Entry]:
    """Entries with ``seq > since_seq`` in order (optionally one user's), read in batches."""
    ensure_schema(store)
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


class _Findings:
    """Problems found by :func:`verify`, each with the first entry it concerns."""

    def __init__(self) -> None:
        self.items: list[tuple[int | None, str]] = []

    def add(self, seq: int | None, text: str) -> None:
        if len(self.items) < _MAX_PROBLEMS:
            self.items.append((seq, text))


def verify(store: Store) -> VerifyReport:
    """Check the whole log against its key and its checkpoints.

    Walks the chain from seq 1 recomputing every keyed hash and checking links and numbering; checks the head;
    checks every signed checkpoint of this log (a checkpoint at a seq the log no longer has means entries were
    removed from the end; one whose hash differs means the log was rewritten) and that at least one anchors a
    non-empty log; checks every area footprint against the area hash its entries carry. Returns a
    :class:`VerifyReport` whose ``first_broken_seq`` is the first entry altered, forged, removed or relinked.
    """
    ensure_schema(store)
    key = load_key(store, create=False)
    found = _Findings()
    cps, bad_lines = _read_checkpoints(store, key)
    want = {cp.seq for cp in cps}
    hashes: dict[int, str] = {}
    area_first: dict[str, int] = {}
    prev, expect, n, last_good = GENESIS, 1, 0, 0
    for e in entries(store):
        n += 1
        if key is None:
            break
        broken = False
        if e.seq != expect:
            found.add(expect, f"entry seq {expect} is missing (next stored entry is {e.seq}).")
            broken = True
        elif e.prev_hash != prev:
            found.add(e.seq, "prev_hash does not match the previous entry's hash "
                             f"({e.prev_hash[:12]}… ≠ {prev[:12]}…): an earlier entry was changed or removed.")
            broken = True
        else:
            fields = e.to_dict()
            fields["area_km2"] = canonical_km2(e.area_km2)
            if not hmac.compare_digest(entry_hash(key, fields), e.hash):
                found.add(e.seq, "the entry's content does not match its keyed hash (it was edited, or forged "
                                 "without the audit key).")
                broken = True
        if not broken and not found.items:
            last_good = e.seq
        if e.seq in want:
            hashes[e.seq] = e.hash
        if e.area_hash is not None:
            area_first.setdefault(e.area_hash, e.seq)
        prev, expect = e.hash, e.seq + 1
    if key is None:
        if n or cps or bad_lines:
            found.add(1 if n else None, f"no audit key: set $TWIN_AUDIT_KEY or put the deployment's {'audit.key'} "
                                        f"in {audit_dir(store)} (--audit-dir / $TWIN_AUDIT_DIR).")
        return _report(found, n, 0, 0)
    last = expect - 1
    head, head_hash = store.query("SELECT seq, hash FROM audit_head WHERE id = 1")[0]
    if int(head) != last or str(head_hash) != prev:
        found.add(last + 1, f"the head says the last entry is seq {head} but the log ends at seq {last}: entries "
                            "were removed from the end (or the head was altered).")
    _check_checkpoints(cps, bad_lines, hashes, last, found)
    _check_footprints(store, area_first, found)
    rep = _report(found, n, last_good, len(cps))
    if last > 0 and not cps:
        rep.warnings.append(f"no checkpoint of this log in {audit_dir(store) / CHECKPOINT_FILE} yet: the newest "
                            "entries are anchored within a second of being written; if the log is older, the file "
                            "was removed or the audit directory is wrong (--audit-dir / $TWIN_AUDIT_DIR).")
    return rep


def _report(found: _Findings, n: int, last_good: int, n_cps: int) -> VerifyReport:
    if not found.items:
        return VerifyReport(True, n, None, "", last_good, [], n_cps)
    seqs = [s for s, _ in found.items if s is not None]
    return VerifyReport(False, n, min(seqs) if seqs else None, found.items[0][1], last_good,
                        [t for _, t in found.items], n_cps)


def _read_checkpoints(store: Store, key: bytes | None) -> tuple[list[Checkpoint], list[str]]:
    """This log's checkpoints with a valid signature, and the problems with lines that have none."""
    me = log_id(store)
    path = audit_dir(store) / CHECKPOINT_FILE
    good: list[Checkpoint] = []
    bad: list[str] = []
    for i, line in enumerate(read_lines(path), 1):
        try:
            obj = json.loads(line)
            sig = obj.pop("mac")
            cp = Checkpoint(str(obj["log"]), int(obj["seq"]), str(obj["hash"]), str(obj["ts"]), str(obj["reason"]))
        except (ValueError, KeyError, TypeError, AttributeError):
            bad.append(f"{path.name} line {i} is not a checkpoint (the file was edited).")
            continue
        if key is None or not hmac.compare_digest(mac(key, "audit-checkpoint", obj), str(sig)):
            bad.append(f"{path.name} line {i} has a bad signature (altered, forged, or signed with another key).")
        elif cp.log == me:
            good.append(cp)
    return good, bad


def _check_checkpoints(cps: list[Checkpoint], bad_lines: list[str], hashes: dict[int, str], last: int,
                       found: _Findings) -> None:
    for text in bad_lines:
        found.add(None, text)
    for cp in sorted(cps, key=lambda c: c.seq):
        if cp.seq > last:
            found.add(last + 1, f"checkpoint of {cp.ts} ({cp.reason}) vouches for entry seq {cp.seq}, but the log "
                                f"ends at seq {last}: entries were removed from the end.")
        elif hashes.get(cp.seq) != cp.hash:
            found.add(cp.seq, f"checkpoint of {cp.ts} says entry seq {cp.seq} had hash {cp.hash[:12]}…, the log has "
                              f"{str(hashes.get(cp.seq))[:12]}…: the log was rewritten from there.")


def _check_footprints(store: Store, area_first: dict[str, int], found: _Findings) -> None:
    geom = store.dialect == "postgresql" and has_postgis(store)
    rows = store.query("SELECT area_hash, geojson" + (", ST_AsBinary(geom)" if geom else ", NULL")
                       + " FROM audit_areas ORDER BY area_hash")
    stored = set()
    for ahash, gj, wkb in rows:
        stored.add(ahash)
        seq = area_first.get(ahash)
        if seq is None:
            found.add(None, f"footprint {str(ahash)[:12]}… belongs to no entry (inserted, or its entries were "
                            "removed).")
            continue
        try:
            same = area_hash(shapely.from_geojson(gj)) == ahash
            if same and wkb is not None:
                same = area_hash(shapely.from_wkb(bytes(wkb))) == ahash
        except (shapely.errors.ShapelyError, ValueError, TypeError):
            same = False
        if not same:
            found.add(seq, f"the footprint of area {str(ahash)[:12]}… (first queried in entry seq {seq}) does not "
                           "match its hash: it was replaced.")
    for ahash, seq in area_first.items():
        if ahash not in stored:
            found.add(seq, f"the footprint of area {ahash[:12]}… (entry seq {seq}) is missing.")


def entries_touching(store: Store, geom: BaseGeometry, *, limit: int = 1000) -> list[Entry]:
    """Entries whose area intersects ``geom`` (WGS84): "who looked at this place?".

    Uses the PostGIS GiST index when the store is PostgreSQL with PostGIS, else shapely over stored footprints.
    """
    ensure_schema(store)
    if store.dialect == "postgresql" and has_postgis(store):
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
