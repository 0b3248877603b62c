"""The feed table (twin.store.feed) on SQLite and PostgreSQL: an event exists iff its transaction committed, seqs
rise in commit order, reads resume after a seq."""

from __future__ import annotations

import threading

import pytest

from twin.errors import ValidationError
from twin.store.feed import head_seq, publish, read_since


def test_event_exists_iff_its_transaction_commits(any_store):
    assert head_seq(any_store) == 0 and read_since(any_store, 0) == []
    with any_store.transaction() as tx:
        s1 = publish(tx, "incident.created", {"id": 1, "state": "reported"}, grid_code="g1", community_code="c1",
                     town_code="t1")
    with pytest.raises(RuntimeError), any_store.transaction() as tx:
        publish(tx, "incident.updated", {"id": 1})
        raise RuntimeError("the change fails after publishing")
    with any_store.transaction() as tx:
        s2 = publish(tx, "version.ready", {"version": 3})
    got = read_since(any_store, 0)
    assert [(e.seq, e.kind) for e in got] == [(s1, "incident.created"), (s2, "version.ready")]
    assert got[0].payload == {"id": 1, "state": "reported"} and got[0].scope() == {
        "grid_code": "g1", "community_code": "c1", "town_code": "t1"}
    assert got[1].scope() == {} and got[1].ts.endswith("+00:00")
    assert [e.seq for e in read_since(any_store, s1)] == [s2] and head_seq(any_store) == s2
    assert [e.seq for e in read_since(any_store, 0, limit=1)] == [s1]


def test_bad_kind_or_payload_is_refused(any_store):
    with any_store.transaction() as tx:
        for kind in ("created", "", "a.b.c", ".x"):
            with pytest.raises(ValidationError, match="feed kind"):
                publish(tx, kind, {})
        with pytest.raises(ValidationError, match="mapping"):
            publish(tx, "record.changed", [1, 2])  # type: ignore[arg-type]
    assert read_since(any_store, 0) == []


def test_concurrent_publishers_commit_in_seq_order(any_store):
    """Readers poll ``seq > last``: a smaller seq must never become visible after a larger one."""
    publish_url = any_store.url
    from twin.store.sql import Store

    seen: list[int] = []
    stop = threading.Event()

    def reader() -> None:
        st = Store(publish_url)
        last = 0
        while not stop.is_set():
            for e in read_since(st, last):
                seen.append(e.seq)
                last = e.seq
        for e in read_since(st, last):
            seen.append(e.seq)
        st.close()

    def writer(i: int) -> None:
        st = Store(publish_url)
        for j in range(15):
            with st.transaction() as tx:
                publish(tx, "record.changed", {"writer": i, "n": j}, grid_code=f"g{i}")
        st.close()

    r = threading.Thread(target=reader)
    r.start()
    ws = [threading.Thread(target=writer, args=(i,)) for i in range(4)]
    for w in ws:
        w.start()
    for w in ws:
        w.join()
    stop.set()
    r.join()
    assert seen == sorted(seen) and len(seen) == len(set(seen)) == 60
