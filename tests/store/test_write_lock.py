"""SQLite write transactions wait for each other through the store's write lock (kernel-woken, no busy back-off),
across processes and threads; a nested transaction is still refused by SQLite rather than deadlocked; a transaction
asked not to wait is refused at once while another writer holds the lock, and begins when it is free; a
transaction begun on one thread (:meth:`Store.begin`) holds the lock until another thread commits or rolls it back."""

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


def _count(url: str) -> int:
    other = Store(url)  # another connection: sees committed rows only
    try:
        return int(other.query("SELECT count(*) FROM t")[0][0])
    finally:
        other.close()


def test_a_transaction_begun_on_one_thread_is_committed_or_rolled_back_on_another_and_holds_the_lock_till_then(
        tmp_path, hold_write_lock):
    url = str(tmp_path / "s.sqlite")
    st = Store(url)
    with st.transaction() as tx:
        tx.execute("CREATE TABLE t (who TEXT)")
    tx = st.begin(wait=False)
    tx.execute("INSERT INTO t (who) VALUES ('begun here')")
    busy: list[BaseException] = []

    def writer_elsewhere() -> None:  # another thread of this process, asked not to wait
        try:
            with Store(url).transaction(wait=False) as other:
                other.execute("INSERT INTO t (who) VALUES ('too early')")
        except WriteLockBusy as e:
            busy.append(e)

    th = threading.Thread(target=writer_elsewhere)
    th.start()
    th.join(30)
    assert len(busy) == 1 and _count(url) == 0  # the open transaction holds the lock; nothing is visible yet
    th = threading.Thread(target=tx.commit)
    th.start()
    th.join(30)
    assert _count(url) == 1
    with st.transaction(wait=False) as again:  # the other thread's commit let the lock go
        again.execute("INSERT INTO t (who) VALUES ('after')")
    tx = st.begin()
    tx.execute("INSERT INTO t (who) VALUES ('rolled back')")
    th = threading.Thread(target=tx.rollback)
    th.start()
    th.join(30)
    assert [r[0] for r in st.query("SELECT who FROM t ORDER BY rowid")] == ["begun here", "after"]
    with st.transaction(wait=False) as again:  # free after a rollback too
        again.execute("INSERT INTO t (who) VALUES ('last')")
    with hold_write_lock(url, "INSERT INTO t (who) VALUES ('held')"), pytest.raises(WriteLockBusy):
        st.begin(wait=False)  # refused at once while another thread writes


def test_a_failing_commit_rolls_back_and_lets_the_lock_go(tmp_path):
    url = str(tmp_path / "s.sqlite")
    st = Store(url)
    with st.transaction() as tx:  # a deferred foreign key: checked at COMMIT, so COMMIT itself fails
        tx.execute("CREATE TABLE p (id INTEGER PRIMARY KEY)")
        tx.execute("CREATE TABLE t (who TEXT, p INTEGER REFERENCES p(id) DEFERRABLE INITIALLY DEFERRED)")
    tx = st.begin()
    tx.execute("INSERT INTO t (who, p) VALUES ('orphan', 7)")
    err: list[BaseException] = []

    def commit() -> None:
        try:
            tx.commit()
        except sqlite3.IntegrityError as e:
            err.append(e)

    th = threading.Thread(target=commit)
    th.start()
    th.join(30)
    assert len(err) == 1 and "FOREIGN KEY" in str(err[0])
    assert _count(url) == 0
    with st.transaction(wait=False) as again:  # rolled back, lock free, the connection usable
        again.execute("INSERT INTO t (who) VALUES ('fine')")
    assert _count(url) == 1
