"""Small pieces of the per-version twin cache (:mod:`twin.service._twins`): the version id an answer names, the
skipped-build error, the version check, the OpenAPI example area, the index warm-up and the edit warm-up."""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd
from shapely.geometry import box, mapping

from twin.access.roles import DISTRICT
from twin.errors import PartitionError
from twin.model import COUNT_KEYS, Twin
from twin.partition.model import known_valid, validate_partition
from twin.partition.polygons import cell_codes
from twin.partition.versions import RECORDS_OF, load_partition
from twin.query._cells import ensure_cell_values
from twin.query._cover import seed_unit_cache, unit_keys
from twin.query._index import (
    PartitionIndex,
    group_sum,
    partition_index,
    point_index,
    seed_partition_index,
    seed_point_index,
)
from twin.query.dossier import grid_count_state, grid_counts, seed_grid_counts
from twin.query.summary import summarize_area
from twin.service._params import parse_version
from twin.store import feed
from twin.store.pg import schema_lock_statement
from twin.store.sql import Store

__all__ = ["EXAMPLE_AREA", "AnsweredVersion", "IndexSeeds", "SupersededBuild", "announce_ready", "build_indexes",
           "check_version",
           "derive_partition_index", "index_seeds", "seed_indexes", "share_point_index", "warm_edits"]

#: A small area (WGS84) near Shiwan: the OpenAPI body example.
EXAMPLE_AREA: dict[str, Any] = {
    "type": "Polygon",
    "coordinates": [[[113.105, 23.005], [113.115, 23.005], [113.115, 23.012], [113.105, 23.012], [113.105, 23.005]]],
}


class AnsweredVersion(int):
    """A resolved partition version id (an ``int``: stored, compared and serialised as the number) that also names
    ``changes``, the newest change event (:mod:`twin.live.events` seq; 0 = none) the answer's twin reflects."""

    changes: int

    def __new__(cls, vid: int, changes: int = 0) -> AnsweredVersion:
        out = super().__new__(cls, int(vid))
        out.changes = int(changes)
        return out


class SupersededBuild(RuntimeError):
    """A queued build nobody waited for, skipped because a newer version was queued after it."""


def check_version(version: str) -> str:
    """``head``, ``base`` or the version number (ASCII digits, 1 … 2⁶³−1) of ``version``;
    :class:`ValidationError` otherwise (:func:`twin.service._params.parse_version`)."""
    return parse_version(version)


def share_point_index(t: Twin) -> bool:
    """Give ``t``, a partition version's twin (:func:`twin.partition.versions.twin_with_partition`), the point index
    and the per-cell counts (:func:`twin.query._cells.ensure_cell_values`) of the twin whose records it shares
    (:data:`~twin.partition.versions.RECORDS_OF`; built there if needed, once for all versions) instead of building
    its own: neither depends on the partition. ``False``
    (nothing done) for a twin that is not such a version or whose record frames are no longer that twin's."""
    src = _records_source(t)
    if src is None or src is t or "query.point_index" in t.cache:
        return False
    same = (src.persons is t.persons and src.dwellings is t.dwellings and src.businesses is t.businesses
            and src.cameras is t.cameras and len(src.buildings) == len(t.buildings)
            and len(src.workers) == len(t.workers) and src.manifest.get("as_of") == t.manifest.get("as_of"))
    if not same:
        return False
    pidx = point_index(src)
    seed_point_index(t, pidx)
    ensure_cell_values(src)  # per-cell counts (the disclosure engine's): partition-independent as well
    hit = src.cache.get("query.cell_values")
    if hit is not None and hit[0] is pidx and "access.cell_values" in src.cache:
        t.cache["query.cell_values"] = hit
        t.cache["access.cell_values"] = src.cache["access.cell_values"]
    return True


def _records_source(t: Twin) -> Twin | None:
    ref = t.cache.get(RECORDS_OF)
    return ref() if ref is not None else None


_GRID_TABLE = ("grid_code", "grid_name", "community_code", "town_code")


def _same_grid_table(a: pd.DataFrame, b: pd.DataFrame) -> bool:
    if len(a) != len(b) or any(c not in a or c not in b for c in _GRID_TABLE):
        return False
    return all(np.array_equal(a[c].astype(str).to_numpy(dtype=object), b[c].astype(str).to_numpy(dtype=object))
               for c in _GRID_TABLE)


def derive_partition_index(t: Twin) -> bool:
    """Give ``t``, a partition version's twin sharing its source's point index (:func:`share_point_index`), the
    partition index of its source's updated for the cells whose grid differs (their points move between the
    per-grid totals; integer sums, so exactly what a full build gives) instead of summing every point again.
    Only for the same grid table (codes, names, community, town in the same order) and the same community and
    town frames; ``False`` (nothing done) otherwise (a split or merge: :func:`build_indexes` builds it in full)."""
    src = _records_source(t)
    if (src is None or src is t or "query.partition_index" in t.cache or src.communities is not t.communities
            or src.towns is not t.towns or not _same_grid_table(src.grids, t.grids)):
        return False
    pidx = point_index(t)
    if point_index(src) is not pidx:
        return False
    base: PartitionIndex = partition_index(src)
    old, new = cell_codes(src), cell_codes(t)
    changed = np.flatnonzero(old != new)
    cell_grid = base.cell_grid.copy()
    cell_grid[changed] = pd.Index(base.grid_codes).get_indexer(new[changed]).astype(np.int32)
    cp = pidx.points.cell_pos
    pts = np.flatnonzero(np.isin(cp, changed))
    point_grid = base.point_grid.copy()
    point_grid[pts] = cell_grid[cp[pts]]
    n = len(base.grid_codes)
    totals = (base.grid_totals - group_sum(base.point_grid, pidx.feats, n, rows=pts)
              + group_sum(point_grid, pidx.feats, n, rows=pts))
    seed_partition_index(t, replace(base, cell_grid=cell_grid, point_grid=point_grid, grid_totals=totals,
                                    grid_totals_k=np.ascontiguousarray(totals[:, :len(COUNT_KEYS)])))
    return True


def build_indexes(t: Twin) -> None:
    """Build ``t``'s point and partition indexes and per-grid counts (a summary of a small area inside its
    district, ≈ 600 m across, WGS84). A partition version's twin reuses its base's point index
    (:func:`share_point_index`) and derives its partition index from the base's (:func:`derive_partition_index`):
    only the moved cells' points and the per-grid dossier sums are computed per version."""
    share_point_index(t)
    derive_partition_index(t)
    ensure_cell_values(t)  # shared above; else computed here, not in a reader's request
    pt = t.district.representative_point()
    area = mapping(box(pt.x - 0.003, pt.y - 0.003, pt.x + 0.003, pt.y + 0.003).intersection(t.district))
    summarize_area(t, area, role=DISTRICT, by="grid")
    src = _records_source(t)
    grid_counts(t, like=src if src is not None and src is not t else None)


@dataclass(frozen=True)
class IndexSeeds:
    """A partition version's query indexes made by another process from the same twin (the host's builder process,
    :mod:`twin.service.build_process`), installed by :func:`seed_indexes` instead of derived again (≈ 17 ms).

    Attributes
    ----------
    n_points, n_cells : the point index's points and the twin's cells they were made for (checked when installed).
    partition_index : the version's :class:`twin.query._index.PartitionIndex`.
    grid_counts : :func:`twin.query.dossier.grid_count_state` of the version.
    units_added, units_removed : how the version's :func:`twin.query._cover.unit_keys` (WKBs, bounds) differ from
        those of the twin it was made from (an edit redraws a few grids: a few kB instead of ≈ 0.6 MB of WKB).
    """

    n_points: int
    n_cells: int
    partition_index: PartitionIndex
    grid_counts: tuple[pd.DataFrame, np.ndarray, np.ndarray]
    units_added: tuple[set[bytes], set[tuple[float, ...]]]
    units_removed: tuple[set[bytes], set[tuple[float, ...]]]


def index_seeds(t: Twin) -> IndexSeeds:
    """The query indexes of ``t``, a partition version's twin (:func:`twin.partition.versions.twin_with_partition`)
    with its indexes built (:func:`build_indexes`)."""
    src = _records_source(t)
    if src is None:
        raise ValueError("index seeds are made of a partition version's twin (made from a built twin).")
    (wkbs, bounds), (w0, b0) = unit_keys(t), unit_keys(src)
    return IndexSeeds(len(point_index(t).points.cell_pos), len(t.cells), partition_index(t), grid_count_state(t),
                      (wkbs - w0, bounds - b0), (w0 - wkbs, b0 - bounds))


def seed_indexes(t: Twin, seeds: IndexSeeds) -> bool:
    """Install ``seeds`` (made from an equal twin of the same version elsewhere) as ``t``'s query indexes, sharing
    the point index of the twin ``t`` was made from (:func:`share_point_index`); ``False`` (nothing done, or not
    all: :func:`build_indexes` makes the rest) when they do not fit ``t``."""
    share_point_index(t)
    if "query.point_index" not in t.cache:
        return False
    pidx = point_index(t)
    part = seeds.partition_index
    if (len(pidx.points.cell_pos) != seeds.n_points or len(t.cells) != seeds.n_cells
            or len(part.point_grid) != seeds.n_points or len(part.cell_grid) != seeds.n_cells
            or len(part.grid_codes) != len(t.grids)
            or not np.array_equal(part.grid_codes.astype(str), t.grids["grid_code"].astype(str).to_numpy(dtype=str))):
        return False
    seed_partition_index(t, part)
    src = _records_source(t)
    if src is not None and src is not t:
        w0, b0 = unit_keys(src)
        seed_unit_cache(t, (w0 - seeds.units_removed[0]) | seeds.units_added[0],
                        (b0 - seeds.units_removed[1]) | seeds.units_added[1])
    return seed_grid_counts(t, seeds.grid_counts)


_READY_SCHEMA = ("CREATE TABLE IF NOT EXISTS service_versions_ready (version BIGINT PRIMARY KEY, "
                 "built_at REAL NOT NULL)",)


def announce_ready(store: Store, vid: int) -> None:
    """Publish ``version.ready`` on the push feed, once across processes (the first to build ``vid``)."""
    store.ensure_schema("service_versions_ready", schema_lock_statement(store) + _READY_SCHEMA)
    with store.transaction() as tx:
        cur = tx.execute("INSERT INTO service_versions_ready (version, built_at) VALUES (?, ?) "
                         "ON CONFLICT (version) DO NOTHING", (vid, time.time()))
        if cur.rowcount == 1:  # the first process to build it announces it
            feed.publish(tx, "version.ready", {"version": vid})


def warm_edits(store: Store, base: Twin, vid: int) -> None:
    """The head's partition loaded, labelled and known valid, so that the first edit costs what the next ones do
    (≈ 15 ms instead of ≈ 110 ms: a full check of the base partition and its grid labels)."""
    p = load_partition(store, base, vid)
    if not known_valid(p):  # the base version: the built twin's own grids, never committed through a check
        try:
            validate_partition(p)
        except PartitionError:  # the first commit on it names the problems
            return
    p.labels()
