"""Partition versions (twin.partition.versions): commit, conflict, crash safety, undo, diff, time travel."""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import shapely

import twin
from twin.errors import ConflictError, NotFoundError, PartitionError, ValidationError
from twin.partition import versions
from twin.partition.edits import merge_grids, split_grid
from twin.partition.model import partition_from_twin
from twin.store.sql import Store

G = "440604010001001"  # a grid of the default twin


@pytest.fixture(scope="module")
def t() -> twin.Twin:
    return twin.load()


@pytest.fixture()
def store(tmp_path: Path, t: twin.Twin) -> Store:
    st = Store(tmp_path / "state.sqlite")
    versions.ensure_base(st, t)
    yield st
    st.close()


def test_base_version_is_the_built_partition(store: Store, t: twin.Twin) -> None:
    assert versions.head_version(store) == 1
    assert versions.resolve_version(store, "base") == 1
    assert versions.ensure_base(store, t) == 1  # idempotent
    p = versions.load_partition(store, t, "base")
    assert p.assignment_equals(partition_from_twin(t))
    info = versions.list_versions(store)
    assert len(info) == 1 and info[0].parent is None and info[0].is_head


def test_commit_records_metadata_and_content(store: Store, t: twin.Twin) -> None:
    p1 = split_grid(partition_from_twin(t), G, k=2)
    v = versions.commit(store, p1, base_version=1, author="ann", reason="split an oversized grid")
    assert v == 2 and versions.head_version(store) == 2
    info = versions.version_info(store, v)
    assert (info.parent, info.author, info.reason, info.n_grids) == (1, "ann", "split an oversized grid", 452)
    assert versions.load_partition(store, t, v).assignment_equals(p1)


def test_second_editor_from_same_version_gets_conflict(store: Store, t: twin.Twin) -> None:
    p = partition_from_twin(t)
    versions.commit(store, split_grid(p, G, k=2), base_version=1, author="ann", reason="first")
    with pytest.raises(ConflictError, match=r"version 1 is no longer the head: version 2 \(ann"):
        versions.commit(store, split_grid(p, G, k=3), base_version=1, author="bob", reason="second")
    assert versions.head_version(store) == 2
    assert len(versions.list_versions(store)) == 2


def test_two_connections_two_threads_one_wins(tmp_path: Path, t: twin.Twin, store: Store) -> None:
    p = partition_from_twin(t)
    edits = [split_grid(p, G, k=2), split_grid(p, "440604010001002", k=2)]
    results: list[object] = [None, None]
    barrier = threading.Barrier(2)

    def editor(k: int) -> None:
        st = Store(store.path)  # a second connection to the same database
        try:
            barrier.wait()
            results[k] = versions.commit(st, edits[k], base_version=1, author=f"editor{k}", reason="race")
        except ConflictError as e:
            results[k] = e
        finally:
            st.close()

    threads = [threading.Thread(target=editor, args=(k,)) for k in range(2)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    wins = [r for r in results if isinstance(r, int)]
    losses = [r for r in results if isinstance(r, ConflictError)]
    assert len(wins) == 1 and len(losses) == 1
    assert f"version {wins[0]}" in str(losses[0])
    assert versions.head_version(store) == wins[0] == 2


def test_invalid_partition_or_metadata_is_refused(store: Store, t: twin.Twin) -> None:
    p = partition_from_twin(t)
    codes = p.grid_code.copy()
    codes[:5] = ""
    with pytest.raises(PartitionError, match="5 cells belong to no grid"):
        versions.commit(store, p.with_assignment(codes), base_version=1, author="ann", reason="bad")
    with pytest.raises(ValidationError, match="author"):
        versions.commit(store, p, base_version=1, author=" ", reason="x")
    with pytest.raises(NotFoundError, match="unknown partition version 99"):
        versions.commit(store, p, base_version=99, author="ann", reason="x")
    assert versions.head_version(store) == 1


def test_undo_and_rollback_create_new_versions(store: Store, t: twin.Twin) -> None:
    p = partition_from_twin(t)
    p2 = split_grid(p, G, k=2)
    v2 = versions.commit(store, p2, base_version=1, author="ann", reason="split")
    v3 = versions.commit(store, merge_grids(p2, ["440604010001002", "440604010001003"]), base_version=v2,
                         author="ann", reason="merge")
    v4 = versions.undo(store, t, author="ann")
    assert versions.load_partition(store, t, v4).assignment_equals(p2)
    assert versions.version_info(store, v4).parent == v3
    v5 = versions.rollback(store, t, "base", author="bob")
    assert versions.load_partition(store, t, v5).assignment_equals(p)
    assert [v.version for v in versions.list_versions(store)] == [1, 2, 3, 4, 5]
    with pytest.raises(ConflictError, match="version 5"):
        versions.undo(store, t, author="carl", base_version=v4)


def test_undo_of_the_base_is_refused(store: Store, t: twin.Twin) -> None:
    with pytest.raises(PartitionError, match="version 1 has no parent: nothing to undo"):
        versions.undo(store, t, author="carl")
    assert versions.head_version(store) == 1


def test_diff_counts_what_moved(store: Store, t: twin.Twin) -> None:
    from twin.partition.workload import cell_counts

    p = partition_from_twin(t)
    p2 = split_grid(p, G, k=2)
    v2 = versions.commit(store, p2, base_version=1, author="ann", reason="split")
    d = versions.diff_versions(store, t, 1, v2)
    moved = p.grid_code != p2.grid_code
    assert d.grids_added == ["440604010001004"] and d.grids_removed == [] and d.grids_changed == [G]
    assert d.cells_moved == int(moved.sum()) > 0
    assert d.residents_moved == int(cell_counts(t)["residents"].to_numpy()[moved].sum())
    b_moved = np.isin(t.buildings["cell"].to_numpy(), p.cells[moved]).sum()
    assert d.buildings_moved == int(b_moved)
    assert d.balance_before["grids"] == 451 and d.balance_after["grids"] == 452
    back = versions.diff_versions(store, t, v2, 1)
    assert back.grids_removed == ["440604010001004"] and back.cells_moved == d.cells_moved


def test_checkout_time_travel(store: Store, t: twin.Twin) -> None:
    p2 = split_grid(partition_from_twin(t), G, k=2)
    v2 = versions.commit(store, p2, base_version=1, author="ann", reason="split")
    t2 = versions.checkout(t, v2, store=store)
    assert len(t2.grids) == 452 and len(t.grids) == 451  # the loaded twin is untouched
    assert np.array_equal(t2.cells["grid_code"].to_numpy().astype(str), p2.grid_code.astype(str))
    new = t2.grid("440604010001004")
    assert new["community_code"] == "440604010001" and new["area_km2"] > 0
    b = t2.buildings[t2.buildings["grid_code"] == "440604010001004"]
    assert len(b) and np.isin(b["cell"].to_numpy(), p2.cells[p2.grid_code == "440604010001004"]).all()
    assert twin.validate(t2).ok, twin.validate(t2).problems
    t1 = versions.checkout(t, "base", store=store)
    assert len(t1.grids) == 451
    assert abs(t1.grids["area_km2"].sum() - t.grids["area_km2"].sum()) < 1e-6
    # the base checkout gives back the built polygons; an edit redraws only the grids it touched
    built = t.grids.set_index("grid_code").geometry
    assert all(built[c].equals(g) for c, g in zip(t1.grids["grid_code"], t1.grids.geometry))
    far = t2.grids.loc[~shapely.dwithin(t2.grids.geometry.to_numpy(), built[G], 0.001)]  # > ≈ 100 m from the split
    assert len(far) > 400 and all(built[c].equals(g) for c, g in zip(far["grid_code"], far.geometry))
    assert not built[G].equals(t2.grid(G).geometry)
    v2_figures = twin.validate(t2).figures
    assert v2_figures["overlap between grids km²"] == 0.0, v2_figures  # kept outlines and redrawn cells tile


_CHILD = textwrap.dedent("""
    import pickle, sys, time
    from twin.partition import versions
    from twin.store.sql import Store

    st = Store(sys.argv[1])
    with open(sys.argv[2], "rb") as fh:
        p = pickle.load(fh)

    def hang():
        print("inside", flush=True)
        time.sleep(60)

    versions._BEFORE_HEAD_UPDATE = hang
    versions.commit(st, p, base_version=2, author="crash", reason="killed mid-commit")
    print("committed", flush=True)
""")


def test_kill_mid_commit_keeps_last_good_version(store: Store, t: twin.Twin, tmp_path: Path) -> None:
    good = split_grid(partition_from_twin(t), G, k=2)
    assert versions.commit(store, good, base_version=1, author="ann", reason="good") == 2
    store.close()
    script = tmp_path / "child.py"
    script.write_text(_CHILD, encoding="utf-8")
    edit = tmp_path / "edit.pickle"  # the child's edit, prepared here so the child need not load the twin
    edit.write_bytes(pickle.dumps(split_grid(good, "440604010001002", k=2)))
    proc = subprocess.Popen([sys.executable, str(script), str(store.path), str(edit)], stdout=subprocess.PIPE,
                            text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        line = proc.stdout.readline()  # blocks until the child is inside the transaction
        assert line.strip() == "inside"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL
    st = Store(store.path)
    try:
        assert versions.head_version(st) == 2
        assert [v.version for v in versions.list_versions(st)] == [1, 2]
        assert versions.load_partition(st, t, "head").assignment_equals(good)
        time.sleep(0.1)
        v3 = versions.commit(st, split_grid(good, "440604010001002", k=2), base_version=2, author="ann",
                             reason="after the crash")
        assert v3 == 3 and versions.version_info(st, 3).parent == 2
    finally:
        st.close()
