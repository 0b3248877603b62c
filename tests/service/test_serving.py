"""Serving path: edits return when durable, versions are built in the background, readers answer from the last
built version and name it (body ``version`` and ``X-Twin-Version``), ``/versions/{v}/ready`` waits for a build,
and a version whose build was killed is built on restart."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import threading
import time
import warnings

import numpy as np
import pytest
from api_helpers import H
from shapely.geometry import box, mapping

import twin.service._twins as twins_mod
from twin.access import audit, auth
from twin.access.policy import AccessPolicy, scoped_summary
from twin.access.roles import DISTRICT
from twin.encoding import to_jsonable
from twin.errors import PartitionError
from twin.partition import edits
from twin.partition.model import partition_from_twin
from twin.partition.versions import checkout, list_versions
from twin.query.summary import summarize_area
from twin.service.app import create_app
from twin.store.sql import Store

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient


def _peopled_move(t) -> tuple[str, str, str]:
    """A boundary cell holding residents, its grid and a neighbouring grid of the same community it may join."""
    p = partition_from_twin(t)
    people = t.buildings.groupby("cell")["residents"].sum()
    adj = p.adjacency
    for i in np.argsort(-people.reindex(p.cells).fillna(0).to_numpy()):
        for j in adj.indices[adj.indptr[i]:adj.indptr[i + 1]]:
            if p.grid_code[j] != p.grid_code[i] and p.community[j] == p.community[i]:
                try:
                    edits.move_cells(p, [p.cells[i]], str(p.grid_code[j]))
                except PartitionError:
                    continue
                return format(int(p.cells[i]), "x"), str(p.grid_code[i]), str(p.grid_code[j])
    raise AssertionError("no movable peopled cell")


def _area_of(t, *grids: str) -> dict:
    g = t.grids[t.grids["grid_code"].astype(str).isin(grids)]
    return mapping(box(*g.total_bounds))


def _expected_by_grid(tv, area: dict) -> dict:
    raw = summarize_area(tv, area, role=DISTRICT, by="grid")
    return to_jsonable(scoped_summary(tv, raw, DISTRICT, AccessPolicy()))["inside_scope"]["by_grid"]


@pytest.fixture
def gated(monkeypatch):
    """Builds of versions after the base wait until the test opens the gate (a slow build, made deterministic)."""
    gate = threading.Event()
    started = threading.Event()
    real = twins_mod._build_indexes

    def slow(t):
        if (t.manifest.get("partition_version") or 1) > 1:
            started.set()
            assert gate.wait(60), "the test never opened the gate"
        real(t)

    monkeypatch.setattr(twins_mod, "_build_indexes", slow)
    yield gate, started
    gate.set()


def test_readers_during_a_build_get_the_last_built_version(small_twin, tmp_path, gated):
    gate, started = gated
    t = small_twin
    url = str(tmp_path / "state.sqlite")
    key = auth.add_user(Store(url), "ed", "district")
    cell, frm, to = _peopled_move(t)
    area = _area_of(t, frm, to)
    with TestClient(create_app(database_url=url, twin=t)) as c:
        r0 = c.post("/area/summary", json=area, headers=H(key))
        assert r0.status_code == 200 and r0.json()["version"] == 1 and r0.headers["x-twin-version"] == "1"
        t0 = time.perf_counter()
        e = c.post("/edits", json={"op": "move_cells", "base_version": 1, "reason": "test", "cells": [cell],
                                   "to_grid": to}, headers=H(key))
        ack_s = time.perf_counter() - t0
        assert e.status_code == 200, e.text
        assert e.json()["version"] == 2 and e.json()["ready"] is False  # answered while the build is held
        assert started.wait(30)
        assert ack_s < 30
        # during the build: head reads answer from version 1, correctly, and say so
        for _ in range(3):
            r = c.post("/area/summary", json=area, headers=H(key))
            assert r.status_code == 200
            assert r.json()["version"] == 1 and r.headers["x-twin-version"] == "1"
            assert r.json()["inside_scope"]["by_grid"] == _expected_by_grid(t, area)
        assert c.get("/grids/" + to, headers=H(key)).headers["x-twin-version"] == "1"
        w = c.get("/versions/2/ready?wait=0.2", headers=H(key)).json()
        assert w == {**w, "version": 2, "ready": False, "answering_head_from": 1}
        gate.set()
        w = c.get("/versions/2/ready?wait=30", headers=H(key)).json()
        assert w["ready"] is True and w["answering_head_from"] == 2
        r = c.post("/area/summary", json=area, headers=H(key))
        assert r.json()["version"] == 2 and r.headers["x-twin-version"] == "2"
        new = _expected_by_grid(checkout(t, 2, store=Store(url)), area)
        assert r.json()["inside_scope"]["by_grid"] == new != _expected_by_grid(t, area)
    assert audit.verify(Store(url)).ok


def test_an_explicit_version_waits_for_its_build(small_twin, tmp_path):
    t = small_twin
    url = str(tmp_path / "state.sqlite")
    key = auth.add_user(Store(url), "ed", "district")
    cell, frm, to = _peopled_move(t)
    area = _area_of(t, frm, to)
    with TestClient(create_app(database_url=url, twin=t)) as c:
        v = c.post("/edits", json={"op": "move_cells", "base_version": 1, "reason": "test", "cells": [cell],
                                   "to_grid": to}, headers=H(key)).json()["version"]
        r = c.post(f"/area/summary?version={v}", json=area, headers=H(key))
        assert r.json()["version"] == v and r.headers["x-twin-version"] == str(v)
        assert r.json()["inside_scope"]["by_grid"] == _expected_by_grid(checkout(t, v, store=Store(url)), area)
        assert c.get("/versions/1/ready", headers=H(key)).json()["ready"] is True


_SERVER = """
import sys, threading, uvicorn
import twin.service._twins as tw
from twin.model import load
from twin.service.app import create_app
if sys.argv[4] == "hang-build":  # the builder stops inside the build of any version after the base
    real = tw._build_indexes
    def hang(t):
        if (t.manifest.get("partition_version") or 1) > 1:
            open(sys.argv[3], "w").write("building")
            threading.Event().wait()
        real(t)
    tw._build_indexes = hang
uvicorn.run(create_app(database_url=sys.argv[2], twin=load(sys.argv[5])), host="127.0.0.1", port=int(sys.argv[1]),
            log_level="error")
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start(port, url, flag, mode, root):
    import httpx

    p = subprocess.Popen([sys.executable, "-c", _SERVER, str(port), url, str(flag), mode, str(root)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return p
        except httpx.HTTPError:
            time.sleep(0.3)
        if p.poll() is not None:
            raise AssertionError(p.stderr.read().decode())
    p.kill()
    raise AssertionError("server did not start")


def _kill(p):
    p.send_signal(signal.SIGKILL)
    p.wait(30)
    p.stderr.close()


def test_a_killed_build_leaves_the_version_committed_and_it_is_built_on_restart(small_twin, tmp_path):
    import httpx

    t = small_twin
    url = str(tmp_path / "state.sqlite")
    key = auth.add_user(Store(url), "ed", "district")
    cell, frm, to = _peopled_move(t)
    area = _area_of(t, frm, to)
    port, flag = _free_port(), tmp_path / "building"
    base = f"http://127.0.0.1:{port}"
    srv = _start(port, url, flag, "hang-build", t.root)
    try:
        e = httpx.post(f"{base}/edits", json={"op": "move_cells", "base_version": 1, "reason": "killed build",
                                              "cells": [cell], "to_grid": to}, headers=H(key), timeout=60)
        assert e.status_code == 200 and e.json()["version"] == 2
        deadline = time.monotonic() + 60
        while not flag.exists():
            assert time.monotonic() < deadline, "the build never started"
            time.sleep(0.1)
        r = httpx.post(f"{base}/area/summary", json=area, headers=H(key), timeout=60)
        assert r.headers["x-twin-version"] == "1"  # the build hangs: readers stay on version 1
    finally:
        _kill(srv)
    assert [v.version for v in list_versions(Store(url))] == [1, 2]  # durable before the build
    srv = _start(port, url, flag, "normal", t.root)
    try:
        w = httpx.get(f"{base}/versions/2/ready", headers=H(key), timeout=60).json()
        assert w["ready"] is True  # built at start-up, before the first request
        r = httpx.post(f"{base}/area/summary", json=area, headers=H(key), timeout=60)
        assert r.headers["x-twin-version"] == "2" and r.json()["version"] == 2
        assert r.json()["inside_scope"]["by_grid"] == _expected_by_grid(checkout(t, 2, store=Store(url)), area)
    finally:
        _kill(srv)
    assert audit.verify(Store(url)).ok


def test_edits_faster_than_builds_build_only_the_newest_version(small_twin, tmp_path, gated):
    gate, started = gated
    t = small_twin
    url = str(tmp_path / "state.sqlite")
    key = auth.add_user(Store(url), "ed", "district")
    cell, frm, to = _peopled_move(t)
    app = create_app(database_url=url, twin=t)
    with TestClient(app) as c:
        head = 1
        for dest in (to, frm, to):  # versions 2, 3, 4; the build of 2 is held at the gate
            e = c.post("/edits", json={"op": "move_cells", "base_version": head, "reason": "burst", "cells": [cell],
                                       "to_grid": dest}, headers=H(key))
            assert e.status_code == 200, e.text
            head = e.json()["version"]
            assert started.wait(30)
        assert head == 4
        gate.set()
        w = c.get("/versions/4/ready?wait=30", headers=H(key))
        assert w.status_code == 200 and w.json()["ready"] is True, w.text
        built = app.state.svc.twins.build_seconds
        assert 2 in built and 4 in built and 3 not in built  # 3 was superseded by 4 while 2 was building
        r = c.post("/area/summary", json=_area_of(t, frm, to), headers=H(key))
        assert r.headers["x-twin-version"] == "4"
        assert c.get("/versions/3/ready?wait=30", headers=H(key)).json()["ready"] is True  # on demand, still
