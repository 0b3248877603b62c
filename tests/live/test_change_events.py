"""Change sets in the store (SQLite and PostgreSQL): commit order, audit chain, feed, atomicity, compare-and-set,
other writers, and a process killed mid change set."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.live.conftest import KW, D
from twin.access import audit
from twin.errors import ConflictError, ValidationError
from twin.live import changes as ch
from twin.live import events as ev
from twin.live.state import LiveTwin
from twin.model import Twin
from twin.store import feed
from twin.store.sql import Store


def test_change_sets_are_events_in_commit_order(small_twin: Twin, any_store: Store) -> None:
    live = LiveTwin(small_twin, any_store)
    r1 = live.apply([ch.PersonDies(person_id=0, **KW), ch.PersonMovesOut(person_id=1, **KW)])
    r2 = live.apply(ch.BusinessCreditChanged(business_id=3, credit="red", **KW))
    rows = ev.read_events(any_store)
    assert [r.seq for r in rows] == [*r1.seqs, *r2.seqs] and r1.seqs[-1] < r2.seqs[0]
    assert [r.kind for r in rows] == ["person.dies", "person.moves_out", "business.credit"]
    assert rows[0].writes == [["persons", 0, None, "removed"]] and rows[0].author == "李敏"
    # one audit entry per change set, in the verified chain
    entries = audit.entries(any_store)
    mine = [e for e in entries if e.endpoint == "live.changes"]
    assert [e.seq for e in mine] == [r1.audit_seq, r2.audit_seq] and mine[0].counts == {"changes": 2}
    assert audit.verify(any_store).ok
    # one feed row per change set
    rows_feed = [f for f in feed.read_since(any_store, 0) if f.kind == "record.changed"]
    assert [f.payload["set_id"] for f in rows_feed] == [r1.set_id, r2.set_id]
    assert rows_feed[0].payload["kinds"] == {"person.dies": 1, "person.moves_out": 1}
    # versions
    assert live.version("persons", 0) == 1 and live.version("persons", 2) == 0
    assert live.version("businesses", 3) == 1


def test_a_failing_change_leaves_nothing_of_its_set(small_twin: Twin, any_store: Store) -> None:
    live = LiveTwin(small_twin, any_store)
    before = len(live.persons_on(D))
    with pytest.raises(ValidationError, match="change 3 of 3: .*person:0 is gone"):
        live.apply([ch.PersonDies(person_id=0, **KW), ch.PersonBorn(dwelling_id=0, sex="F", **KW),
                    ch.PersonMoves(person_id=0, dwelling_id=2, **KW)])
    assert ev.head_seq(any_store) == 0 and not [e for e in audit.entries(any_store) if e.endpoint == "live.changes"]
    assert len(live.persons_on(D)) == before and live.version("persons", 0) == 0
    r = live.apply([ch.PersonBorn(dwelling_id=0, sex="F", **KW)])  # ids are not burnt by the failed set
    assert r.created == ((f"person:{len(small_twin.persons)}",),)


def test_compare_and_set_between_two_writers(small_twin: Twin, any_store: Store) -> None:
    a, b = LiveTwin(small_twin, any_store), LiveTwin(small_twin, any_store)
    v = a.version("persons", 10)
    a.apply([ch.PersonFlagChanged(person_id=10, flag="low_income", value=True, expected_version=v, **KW)])
    with pytest.raises(ConflictError, match="person:10 is at version 1, but the change expected version 0"):
        b.apply([ch.PersonFlagChanged(person_id=10, flag="disabled", value=True, expected_version=v, **KW)])
    # b caught up with a's change inside its transaction: its state has it
    assert bool(b.persons_on(D).set_index("person_id").loc[10, "low_income"])
    b.apply([ch.PersonFlagChanged(person_id=10, flag="disabled", value=True, expected_version=1, **KW)])
    assert a.version("persons", 10) == 2
    # new ids never collide between writers
    ra = a.apply([ch.PersonBorn(dwelling_id=0, sex="M", **KW)])
    rb = b.apply([ch.PersonBorn(dwelling_id=0, sex="M", **KW)])
    assert ra.created != rb.created


_CHILD = textwrap.dedent("""
    import datetime as dt, sys, time, twin
    from twin.access.audit import use_audit_dir
    from twin.live import changes as ch, events as ev
    from twin.live.state import LiveTwin
    from twin.store.sql import Store
    store = Store(sys.argv[2]); use_audit_dir(store, sys.argv[3])
    live = LiveTwin(twin.load(sys.argv[1]), store)
    real = ev._insert_events
    def slow(tx, set_id, changes, writes):
        real(tx, set_id, changes[:50], writes[:50])      # half the set is written inside the transaction …
        print("half", flush=True)
        time.sleep(60)                                    # … and the process is killed here
    ev._insert_events = slow
    kw = dict(effective_date=dt.date(2026, 12, 1), author="crash", reason="test")
    ids = [int(i) for i in sys.argv[4].split(",")]
    live.apply([ch.PersonFlagChanged(person_id=i, flag="low_income", value=True, **kw) for i in ids])
""")


def test_killed_process_leaves_none_of_its_set(small_twin: Twin, tmp_path: Path) -> None:
    url = tmp_path / "state.sqlite"
    store = Store(url)
    audit.use_audit_dir(store, tmp_path / "audit")
    live = LiveTwin(small_twin, store)
    flags = small_twin.persons["low_income"].to_numpy()
    ids = [i for i in range(len(flags)) if not flags[i]][:100]
    child = subprocess.Popen([sys.executable, "-c", _CHILD, str(small_twin.root), str(url), str(tmp_path / "audit"),
                              ",".join(map(str, ids))], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "half"
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait(30)
        if child.stdout is not None:
            child.stdout.close()
    assert child.returncode == -signal.SIGKILL
    assert ev.head_seq(store) == 0 and live.refresh() == 0
    assert audit.verify(store).ok
    r = live.apply([ch.PersonDies(person_id=ids[0], **KW)])  # the store is usable after the crash
    assert r.seqs == (r.seqs[0],) and len(ev.read_events(store)) == 1


def test_other_processes_changes_are_read(small_twin: Twin, any_store: Store) -> None:
    a, b = LiveTwin(small_twin, any_store), LiveTwin(small_twin, any_store)
    before = len(b.persons_on(D))
    a.apply([ch.PersonDies(person_id=3, **KW)])
    assert len(b.persons_on(D)) == before - 1
    assert len(b.persons_on(D - dt.timedelta(days=1))) == before
