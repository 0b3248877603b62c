"""Multi-level undo and redo of partition versions (twin.partition.versions.undo / redo) on the small twin:
undo walks back one edit at a time, redo walks forward through what was undone, a new edit ends the redo chain,
every step is a new version (history kept), stale bases conflict, and the same chain works across processes."""

from __future__ import annotations

from pathlib import Path

import pytest

import twin
from twin.errors import ConflictError, PartitionError
from twin.partition import versions
from twin.partition.edits import split_grid
from twin.partition.model import Partition, partition_from_twin
from twin.store.sql import Store


@pytest.fixture()
def store(tmp_path: Path, small_twin: twin.Twin) -> Store:
    st = Store(tmp_path / "state.sqlite")
    versions.ensure_base(st, small_twin)
    yield st
    st.close()


def _three_edits(store: Store, t: twin.Twin) -> list[Partition]:
    """Commit three splits on top of the base: versions 2, 3, 4; returns the partitions of versions 1–4."""
    parts = [partition_from_twin(t)]
    codes = sorted(t.grids["grid_code"].astype(str))
    for i, code in enumerate(codes[:3]):
        parts.append(split_grid(parts[-1], code, k=2))
        versions.commit(store, parts[-1], base_version=i + 1, author="ann", reason=f"split {code}")
    return parts


def _head_equals(store: Store, t: twin.Twin, p: Partition) -> bool:
    return versions.load_partition(store, t, "head").assignment_equals(p)


def test_undo_walks_back_one_edit_at_a_time_and_redo_forward(store: Store, small_twin: twin.Twin) -> None:
    t = small_twin
    p = _three_edits(store, t)
    assert versions.undo_target(store) == 3 and versions.redo_target(store) is None
    v5 = versions.undo(store, t, author="ann")
    assert _head_equals(store, t, p[2]) and versions.undo_target(store) == 2 and versions.redo_target(store) == 4
    v6 = versions.undo(store, t, author="ann")
    assert _head_equals(store, t, p[1]) and versions.redo_target(store) == 3
    v7 = versions.undo(store, t, author="ann")
    assert _head_equals(store, t, p[0]) and versions.undo_target(store) is None
    with pytest.raises(PartitionError, match="back at the base partition: nothing to undo"):
        versions.undo(store, t, author="ann")
    # redo three times: 2, 3, 4 again; then nothing is left to redo
    for want in (1, 2, 3):
        versions.redo(store, t, author="ann")
        assert _head_equals(store, t, p[want])
    assert versions.redo_target(store) is None
    with pytest.raises(PartitionError, match="nothing to redo"):
        versions.redo(store, t, author="ann")
    # every step is a version with its parent and reason; history is never rewritten
    info = {v.version: v for v in versions.list_versions(store)}
    assert len(info) == 10 and info[v5].parent == 4 and info[v6].parent == v5 and info[v7].parent == v6
    assert info[v5].reason == "undo version 4 (back to version 3)"
    assert info[v6].reason == "undo version 3 (back to version 2)"
    assert info[10].reason == "redo version 4" and info[10].is_head


def test_undo_after_redo_and_a_new_edit_ends_the_redo_chain(store: Store, small_twin: twin.Twin) -> None:
    t = small_twin
    p = _three_edits(store, t)
    versions.undo(store, t, author="ann")          # v5 = state 3
    versions.undo(store, t, author="ann")          # v6 = state 2
    v7 = versions.redo(store, t, author="ann")     # v7 = state 3, redo stack [4]
    assert _head_equals(store, t, p[2]) and versions.redo_target(store) == 4
    v8 = versions.undo(store, t, author="ann")     # back to state 2 again, redo stack [3, 4]
    assert _head_equals(store, t, p[1]) and versions.redo_target(store) == 3
    # a new edit on the undone state: committed normally, and nothing is left to redo
    p_new = split_grid(p[1], sorted(t.grids["grid_code"].astype(str))[-1], k=2)  # a grid none of the 3 edits split
    v9 = versions.commit(store, p_new, base_version=v8, author="bob", reason="a different split")
    assert versions.redo_target(store) is None
    with pytest.raises(PartitionError, match="nothing to redo"):
        versions.redo(store, t, author="bob")
    # undoing the new edit goes back to state 2 (the content of v8), and one more undo to the base
    versions.undo(store, t, author="bob")
    assert _head_equals(store, t, p[1]) and versions.redo_target(store) == v9
    versions.undo(store, t, author="bob")
    assert _head_equals(store, t, p[0])
    assert v7 == 7


def test_stale_base_conflicts_and_writes_nothing(store: Store, small_twin: twin.Twin) -> None:
    t = small_twin
    _three_edits(store, t)
    v5 = versions.undo(store, t, author="ann", base_version=4)
    with pytest.raises(ConflictError, match="version 4 is no longer the head"):
        versions.undo(store, t, author="bob", base_version=4)   # bob still looks at version 4
    v6 = versions.undo(store, t, author="ann", base_version=v5)
    with pytest.raises(ConflictError, match=f"version {v5} is no longer the head"):
        versions.redo(store, t, author="bob", base_version=v5)  # bob would redo from the older undo
    with pytest.raises(PartitionError, match="nothing to redo from version 4"):
        versions.redo(store, t, author="bob", base_version=4)
    assert versions.head_version(store) == v6 and len(versions.list_versions(store)) == 6

    def boom(tx: object, vid: int) -> None:
        raise RuntimeError("audit down")

    # a failing audit hook commits nothing: neither the version nor its undo record
    with pytest.raises(RuntimeError, match="audit down"):
        versions.redo(store, t, author="ann", audit=boom)
    assert versions.head_version(store) == v6 and versions.redo_target(store) == 3
    assert len(versions.list_versions(store)) == 6


def test_chain_is_read_from_the_store_by_another_connection(tmp_path: Path, store: Store,
                                                            small_twin: twin.Twin) -> None:
    t = small_twin
    p = _three_edits(store, t)
    versions.undo(store, t, author="ann")
    versions.undo(store, t, author="ann")
    other = Store(tmp_path / "state.sqlite")  # a second editor / process: the chain is in the store, not in memory
    try:
        assert versions.redo_target(other) == 3 and versions.undo_target(other) == 1
        versions.redo(other, t, author="bob")
        assert versions.load_partition(other, t, "head").assignment_equals(p[2])
        assert versions.redo_target(store) == 4
    finally:
        other.close()
