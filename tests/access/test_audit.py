"""The audit log is append-only and tamper-evident: verify() names the first broken entry."""

from __future__ import annotations

import sqlite3
import threading

import numpy as np
import pytest
from shapely.geometry import Polygon, box

from twin.access import audit
from twin.crs import geometry_to_storage, lnglat_to_xy
from twin.store.sql import Store


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "state.sqlite")
    yield s
    s.close()


def _fill(store, n=5):
    return [audit.append(store, user=f"u{i}", role="community", endpoint="/area/summary", method="POST",
                         area=box(113.1, 23.0, 113.101 + i * 1e-3, 23.001), counts={"residents": 10 * i},
                         version=1) for i in range(n)]


def _untrigger(store):
    store.connection.execute("DROP TRIGGER audit_log_no_update")
    store.connection.execute("DROP TRIGGER audit_log_no_delete")


def test_entries_chain_and_verify(store):
    es = _fill(store)
    assert [e.seq for e in es] == [1, 2, 3, 4, 5]
    assert es[0].prev_hash == audit.GENESIS
    assert all(b.prev_hash == a.hash for a, b in zip(es, es[1:]))
    assert [e.hash for e in audit.entries(store)] == [e.hash for e in es]
    rep = audit.verify(store)
    assert rep.ok and rep.n_entries == 5 and rep.first_broken_seq is None


def test_area_is_hashed_and_measured_in_metres(store):
    # a 100 m square built in EPSG:4547, stored in WGS84, must measure 0.01 km²
    x, y = (float(v[0]) for v in lnglat_to_xy(np.array([113.1]), np.array([23.0])))
    sq = geometry_to_storage(Polygon([(x, y), (x + 100, y), (x + 100, y + 100), (x, y + 100)]))
    e = audit.append(store, user="a", role="district", endpoint="/area/summary", area=sq)
    assert e.area_km2 == pytest.approx(0.01, rel=1e-3)
    rotated = Polygon(list(sq.exterior.coords)[2:-1] + list(sq.exterior.coords)[:3])
    assert audit.area_hash(rotated) == e.area_hash  # same area, other start vertex
    assert [x.seq for x in audit.entries_touching(store, sq.centroid.buffer(1e-5))] == [e.seq]


def test_updates_and_deletes_are_refused_by_the_database(store):
    _fill(store, 2)
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        store.connection.execute("UPDATE audit_log SET user_name = 'x' WHERE seq = 1")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        store.connection.execute("DELETE FROM audit_log WHERE seq = 2")
    assert audit.verify(store).ok


def test_an_edited_entry_is_reported(store):
    _fill(store)
    _untrigger(store)
    store.connection.execute("UPDATE audit_log SET counts = '{\"residents\": 0}' WHERE seq = 3")
    rep = audit.verify(store)
    assert not rep.ok and rep.first_broken_seq == 3 and "edited" in rep.reason


def test_a_rehashed_entry_breaks_the_next_link(store):
    es = _fill(store)
    _untrigger(store)
    store.connection.execute("UPDATE audit_log SET hash = ? WHERE seq = 2", ("f" * 64,))
    rep = audit.verify(store)
    assert not rep.ok and rep.first_broken_seq == 2
    store.connection.execute("UPDATE audit_log SET hash = ? WHERE seq = 2", (es[1].hash,))
    assert audit.verify(store).ok


def test_removed_entries_are_reported(store):
    _fill(store)
    _untrigger(store)
    store.connection.execute("DELETE FROM audit_log WHERE seq = 2")
    rep = audit.verify(store)
    assert not rep.ok and rep.first_broken_seq == 2 and "missing" in rep.reason


def test_truncated_tail_is_reported(store):
    _fill(store)
    _untrigger(store)
    store.connection.execute("DELETE FROM audit_log WHERE seq >= 4")
    rep = audit.verify(store)
    assert not rep.ok and rep.first_broken_seq == 4 and "removed from the end" in rep.reason


def test_concurrent_appenders_never_fork_the_chain(store):
    def work(i):
        for j in range(20):
            audit.append(store, user=f"t{i}", role="district", endpoint="/x", counts={"j": j})
        store.close()

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    rep = audit.verify(store)
    assert rep.ok and rep.n_entries == 120
    assert audit.head_seq(store) == 120
