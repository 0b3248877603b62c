"""The host's version builder process (:mod:`twin.service.build_process`): a worker built from its parts answers
exactly as one that built the version itself, and a builder that is gone, failed, passed a version by or wrote a
damaged file costs a worker speed, never an answer."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import shapely
from shapely.geometry import box, mapping

import twin
from twin.access.roles import DISTRICT
from twin.errors import PartitionError
from twin.partition import edits, versions
from twin.partition.model import partition_from_twin
from twin.query._index import partition_index
from twin.query.dossier import grid_counts
from twin.query.summary import summarize_area
from twin.service import build_process
from twin.service._twins import Twins
from twin.service._versioned import build_indexes, index_seeds, seed_indexes
from twin.store.sql import Store


def _move(t: twin.Twin, st: Store, base: int) -> int:
    """Commit one boundary cell moved to a neighbouring grid of its community; the new version id."""
    p = versions.load_partition(st, t, base)
    adj = p.adjacency
    for i in range(len(p.cells)):
        for j in adj.indices[adj.indptr[i]:adj.indptr[i + 1]]:
            if p.grid_code[j] not in ("", p.grid_code[i]) and p.community[j] == p.community[i]:
                try:
                    moved = edits.move_cells(p, [p.cells[i]], str(p.grid_code[j]))
                except PartitionError:
                    continue
                return versions.commit(st, moved, base_version=base, author="test", reason="builder test")
    raise AssertionError("no movable cell")


def _same_twin(a: twin.Twin, b: twin.Twin) -> None:
    ga, gb = a.grids.reset_index(drop=True), b.grids.reset_index(drop=True)
    assert list(ga.columns) == list(gb.columns)
    pd.testing.assert_frame_equal(ga.drop(columns="geometry"), gb.drop(columns="geometry"))
    assert all(shapely.equals_exact(ga.geometry.to_numpy(), gb.geometry.to_numpy(), 1e-12))
    pd.testing.assert_frame_equal(a.workers, b.workers)
    pd.testing.assert_frame_equal(a.cells, b.cells)
    pd.testing.assert_series_equal(a.buildings["grid_code"], b.buildings["grid_code"])


def _built_here(t: twin.Twin, st: Store, vid: int) -> twin.Twin:
    """Version ``vid`` built in full in this process (not from any cache)."""
    ref = versions.twin_with_partition(t, versions.load_partition(st, t, vid), version=vid)
    build_indexes(ref)
    return ref


@pytest.fixture
def store_with_edit(small_twin: twin.Twin, tmp_path: Path) -> tuple[Store, int]:
    st = Store(tmp_path / "state.sqlite")
    versions.ensure_base(st, small_twin)
    return st, _move(small_twin, st, versions.BASE_VERSION)


def _run_builder(t: twin.Twin, st: Store, d: Path) -> tuple[threading.Thread, threading.Event]:
    stop = threading.Event()
    th = threading.Thread(target=build_process.run, args=(t.root, st, d), kwargs={"poll_s": 0.02, "stop": stop},
                          daemon=True)
    th.start()
    deadline = time.monotonic() + 60
    while build_process.read_status(d) is None:  # loading the twin: workers build themselves meanwhile
        assert th.is_alive() and time.monotonic() < deadline, "the builder did not start"
        time.sleep(0.05)
    return th, stop


def test_a_version_built_from_the_builders_parts_equals_one_built_in_full(small_twin, store_with_edit, tmp_path):
    st, vid = store_with_edit
    d = tmp_path / "parts"
    d.mkdir()
    th, stop = _run_builder(small_twin, st, d)
    try:
        parts = build_process.await_parts(d, vid, timeout_s=60)
        assert parts is not None  # written by the builder for the new head
        twins = Twins(None, st, small_twin, parts_dir=d)
        built = twins.request_build(vid, wait=True).result(timeout=60)
        assert twins.parts_used[vid] is True
    finally:
        stop.set()
        th.join(10)
    ref = _built_here(small_twin, st, vid)
    _same_twin(built, ref)
    assert built.manifest["partition_version"] == vid
    # its query indexes were installed from the builder's, and answer as the ones built here
    assert built.cache["query.partition_index"][1] is not ref.cache["query.partition_index"][1]
    a, b = partition_index(built), partition_index(ref)
    for f in ("cell_grid", "point_grid", "grid_totals", "grid_codes"):
        assert np.array_equal(getattr(a, f), getattr(b, f)), f
    pd.testing.assert_frame_equal(grid_counts(built), grid_counts(ref))
    moved = built.grids[built.grids["grid_code"] != ""].iloc[:3]
    area = mapping(box(*moved.total_bounds))
    assert (summarize_area(built, area, role=DISTRICT, by="grid").to_dict()
            == summarize_area(ref, area, role=DISTRICT, by="grid").to_dict())


def test_seeds_that_do_not_fit_are_not_installed(small_twin, store_with_edit):
    st, vid = store_with_edit
    p = versions.load_partition(st, small_twin, vid)
    tv = versions.twin_with_partition(small_twin, p, version=vid)
    build_indexes(tv)
    seeds = index_seeds(tv)
    bad = dataclasses.replace(seeds, n_points=seeds.n_points + 1)
    fresh = versions.twin_with_partition(small_twin, p, version=vid)
    assert seed_indexes(fresh, bad) is False
    assert "query.partition_index" not in fresh.cache
    assert seed_indexes(fresh, seeds) is True


def test_parts_made_for_another_partition_are_refused(small_twin, store_with_edit):
    st, vid = store_with_edit
    other = versions.version_parts(small_twin, partition_from_twin(small_twin))  # the base's parts
    with pytest.raises(PartitionError, match="another partition"):
        versions.twin_with_partition(small_twin, versions.load_partition(st, small_twin, vid), parts=other)


def test_a_worker_builds_itself_when_the_parts_are_for_another_partition(small_twin, store_with_edit, tmp_path):
    st, vid = store_with_edit
    d = tmp_path / "parts"
    d.mkdir()
    build_process.write_parts(d, vid, build_process.Prepared(
        versions.version_parts(small_twin, partition_from_twin(small_twin))))
    twins = Twins(None, st, small_twin, parts_dir=d)
    built = twins.request_build(vid, wait=True).result(timeout=60)
    assert twins.parts_used[vid] is False
    _same_twin(built, _built_here(small_twin, st, vid))


def _status(d: Path, *, beat: float, building: int, seen: int) -> None:
    (d / "builder.json").write_text(json.dumps({"pid": 1, "beat": beat, "building": building, "seen": seen}))


def test_await_parts_gives_up_at_once_without_a_live_builder(tmp_path):
    d = tmp_path
    t0 = time.monotonic()
    assert build_process.await_parts(d, 5, timeout_s=30) is None  # never started
    _status(d, beat=time.time() - build_process.STALE_S - 1, building=5, seen=5)
    assert build_process.await_parts(d, 5, timeout_s=30) is None  # died or hangs: heartbeat too old
    _status(d, beat=time.time(), building=0, seen=7)
    assert build_process.await_parts(d, 5, timeout_s=30) is None  # passed version 5 by
    _status(d, beat=time.time(), building=5, seen=5)
    (d / "v5.error").write_text("ValueError('boom')")
    assert build_process.await_parts(d, 5, timeout_s=30) is None  # failed on it
    assert time.monotonic() - t0 < 5


def test_await_parts_waits_while_the_builder_works_on_the_version(small_twin, tmp_path):
    d = tmp_path
    _status(d, beat=time.time(), building=3, seen=3)
    t0 = time.monotonic()
    assert build_process.await_parts(d, 3, timeout_s=0.3) is None  # still building at the time-out
    assert time.monotonic() - t0 >= 0.3
    parts = build_process.Prepared(versions.version_parts(small_twin, partition_from_twin(small_twin)))
    threading.Timer(0.2, build_process.write_parts, (d, 3, parts)).start()
    got = build_process.await_parts(d, 3, timeout_s=30)
    assert got is not None and got.parts.digest == parts.parts.digest


def test_a_damaged_parts_file_is_not_used(tmp_path):
    (tmp_path / "v4.parts").write_bytes(b"\x80\x05not a pickle")
    assert build_process.read_parts(tmp_path, 4) is None
    assert not list(tmp_path.glob(".*.tmp"))


def test_a_killed_builder_process_leaves_the_workers_building(small_twin, store_with_edit, tmp_path, monkeypatch):
    st, vid = store_with_edit
    d = tmp_path / "parts"
    d.mkdir()
    proc = subprocess.Popen([sys.executable, "-m", "twin.service.build_process", "--dir", str(d), "--twin",
                             str(small_twin.root), "--database-url", str(st.path), "--parent-pid", str(os.getpid())],
                            stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while build_process.read_parts(d, vid) is None:
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, (f"the builder process wrote no parts: {sorted(os.listdir(d))} "
                                                 f"{[e.read_text() for e in d.glob('*.error')]}")
            time.sleep(0.1)
        assert build_process.read_status(d) is not None  # alive: its heartbeat is fresh
    finally:
        proc.kill()
        proc.wait(30)
        proc.stderr.close()
    newer = _move(small_twin, st, vid)  # committed after the builder died
    monkeypatch.setattr(build_process, "STALE_S", 0.5)
    time.sleep(0.6)
    twins = Twins(None, st, small_twin, parts_dir=d, parts_wait_s=30)
    t0 = time.monotonic()
    built = twins.request_build(newer, wait=True).result(timeout=60)
    assert time.monotonic() - t0 < 20  # did not wait out parts_wait_s for a dead builder
    assert twins.parts_used[newer] is False and built.manifest["partition_version"] == newer
    assert twins.request_build(vid, wait=True).result(timeout=60) is not None
    assert twins.parts_used[vid] is True  # written before it died


def test_the_builder_keeps_the_newest_parts_only(small_twin, tmp_path):
    parts = build_process.Prepared(versions.version_parts(small_twin, partition_from_twin(small_twin)))
    for v in range(2, 2 + build_process.KEEP + 3):
        build_process.write_parts(tmp_path, v, parts)
    build_process._prune(tmp_path, build_process.KEEP)
    kept = sorted(int(p.stem[1:]) for p in tmp_path.glob("v*.parts"))
    assert kept == list(range(5, 2 + build_process.KEEP + 3))


def test_the_builder_loads_at_the_callers_priority_and_builds_at_a_lower_one(small_twin: twin.Twin, tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Loading at ``nice`` 10 is slow while the workers are busy (every worker builds every version in full until
    the builder is ready): the priority is lowered after loading, before the first build."""
    steps: list[str] = []

    def load_twin(root: Path | None) -> twin.Twin:
        steps.append("load")
        return small_twin

    monkeypatch.setattr(build_process, "load", load_twin)
    monkeypatch.setattr(build_process, "lower_priority", lambda n: steps.append(f"nice {n}"))
    monkeypatch.setattr(build_process, "prepare", lambda *a: steps.append("prepare") or build_process.Prepared(None))
    st = Store(tmp_path / "state.sqlite")
    stop = threading.Event()
    th = threading.Thread(target=build_process.run, args=(None, st, tmp_path), kwargs={"stop": stop, "nice": 3})
    th.start()
    deadline = time.monotonic() + 60
    while build_process.read_status(tmp_path) is None and time.monotonic() < deadline:
        time.sleep(0.05)
    _move(small_twin, st, versions.resolve_version(st, "head"))
    while "prepare" not in steps and time.monotonic() < deadline:
        time.sleep(0.05)
    stop.set()
    th.join(timeout=30)
    assert steps[:3] == ["load", "nice 3", "prepare"]


def test_lower_priority_lowers_every_thread_of_the_process() -> None:
    """Linux sets niceness per thread; threads started before (a library's pool) must follow (in a child process:
    a raised niceness cannot be undone without privileges)."""
    code = (
        "import os, threading, time\n"
        "from twin.service.build_process import lower_priority\n"
        "ev = threading.Event()\n"
        "ts = [threading.Thread(target=ev.wait) for _ in range(3)]\n"
        "[t.start() for t in ts]\n"
        "before = {int(t): os.getpriority(os.PRIO_PROCESS, int(t)) for t in os.listdir('/proc/self/task')}\n"
        "lower_priority(4)\n"
        "after = {t: os.getpriority(os.PRIO_PROCESS, t) for t in before}\n"
        "ev.set()\n"
        "print(len(before), all(after[t] == min(19, before[t] + 4) for t in before))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    n, ok = out.stdout.split()
    assert int(n) >= 4 and ok == "True"


def test_parts_dirs_of_servers_killed_outright_are_swept(tmp_path):
    """A server killed by SIGKILL cannot remove its parts directory (megabytes per version); the next server on the
    host removes every such directory of this user whose server process is gone, and nothing else."""
    from twin.service.build_process import PARTS_PREFIX, make_parts_dir, sweep_parts_dirs

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    dead = tmp_path / f"{PARTS_PREFIX}dead"
    dead.mkdir()
    (dead / "server.pid").write_text(str(gone.pid))
    (dead / "v3.parts").write_bytes(b"x" * 1000)
    live = tmp_path / f"{PARTS_PREFIX}live"
    live.mkdir()
    (live / "server.pid").write_text(str(os.getpid()))
    unknown = tmp_path / f"{PARTS_PREFIX}old"  # names no server: not ours to judge
    unknown.mkdir()
    other = tmp_path / "twin-other"  # not a parts directory
    other.mkdir()
    (other / "server.pid").write_text(str(gone.pid))

    new = make_parts_dir(tmp_path)
    assert not dead.exists() and live.exists() and unknown.exists() and other.exists()
    assert (new / "server.pid").read_text() == str(os.getpid()) and new.stat().st_mode & 0o777 == 0o700
    assert sweep_parts_dirs(tmp_path) == []  # the new one and the live one stay
