"""SQLite write transactions wait for each other through the store's write lock (kernel-woken, no busy back-off),
across processes and threads; a nested transaction is still refused by SQLite rather than deadlocked; a transaction
asked not to wait is refused at once while another writer holds the lock, and begins when it is free."""

from __future__ import annotations

import multiprocessing as mp
import sqlite3
import threading
import time

import pytest

from twin.store.sql import Store, WriteLockBusy


def _hold(url: str, ready, release) -> None:  # noqa: ANN001 - multiprocessing events
    st = Store(url)
    with st.transaction() as tx:
        tx.execute("INSERT INTO t (who) VALUES ('child')")
        ready.set()
        release.wait(30)


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_a_writer_in_another_process_waits_for_the_holder_and_sees_its_commit(tmp_path, method):
    url = str(tmp_path / "s.sqlite")
    st = Store(url)
    with st.transaction() as tx:
        tx.execute("CREATE TABLE t (who TEXT)")
    ctx = mp.get_context(method)
    ready, release = ctx.Event(), ctx.Event()
    p = ctx.Process(target=_hold, args=(url, ready, release))
    p.start()
    try:
        assert ready.wait(60)
        threading.Timer(0.6, release.set).start()
        t0 = time.perf_counter()
        with st.transaction() as tx:  # blocks on the lock, then BEGIN IMMEDIATE finds the database free
            waited = time.perf_counter() - t0
            assert [r[0] for r in tx.query("SELECT who FROM t")] == ["child"]
            tx.execute("INSERT INTO t (who) VALUES ('parent')")
    finally:
        release.set()
        p.join(30)
    assert p.exitcode == 0
    assert waited >= 0.5
    assert [r[0] for r in st.query("SELECT who FROM t ORDER BY rowid")] == ["child", "parent"]


def test_threads_take_turns_and_nothing_is_lost(tmp_path):
    st = Store(tmp_path / "s.sqlite")
    with st.transaction() as tx:
        tx.execute("CREATE TABLE n (v INTEGER)")
        tx.execute("INSERT INTO n VALUES (0)")

    def bump() -> None:
        for _ in range(50):
            with st.transaction() as tx:  # read-modify-write: lost updates if two ran at once
                (v,), = tx.query("SELECT v FROM n")
                tx.execute("UPDATE n SET v = ?", (v + 1,))

    ths = [threading.Thread(target=bump) for _ in range(4)]
    [t.start() for t in ths]
    [t.join(60) for t in ths]
    assert st.query("SELECT v FROM n") == [(200,)]


def test_a_nested_transaction_is_refused_not_deadlocked(tmp_path):
    st = Store(tmp_path / "s.sqlite")
    with pytest.raises(sqlite3.OperationalError, match="within a transaction"):
        with st.transaction(), st.transaction():
            pass
    with st.transaction() as tx:  # the lock was let go
        tx.execute("CREATE TABLE ok (a INTEGER)")


def _try_lock(path: str, out) -> None:  # noqa: ANN001 - a multiprocessing queue
    import fcntl
    import os

    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        out.put("free")
    except BlockingIOError:
        out.put("held")
    finally:
        os.close(fd)


def test_an_open_transaction_holds_the_lock_file_against_other_processes(tmp_path):
    st = Store(tmp_path / "s.sqlite")
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    lock = str(tmp_path / "s.sqlite-writelock")
    with st.transaction() as tx:
        tx.execute("CREATE TABLE a (x INTEGER)")
        p = ctx.Process(target=_try_lock, args=(lock, out))
        p.start()
        p.join(60)
        assert out.get(timeout=10) == "held"
    p = ctx.Process(target=_try_lock, args=(lock, out))
    p.start()
    p.join(60)
    assert out.get(timeout=10) == "free"


def _refused(st: Store, match: str) -> None:
    with pytest.raises(WriteLockBusy, match=match):
        with st.transaction(wait=False) as tx:
            tx.execute("INSERT INTO t (who) VALUES ('refused')")


def test_a_transaction_that_must_not_wait_is_refused_while_another_thread_or_process_writes(tmp_path,
                                                                                         hold_write_lock):
    url = str(tmp_path / "s.sqlite")
    st = Store(url)
    with st.transaction() as tx:
        tx.execute("CREATE TABLE t (who TEXT)")
    with hold_write_lock(url, "INSERT INTO t (who) VALUES ('thread')"):
        _refused(st, "another thread")
    ctx = mp.get_context("spawn")
    ready, release = ctx.Event(), ctx.Event()
    p = ctx.Process(target=_hold, args=(url, ready, release))
    p.start()
    try:
        assert ready.wait(60)
        _refused(st, "another process")
    finally:
        release.set()
        p.join(30)
    with st.transaction(wait=False) as tx:  # free again: begins at once
        tx.execute("INSERT INTO t (who) VALUES ('parent')")
    assert [r[0] for r in st.query("SELECT who FROM t ORDER BY rowid")] == ["thread", "child", "parent"]
