"""The audit log's group-commit writer: batches in one transaction, an acknowledged entry survives SIGKILL, a failed
batch stores nothing and tells every waiter, several processes still make one valid chain; from an event loop, the
entries of one loop turn are written together on the loop thread and committed by another (the loop goes on during
the fsync; entries meanwhile wait for their own commit), and a held write lock sends them to the writer thread
without stopping the loop."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from twin.access import audit
from twin.access._audit_writer import GroupWriter
from twin.store.sql import HandOffTransaction, Store, WriteLockBusy


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "state.sqlite")
    yield s
    s.close()


def test_concurrent_appends_are_grouped_into_fewer_transactions(store):
    futs = []

    def work(i):
        for j in range(25):
            futs.append(audit.submit(store, user=f"t{i}", role="district", endpoint="/x", counts={"j": j}))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    entries = [f.result(timeout=60) for f in futs]
    assert sorted(e.seq for e in entries) == list(range(1, 201))
    w = audit.writer_for(store, "audit", audit._make_writer)
    assert w.items == 200 and w.batches < 200  # group commit happened
    rep = audit.verify(store)
    assert rep.ok and rep.n_entries == 200


def test_a_batch_waits_for_announced_items_and_a_lone_caller_does_not(store):
    store.ensure_schema("t", ("CREATE TABLE IF NOT EXISTS t (x INTEGER NOT NULL)",))

    def apply(tx, x):
        tx.execute("INSERT INTO t (x) VALUES (?)", (x,))
        return x

    w = GroupWriter(store, apply, linger_s=30.0)
    w.expect(2)  # two callers at work: the batch stays open for both (or 30 s)
    first = w.submit(1)
    w.expect(-1)
    time.sleep(0.3)
    assert not first.done()
    second = w.submit(2)
    w.expect(-1)
    assert (first.result(10), second.result(10)) == (1, 2)
    assert (w.batches, w.items) == (1, 2)  # one transaction for both
    w.expect(1)  # a caller that announced an item, then had none to give (e.g. written in its own transaction)
    lone = w.submit(3)
    w.expect(-1)
    assert lone.result(10) == 3 and w.batches == 2  # not held for the 30 s: nobody else is expected
    assert w.submit(4).result(10) == 4  # nobody announced anything: committed at once


def _gated_writer(store, **kwargs):
    """A writer inserting into table ``t`` whose every batch waits for ``gate``; ``entered`` is set when one has
    started (so items submitted meanwhile queue behind it)."""
    store.ensure_schema("t", ("CREATE TABLE IF NOT EXISTS t (x INTEGER NOT NULL)",))
    gate, entered = threading.Event(), threading.Event()

    def apply(tx, x):
        entered.set()
        gate.wait(10)
        tx.execute("INSERT INTO t (x) VALUES (?)", (x,))
        return x

    return GroupWriter(store, apply, **kwargs), gate, entered


def test_a_failed_batch_stores_nothing_and_every_waiter_gets_the_error(store):
    w, gate, entered = _gated_writer(store)
    first = w.submit(0)  # holds the writer until the gate opens, so the next three form one batch
    assert entered.wait(10)
    batch = [w.submit(1), w.submit(None), w.submit(3)]  # NULL violates NOT NULL: the whole batch rolls back
    gate.set()
    assert first.result(10) == 0
    for f in batch:
        with pytest.raises(Exception, match="NOT NULL"):
            f.result(10)
    assert store.query("SELECT x FROM t ORDER BY x") == [(0,)]
    assert w.submit(4).result(10) == 4  # the writer goes on


_APPENDER = """
import asyncio, sys, threading
from twin.access import audit
from twin.store.sql import Store
store = Store(sys.argv[1])
lock = threading.Lock()
def work(i):
    n = 0
    while True:
        e = audit.append(store, user=f"p{i}", role="district", endpoint="/area/summary", counts={"n": n})
        with lock:
            print(e.seq, e.hash, flush=True)  # acknowledged: durable before this line is written
        n += 1
async def task(i):  # as the service's middleware does, on the event loop
    n = 0
    while True:
        e = await audit.submit_on_loop(store, user=f"p{i}", role="district", endpoint="/area/summary", counts={"n": n})
        print(e.seq, e.hash, flush=True)
        n += 1
async def tasks(k):
    await asyncio.gather(*(task(i) for i in range(k)))
if sys.argv[3] == "loop":
    asyncio.run(tasks(int(sys.argv[2])))
for i in range(int(sys.argv[2])):
    threading.Thread(target=work, args=(i,), daemon=True).start()
threading.Event().wait()
"""


def _acked_after_kill(path, threads: int, n: int, mode: str = "thread") -> list[tuple[int, str]]:
    p = subprocess.Popen([sys.executable, "-c", _APPENDER, str(path), str(threads), mode], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    acked = []
    deadline = time.monotonic() + 120
    try:
        while len(acked) < n:
            line = p.stdout.readline()
            assert line, p.stderr.read()
            seq, h = line.split()
            acked.append((int(seq), h))
            assert time.monotonic() < deadline
    finally:
        p.kill()  # SIGKILL while batches are in flight
        p.wait(30)
        p.stdout.close()
        p.stderr.close()
    return acked


@pytest.mark.parametrize("mode", ["thread", "loop"])
def test_an_acknowledged_entry_survives_sigkill_of_the_writer(tmp_path, mode):
    path = tmp_path / "state.sqlite"
    acked = _acked_after_kill(path, threads=6, n=300, mode=mode)
    st = Store(path)
    stored = {e.seq: e.hash for e in audit.entries(st)}
    assert all(stored.get(seq) == h for seq, h in acked)  # every acknowledged entry is there, unchanged
    rep = audit.verify(st)
    assert rep.ok, rep.to_text()
    assert rep.n_entries >= len(acked)


@pytest.mark.parametrize("modes", [("thread", "thread"), ("loop", "loop"), ("loop", "thread")])
def test_two_processes_through_their_writers_make_one_chain(tmp_path, modes):
    path = tmp_path / "state.sqlite"
    ps = [subprocess.Popen([sys.executable, "-c", _APPENDER, str(path), "3", mode], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True) for mode in modes]
    try:
        for p in ps:
            for _ in range(150):
                assert p.stdout.readline(), p.stderr.read()
    finally:
        for p in ps:
            p.kill()
            p.wait(30)
            p.stdout.close()
            p.stderr.close()
    st = Store(path)
    users = {e.user_name for e in audit.entries(st)}
    assert {"p0", "p1", "p2"} <= users
    rep = audit.verify(st)
    assert rep.ok and rep.n_entries >= 300, rep.to_text()


def _table(store):
    store.ensure_schema("t", ("CREATE TABLE IF NOT EXISTS t (x INTEGER NOT NULL)",))
    threads: list[int] = []

    def apply(tx, x):
        threads.append(threading.get_ident())
        tx.execute("INSERT INTO t (x) VALUES (?)", (x,))
        return x

    return apply, threads


def _commits_on(monkeypatch) -> list[int]:
    """Record the thread of every hand-off commit."""
    threads: list[int] = []
    real = HandOffTransaction.commit

    def commit(self):
        threads.append(threading.get_ident())
        real(self)

    monkeypatch.setattr(HandOffTransaction, "commit", commit)
    return threads


def test_on_the_loop_one_turn_of_entries_is_written_on_the_loop_thread_and_committed_by_another(store, monkeypatch):
    apply, threads = _table(store)
    committed_on = _commits_on(monkeypatch)
    w = GroupWriter(store, apply)

    async def main():
        futs = [w.submit_on_loop(x) for x in range(5)]  # one turn: nothing awaited in between
        assert not any(f.done() for f in futs)  # nothing is durable yet
        assert await asyncio.gather(*futs) == list(range(5))
        assert store.query("SELECT x FROM t ORDER BY x") == [(x,) for x in range(5)]  # durable when resolved
        assert (w.batches, w.items) == (1, 5)
        assert await asyncio.gather(w.submit_on_loop(5), w.submit_on_loop(6)) == [5, 6]
        assert (w.batches, w.items) == (2, 7)
        return threading.get_ident()

    loop_thread = asyncio.run(main())
    assert set(threads) == {loop_thread}  # the rows are written on the loop
    assert len(committed_on) == 2 and loop_thread not in committed_on  # the commits (the fsync) are not


def test_on_the_loop_the_loop_goes_on_while_a_commit_is_in_flight_and_later_entries_wait_for_their_own(
        store, monkeypatch):
    apply, _ = _table(store)
    real = HandOffTransaction.commit
    gate = threading.Event()

    def slow_commit(self):  # a slow disk: the fsync takes until the gate opens
        gate.wait(30)
        real(self)

    monkeypatch.setattr(HandOffTransaction, "commit", slow_commit)
    w = GroupWriter(store, apply)

    async def main():
        first = [w.submit_on_loop(x) for x in range(3)]
        ticks = 0
        t0 = time.monotonic()
        while time.monotonic() - t0 < 0.3:  # the loop keeps turning during the commit
            await asyncio.sleep(0.01)
            ticks += 1
        later = [w.submit_on_loop(x) for x in (10, 11)]
        await asyncio.sleep(0.05)
        assert ticks >= 10 and not any(f.done() for f in first + later)
        reader = Store(store.url)  # its own connection (the loop thread's is the open transaction's)
        assert reader.query("SELECT count(*) FROM t") == [(0,)]  # nothing committed, nothing acknowledged
        reader.close()
        with pytest.raises(WriteLockBusy):  # the batch in flight still holds the write lock
            with Store(store.url).transaction(wait=False):
                pass
        gate.set()
        assert await asyncio.gather(*first) == [0, 1, 2]
        assert await asyncio.gather(*later) == [10, 11]
        assert (w.batches, w.items) == (2, 5)  # the later entries made the next batch

    asyncio.run(main())
    assert store.query("SELECT x FROM t ORDER BY x") == [(0,), (1,), (2,), (10,), (11,)]


def test_on_the_loop_a_commit_that_fails_stores_nothing_and_every_waiter_gets_the_error(store):
    store.ensure_schema("fk", ("CREATE TABLE IF NOT EXISTS p (id INTEGER PRIMARY KEY)",
                               "CREATE TABLE IF NOT EXISTS t (x INTEGER, p INTEGER REFERENCES p(id) "
                               "DEFERRABLE INITIALLY DEFERRED)"))

    def apply(tx, x):  # x < 0: an orphan row, refused only at COMMIT (a deferred foreign key)
        tx.execute("INSERT INTO t (x, p) VALUES (?, ?)", (x, 7 if x < 0 else None))
        return x

    w = GroupWriter(store, apply)

    async def main():
        futs = [w.submit_on_loop(1), w.submit_on_loop(-1), w.submit_on_loop(3)]
        for res in await asyncio.gather(*futs, return_exceptions=True):
            assert isinstance(res, Exception) and "FOREIGN KEY" in str(res)
        assert await w.submit_on_loop(4) == 4  # rolled back, lock let go: the writer goes on

    asyncio.run(main())
    assert store.query("SELECT x FROM t ORDER BY x") == [(4,)]


def test_on_the_loop_a_held_write_lock_sends_the_batch_to_the_writer_thread_and_the_loop_goes_on(store,
                                                                                               hold_write_lock):
    apply, threads = _table(store)
    w = GroupWriter(store, apply)

    async def main(release):
        fut = w.submit_on_loop(1)
        ticks = 0
        t0 = time.monotonic()
        while time.monotonic() - t0 < 0.3:  # the loop keeps turning while the other writer holds the lock
            await asyncio.sleep(0.01)
            ticks += 1
        assert not fut.done() and ticks >= 10
        release.set()
        assert await asyncio.wait_for(fut, 30) == 1
        return threading.get_ident()

    # another writer of the database (here a thread; the same holds for another process)
    with hold_write_lock(store.url, "INSERT INTO t (x) VALUES (-1)") as release:
        loop_thread = asyncio.run(main(release))
    assert store.query("SELECT x FROM t ORDER BY x") == [(-1,), (1,)]
    assert len(threads) == 1 and threads[0] != loop_thread  # written by the writer thread, after the holder


def test_on_the_loop_a_failed_batch_stores_nothing_and_every_waiter_gets_the_error(store):
    apply, _ = _table(store)
    w = GroupWriter(store, apply)

    async def main():
        futs = [w.submit_on_loop(1), w.submit_on_loop(None), w.submit_on_loop(3)]  # NULL: the batch rolls back
        for res in await asyncio.gather(*futs, return_exceptions=True):
            assert isinstance(res, Exception) and "NOT NULL" in str(res)
        assert await w.submit_on_loop(4) == 4  # the writer goes on

    asyncio.run(main())
    assert store.query("SELECT x FROM t ORDER BY x") == [(4,)]


def test_on_the_loop_entries_chain_with_the_writer_threads_in_one_valid_log(store):
    async def main():
        on_loop = [audit.submit_on_loop(store, user=f"l{i}", role="district", endpoint="/x") for i in range(20)]
        in_thread = await asyncio.to_thread(
            lambda: [audit.append(store, user=f"t{i}", role="district", endpoint="/x") for i in range(20)])
        return await asyncio.gather(*on_loop), in_thread

    on_loop, in_thread = asyncio.run(main())
    assert sorted(e.seq for e in [*on_loop, *in_thread]) == list(range(1, 41))
    rep = audit.verify(store)
    assert rep.ok and rep.n_entries == 40, rep.to_text()


def test_on_the_loop_a_batch_is_committed_in_place_when_no_thread_can_start(store, monkeypatch):
    apply, _ = _table(store)
    committed_on = _commits_on(monkeypatch)
    w = GroupWriter(store, apply)

    def refuse(*args, **kwargs):
        raise RuntimeError("cannot schedule new futures after interpreter shutdown")

    monkeypatch.setattr(ThreadPoolExecutor, "submit", refuse)

    async def main():
        assert await asyncio.wait_for(asyncio.gather(w.submit_on_loop(1), w.submit_on_loop(2)), 30) == [1, 2]
        assert await asyncio.wait_for(w.submit_on_loop(3), 30) == 3  # the lock was let go: the next batch begins
        return threading.get_ident()

    loop_thread = asyncio.run(main())
    assert store.query("SELECT x FROM t ORDER BY x") == [(1,), (2,), (3,)]
    assert committed_on == [loop_thread, loop_thread]


def test_close_writes_every_pending_item_then_ends_the_thread_and_refuses_new_ones(store):
    from twin.access._audit_writer import WriterClosed

    w, gate, entered = _gated_writer(store, max_batch=8)
    futs = [w.submit(0)]
    assert entered.wait(10)  # the first batch is being written; 40 more items queue behind it
    futs += [w.submit(i) for i in range(1, 41)]
    closing = ThreadPoolExecutor(1).submit(w.close, 10.0)
    time.sleep(0.2)
    assert not closing.done()  # close waits for what is pending
    gate.set()
    assert closing.result(20) is True
    assert [f.result(0) for f in futs] == list(range(41))
    assert sorted(x for (x,) in store.query("SELECT x FROM t")) == list(range(41))
    assert not w._thread.is_alive()
    with pytest.raises(WriterClosed, match="closed; nothing was queued"):
        w.submit(41)


def test_close_writers_ends_this_process_writer_and_the_next_entry_gets_a_new_one(store):
    audit.submit(store, user="a", role="district", endpoint="/x").result(10)
    first = audit.writer_for(store, "audit", audit._make_writer)
    assert audit.close_writers(store.url) is True
    assert first.closed and not first._thread.is_alive()
    audit.submit(store, user="b", role="district", endpoint="/x").result(10)
    assert audit.writer_for(store, "audit", audit._make_writer) is not first
    rep = audit.verify(store)
    assert rep.ok and rep.n_entries == 2, rep.to_text()


def test_entries_submitted_just_before_the_process_exits_are_written(tmp_path):
    """Nobody waits for these 300 entries; the exit hook still writes every one before the interpreter ends (a
    daemon writer thread alone would be cut off mid-queue)."""
    path = tmp_path / "state.sqlite"
    code = ("import sys\nfrom twin.access import audit\nfrom twin.store.sql import Store\n"
            "st = Store(sys.argv[1])\n"
            "for i in range(300):\n"
            "    audit.submit(st, user=f'u{i}', role='district', endpoint='/x', counts={'i': i})\n")
    subprocess.run([sys.executable, "-c", code, str(path)], check=True, timeout=120)
    rep = audit.verify(Store(path))
    assert rep.ok and rep.n_entries == 300, rep.to_text()
