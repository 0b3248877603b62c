"""The same storage tests against SQLite and a throwaway local PostgreSQL + PostGIS on loopback.

The PostgreSQL cluster is started once per session with ``initdb``/``pg_ctl`` from ``/usr/lib/postgresql/*/bin``
(as the ``postgres`` OS user when running as root) in a temporary directory and stopped at the end; every test
gets its own database cloned from a template that has the ``postgis`` extension.
"""

from __future__ import annotations

import asyncio
import threading

import pytest
from shapely.geometry import box

from twin.access import audit, auth
from twin.errors import AuthenticationError, ConflictError
from twin.store.pg import has_postgis


@pytest.fixture()
def store(any_store):
    return any_store


def _break_guard(store):
    if store.dialect == "sqlite":
        store.connection.execute("DROP TRIGGER audit_log_no_update")
        store.connection.execute("DROP TRIGGER audit_log_no_delete")
    else:
        store.connection.execute("ALTER TABLE audit_log DISABLE TRIGGER audit_log_no_change")


def test_transactions_commit_or_roll_back(store):
    store.ensure_schema("t", ["CREATE TABLE IF NOT EXISTS kv (k TEXT PRIMARY KEY, v INTEGER NOT NULL)"])
    with store.transaction() as tx:
        tx.execute("INSERT INTO kv (k, v) VALUES (?, ?)", ("a", 1))
    with pytest.raises(RuntimeError), store.transaction() as tx:
        tx.execute("INSERT INTO kv (k, v) VALUES (?, ?)", ("b", 2))
        raise RuntimeError("crash mid-write")
    assert store.query("SELECT k, v FROM kv ORDER BY k") == [("a", 1)]


def test_executemany_writes_every_row_in_order(store, monkeypatch):
    from twin.store import sql

    store.ensure_schema("t_many", ["CREATE TABLE IF NOT EXISTS many (k INTEGER PRIMARY KEY, v TEXT, b BLOB)"])
    rows = [(i, f"v{i}" if i % 3 else None, bytes([i % 256])) for i in range(50)]
    monkeypatch.setattr(sql, "_SQLITE_MAX_VARIABLES", 7)  # SQLite: statements of 2 rows (3 parameters each)
    with store.transaction() as tx:
        tx.executemany("INSERT INTO many (k, v, b) VALUES (?, ?, ?)", rows)
        tx.executemany("INSERT INTO many (k, v, b) VALUES (?, ?, ?)", [])
    assert [(k, v, bytes(b)) for k, v, b in store.query("SELECT k, v, b FROM many ORDER BY k")] == rows
    with pytest.raises(Exception, match="(?i)unique|duplicate"), store.transaction() as tx:  # all rolled back
        tx.executemany("INSERT INTO many (k, v, b) VALUES (?, ?, ?)", [(100, "x", b""), (0, "dup", b"")])
    assert store.query("SELECT count(*) FROM many")[0][0] == 50
    with store.transaction() as tx:  # not a VALUES insert: one execution per row
        tx.executemany("UPDATE many SET v = ? WHERE k = ?", [("u0", 0), ("u1", 1)])
    assert store.query("SELECT v FROM many WHERE k < 2 ORDER BY k") == [("u0",), ("u1",)]


def test_users_and_keys(store):
    key = auth.add_user(store, "lan", "community", ["440604010001"])
    assert auth.authenticate(store, key).scope_codes == ("440604010001",)
    with pytest.raises(ConflictError):
        auth.add_user(store, "lan", "district")
    auth.revoke_keys(store, "lan")
    with pytest.raises(AuthenticationError):
        auth.authenticate(store, key)


def test_audit_chain_and_tamper_detection(store):
    for i in range(6):
        audit.append(store, user="u", role="town", endpoint="/area/summary", method="POST",
                     area=box(113.1, 23.0, 113.11, 23.01 + i * 1e-3), area_km2=None, counts={"residents": i})
    assert audit.verify(store).ok
    with pytest.raises(Exception, match="append-only"):
        with store.transaction() as tx:
            tx.execute("DELETE FROM audit_log WHERE seq = 1")
    _break_guard(store)
    with store.transaction() as tx:
        tx.execute("UPDATE audit_log SET user_name = 'someone-else' WHERE seq = 4")
    rep = audit.verify(store)
    assert not rep.ok and rep.first_broken_seq == 4


def test_audit_concurrent_appends(store):
    def work(i):
        for _ in range(15):
            audit.append(store, user=f"t{i}", role="district", endpoint="/x")
        store.close()

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    rep = audit.verify(store)
    assert rep.ok and rep.n_entries == 60


def test_audit_entries_submitted_from_an_event_loop_are_stored_when_their_futures_resolve(store):
    async def main():
        futs = [audit.submit_on_loop(store, user=f"l{i}", role="district", endpoint="/x") for i in range(12)]
        return await asyncio.gather(*futs)

    done = asyncio.run(main())  # SQLite: committed on the loop thread; PostgreSQL: through the writer thread
    assert sorted(e.seq for e in done) == list(range(1, 13))
    stored = {e.seq: e.hash for e in audit.entries(store)}
    assert all(stored[e.seq] == e.hash for e in done)
    rep = audit.verify(store)
    assert rep.ok and rep.n_entries == 12, rep.to_text()


def test_area_footprints_and_postgis(store):
    a = box(113.10, 23.00, 113.11, 23.01)
    b = box(113.12, 23.02, 113.13, 23.03)
    ea = audit.append(store, user="u", role="district", endpoint="/area/summary", area=a)
    audit.append(store, user="u", role="district", endpoint="/area/summary", area=b)
    audit.append(store, user="v", role="district", endpoint="/area/summary", area=a)  # same area, one footprint
    assert store.query("SELECT COUNT(*) FROM audit_areas")[0][0] == 2
    hits = audit.entries_touching(store, box(113.105, 23.005, 113.106, 23.006))
    assert [e.area_hash for e in hits] == [ea.area_hash, ea.area_hash]
    if store.dialect == "postgresql":
        assert has_postgis(store)
        kind = store.query("SELECT GeometryType(geom) FROM audit_areas WHERE area_hash = ?", (ea.area_hash,))
        assert kind == [("POLYGON",)]


@pytest.fixture(scope="module")
def twin_and_edit():
    """The default twin, its partition and one valid edit (a boundary cell moved to a neighbouring grid)."""
    import numpy as np

    import twin
    from twin.errors import PartitionError
    from twin.partition import edits
    from twin.partition.model import partition_from_twin

    t = twin.load()
    p = partition_from_twin(t)
    adj = p.adjacency
    for i in np.flatnonzero(p.grid_code == str(t.grids["grid_code"].iloc[0])):
        for j in adj.indices[adj.indptr[i]:adj.indptr[i + 1]]:
            if p.grid_code[j] != p.grid_code[i] and p.community[j] == p.community[i]:
                try:
                    return t, p, edits.move_cells(p, [p.cells[i]], str(p.grid_code[j]))
                except PartitionError:
                    break
    pytest.fail("no movable boundary cell found")


def test_partition_versions_commit_conflict_and_time_travel(store, twin_and_edit):
    import numpy as np

    from twin.partition import versions

    t, p, p2 = twin_and_edit
    assert versions.ensure_base(store, t) == 1
    v2 = versions.commit(store, p2, base_version=1, author="lan", reason="move a boundary cell")
    assert v2 == 2 and versions.head_version(store) == 2
    with pytest.raises(ConflictError, match="no longer the head"):
        versions.commit(store, p2, base_version=1, author="wang", reason="stale edit")
    assert [v.version for v in versions.list_versions(store)] == [1, 2]
    back = versions.load_partition(store, t, 2)
    assert np.array_equal(back.grid_code, p2.grid_code)
    assert np.array_equal(versions.load_partition(store, t, "base").grid_code, p.grid_code)
