"""GET /events (Server-Sent Events) over a real uvicorn server on loopback: scoping by role, resume with
Last-Event-ID, live delivery to 200 concurrent subscribers in commit order."""

from __future__ import annotations

import importlib.util
import socket
import threading
import time
from pathlib import Path

import httpx
import pytest
import uvicorn
from api_helpers import H

from twin.access import auth
from twin.encoding import loads
from twin.service.app import create_app
from twin.store.feed import head_seq, publish
from twin.store.sql import Store

SECRET = "Mr Wu, 13900000000"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def server(small_twin, tmp_path_factory):
    d = tmp_path_factory.mktemp("events")
    url = str(d / "state.sqlite")
    st = Store(url)
    g = small_twin.grids.astype(str)
    ga = g.iloc[0]
    gb = g[g["community_code"] != ga["community_code"]].iloc[0]
    keys = {
        "district": auth.add_user(st, "admin", "district"),
        "comm_a": auth.add_user(st, "lan", "community", [ga["community_code"]]),
        "comm_b": auth.add_user(st, "bo", "community", [gb["community_code"]]),
        "worker_a": auth.add_user(st, "wk", "grid_worker", [ga["grid_code"]]),
        "analyst": auth.add_user(st, "ana", "analyst"),
    }
    app = create_app(database_url=url, twin=small_twin, warm=False)
    port = _free_port()
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                        timeout_graceful_shutdown=2))
    th = threading.Thread(target=srv.run, daemon=True)
    th.start()
    for _ in range(200):
        if srv.started:
            break
        time.sleep(0.05)
    assert srv.started
    yield {"base": f"http://127.0.0.1:{port}", "keys": keys, "store": st, "ga": ga, "gb": gb, "t": small_twin}
    srv.should_exit = True
    th.join(timeout=10)


def _events(base: str, key: str, *, until_kind: str = "version.ready", headers: dict | None = None,
            params: dict | None = None, timeout: float = 20.0) -> list[dict]:
    """Read the stream until an event of ``until_kind``; each event as {id, event, data}."""
    out: list[dict] = []
    cur: dict = {}
    deadline = time.monotonic() + timeout
    with httpx.stream("GET", base + "/events", headers={**H(key), **(headers or {})}, params=params,
                      timeout=timeout) as r:
        assert r.status_code == 200, r.read()
        assert r.headers["content-type"].startswith("text/event-stream")
        for line in r.iter_lines():
            assert time.monotonic() < deadline, "stream did not reach the marker in time"
            if not line:
                if "event" in cur:
                    out.append(cur)
                    if cur["event"] == until_kind:
                        return out
                cur = {}
            elif line.startswith(":"):
                continue
            else:
                field, _, value = line.partition(":")
                value = value[1:] if value.startswith(" ") else value
                cur[field] = loads(value) if field == "data" else value
    raise AssertionError("stream ended before the marker")


def _point(t, grid_code):
    b = t.buildings[t.buildings["grid_code"].astype(str) == grid_code].iloc[0]
    return float(b["lng"]), float(b["lat"])


def _report(env, key, grid_code, at):
    lng, lat = _point(env["t"], grid_code)
    r = httpx.post(env["base"] + "/incidents", headers=H(env["keys"][key]), timeout=30, json={
        "category": "env_garbage", "lng": lng, "lat": lat, "reported_at": at, "reporter": SECRET,
        "description": SECRET})
    assert r.status_code == 201, r.text
    return r.json()["incident_id"]


def test_each_role_receives_only_its_scope(server):
    env, ga, gb = server, server["ga"], server["gb"]
    start = head_seq(env["store"])
    ia = _report(env, "comm_a", ga["grid_code"], "2026-11-03T09:00")
    ib = _report(env, "comm_b", gb["grid_code"], "2026-11-03T09:05")
    w = str(env["t"].workers.loc[env["t"].workers["grid_code"].astype(str) == ga["grid_code"], "worker_id"].iloc[0])
    r = httpx.post(env["base"] + f"/workers/{w}/status", json={"status": "online"}, headers=H(env["keys"]["worker_a"]))
    assert r.status_code == 200, r.text
    with env["store"].transaction() as tx:  # another helper's kinds: a record change known by its grid only
        publish(tx, "record.changed", {"table": "persons", "id": 1}, grid_code=gb["grid_code"])
    with env["store"].transaction() as tx:
        publish(tx, "incident.created", {"id": 99_999})  # not located: district scopes only
    with env["store"].transaction() as tx:
        publish(tx, "version.ready", {"version": 2})  # not tied to a unit: everyone (the marker)

    def got(role):
        return [(e["event"], e["data"]["payload"].get("id") or e["data"]["payload"].get("worker_id"),
                 e["data"].get("community_code"), e["data"].get("grid_code"))
                for e in _events(env["base"], env["keys"][role], params={"since": start})]

    everything = got("district")
    kinds = [k for k, *_ in everything]
    assert kinds.count("incident.created") == 3 and kinds.count("incident.updated") == 2  # report + dispatch
    assert {"worker.status", "record.changed", "version.ready"} <= set(kinds)
    a = got("comm_a")
    assert {x[1] for x in a if x[0].startswith("incident.")} == {ia}
    assert all(x[2] in (ga["community_code"], None) for x in a) and ("worker.status", w, ga["community_code"],
                                                                     ga["grid_code"]) in a
    assert "record.changed" not in {x[0] for x in a}
    b = got("comm_b")
    assert {x[1] for x in b if x[0].startswith("incident.")} == {ib}
    assert "worker.status" not in {x[0] for x in b} and ("record.changed", 1, None, gb["grid_code"]) in b
    wk = got("worker_a")
    assert {x[1] for x in wk if x[0].startswith("incident.")} == {ia}
    ana = got("analyst")
    assert {x[1] for x in ana if x[0].startswith("incident.")} == {ia, ib, 99_999}
    assert not {"worker.status", "record.changed"} & {x[0] for x in ana}
    with httpx.stream("GET", env["base"] + "/events", params={"since": start}, headers=H(env["keys"]["district"]),
                      timeout=10) as r:  # no personal fields in any event
        text = ""
        for chunk in r.iter_text():
            text += chunk
            if "version.ready" in text:
                break
    assert SECRET not in text and "reporter" not in text


def test_resume_with_last_event_id_and_live_events(server):
    env = server
    key = env["keys"]["district"]
    with env["store"].transaction() as tx:
        s1 = publish(tx, "record.changed", {"n": 1}, grid_code=env["ga"]["grid_code"])
    with env["store"].transaction() as tx:
        s2 = publish(tx, "record.changed", {"n": 2}, grid_code=env["ga"]["grid_code"])
    with env["store"].transaction() as tx:
        s3 = publish(tx, "version.ready", {"version": 9})
    resumed = _events(env["base"], key, headers={"Last-Event-ID": str(s1)})
    assert [int(e["id"]) for e in resumed] == [s2, s3]
    assert [e["data"]["seq"] for e in resumed] == [s2, s3]
    bad = httpx.get(env["base"] + "/events", headers={**H(key), "Last-Event-ID": "abc"})
    assert bad.status_code == 422 and "Last-Event-ID" in bad.json()["detail"]
    assert httpx.get(env["base"] + "/events").status_code == 401
    # live: connected first (no id: starts at the newest event), then a commit arrives; kinds filter applies
    received: list[dict] = []

    def listen():
        received.extend(_events(env["base"], key, params={"kind": ["version.ready"], "heartbeat_s": 0.5}))

    th = threading.Thread(target=listen)
    th.start()
    time.sleep(1.0)
    with env["store"].transaction() as tx:
        publish(tx, "record.changed", {"n": 3})
    with env["store"].transaction() as tx:
        s5 = publish(tx, "version.ready", {"version": 10})
    th.join(timeout=20)
    assert [int(e["id"]) for e in received] == [s5]


def _measure_sse():
    """benchmarks/sse.py's measure_sse (the figure benchmarks/load.py reports), loaded from its file."""
    path = Path(__file__).resolve().parents[2] / "benchmarks" / "sse.py"
    spec = importlib.util.spec_from_file_location("bench_sse", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.measure_sse


def test_200_subscribers_receive_each_commit_in_order(server):
    """200 streams; 5 worker-status writes through the API, each committed, published and fanned out: every
    subscriber gets every event, in commit order (the latency is printed, not asserted)."""
    res = _measure_sse()(server["base"], 200, 5, api_key=server["keys"]["district"], timeout_s=60)
    assert res["delivered"] == res["expected"] == 1000 and res["in_order"], res
    print(f"\nSSE write -> 200 subscribers: p50 {res['sse_p50_ms']} ms, p99 {res['sse_p99_ms']} ms "
          f"(after the write's response: p99 {res['sse_p99_after_ack_ms']} ms)")
