"""Partition versions in the shared store: commit with optimistic concurrency, history, diff, undo/redo, time travel.

Each version is one row of ``partition_versions``: integer ``version`` id, ``parent``, ``author``, ``created_at``
(UTC ISO 8601), ``reason``, the cell → grid assignment as a zlib-compressed ``int32`` BLOB (index into the grid
table, -1 = unassigned; aligned with the twin's sorted cells, whose sha256 is stored alongside) and the grid table
as JSON. ``partition_head`` holds the head version. Version 1 (alias ``"base"``) is the built twin's own partition;
it is recorded the first time the store is used with that twin.

Commits are atomic (one transaction: insert the version, move the head) and optimistic: ``commit(...,
base_version=v)`` raises :class:`twin.errors.ConflictError` naming the head when ``v`` is no longer the head, so
two editors starting from the same version never overwrite each other silently. Undo, redo and roll-back add a new
version whose content equals an earlier one; history is never rewritten.

Undo and redo are multi-level, as in an editor: ``partition_undo`` records, for each version written by
:func:`undo` or :func:`redo`, the version whose edit state it restores (``state``) and the redo stack (the undone
versions, next first). Undoing again walks further back along the parents of the restored states; redo walks the
stack forward; an ordinary commit (or roll-back) on top clears the stack.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import threading
import weakref
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from twin.access.policy import (
    DEFAULT_POLICY,
    AccessPolicy,
    base_units,
    grid_scope_mask,
    publish_groups,
    published_sum,
    sees_everything,
    unit_table,
)
from twin.access.roles import DISTRICT, Role
from twin.encoding import dumps
from twin.errors import ConflictError, NotFoundError, PartitionError, ValidationError
from twin.model import Twin
from twin.partition.balance import balance_report
from twin.partition.model import (
    GRID_COLUMNS,
    Partition,
    known_valid,
    mark_stored_valid,
    partition_from_twin,
    reassign_workers,
    validate_partition,
)
from twin.partition.polygons import (
    CELL_CODES,
    cell_codes,
    cell_outlines,
    changed_units_polygons,
    units_to_polygons,
)
from twin.partition.workload import cell_counts
from twin.store.sql import Store, Transaction, open_store

__all__ = [
    "prepare_checkouts",
    "BASE_VERSION",
    "VersionInfo",
    "VersionDiff",
    "ensure_base",
    "head_version",
    "resolve_version",
    "list_versions",
    "version_info",
    "commit",
    "load_partition",
    "undo",
    "redo",
    "undo_target",
    "redo_target",
    "rollback",
    "diff_versions",
    "checkout",
    "twin_with_partition",
    "VersionParts",
    "version_parts",
    "partition_digest",
    "RECORDS_OF",
]

BASE_VERSION = 1

RECORDS_OF = "partition.records_of"
"""``Twin.cache`` key of a twin made by :func:`twin_with_partition`: a weak reference to the twin whose records it
shares (every frame and column but the grid assignment: ``cells``/``buildings``/``workers`` ``grid_code`` and
``grids``; the same rows in the same order, the same coordinates). Partition-independent indexes built on that
twin (the query point index, per-building counts) are valid for this one too."""

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS partition_versions (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        parent BIGINT,
        author TEXT NOT NULL,
        created_at TEXT NOT NULL,
        reason TEXT NOT NULL,
        n_cells BIGINT NOT NULL,
        n_grids BIGINT NOT NULL,
        cells_sha256 TEXT NOT NULL,
        assignment BLOB NOT NULL,
        grids_json TEXT NOT NULL
    )""",
    "CREATE TABLE IF NOT EXISTS partition_head (name TEXT PRIMARY KEY, version BIGINT NOT NULL)",
    """CREATE TABLE IF NOT EXISTS partition_undo (
        version BIGINT PRIMARY KEY,
        kind TEXT NOT NULL,
        state BIGINT NOT NULL,
        redo_stack TEXT NOT NULL
    )""",
)

# Test hook: called inside the commit transaction after the new version row is written and before the head
# moves (crash-safety tests make it sleep and kill the process). Never set in production code.
_BEFORE_HEAD_UPDATE: Callable[[], None] | None = None


@dataclass(frozen=True)
class VersionInfo:
    """One stored version's metadata."""

    version: int
    parent: int | None
    author: str
    created_at: str
    reason: str
    n_grids: int
    is_head: bool = False


@dataclass
class VersionDiff:
    """What changed from version ``a`` to version ``b``."""

    a: int
    b: int
    grids_added: list[str]
    grids_removed: list[str]
    grids_changed: list[str]
    cells_moved: int
    buildings_moved: int | None
    residents_moved: int | None
    residents_total: int
    balance_before: dict[str, Any] = field(default_factory=dict)
    balance_after: dict[str, Any] = field(default_factory=dict)
    outside: dict[str, Any] | None = None
    """For roles that do not see everything: the moves outside their record scope as published whole units
    (``buildings_moved``, ``residents_moved``: ``None`` = suppressed), the units counted and ``rounded_to``."""

    @property
    def moved_share(self) -> float:
        """Share of residents whose grid changed (0 when the moved residents are suppressed)."""
        return (self.residents_moved or 0) / self.residents_total if self.residents_total else 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready figures."""
        return {"a": self.a, "b": self.b, "grids_added": self.grids_added, "grids_removed": self.grids_removed,
                "grids_changed": self.grids_changed, "cells_moved": self.cells_moved,
                "buildings_moved": self.buildings_moved, "residents_moved": self.residents_moved,
                "moved_share": round(self.moved_share, 6), "balance_before": self.balance_before,
                "balance_after": self.balance_after, "outside_scope": self.outside}

    def to_text(self) -> str:
        """The diff as plain text."""
        bb, ba = self.balance_before, self.balance_after
        lines = [
            f"version {self.a} → {self.b}",
            f"grids added {len(self.grids_added)}: {self.grids_added[:10]}",
            f"grids removed {len(self.grids_removed)}: {self.grids_removed[:10]}",
            f"grids changed {len(self.grids_changed)}: {self.grids_changed[:10]}",
            f"moved: {self.cells_moved} cells, {self.buildings_moved} buildings, {self.residents_moved} residents "
            f"({100 * self.moved_share:.2f} %)",
        ]
        if bb.get("cv") is not None and ba.get("cv") is not None:
            lines.append(f"grids {bb['grids']} → {ba['grids']}; CV {bb['cv']:.3f} → {ba['cv']:.3f}; max |dev| "
                         f"{100 * bb['max_abs_dev']:.1f} % → {100 * ba['max_abs_dev']:.1f} %")
        return "\n".join(lines)


# -- storage helpers -----------------------------------------------------------------------------------------
def _ensure_schema(store: Store) -> None:
    store.ensure_schema("partition_versions", _SCHEMA)


def _cells_sha(cells: np.ndarray) -> str:
    """sha256 (hex) of the cell ids; remembered for the last arrays hashed (a twin's cells are hashed on every
    load of a version: ≈ 0.5 ms each on the default twin)."""
    hit = _CELLS_SHA.get(id(cells))
    if hit is not None and hit[0] is cells and not cells.flags.writeable:
        return hit[1]
    sha = hashlib.sha256(np.ascontiguousarray(cells, dtype=np.uint64).tobytes()).hexdigest()
    if not cells.flags.writeable:  # a fixed array (a partition's cells): cannot change under the memo
        with _LOADED_LOCK:
            _CELLS_SHA[id(cells)] = (cells, sha)
            while len(_CELLS_SHA) > 4:
                _CELLS_SHA.pop(next(iter(_CELLS_SHA)))
    return sha


_CELLS_SHA: dict[int, tuple[np.ndarray, str]] = {}


def _encode(p: Partition) -> tuple[bytes, str]:
    lab, _ = p.labels()
    blob = zlib.compress(lab.astype("<i4").tobytes(), 1)  # ≈ 1 ms for the default twin (level 6: ≈ 6 ms, -25 %)
    return blob, _table_json(p.grids)


def _table_json(grids: pd.DataFrame) -> str:
    """The grid table as stored (JSON rows), remembered for the last tables (an edit that moves cells keeps its
    parent's table object: ≈ 5 ms saved per commit)."""
    hit = _TABLE_JSON.get(id(grids))
    if hit is not None and hit[0]() is grids:
        return hit[1]
    cols = [grids[c].astype(str).tolist() for c in GRID_COLUMNS]
    text = dumps([dict(zip(GRID_COLUMNS, row)) for row in zip(*cols)]).decode()
    with _LOADED_LOCK:
        _TABLE_JSON[id(grids)] = (weakref.ref(grids), text)
        while len(_TABLE_JSON) > _LOADED_MAX:
            _TABLE_JSON.pop(next(iter(_TABLE_JSON)))
    return text


_TABLE_JSON: dict[int, tuple[weakref.ReferenceType[pd.DataFrame], str]] = {}


def _decode(blob: bytes | memoryview, grids_json: str, n_cells: int
            ) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """The stored labels (index into the stored grid table's rows; -1: no grid) and those rows."""
    lab = np.frombuffer(zlib.decompress(bytes(blob)), dtype="<i4").astype(np.int64)
    rows = json.loads(grids_json)
    if len(lab) != n_cells:
        raise PartitionError(f"stored assignment has {len(lab)} cells, expected {n_cells}: the version is damaged.")
    if len(lab) and (lab.max() >= len(rows) or lab.min() < -1):
        raise PartitionError(f"stored assignment names grid {int(lab.max())} of a table of {len(rows)}: "
                             "the version is damaged.")
    return lab, rows


def _same_table(store: Store, grids_json: str, rows: list[dict[str, Any]], base: Partition) -> Partition | None:
    """A partition loaded or committed here, on ``base``'s cells, whose stored grid table is ``grids_json`` and
    whose own table is in the stored rows' order (so that stored labels index it)."""
    with _LOADED_LOCK:
        loaded = list(_LOADED.items())
    for (url, _), (_, table_json, p) in reversed(loaded):
        if (url == store.url and table_json == grids_json and _shares_cells(p, base)
                and p.grids["grid_code"].astype(str).tolist() == [str(r.get("grid_code")) for r in rows]):
            return p
    return None


def _shares_cells(p: Partition, base: Partition) -> bool:
    """Whether ``p`` was made on ``base``'s cells (the same fixed arrays, not copies)."""
    return (p.adjacency is base.adjacency and p.community is base.community and p.weight is base.weight
            and p.xy is base.xy and p.blocks is base.blocks)


# Partitions of stored versions never change: the last ones committed or loaded in this process, per store URL
# and version, with the stored bytes they were checked against (a store rebuilt at the same URL misses).
_LOADED: dict[tuple[str, int], tuple[bytes, str, Partition]] = {}
_LOADED_MAX = 16
_LOADED_LOCK = threading.Lock()  # request threads and a service's version builder share it


def _remember(store: Store, vid: int, blob: bytes, grids_json: str, p: Partition) -> None:
    p.meta["version"] = vid
    with _LOADED_LOCK:
        _LOADED.pop((store.url, vid), None)
        _LOADED[(store.url, vid)] = (blob, grids_json, p)
        while len(_LOADED) > _LOADED_MAX:
            _LOADED.pop(next(iter(_LOADED)))


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def _store_for(twin: Twin, store: Store | None) -> Store:
    return store if store is not None else open_store(twin_root=twin.root)


# -- head, history -------------------------------------------------------------------------------------------
def ensure_base(store: Store, twin: Twin) -> int:
    """Record the twin's own partition as version 1 (``"base"``) if the store has no versions; return the head."""
    _ensure_schema(store)
    rows = store.query("SELECT version FROM partition_head WHERE name = 'head'")
    if rows:
        return int(rows[0][0])
    p = partition_from_twin(twin)
    blob, grids_json = _encode(p)
    with store.transaction() as tx:
        rows = tx.query("SELECT version FROM partition_head WHERE name = 'head'" + store.lock_clause())
        if rows:  # another process recorded it first
            return int(rows[0][0])
        vid = tx.insert(
            "INSERT INTO partition_versions (parent, author, created_at, reason, n_cells, n_grids, cells_sha256, "
            "assignment, grids_json) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (None, "twin build", _now(), "partition of the built twin", len(p.cells), p.n_grids,
             _cells_sha(p.cells), blob, grids_json),
        )
        tx.execute("INSERT INTO partition_head (name, version) VALUES ('head', ?)", (vid,))
    return vid


def head_version(store: Store) -> int:
    """The head version id; :class:`NotFoundError` when the store holds no versions yet."""
    _ensure_schema(store)
    rows = store.query("SELECT version FROM partition_head WHERE name = 'head'")
    if not rows:
        raise NotFoundError("the store holds no partition versions yet; call versions.ensure_base(store, twin).")
    return int(rows[0][0])


def resolve_version(store: Store, version: int | str) -> int:
    """``"base"`` → 1, ``"head"`` → the head, ``"7"``/7 → 7 (checked to exist)."""
    if isinstance(version, str):
        v = version.strip().lower()
        if v == "head":
            return head_version(store)
        if v == "base":
            version = BASE_VERSION
        elif v.lstrip("v").isdigit():
            version = int(v.lstrip("v"))
        else:
            raise ValidationError(f"a version is a number, 'base' or 'head'; got {version!r}.")
    vid = int(version)
    _ensure_schema(store)
    if not store.query("SELECT id FROM partition_versions WHERE id = ?", (vid,)):
        last = store.query("SELECT MAX(id) FROM partition_versions")[0][0]
        raise NotFoundError(f"unknown partition version {vid}; versions run from 1 to {last}.")
    return vid


def list_versions(store: Store) -> list[VersionInfo]:
    """All versions, oldest first."""
    _ensure_schema(store)
    head = store.query("SELECT version FROM partition_head WHERE name = 'head'")
    h = int(head[0][0]) if head else None
    rows = store.query("SELECT id, parent, author, created_at, reason, n_grids FROM partition_versions ORDER BY id")
    return [VersionInfo(int(r[0]), None if r[1] is None else int(r[1]), r[2], r[3], r[4], int(r[5]), int(r[0]) == h)
            for r in rows]


def version_info(store: Store, version: int | str) -> VersionInfo:
    """Metadata of one version (an id, ``"base"`` or ``"head"``); :class:`NotFoundError` for an unknown one."""
    vid = resolve_version(store, version)
    return next(v for v in list_versions(store) if v.version == vid)


# -- commit --------------------------------------------------------------------------------------------------
def commit(store: Store, partition: Partition, *, base_version: int | str, author: str, reason: str,
           twin: Twin | None = None, audit: Callable[[Transaction, int], object] | None = None) -> int:
    """Store ``partition`` as a new version whose parent is ``base_version``; return the new version id.

    The partition is validated first (every rule of :mod:`twin.partition.model`). Raises :class:`ConflictError` naming
    the head when ``base_version`` is not the head (someone committed since you started), and
    :class:`PartitionError` for an invalid partition or one made for other cells than the stored versions.
    With ``twin`` the base version is recorded first if the store is new.

    ``audit(tx, new_version)`` is called inside the commit transaction, after the head has moved: it writes the
    edit's audit entry (e.g. ``twin.access.audit.append(store, ..., tx=tx)``) so that the version and its audit
    entry commit together or not at all. If it raises, nothing is committed.
    """
    if not str(author).strip():
        raise ValidationError("a commit needs an author (who made the edit).")
    if not str(reason).strip():
        raise ValidationError("a commit needs a reason (why the edit was made).")
    if twin is not None:
        ensure_base(store, twin)
    _ensure_schema(store)
    if not known_valid(partition):  # an edit's result or a loaded version was checked already
        validate_partition(partition, action="commit")
    base = resolve_version(store, base_version)
    blob, grids_json = _encode(partition)
    sha = _cells_sha(partition.cells)
    with store.transaction() as tx:
        rows = tx.query("SELECT version FROM partition_head WHERE name = 'head'" + store.lock_clause())
        head = int(rows[0][0])
        if head != base:
            who = tx.query("SELECT author, created_at, reason FROM partition_versions WHERE id = ?", (head,))[0]
            raise ConflictError(
                f"version {base} is no longer the head: version {head} ({who[0]}, {who[1]}: {who[2]!r}) was "
                f"committed since. Load version {head}, redo your edit on it and commit with base_version={head}."
            )
        stored_sha = tx.query("SELECT cells_sha256 FROM partition_versions WHERE id = ?", (head,))[0][0]
        if stored_sha != sha:
            raise PartitionError("the partition's cells differ from the stored versions' cells (another twin?); "
                                 "load the partition from this twin's store.")
        vid = tx.insert(
            "INSERT INTO partition_versions (parent, author, created_at, reason, n_cells, n_grids, cells_sha256, "
            "assignment, grids_json) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (base, str(author), _now(), str(reason), len(partition.cells), partition.n_grids, sha, blob, grids_json),
        )
        if _BEFORE_HEAD_UPDATE is not None:
            _BEFORE_HEAD_UPDATE()
        tx.execute("UPDATE partition_head SET version = ? WHERE name = 'head'", (vid,))
        if audit is not None:
            audit(tx, vid)
    _remember(store, vid, blob, grids_json, partition)
    return vid


def load_partition(store: Store, twin: Twin, version: int | str = "head") -> Partition:
    """The partition of a stored version on ``twin``'s cells (records the base version first if needed)."""
    ensure_base(store, twin)
    vid = resolve_version(store, version)
    row = store.query("SELECT n_cells, cells_sha256, assignment, grids_json FROM partition_versions WHERE id = ?",
                      (vid,))[0]
    base = partition_from_twin(twin)
    if int(row[0]) != len(base.cells) or row[1] != _cells_sha(base.cells):
        raise PartitionError(f"version {vid} was made for other cells ({row[0]} cells) than this twin "
                             f"({len(base.cells)} cells); use the store of the twin it belongs to.")
    blob = bytes(row[2])
    hit = _LOADED.get((store.url, vid))
    if hit is not None and hit[0] == blob and hit[1] == row[3] and _shares_cells(hit[2], base):
        return hit[2]
    lab, rows = _decode(blob, row[3], len(base.cells))
    same = _same_table(store, row[3], rows, base)  # most edits keep the grid table: reuse a loaded one
    p = (same.with_labels(lab) if same is not None
         else base.with_labels(lab, pd.DataFrame(rows, columns=list(GRID_COLUMNS))))
    if vid != BASE_VERSION:  # every later version was validated by commit; the base is the built twin's own
        mark_stored_valid(p)
    _remember(store, vid, blob, row[3], p)
    return p


def _content_commit(store: Store, twin: Twin, source: int, *, base_version: int | str | None, author: str,
                    reason: str, undo_row: tuple[str, int, list[int]] | None = None,
                    audit: Callable[[Transaction, int], object] | None = None) -> int:
    """Commit a new version whose content equals ``source``; ``undo_row`` (kind, state, redo stack) is written in
    the same transaction."""
    p = load_partition(store, twin, source)
    base = head_version(store) if base_version is None else base_version

    def write(tx: Transaction, vid: int) -> None:
        if undo_row is not None:
            tx.execute("INSERT INTO partition_undo (version, kind, state, redo_stack) VALUES (?, ?, ?, ?)",
                       (vid, undo_row[0], int(undo_row[1]), json.dumps([int(v) for v in undo_row[2]])))
        if audit is not None:
            audit(tx, vid)

    return commit(store, p, base_version=base, author=author, reason=reason, audit=write)


def _undo_chain(store: Store, version: int) -> tuple[int, list[int]]:
    """(the version whose edit state ``version`` holds, its redo stack): itself and ``[]`` for an ordinary commit."""
    rows = store.query("SELECT state, redo_stack FROM partition_undo WHERE version = ?", (int(version),))
    return (int(rows[0][0]), [int(v) for v in json.loads(rows[0][1])]) if rows else (int(version), [])


def undo_target(store: Store, version: int | str = "head") -> int | None:
    """The version an undo from ``version`` restores (the parent of the edit state it holds; ``None``: nothing to
    undo, i.e. the base). Repeated undos walk back one edit each."""
    state, _ = _undo_chain(store, resolve_version(store, version))
    parent = version_info(store, state).parent
    return None if parent is None else _undo_chain(store, parent)[0]


def redo_target(store: Store, version: int | str = "head") -> int | None:
    """The version a redo from ``version`` restores (the last one undone), or ``None`` when there is nothing to redo
    (``version`` is not an undo/redo, or its undos were all redone)."""
    stack = _undo_chain(store, resolve_version(store, version))[1]
    return stack[0] if stack else None


def undo(store: Store, twin: Twin, *, author: str, base_version: int | str | None = None,
         reason: str | None = None, audit: Callable[[Transaction, int], object] | None = None) -> int:
    """Undo the last edit of the head: a new version whose content equals the state before it. Multi-level: an
    undo of an undo goes one more edit back (:func:`undo_target`); :func:`redo` goes forward again.

    ``base_version`` (default: the head as read now) guards against undoing someone else's newer edit
    (``ConflictError``); :class:`PartitionError` when there is nothing to undo (the base partition).
    """
    ensure_base(store, twin)
    head = head_version(store) if base_version is None else resolve_version(store, base_version)
    state, stack = _undo_chain(store, head)
    target = undo_target(store, head)
    if target is None:
        raise PartitionError(f"version {head} has no parent: nothing to undo."
                             if state == head else f"version {head} is back at the base partition: nothing to undo.")
    return _content_commit(store, twin, target, base_version=head, author=author,
                           reason=reason or f"undo version {state} (back to version {target})",
                           undo_row=("undo", target, [state, *stack]), audit=audit)


def redo(store: Store, twin: Twin, *, author: str, base_version: int | str | None = None,
         reason: str | None = None, audit: Callable[[Transaction, int], object] | None = None) -> int:
    """Redo the last undone edit: a new version whose content equals it (:func:`redo_target`). Redos walk forward
    through everything undone in a row; an ordinary commit after an undo leaves nothing to redo.

    ``base_version`` (default: the head) must be the head (``ConflictError`` otherwise); :class:`PartitionError`
    when there is nothing to redo.
    """
    ensure_base(store, twin)
    head = head_version(store) if base_version is None else resolve_version(store, base_version)
    stack = _undo_chain(store, head)[1]
    if not stack:
        raise PartitionError(f"nothing to redo from version {head}: redo follows an undo (and an edit committed "
                             "after an undo ends what can be redone).")
    return _content_commit(store, twin, stack[0], base_version=head, author=author,
                           reason=reason or f"redo version {stack[0]}", undo_row=("redo", stack[0], stack[1:]),
                           audit=audit)


def rollback(store: Store, twin: Twin, to_version: int | str, *, author: str,
             base_version: int | str | None = None, reason: str | None = None) -> int:
    """Roll back to any earlier version: a new version whose content equals ``to_version``."""
    ensure_base(store, twin)
    target = resolve_version(store, to_version)
    return _content_commit(store, twin, target, base_version=base_version, author=author,
                           reason=reason or f"roll back to version {target}")


# -- diff ----------------------------------------------------------------------------------------------------
def diff_versions(store: Store, twin: Twin, a: int | str, b: int | str = "head", *,
                  weights: dict[str, float] | None = None, role: Role = DISTRICT,
                  policy: AccessPolicy = DEFAULT_POLICY) -> VersionDiff:
    """Grids added/removed/changed, cells/buildings/residents moved and the balance before/after from a to b,
    as ``role`` may see them (:mod:`twin.access.policy`).

    A role that sees everything (the default district role) gets every figure exactly. For other roles, moves
    of cells in their record scope at both versions are exact; the rest is answered from whole fixed units
    (the built grids more than half of whose out-of-scope cells moved, each suppressed below k or rounded to a
    multiple of k) in ``outside`` — so a diff never shows how many residents one moved building held — and the
    balance summaries (exact workloads of grids outside the scope) are left out.
    """
    pa, pb = load_partition(store, twin, a), load_partition(store, twin, b)
    moved = pa.grid_code != pb.grid_code
    codes_a, codes_b = set(pa.grids["grid_code"]), set(pb.grids["grid_code"])
    changed = sorted((set(pa.grid_code[moved].tolist()) | set(pb.grid_code[moved].tolist())) - {""})
    counts = cell_counts(twin)
    b_cells = pd.Index(pa.cells).get_indexer(twin.buildings["cell"].to_numpy())
    per_cell = np.column_stack([np.bincount(b_cells[b_cells >= 0], minlength=len(pa.cells)),
                                np.rint(counts["residents"].to_numpy(dtype=float))]).astype(np.int64)
    keep = ["grids", "mean", "cv", "max", "min", "max_over_min", "max_abs_dev", "flagged", "unassigned_cells"]
    common: dict[str, Any] = {"a": int(pa.meta["version"]), "b": int(pb.meta["version"]), "grids_added": sorted(codes_b - codes_a),
              "grids_removed": sorted(codes_a - codes_b),
              "grids_changed": [g for g in changed if g in codes_a and g in codes_b], "cells_moved": int(moved.sum())}
    if sees_everything(role):
        before = balance_report(twin, pa, weights=weights, polygons=False).summary
        after = balance_report(twin, pb, weights=weights, polygons=False).summary
        return VersionDiff(**common, buildings_moved=int(per_cell[moved, 0].sum()),
                           residents_moved=int(per_cell[moved, 1].sum()), residents_total=int(per_cell[:, 1].sum()),
                           balance_before={k: before[k] for k in keep}, balance_after={k: after[k] for k in keep})
    inside = _in_scope_cells(pa, role) & _in_scope_cells(pb, role)
    unit_codes, unit = base_units(twin)
    table = unit_table(per_cell, ~inside, unit, len(unit_codes), policy.k_for(role))
    group = np.where(moved, 0, 1)  # group 0: moved cells, group 1: the rest (for the district total)
    pub, counted = publish_groups(table, ~inside, unit, group, 2)
    exact_moved = per_cell[moved & inside].sum(axis=0)
    exact_all = per_cell[inside].sum(axis=0)
    tot = published_sum(pub)

    def plus(exact: int, p: int) -> int | None:
        return None if p < 0 else int(exact) + int(p)

    out_moved = [None if v < 0 else int(v) for v in pub[0].tolist()]
    return VersionDiff(**common, buildings_moved=plus(exact_moved[0], pub[0, 0]),
                       residents_moved=plus(exact_moved[1], pub[0, 1]),
                       residents_total=plus(exact_all[1], tot[1]) or 0,
                       balance_before={"grids": int(pa.n_grids)}, balance_after={"grids": int(pb.n_grids)},
                       outside={"buildings_moved": out_moved[0], "residents_moved": out_moved[1],
                                "grids": [str(c) for c in unit_codes[counted[0]]],
                                "rounded_to": policy.k_for(role)})


def _in_scope_cells(p: Partition, role: Role) -> np.ndarray:
    """Per cell of ``p``: its grid is in ``role``'s record scope."""
    inside = grid_scope_mask(role, p.grids)
    pos = pd.Index(p.grids["grid_code"].astype(str)).get_indexer(np.asarray(p.grid_code, dtype=str))
    return (pos >= 0) & inside[np.maximum(pos, 0)]


@dataclass(frozen=True)
class VersionParts:
    """The parts of a partition version's twin that cost to make (≈ 50 ms of the ≈ 70 ms of a version on the default
    twin): its grid polygons and its workers re-assigned. Made by :func:`version_parts` wherever the built twin is
    loaded — a service's builder process makes them once per host (:mod:`twin.service.build_process`) — and
    picklable; :func:`twin_with_partition` checks they were made for its partition (``digest``).

    Attributes
    ----------
    digest : :func:`partition_digest` of the partition they were made for.
    grids : the version's grid table with polygons (WGS84; ``area_km2`` in EPSG:4547), sorted by ``grid_code``.
    workers : the twin's workers re-assigned to the version's grids (:func:`twin.partition.model.reassign_workers`).
    cell_grid_code : the twin's ``cells["grid_code"]`` values under the version (``""``: no grid).
    building_grid_code : the twin's ``buildings["grid_code"]`` under the version (categorical).
    """

    digest: str
    grids: pd.DataFrame
    workers: pd.DataFrame
    cell_grid_code: Any
    building_grid_code: pd.Categorical


def partition_digest(p: Partition) -> str:
    """A digest of partition ``p``'s content: its cells, each cell's grid and the grid table (sha256, hex)."""
    lab, _ = p.labels()
    h = hashlib.sha256(_cells_sha(p.cells).encode())
    h.update(np.ascontiguousarray(lab, dtype="<i4").tobytes())
    h.update(_table_json(p.grids).encode())
    return h.hexdigest()


def version_parts(twin: Twin, p: Partition) -> VersionParts:
    """The grid polygons (those the partition changed re-derived from their cells, the others kept as built — e.g.
    along streets and water; WGS84, ``area_km2`` in EPSG:4547) and the re-assigned workers of ``twin`` under
    partition ``p``."""
    if "n_cells" in twin.grids and "area_km2" in twin.grids:  # keep the built polygons of untouched grids
        lab, codes = p.labels()
        present = codes[np.bincount(lab[lab >= 0], minlength=len(codes)) > 0].tolist()
        polys = changed_units_polygons(twin.grids, cell_codes(twin), p.cells, p.grid_code, twin.district,
                                       present=present, unit_outline=cell_outlines(twin))
    else:
        ok = p.grid_code != ""
        polys = units_to_polygons(p.cells[ok], p.grid_code[ok], twin.district, name="grid_code")
    grids = polys.merge(p.grids, on="grid_code", how="left")
    grids["synthetic"] = bool(twin.grids["synthetic"].all()) if "synthetic" in twin.grids else True
    cols = [c for c in twin.grids.columns if c in grids.columns] + [c for c in grids.columns
                                                                     if c not in twin.grids.columns]
    return VersionParts(partition_digest(p), grids[cols], reassign_workers(twin.workers, p),
                        _cell_grid_column(twin, p).array, _building_grids(twin, p))


def _cell_grid_column(twin: Twin, p: Partition) -> pd.Series:
    """``twin.cells["grid_code"]`` under ``p`` (``""``: no grid), in the column's own string dtype: taken from the
    grid codes by label (≈ 0.5 ms, where assigning ``p.grid_code``'s 74k objects converts each: ≈ 7 ms)."""
    col = twin.cells["grid_code"]
    lab, codes = p.labels()
    try:
        table = pd.array([*codes.tolist(), ""], dtype=col.dtype)
    except (TypeError, ValueError):  # a column of another dtype (e.g. object): plain assignment
        return pd.Series(p.grid_code, index=col.index, name=col.name)
    return pd.Series(table.take(np.where(lab >= 0, lab, len(codes))), index=col.index, name=col.name)


# -- time travel ---------------------------------------------------------------------------------------------
def twin_with_partition(twin: Twin, p: Partition, *, version: int | None = None,
                        parts: VersionParts | None = None) -> Twin:
    """A new :class:`Twin` (``dataclasses.replace``) whose ``cells["grid_code"]``, ``grids``, ``buildings["grid_code"]``
    and ``workers`` follow partition ``p`` (:func:`version_parts`: made here unless ``parts`` are given, e.g. by a
    builder process; :class:`PartitionError` when they were made for another partition). Other frames are shared,
    not copied."""
    if len(p.cells) != len(twin.cells) or not np.array_equal(p.cells, twin.cells["cell"].to_numpy()):
        raise PartitionError("the partition is for other cells than this twin.")
    if parts is None:
        parts = version_parts(twin, p)
    elif parts.digest != partition_digest(p):
        raise PartitionError("the version's parts were made for another partition than this one.")
    cells = twin.cells.copy()
    cells["grid_code"] = parts.cell_grid_code  # an array: no index alignment
    buildings = twin.buildings.copy(deep=False)
    buildings["grid_code"] = parts.building_grid_code
    manifest = dict(twin.manifest)
    manifest["counts"] = dict(manifest.get("counts", {}), grids=len(parts.grids))
    if version is not None:
        manifest["partition_version"] = int(version)
    cache: dict[str, Any] = {k: twin.cache[k] for k in ("adjacency", "cell_xy", "cell_counts") if k in twin.cache}
    if not p.grid_code.flags.writeable:  # a partition is a value: its codes are the new twin's
        cache[CELL_CODES] = (cells, cells["grid_code"].array, p.grid_code)
    src = twin.cache.get(RECORDS_OF)
    root = src() if src is not None else None
    cache[RECORDS_OF] = weakref.ref(root if root is not None else twin)
    return replace(twin, cells=cells, grids=parts.grids.copy(deep=False), buildings=buildings,
                   workers=parts.workers.copy(deep=False), manifest=manifest, cache=cache)


def prepare_checkouts(twin: Twin) -> None:
    """Make now what every :func:`checkout` of ``twin`` reads (its cells' grid codes as ``str`` objects, its
    buildings' cell rows) and build one throwaway version, rather than in the first version's build (≈ 0.2 s on
    the default twin)."""
    p = partition_from_twin(twin)
    cell_codes(twin)
    _building_grids(twin, p)
    moved = _one_boundary_move(p)
    if moved is not None:  # a throwaway version: the first real build then costs what later ones do
        twin_with_partition(twin, moved)


def _one_boundary_move(p: Partition) -> Partition | None:
    """``p`` with one cell given to a neighbouring grid of its community (not checked: never committed)."""
    adj, codes = p.adjacency, p.grid_code
    for i in range(len(p.cells)):
        for j in adj.indices[adj.indptr[i]:adj.indptr[i + 1]]:
            if codes[j] not in ("", codes[i]) and p.community[j] == p.community[i]:
                new = codes.copy()
                new[i] = codes[j]
                return p.with_assignment(new)
    return None


def _building_grids(twin: Twin, p: Partition) -> pd.Categorical:
    """Each building's grid code under ``p`` (``""``: its cell is in no grid), categories sorted: built from the
    cells' grid labels (the buildings' cell rows are cached per twin)."""
    hit = twin.cache.get("partition.building_cell_rows")
    if hit is None or hit[0] is not twin.buildings or not (hit[1] is p.cells or np.array_equal(hit[1], p.cells)):
        rows = pd.Index(p.cells).get_indexer(twin.buildings["cell"].to_numpy())
        hit = twin.cache["partition.building_cell_rows"] = (twin.buildings, p.cells, rows)
    pos = hit[2]
    lab, codes = p.labels()  # p.grids is sorted by grid_code: label order is category order
    blab = np.where(pos >= 0, lab[np.maximum(pos, 0)], -1)
    used = np.flatnonzero(np.bincount(blab + 1, minlength=len(codes) + 1)) - 1  # sorted, -1 first if any
    cats = [str(c) for c in codes[used[used >= 0]]]
    remap = np.full(len(codes) + 1, -1, dtype=np.int64)  # label + 1 → category code
    if used[0] < 0:  # "" sorts first
        cats = ["", *cats]
    remap[used + 1] = np.arange(len(used))
    return pd.Categorical.from_codes(remap[blab + 1], categories=cats)


def checkout(twin: Twin, version: int | str = "head", *, store: Store | None = None,
             parts: VersionParts | None = None) -> Twin:
    """The twin as of a stored partition version (time travel): queries and dossiers on the returned twin use
    that version's grids. ``version`` is an id, ``"base"`` (1) or ``"head"``; ``parts``: the version's
    :class:`VersionParts` when already made (e.g. by a builder process). Results are cached per version in
    ``twin.cache``."""
    st = _store_for(twin, store)
    ensure_base(st, twin)
    vid = resolve_version(st, version)
    key = f"checkout:{st.url}:{vid}"
    hit = twin.cache.get(key)
    if hit is not None:
        return hit
    out = twin_with_partition(twin, load_partition(st, twin, vid), version=vid, parts=parts)
    twin.cache[key] = out
    return out
