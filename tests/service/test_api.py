"""The HTTP service: keys, scopes, problem+json errors, size limits, audit, edits, crash safety."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
import warnings

import numpy as np
import pytest
from api_helpers import H, _problem
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import twin
from twin.access import audit, auth
from twin.access.policy import MAX_PAGE_SIZE
from twin.service.app import create_app
from twin.store.sql import Store

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # starlette warns that its TestClient will move to httpx2
    from fastapi.testclient import TestClient

AREA = {"type": "Polygon", "coordinates": [[[113.105, 23.005], [113.115, 23.005], [113.115, 23.012],
                                            [113.105, 23.012], [113.105, 23.005]]]}


@pytest.fixture(scope="module")
def t():
    return twin.load()


@pytest.fixture(scope="module")
def env(t, tmp_path_factory):
    d = tmp_path_factory.mktemp("svc")
    url = str(d / "state.sqlite")
    st_ = Store(url)
    g0 = t.grids.iloc[0]
    keys = {
        "district": auth.add_user(st_, "admin", "district"),
        "community": auth.add_user(st_, "lan", "community", [str(g0["community_code"])]),
        "worker": auth.add_user(st_, "wk", "grid_worker", [str(g0["grid_code"])]),
        "analyst": auth.add_user(st_, "ana", "analyst"),
    }
    with TestClient(create_app(database_url=url, twin=t), raise_server_exceptions=False) as c:
        yield c, keys, st_, g0


def test_health_is_open_everything_else_needs_a_key(env):
    c, keys, _, _ = env
    assert c.get("/health").json()["status"] == "ok"
    for path in ("/me", "/hierarchy/towns", "/grids/440604010001001", "/versions"):
        r = c.get(path)
        _problem(r, 401)
        assert r.headers["www-authenticate"].startswith("Bearer")
    _problem(c.get("/me", headers=H("tw_000000000000_" + "x" * 40)), 401)
    assert c.get("/me", headers={"X-API-Key": keys["analyst"]}).json()["role"] == "analyst"
    assert "/area/summary" in c.get("/openapi.json").json()["paths"]


def test_hierarchy_geojson(env, t):
    c, keys, _, g0 = env
    r = c.get("/hierarchy/towns", headers=H(keys["community"]))
    assert r.headers["content-type"].startswith("application/geo+json")
    fc = r.json()
    assert fc["type"] == "FeatureCollection" and len(fc["features"]) == len(t.towns)
    grids = c.get("/hierarchy/grids", headers=H(keys["community"])).json()["features"]
    assert len(grids) == len(t.grids)
    mine = {f["id"] for f in grids if f["properties"]["in_scope"]}
    assert mine == set(t.grids.loc[t.grids["community_code"] == g0["community_code"], "grid_code"])
    sub = c.get(f"/hierarchy/grids?community={g0['community_code']}", headers=H(keys["analyst"])).json()
    assert {f["id"] for f in sub["features"]} == mine
    assert not any(f["properties"]["in_scope"] for f in sub["features"])  # analysts see no records
    _problem(c.get("/hierarchy/streets", headers=H(keys["district"])), 422)
    _problem(c.get("/hierarchy/grids?version=abc", headers=H(keys["district"])), 422)
    _problem(c.get("/hierarchy/grids?version=999", headers=H(keys["district"])), 404)


def test_dossier_scoped(env, t):
    c, keys, _, g0 = env
    own = c.get(f"/grids/{g0['grid_code']}", headers=H(keys["worker"])).json()
    assert own["in_scope"] and own["workers"] and own["counts"]["residents"] > 0
    other = str(t.grids["grid_code"].iloc[-1])
    d = c.get(f"/grids/{other}", headers=H(keys["worker"])).json()
    assert not d["in_scope"] and d["workers"] is None
    assert all(v is None or v == 0 or v >= 5 for v in d["counts"].values())
    _problem(c.get("/grids/123", headers=H(keys["worker"])), 404)


def test_area_summary_scoped(env):
    c, keys, _, _ = env
    full = c.post("/area/summary", json=AREA, headers=H(keys["district"])).json()
    assert full["outside_scope"] is None and full["area_km2"] > 0
    com = c.post("/area/summary", json=AREA, headers=H(keys["community"])).json()
    assert com["outside_scope"] is not None
    by = full["inside_scope"]["by_grid"]
    assert com["inside_scope"]["counts"]["residents"] == sum(by[g]["residents"] for g in com["inside_scope"]["grids"])
    # outside the scope: whole built grids (> half covered), each rounded to a multiple of k (docs/privacy.md)
    out = com["outside_scope"]["counts"]["residents"]
    assert out is None or out % 5 == 0
    if out is not None:
        assert com["totals"]["residents"] == com["inside_scope"]["counts"]["residents"] + out
    ana = c.post("/area/summary?include_cells=true", json=AREA, headers=H(keys["analyst"])).json()
    assert ana["inside_scope"]["grids"] == [] and ana["cells"] == []
    assert all(v is None or v == 0 or v >= 5 for v in ana["outside_scope"]["counts"].values())


def test_records_paged_and_scoped(env, t):
    c, keys, _, g0 = env
    r0 = c.post("/area/records?kind=persons&page=0&page_size=3", json=AREA, headers=H(keys["community"])).json()
    r1 = c.post("/area/records?kind=persons&page=1&page_size=3", json=AREA, headers=H(keys["community"])).json()
    assert r0["total"] == r1["total"] > 6 and r0["pages"] == -(-r0["total"] // 3)
    ids0 = {r["person_id"] for r in r0["records"]}
    ids1 = {r["person_id"] for r in r1["records"]}
    assert len(ids0) == len(ids1) == 3 and not ids0 & ids1
    grids = set(t.buildings.set_index("building_id").loc[[r["building_id"] for r in r0["records"]],
                                                        "grid_code"].astype(str))
    assert grids <= set(t.grids.loc[t.grids["community_code"] == g0["community_code"], "grid_code"])
    _problem(c.post("/area/records?kind=persons", json=AREA, headers=H(keys["analyst"])), 403)
    _problem(c.post(f"/area/records?page_size={MAX_PAGE_SIZE + 1}", json=AREA, headers=H(keys["district"])), 422)
    _problem(c.post("/area/records?kind=cats", json=AREA, headers=H(keys["district"])), 422)
    g = c.get(f"/grids/{g0['grid_code']}/records?kind=businesses&page_size=5", headers=H(keys["worker"])).json()
    assert g["total"] > 0 and len(g["records"]) == min(5, g["total"])
    _problem(c.get(f"/grids/{t.grids['grid_code'].iloc[-1]}/records", headers=H(keys["worker"])), 403)


def test_bad_requests_get_4xx_problems(env):
    c, keys, _, _ = env
    h = {**H(keys["district"]), "content-type": "application/json"}
    _problem(c.post("/area/summary", content=b"{not json", headers=h), 400)
    _problem(c.post("/area/summary", headers=h), 422)  # no body
    _problem(c.post("/area/summary", json={"type": "Point", "coordinates": [113.1, 23.0]}, headers=h), 422)
    _problem(c.post("/area/summary", json={"type": "Polygon", "coordinates": "x"}, headers=h), 422)
    _problem(c.post("/area/summary", json=[1, 2, 3], headers=h), 422)
    _problem(c.post("/area/summary", content=b"[" * 100_000, headers=h), 400)
    _problem(c.post("/area/summary", content=b" " * (3 * 1024 * 1024), headers=h), 413)

    def chunks():  # no Content-Length: the limit is enforced while reading
        for _ in range(40):
            yield b" " * 100_000

    _problem(c.post("/area/summary", content=chunks(), headers=h), 413)
    _problem(c.get("/nowhere", headers=h), 404)
    _problem(c.delete("/area/summary", headers=h), 405)


json_values = st.recursive(st.none() | st.booleans() | st.floats(allow_nan=False) | st.integers() | st.text(max_size=5),
                           lambda kids: st.lists(kids, max_size=4) | st.dictionaries(
                               st.sampled_from(["type", "coordinates", "features", "geometry", "x"]), kids,
                               max_size=4), max_leaves=20)


@given(body=json_values)
@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
def test_fuzzed_bodies_never_5xx(env, body):
    c, keys, _, _ = env
    r = c.post("/area/summary", content=json.dumps(body).encode(),
               headers={**H(keys["district"]), "content-type": "application/json"})
    assert r.status_code < 500, r.text


def test_every_call_is_audited_and_the_chain_holds(env):
    c, keys, store, _ = env
    before = audit.head_seq(store)
    c.post("/area/summary", json=AREA, headers=H(keys["community"]))
    c.get("/grids/123", headers=H(keys["community"]))
    c.post("/area/records", json=AREA, headers=H(keys["analyst"]))
    c.get("/me", headers=H("tw_000000000000_" + "y" * 40))
    es = list(audit.entries(store, since_seq=before))
    assert [(e.user_name, e.endpoint, e.status, e.outcome) for e in es] == [
        ("lan", "/area/summary", 200, "ok"), ("lan", "/grids/{grid_code}", 404, "not_found"),
        ("ana", "/area/records", 403, "denied"), ("-", "/me", 401, "unauthenticated")]
    e = es[0]
    assert e.area_hash and e.area_km2 > 0.5 and e.counts["residents"] > 0 and e.version == "1"
    assert audit.verify(store).ok


def _movable_cell(t, community):
    from twin.errors import PartitionError
    from twin.partition import edits
    from twin.partition.model import partition_from_twin

    p = partition_from_twin(t)
    adj = p.adjacency
    for i in np.flatnonzero(p.community == community):
        for j in adj.indices[adj.indptr[i]:adj.indptr[i + 1]]:
            if p.grid_code[j] != p.grid_code[i] and p.community[j] == community:
                try:
                    edits.move_cells(p, [p.cells[i]], str(p.grid_code[j]))
                except PartitionError:
                    continue
                return format(int(p.cells[i]), "x"), str(p.grid_code[j])
    raise AssertionError("no movable cell")


def test_edits_need_rights_and_detect_conflicts(env, t):
    c, keys, _, g0 = env
    cell, to = _movable_cell(t, str(g0["community_code"]))
    head = c.get("/versions", headers=H(keys["community"])).json()["head"]
    req = {"op": "move_cells", "base_version": head, "reason": "follow the new road", "cells": [cell], "to_grid": to}
    _problem(c.post("/edits", json=req, headers=H(keys["worker"])), 403)
    _problem(c.post("/edits", json=req, headers=H(keys["analyst"])), 403)
    r = c.post("/edits", json=req, headers=H(keys["community"]))
    assert r.status_code == 200, r.text
    new = r.json()["version"]
    assert new == head + 1 and r.json()["cells_moved"] == 1
    _problem(c.post("/edits", json=req, headers=H(keys["community"])), 409)  # stale base version
    _problem(c.post("/edits", json={**req, "op": "teleport"}, headers=H(keys["community"])), 422)
    _problem(c.post("/edits", json={**req, "base_version": new, "cells": ["zz"]}, headers=H(keys["community"])),
             422)
    other = t.grids.loc[t.grids["town_code"] != g0["town_code"]].iloc[0]
    cell2, to2 = _movable_cell(t, str(other["community_code"]))
    _problem(c.post("/edits", json={**req, "base_version": new, "cells": [cell2], "to_grid": to2},
                    headers=H(keys["community"])), 403)
    d = c.get(f"/versions/{head}/diff/{new}", headers=H(keys["district"])).json()
    assert d["cells_moved"] == 1
    dz = c.get(f"/grids/{to}?version={new}", headers=H(keys["district"])).json()
    d0 = c.get(f"/grids/{to}?version={head}", headers=H(keys["district"])).json()
    assert dz["grid"]["n_cells"] == d0["grid"]["n_cells"] + 1


def test_split_and_merge_edits_go_through_the_one_dispatch(env, t):
    """split_grid then merge_grids over HTTP: the response names the grids added/removed as apply_edit does."""
    from twin.partition.edit_ops import EditOp, apply_edit
    from twin.partition.model import partition_from_twin

    c, keys, _, g0 = env
    code = str(g0["grid_code"])
    head = c.get("/versions", headers=H(keys["community"])).json()["head"]
    base = c.get(f"/exports/grids?format=geojson&version={head}", headers=H(keys["district"])).json()
    assert code in {f["properties"]["grid_code"] for f in base["features"]}
    r = c.post("/edits", json={"op": "split_grid", "base_version": head, "reason": "two streets",
                               "grid_code": code, "k": 2}, headers=H(keys["community"]))
    assert r.status_code == 200, r.text
    split = r.json()
    assert split["parent"] == head and split["op"] == "split_grid" and code in split["grids_touched"]
    assert len(split["grids_added"]) + len(set(split["grids_touched"]) - set(split["grids_removed"])) >= 2
    if head == 1:  # the same op on the same partition in Python gives the same answer
        want = apply_edit(partition_from_twin(t), EditOp("split_grid", grid_code=code, k=2))
        assert (split["cells_moved"], split["grids_added"]) == (want.cells_moved, want.grids_added)
    parts = sorted({code, *split["grids_added"]})
    r = c.post("/edits", json={"op": "merge_grids", "base_version": split["version"], "reason": "undo the split",
                               "grid_codes": parts, "into": code}, headers=H(keys["community"]))
    assert r.status_code == 200, r.text
    merged = r.json()
    assert merged["parent"] == split["version"] and sorted(merged["grids_removed"]) == sorted(split["grids_added"])
    _problem(c.post("/edits", json={"op": "move_area", "base_version": merged["version"], "reason": "x",
                                    "to_grid": code}, headers=H(keys["community"])), 422)  # no area


# --- crash safety: kill the server mid-edit ----------------------------------------------------------------

def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


_SERVER = """
import sys, time, pathlib, uvicorn
import twin.partition.versions as v
from twin.service.app import create_app
flag = pathlib.Path(sys.argv[3])
if sys.argv[4] == "hang":  # stop inside the commit transaction, after the new version row is written
    def hang():
        flag.write_text("in commit")
        time.sleep(600)
    v._BEFORE_HEAD_UPDATE = hang
uvicorn.run(create_app(database_url=sys.argv[2], warm=False), host="127.0.0.1", port=int(sys.argv[1]), log_level="error")
"""


def _start(url, port, flag, mode):
    p = subprocess.Popen([sys.executable, "-c", _SERVER, str(port), url, str(flag), mode],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    import httpx

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


def test_kill_server_mid_edit_loses_nothing_committed(tmp_path, t):
    import threading

    import httpx

    url = str(tmp_path / "state.sqlite")
    store = Store(url)
    key = auth.add_user(store, "lan", "district")
    flag = tmp_path / "flag"
    port = _free_port()
    cell, to = _movable_cell(t, str(t.grids["community_code"].iloc[0]))
    req = {"op": "move_cells", "base_version": 1, "reason": "committed edit", "cells": [cell], "to_grid": to}
    # 1. a committed edit survives a SIGKILL right after the 200
    srv = _start(url, port, flag, "normal")
    try:
        r = httpx.post(f"http://127.0.0.1:{port}/edits", json=req, headers=H(key), timeout=120)
        assert r.status_code == 200, r.text
    finally:
        _stop(srv, signal.SIGKILL)
    # 2. kill while the next edit is inside its commit transaction
    srv = _start(url, port, flag, "hang")
    back = {"op": "move_cells", "base_version": 2, "reason": "half-done edit", "cells": [cell],
            "to_grid": str(t.cells.set_index("cell").loc[int(cell, 16), "grid_code"])}
    threading.Thread(target=lambda: _quiet_post(port, back, key), daemon=True).start()
    try:
        deadline = time.monotonic() + 120
        while not flag.exists():
            assert time.monotonic() < deadline, "edit never reached the commit"
            time.sleep(0.1)
    finally:
        _stop(srv, signal.SIGKILL)
    # 3. restart: version 2 is the head, the half-done version 3 is not visible, the audit chain holds
    srv = _start(url, port, flag.with_suffix(".unused"), "normal")
    try:
        vs = httpx.get(f"http://127.0.0.1:{port}/versions", headers=H(key), timeout=60).json()
        assert vs["head"] == 2 and [v["version"] for v in vs["versions"]] == [1, 2]
        assert vs["versions"][1]["reason"] == "committed edit"
        d = httpx.get(f"http://127.0.0.1:{port}/grids/{to}", headers=H(key), timeout=60).json()
        d1 = httpx.get(f"http://127.0.0.1:{port}/grids/{to}?version=1", headers=H(key), timeout=60).json()
        assert d["grid"]["n_cells"] == d1["grid"]["n_cells"] + 1
    finally:
        _stop(srv, signal.SIGTERM)
    assert audit.verify(Store(url)).ok


def _stop(p, sig):
    p.send_signal(sig)
    try:
        p.wait(timeout=30)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
    p.stderr.close()


def _quiet_post(port, body, key):
    import httpx

    try:
        httpx.post(f"http://127.0.0.1:{port}/edits", json=body, headers=H(key), timeout=60)
    except httpx.HTTPError:
        pass


def test_overlays_suppress_outside_scope(env):
    c, keys, _, _ = env
    ana = c.get("/overlays/disabled?res=9", headers=H(keys["analyst"])).json()
    dis = c.get("/overlays/disabled?res=9", headers=H(keys["district"])).json()
    assert ana["cells"] and all(x["count"] is None or x["count"] >= 5 for x in ana["cells"])
    assert any(x["suppressed"] for x in ana["cells"])
    assert not any(x["suppressed"] for x in dis["cells"])
    exact = {x["cell"]: x["count"] for x in dis["cells"]}
    for x in ana["cells"]:  # published: the exact count rounded to a multiple of k = 5; suppressed: 1 … 4
        if x["suppressed"]:
            assert x["count"] is None and 1 <= exact[x["cell"]] <= 4
        else:
            assert x["count"] % 5 == 0 and abs(x["count"] - exact[x["cell"]]) <= 2
    _problem(c.get("/overlays/cats", headers=H(keys["district"])), 422)
    _problem(c.get("/overlays/disabled?res=12", headers=H(keys["district"])), 422)


def test_exports(env, t):
    c, keys, _, _ = env
    r = c.get("/exports/grids?format=geojson&version=base", headers=H(keys["analyst"]))
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/geo+json")
    fc = r.json()
    assert len(fc["features"]) == len(t.grids)
    assert {"grid_code", "community_code", "town_code"} <= set(fc["features"][0]["properties"])
    r = c.get("/exports/grids?format=parquet&version=base", headers=H(keys["analyst"]))
    assert r.status_code == 200 and r.content[:4] == b"PAR1"
    _problem(c.get("/exports/grids?format=shp", headers=H(keys["analyst"])), 422)
