"""A partition version's twin reuses its base's partition-independent indexes and answers exactly like a twin built
from scratch; commits check a partition once (an edit's result is not checked again) and still refuse invalid ones;
stored versions are loaded once per process."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

import twin
from twin.errors import PartitionError
from twin.partition import edits, versions
from twin.partition.edit_ops import EditOp, apply_edit
from twin.partition.model import Partition, check_partition, known_valid, partition_from_twin
from twin.query._index import partition_index, point_index
from twin.query.dossier import grid_counts
from twin.service._versioned import build_indexes, derive_partition_index, share_point_index
from twin.store.sql import Store


def _moves(p: Partition, n: int) -> list[tuple[int, str]]:
    """``n`` single-cell moves (cell, target grid) that keep the partition valid, in different grids."""
    adj, out, used = p.adjacency, [], set()
    for i in np.random.default_rng(3).permutation(len(p.cells)):
        nb = [j for j in adj.indices[adj.indptr[i]:adj.indptr[i + 1]]
              if p.grid_code[j] != p.grid_code[i] and p.community[j] == p.community[i]]
        if not nb or p.grid_code[i] in used or p.grid_code[nb[0]] in used:
            continue
        try:
            edits.move_cells(p, [p.cells[i]], str(p.grid_code[nb[0]]))
        except PartitionError:
            continue
        out.append((int(p.cells[i]), str(p.grid_code[nb[0]])))
        used |= {p.grid_code[i], p.grid_code[nb[0]]}
        if len(out) == n:
            return out
    raise AssertionError("no valid single-cell moves found")


def _areas(t: twin.Twin, n: int) -> list[dict]:
    rng = np.random.default_rng(5)
    minx, miny, maxx, maxy = t.district.bounds
    out = []
    for _ in range(n):
        x, y, r = rng.uniform(minx, maxx), rng.uniform(miny, maxy), rng.uniform(0.003, 0.02)
        out.append({"type": "Polygon", "coordinates": [[[x - r, y - r], [x + r, y - r], [x + r, y + r],
                                                         [x - r, y + r], [x - r, y - r]]]})
    return out


@pytest.fixture()
def store(tmp_path: Path, small_twin: twin.Twin) -> Store:
    st = Store(tmp_path / "state.sqlite")
    versions.ensure_base(st, small_twin)
    yield st
    st.close()


def test_version_build_shares_the_point_index_and_answers_like_a_fresh_build(small_twin, store):
    t = small_twin
    base_idx = point_index(t)
    p = versions.load_partition(store, t, "head")
    head = versions.resolve_version(store, "head")
    built = []
    for cell, to in _moves(p, 2):
        res = apply_edit(versions.load_partition(store, t, head), EditOp("move_cells", to_grid=to, cells=[cell]))
        head = versions.commit(store, res.partition, base_version=head, author="test", reason="reuse")
        tv = versions.checkout(t, head, store=store)
        build_indexes(tv)
        assert point_index(tv) is base_idx  # shared, not rebuilt
        built.append(tv)
    fresh = dataclasses.replace(built[-1], cache={})  # same frames, no hint: every index built from scratch
    build_indexes(fresh)
    assert point_index(fresh) is not base_idx
    tv = built[-1]
    assert grid_counts(tv).equals(grid_counts(fresh))
    assert grid_counts(tv).loc[to].to_dict() != grid_counts(t).loc[to].to_dict()  # the edit shows
    for area in _areas(t, 12):
        a = twin.summarize_area(tv, area, by="grid")
        b = twin.summarize_area(fresh, area, by="grid")
        assert a.totals == b.totals
        assert a.by_grid.equals(b.by_grid)


def test_commit_checks_an_edit_once_and_refuses_invalid_partitions(small_twin, store):
    t = small_twin
    head = versions.resolve_version(store, "head")
    p = versions.load_partition(store, t, head)
    (cell, to), = _moves(p, 1)
    res = apply_edit(p, EditOp("move_cells", to_grid=to, cells=[cell]))
    assert not known_valid(p)  # the base version (the built twin's own partition) is not taken on trust
    head2 = versions.commit(store, res.partition, base_version=head, author="test", reason="ok")
    assert known_valid(res.partition)  # checked in full by the commit: its children need only the local check
    p2 = versions.load_partition(store, t, head2)
    assert p2.assignment_equals(res.partition)
    (cell2, to2), = _moves(p2, 1)
    res2 = apply_edit(p2, EditOp("move_cells", to_grid=to2, cells=[cell2]))
    assert known_valid(res2.partition)  # local check on a valid parent
    with pytest.raises(ValueError):  # the checked assignment cannot be changed in place behind the mark
        res2.partition.grid_code[0] = to2

    # invalid partitions made from a valid one by other callers are checked in full and refused
    codes = p2.grid_code.copy()
    codes[0] = ""
    holes = p2.with_assignment(codes)
    far = next(g for g in p2.grids["grid_code"] if g != p2.grid_code[1]
               and g not in set(p2.grid_code[p2.adjacency[1].indices]))
    codes = p2.grid_code.copy()
    codes[1] = far
    split = p2.with_assignment(codes)
    for bad in (holes, split):
        assert check_partition(bad) and not known_valid(bad)
        with pytest.raises(PartitionError, match="commit rejected"):
            versions.commit(store, bad, base_version=head2, author="test", reason="bad")
    assert versions.resolve_version(store, "head") == head2


def test_loaded_versions_are_checked_against_the_stored_bytes(small_twin, tmp_path):
    t = small_twin
    p0 = partition_from_twin(t)
    moves = _moves(p0, 2)
    path = tmp_path / "s.sqlite"
    got = []
    for cell, to in moves:  # the same store URL twice, rebuilt in between, different version 2 each time
        st = Store(path)
        versions.ensure_base(st, t)
        res = apply_edit(versions.load_partition(st, t, 1), EditOp("move_cells", to_grid=to, cells=[cell]))
        assert versions.commit(st, res.partition, base_version=1, author="test", reason="x") == 2
        again = versions.load_partition(st, t, 2)
        assert again is res.partition  # partitions of stored versions never change: loaded once
        got.append(again)
        st.close()
        path.unlink()
    assert not got[0].assignment_equals(got[1])
    st = Store(path)
    versions.ensure_base(st, t)
    res = apply_edit(versions.load_partition(st, t, 1), EditOp("move_cells", to_grid=moves[0][1],
                                                               cells=[moves[0][0]]))
    versions.commit(st, res.partition, base_version=1, author="test", reason="x")
    versions._LOADED.clear()  # as another process: decoded from the store
    decoded = versions.load_partition(st, t, 2)
    assert decoded is not res.partition and decoded.assignment_equals(res.partition) and known_valid(decoded)
    st.close()


def _fields_equal(a, b) -> bool:
    for f in dataclasses.fields(a):
        x, y = getattr(a, f.name), getattr(b, f.name)
        if isinstance(x, np.ndarray):
            if x.dtype != y.dtype or not np.array_equal(x, y):
                return False
        elif x != y:
            return False
    return True


def test_version_partition_index_derived_from_the_base_equals_a_full_build(small_twin, store):
    t = small_twin
    build_indexes(t)
    head = versions.resolve_version(store, "head")
    for cell, to in _moves(versions.load_partition(store, t, head), 3):  # three edits on top of each other
        res = apply_edit(versions.load_partition(store, t, head), EditOp("move_cells", to_grid=to, cells=[cell]))
        head = versions.commit(store, res.partition, base_version=head, author="test", reason="derive")
    tv = versions.checkout(t, head, store=store)
    assert share_point_index(tv) and derive_partition_index(tv)  # same grid table: derived, not built
    build_indexes(tv)
    derived = partition_index(tv)
    assert derived is not partition_index(t)
    fresh = dataclasses.replace(tv, cache={})
    full = partition_index(fresh)
    assert _fields_equal(derived, full)
    assert not np.array_equal(derived.grid_totals, partition_index(t).grid_totals)  # the edits moved records
    # a split changes the grid table: built in full, still equal to a fresh build
    p = versions.load_partition(store, t, head)
    big = p.grids["grid_code"][np.argmax(np.bincount(p.labels()[0], minlength=p.n_grids))]
    res = apply_edit(p, EditOp("split_grid", grid_code=str(big), k=2))
    head = versions.commit(store, res.partition, base_version=head, author="test", reason="split")
    tv = versions.checkout(t, head, store=store)
    assert share_point_index(tv) and not derive_partition_index(tv)
    build_indexes(tv)
    assert _fields_equal(partition_index(tv), partition_index(dataclasses.replace(tv, cache={})))


def test_version_shares_the_per_cell_counts(small_twin, store):
    from twin.query._cells import ensure_cell_values

    t = small_twin
    head = versions.resolve_version(store, "head")
    (cell, to), = _moves(versions.load_partition(store, t, head), 1)
    res = apply_edit(versions.load_partition(store, t, head), EditOp("move_cells", to_grid=to, cells=[cell]))
    head = versions.commit(store, res.partition, base_version=head, author="test", reason="cells")
    tv = versions.checkout(t, head, store=store)
    build_indexes(tv)
    ensure_cell_values(t)
    assert tv.cache["access.cell_values"][1] is t.cache["access.cell_values"][1]
    fresh = dataclasses.replace(tv, cache={})
    ensure_cell_values(fresh)
    assert np.array_equal(tv.cache["access.cell_values"][1], fresh.cache["access.cell_values"][1])
    assert tv.cache["access.cell_values"][0] == fresh.cache["access.cell_values"][0]


def test_grid_counts_are_updated_from_the_base_for_the_moved_buildings_only(small_twin, store, monkeypatch):
    from twin.query import dossier

    t = small_twin
    grid_counts(t)  # the base's counts, as the service's warm-up leaves them
    head = versions.resolve_version(store, "head")
    for cell, to in _moves(versions.load_partition(store, t, head), 2):
        res = apply_edit(versions.load_partition(store, t, head), EditOp("move_cells", to_grid=to, cells=[cell]))
        head = versions.commit(store, res.partition, base_version=head, author="test", reason="counts")
    tv = versions.checkout(t, head, store=store)
    sums = []
    real = dossier.group_sum
    monkeypatch.setattr(dossier, "group_sum", lambda g, f, n, rows=None: sums.append(rows) or real(g, f, n, rows))
    derived = grid_counts(tv, like=t)
    assert sums and all(r is not None and len(r) < len(t.buildings) for r in sums)  # only the moved buildings
    monkeypatch.setattr(dossier, "group_sum", real)
    fresh = grid_counts(dataclasses.replace(tv, cache={}))
    assert derived.equals(fresh)
    assert not derived.equals(grid_counts(t))  # the moves show


def test_version_outlines_reuse_the_built_grids_cells_and_match_outlines_made_from_the_cells(small_twin, store):
    from twin.partition.polygons import cell_codes, cell_outlines, changed_units_polygons

    t = small_twin
    head = versions.resolve_version(store, "head")
    p = versions.load_partition(store, t, head)
    for cell, to in _moves(p, 2):
        p = apply_edit(p, EditOp("move_cells", to_grid=to, cells=[cell])).partition
    outline = cell_outlines(t)
    args = (t.grids, cell_codes(t), p.cells, p.grid_code, t.district)
    reused = changed_units_polygons(*args, unit_outline=outline)
    made = changed_units_polygons(*args)
    assert reused["grid_code"].tolist() == made["grid_code"].tolist()
    assert all(a.equals(b) for a, b in zip(reused.geometry, made.geometry))
    assert np.allclose(reused["area_km2"], made["area_km2"])
    code = str(t.grids["grid_code"].iloc[0])
    assert outline(code) is cell_outlines(t)(code)  # made once per grid and twin


def test_a_stored_version_loads_from_its_labels_exactly(small_twin, store):
    t = small_twin
    head = versions.resolve_version(store, "head")
    committed = []
    for cell, to in _moves(versions.load_partition(store, t, head), 2):
        res = apply_edit(versions.load_partition(store, t, head), EditOp("move_cells", to_grid=to, cells=[cell]))
        head = versions.commit(store, res.partition, base_version=head, author="test", reason="labels")
        committed.append((head, res.partition))
    split = apply_edit(versions.load_partition(store, t, head),
                       EditOp("split_grid", grid_code=str(t.grids["grid_code"].iloc[0]), k=2))
    head = versions.commit(store, split.partition, base_version=head, author="test", reason="new table")
    committed.append((head, split.partition))
    for vid, _p in committed:
        versions._LOADED.pop((store.url, vid), None)  # as another process loads it
    for vid, p in committed:
        loaded = versions.load_partition(store, t, vid)
        assert loaded is not p and loaded.assignment_equals(p)
        assert np.array_equal(loaded.labels()[0], p.labels()[0])
        assert list(loaded.labels()[1]) == list(p.labels()[1])
        assert known_valid(loaded)


def test_stored_labels_follow_the_stored_table_order_even_when_it_is_not_sorted(small_twin, store):
    t = small_twin
    head = versions.resolve_version(store, "head")
    p = versions.load_partition(store, t, head)
    (c1, to1), (c2, to2) = _moves(p, 2)
    unsorted = dataclasses.replace(p, grids=p.grids.iloc[::-1].reset_index(drop=True), meta={})
    a = apply_edit(unsorted, EditOp("move_cells", to_grid=to1, cells=[c1])).partition
    va = versions.commit(store, a, base_version=head, author="test", reason="unsorted table")
    b = apply_edit(a, EditOp("move_cells", to_grid=to2, cells=[c2])).partition  # keeps a's (unsorted) table
    vb = versions.commit(store, b, base_version=va, author="test", reason="same table")
    for v in (va, vb):
        versions._LOADED.pop((store.url, v), None)
    for v, want in ((va, a), (vb, b)):  # b's stored table equals a's: a's loaded (sorted) table must not serve it
        got = versions.load_partition(store, t, v)
        assert np.array_equal(got.grid_code, want.grid_code)


def test_per_building_counts_are_not_shared_across_days(small_twin):
    """A live view shares its base's person frame on a later day: each day's grid counts use that day's ages."""
    import datetime as dt

    t = small_twin
    later = dataclasses.replace(t, manifest={**t.manifest, "as_of": (t.as_of + dt.timedelta(days=15 * 365)).isoformat()},
                                cache={})
    assert later.persons is t.persons
    first = grid_counts(later)  # computed first, on the later day
    base = grid_counts(dataclasses.replace(t, cache={}))
    assert (first["age_0_14"] < base["age_0_14"]).any()  # 15 years on, this day's children are grown up
    assert first["age_0_14"].sum() < base["age_0_14"].sum()
    assert first["residents"].equals(base["residents"])
