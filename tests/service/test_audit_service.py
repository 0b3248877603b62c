"""Audit before answer over HTTP: every keyed request — rejected ones included — has a durable audit entry before
its status line leaves; edits write theirs inside the commit transaction; a SIGKILL right after a 200 loses no
acknowledged entry; revoked keys stop within a second; repeated bad keys are cheap."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import threading
import time
import warnings
from types import SimpleNamespace

import numpy as np
import pytest
import shapely.geometry
from api_helpers import H

from twin.access import audit, auth
from twin.partition import edits as pedits
from twin.partition.model import partition_from_twin
from twin.partition.versions import commit, ensure_base, list_versions, load_partition
from twin.service.app import create_app
from twin.service.deps import Audit, commit_audit
from twin.store.sql import Store

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # starlette warns that its TestClient will move to httpx2
    from fastapi.testclient import TestClient



def _area(t):
    """A small square (GeoJSON, WGS84) around the centre of the twin's first grid."""
    c = t.grids.geometry.iloc[0].representative_point()
    return shapely.geometry.mapping(shapely.geometry.box(c.x - 0.002, c.y - 0.002, c.x + 0.002, c.y + 0.002))


class _StatusLineProbe:
    """ASGI wrapper: when a response's status line is about to leave, note the audit head seen by ANOTHER
    connection (what a crash at that instant would leave in the store)."""

    def __init__(self, app, url):
        self.app, self.url, self.heads = app, url, []

    async def __call__(self, scope, receive, send):
        async def probe(msg):
            if msg["type"] == "http.response.start":
                s = Store(self.url)
                self.heads.append(audit.head_seq(s))
                s.close()
            await send(msg)

        await self.app(scope, receive, probe if scope["type"] == "http" else send)


@pytest.fixture
def env(small_twin, tmp_path):
    url = str(tmp_path / "state.sqlite")
    store = Store(url)
    keys = {"district": auth.add_user(store, "admin", "district"), "analyst": auth.add_user(store, "ana", "analyst")}
    probe = _StatusLineProbe(create_app(database_url=url, twin=small_twin, warm=False, max_body_bytes=4096), url)
    with TestClient(probe, raise_server_exceptions=False) as c:
        yield SimpleNamespace(c=c, keys=keys, store=store, url=url, probe=probe, app=probe.app, area=_area(small_twin))
    store.close()


def test_every_keyed_request_is_audited_before_its_answer(env):
    c, k = env.c, env.keys
    before = audit.head_seq(env.store)
    calls = [
        (lambda: c.get("/me", headers=H(k["district"])), 200, ("admin", "/me", "ok")),
        (lambda: c.get("/no/such/route", headers=H(k["district"])), 404, ("admin", "/no/such/route", "not_found")),
        (lambda: c.delete("/me", headers=H(k["district"])), 405, ("admin", "/me", "rejected")),
        (lambda: c.post("/area/summary", content=b"{" + b" " * 5000 + b"}",
                        headers={**H(k["district"]), "content-type": "application/json"}), 413,
         ("admin", "/area/summary", "rejected")),
        (lambda: c.get("/overlays/cats", headers=H(k["district"])), 422, ("admin", "/overlays/{category}", "rejected")),
        (lambda: c.post("/area/summary", content=b"{not json", headers={**H(k["district"]),
                                                                       "content-type": "application/json"}), 400,
         ("admin", "/area/summary", "rejected")),
        (lambda: c.post("/area/records", json=env.area, headers=H(k["analyst"])), 403, ("ana", "/area/records", "denied")),
        (lambda: c.get("/me", headers=H("tw_000000000000_" + "y" * 40)), 401, ("-", "/me", "unauthenticated")),
        (lambda: c.get("/me"), 401, ("-", "/me", "unauthenticated")),
        (lambda: c.get("/health"), 200, None),  # public and keyless: nothing to audit
    ]
    want = []
    for call, status, entry in calls:
        n_heads = len(env.probe.heads)
        r = call()
        assert r.status_code == status, r.text
        if entry is not None:
            want.append((*entry, status))
        # the entry was in the store, seen by another connection, when the status line left
        assert env.probe.heads[n_heads] == before + len(want), (entry, env.probe.heads)
    got = [(e.user_name, e.endpoint, e.outcome, e.status) for e in audit.entries(env.store, since_seq=before)]
    assert got == want
    # every keyed request announced its entry to the group-commit writer and settled it: none is waited for
    writer = audit.writer_for(env.store, "audit", audit._make_writer)
    assert writer.items >= len(want) - 1 and writer._expected == 0  # the app's writer (the 401s' entries too)
    es = list(audit.entries(env.store, since_seq=before))
    assert "exceeds the limit" in es[3].detail and "cats" in es[4].detail
    assert audit.verify(env.store).ok


def test_a_server_error_is_audited_before_its_answer(env, monkeypatch):
    twins = env.app.state.svc.twins

    def boom(*a, **kw):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(twins, "at", boom)
    before = audit.head_seq(env.store)
    r = env.c.get("/hierarchy/towns", headers=H(env.keys["district"]))
    assert r.status_code == 500 and "disk on fire" not in r.text
    (e,) = audit.entries(env.store, since_seq=before)
    assert (e.user_name, e.outcome, e.status, e.detail) == ("admin", "error", 500, "RuntimeError")


def test_revoked_key_stops_within_a_second_in_a_running_server(env):
    c, key = env.c, env.keys["analyst"]
    assert c.get("/me", headers=H(key)).status_code == 200
    with env.store.transaction() as tx:  # as `twin users revoke` in another process does
        tx.execute("UPDATE api_keys SET revoked = 1 WHERE user_name = 'ana'")
    t0 = time.monotonic()
    while c.get("/me", headers=H(key)).status_code == 200:
        assert time.monotonic() - t0 < 1.0, "revoked key still answered after 1 s"
        time.sleep(0.02)
    r = c.get("/me", headers=H(key))
    assert r.status_code == 401 and "revoked" in r.json()["detail"]


def test_repeated_bad_keys_are_cheap_and_each_audited(env):
    bad = "tw_" + "ef" * 6 + "_" + "q" * 40
    before = audit.head_seq(env.store)
    t0 = time.perf_counter()
    env.c.get("/me", headers=H(bad))
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(20):
        assert env.c.get("/me", headers=H(bad)).status_code == 401
    repeat = (time.perf_counter() - t0) / 20
    assert repeat < first  # the first costs an scrypt hash; repeats only the audit row
    es = list(audit.entries(env.store, since_seq=before))
    assert len(es) == 21 and {(e.user_name, e.outcome, e.status) for e in es} == {("-", "unauthenticated", 401)}


# --- edits: the version and its audit entry in one transaction ---------------------------------------------------

def _movable_cell(t):
    p = partition_from_twin(t)
    adj = p.adjacency
    for i in range(len(p.cells)):
        for j in adj.indices[adj.indptr[i]:adj.indptr[i + 1]]:
            if p.grid_code[j] != p.grid_code[i] and p.community[j] == p.community[i]:
                try:
                    pedits.move_cells(p, [p.cells[i]], str(p.grid_code[j]))
                except Exception:  # noqa: BLE001 - not movable (would disconnect or empty a grid)
                    continue
                return int(p.cells[i]), str(p.grid_code[i]), str(p.grid_code[j])
    raise AssertionError("no movable cell")


def test_commit_writes_its_audit_entry_in_the_same_transaction(small_twin, tmp_path):
    store = Store(tmp_path / "state.sqlite")
    ensure_base(store, small_twin)
    cell, home, to = _movable_cell(small_twin)
    p = pedits.move_cells(load_partition(store, small_twin, "head"), [cell], to)
    role = auth.authenticate(store, auth.add_user(store, "ed", "district"))
    ctx = Audit(role, "/edits", "POST", counts={"cells_moved": 1})
    svc = SimpleNamespace(store=store)

    def hook_then_fail(tx, vid):
        commit_audit(svc, ctx)(tx, vid)
        raise RuntimeError("crash after the audit row, before COMMIT")

    with pytest.raises(RuntimeError):
        commit(store, p, base_version=1, author="ed", reason="r", audit=hook_then_fail)
    assert [v.version for v in list_versions(store)] == [1] and audit.head_seq(store) == 0
    new = commit(store, p, base_version=1, author="ed", reason="move one cell", audit=commit_audit(svc, ctx))
    (e,) = audit.entries(store)
    assert (e.endpoint, e.version, e.outcome, e.counts) == ("/edits", str(new), "ok", {"cells_moved": 1})
    assert ctx.written and audit.verify(store).ok
    store.close()


# --- crash: SIGKILL right after a 200 -----------------------------------------------------------------------------

_SERVER = """
import sys, uvicorn
from twin.service.app import create_app
uvicorn.run(create_app(sys.argv[3], database_url=sys.argv[2], warm=False), host="127.0.0.1", port=int(sys.argv[1]),
            log_level="error")
"""


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(url, root, port):
    import httpx

    p = subprocess.Popen([sys.executable, "-c", _SERVER, str(port), url, str(root)], stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return p
        except httpx.HTTPError:
            time.sleep(0.2)
        if p.poll() is not None:
            raise AssertionError(p.stderr.read().decode())
    p.kill()
    raise AssertionError("server did not start")


def _kill(p):
    p.send_signal(signal.SIGKILL)
    p.wait(timeout=30)
    p.stderr.close()


def _acknowledged_have_entries(store, acked):
    """Every acknowledged (endpoint, status, version) has its own entry."""
    es = list(audit.entries(store))
    pool = [(e.endpoint, e.status, e.version) for e in es]
    for a in acked:
        match = [i for i, x in enumerate(pool) if x[0] == a[0] and x[1] == a[1] and (a[2] is None or x[2] == a[2])]
        assert match, f"acknowledged {a} has no audit entry"
        pool.pop(match[0])
    return es


def test_sigkill_right_after_a_200_loses_no_audit_entry(default_twin, tmp_path):
    import httpx

    url = str(tmp_path / "state.sqlite")
    store = Store(url)
    key = auth.add_user(store, "ed", "district")
    cell, home, to = _movable_cell(default_twin)
    port = _free_port()
    srv = _start(url, default_twin.root, port)
    base = f"http://127.0.0.1:{port}"
    acked = []
    try:
        version = 1
        for i in range(4):
            body = {"op": "move_cells", "base_version": version, "reason": f"edit {i}", "cells": [format(cell, "x")],
                    "to_grid": to if i % 2 == 0 else home}
            r = httpx.post(f"{base}/edits", json=body, headers=H(key), timeout=120)
            assert r.status_code == 200, r.text
            version = r.json()["version"]
            acked.append(("/edits", 200, str(version)))
            r = httpx.get(f"{base}/versions", headers=H(key), timeout=60)
            assert r.status_code == 200
            acked.append(("/versions", 200, None))
        r = httpx.get(f"{base}/nothing/here", headers=H(key), timeout=60)
        assert r.status_code == 404
        acked.append(("/nothing/here", 404, None))
    finally:
        _kill(srv)  # right after the last answer
    es = _acknowledged_have_entries(store, acked)
    committed = [v.version for v in list_versions(store)][1:]
    assert committed == [int(v) for _, _, v in acked if v is not None]
    assert {str(v) for v in committed} <= {e.version for e in es if e.endpoint == "/edits" and e.outcome == "ok"}
    rep = audit.verify(store)
    assert rep.ok, rep.to_text()
    store.close()


def test_sigkill_under_concurrent_load_loses_no_acknowledged_entry(default_twin, tmp_path):
    import httpx

    url = str(tmp_path / "state.sqlite")
    store = Store(url)
    keys = [auth.add_user(store, f"u{i}", "district") for i in range(3)]
    port = _free_port()
    srv = _start(url, default_twin.root, port)
    base = f"http://127.0.0.1:{port}"
    acked: list[tuple] = []
    lock = threading.Lock()
    stop = threading.Event()
    paths = {"/me": "/me", "/versions": "/versions", "/hierarchy/towns": "/hierarchy/{level}", "/no/route": "/no/route"}
    names = list(paths)

    def client(i):
        rng = np.random.default_rng(i)
        with httpx.Client(timeout=30) as h:
            while not stop.is_set():
                path = names[int(rng.integers(len(names)))]
                try:
                    r = h.get(base + path, headers=H(keys[i]))
                except httpx.HTTPError:
                    return
                with lock:
                    acked.append((paths[path], r.status_code, None))

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(3)]
    for t in threads:
        t.start()
    try:
        deadline = time.monotonic() + 60
        while len(acked) < 60 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        _kill(srv)
        stop.set()
        for t in threads:
            t.join(timeout=30)
    with lock:
        got = list(acked)
    assert len(got) >= 30, json.dumps(got[:5])
    _acknowledged_have_entries(store, got)
    rep = audit.verify(store)
    assert rep.ok, rep.to_text()
    store.close()
