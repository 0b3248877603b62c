"""Incident, worker and inspection endpoints: closed loop over HTTP, scope, errors, duplicates, stats, audit."""

from __future__ import annotations

import csv
import io
import math
import warnings

import pytest
from api_helpers import H, _problem

import twin
from twin.access import audit, auth
from twin.incidents.stats import incident_stats
from twin.incidents.store import IncidentStore
from twin.service.app import create_app
from twin.store.sql import Store

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # starlette warns that its TestClient will move to httpx2
    from fastapi.testclient import TestClient

SECRET = "Mrs Chen, 13800000000, flat 1203"


@pytest.fixture(scope="module")
def t():
    return twin.load()  # read-only: the service writes only to the temp store below


@pytest.fixture(scope="module")
def env(t, tmp_path_factory):
    d = tmp_path_factory.mktemp("svc_incidents")
    url = str(d / "state.sqlite")
    st = Store(url)
    g = t.grids
    ga = g.iloc[0]
    gb = g[g["community_code"] != ga["community_code"]].iloc[0]
    keys = {
        "district": auth.add_user(st, "admin", "district"),
        "comm_a": auth.add_user(st, "lan", "community", [str(ga["community_code"])]),
        "comm_b": auth.add_user(st, "bo", "community", [str(gb["community_code"])]),
        "worker_a": auth.add_user(st, "wk", "grid_worker", [str(ga["grid_code"])]),
        "analyst": auth.add_user(st, "ana", "analyst"),
    }
    app = create_app(database_url=url, twin=t, warm=False)
    with TestClient(app, raise_server_exceptions=False) as c:
        yield {"c": c, "keys": keys, "store": st, "ga": ga, "gb": gb, "url": url}


def _point_in(t, grid_code, k=0):
    b = t.buildings[t.buildings["grid_code"].astype(str) == str(grid_code)].iloc[k]
    return float(b["lng"]), float(b["lat"])


def _online_worker(env, t, grid_code, key):
    w = str(t.workers.loc[t.workers["grid_code"].astype(str) == str(grid_code), "worker_id"].iloc[0])
    r = env["c"].post(f"/workers/{w}/status", json={"status": "online"}, headers=H(key))
    assert r.status_code == 200, r.text
    return w


def _report(env, key, lng, lat, at, *, category="dispute_neighbour", **kw):
    body = {"category": category, "lng": lng, "lat": lat, "reported_at": at, "channel": "hotline_12345",
            "description": "noise at night", "reporter": SECRET, **kw}
    return env["c"].post("/incidents", json=body, headers=H(env["keys"][key]))


def _act(env, key, iid, action, **kw):
    return env["c"].post(f"/incidents/{iid}/actions", json={"action": action, **kw}, headers=H(env["keys"][key]))


def test_report_dispatch_resolve_follow_up_round_trip(env, t):
    c, keys, ga = env["c"], env["keys"], env["ga"]
    w = _online_worker(env, t, ga["grid_code"], keys["worker_a"])
    lng, lat = _point_in(t, ga["grid_code"])
    r = env["c"].post("/incidents", headers=H(keys["worker_a"]), json={
        "category": "dispute_neighbour", "point": {"type": "Point", "coordinates": [lng, lat]},
        "reported_at": "2026-11-03T09:00", "channel": "grid_worker", "description": "blocked corridor",
        "reporter": SECRET})
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["linked"] is False
    inc = body["incident"]
    iid = inc["id"]
    assert inc["state"] == "dispatched" and inc["grid_code"] == ga["grid_code"] and inc["level"] == "grid"
    assert inc["assignee"] in set(t.workers.loc[t.workers["grid_code"] == ga["grid_code"], "worker_id"])
    assert w == inc["assignee"] or len(t.workers[t.workers["grid_code"] == ga["grid_code"]]) > 1
    assert inc["deadline"] and inc["allowed_actions"] == ["reassign", "escalate", "start"]
    r = _act(env, "worker_a", iid, "accept", at="2026-11-03T09:30", expected_version=inc["version"])
    assert r.status_code == 200 and r.json()["state"] == "in_progress", r.text
    r = _act(env, "worker_a", iid, "resolve", at="2026-11-03T12:00")
    assert r.json()["state"] == "resolved"
    r = _act(env, "comm_a", iid, "follow_up", satisfaction=5, at="2026-11-04T10:00")
    done = r.json()
    assert done["state"] == "followed_up" and done["satisfaction"] == 5 and done["allowed_actions"] == []
    got = c.get(f"/incidents/{iid}", headers=H(keys["comm_a"])).json()
    assert [h["action"] for h in got["history"]] == ["report", "dispatch", "start", "resolve", "follow_up"]
    assert got["history"][2]["actor"] == "wk" and got["history"][-1]["actor"] == "lan"
    assert got["reporter"] == SECRET and got["overdue"] is False
    # the same state in the store the service writes to
    stored = IncidentStore(env["store"]).get(iid)
    assert stored.state == "followed_up" and stored.version == done["version"]
    # manual dispatch of an undispatched report, then escalation with a reason
    lng2, lat2 = _point_in(t, ga["grid_code"], 1)
    r = _report(env, "comm_a", lng2, lat2, "2026-11-05T08:00", category="env_garbage", dispatch=False)
    assert r.status_code == 201 and r.json()["incident"]["state"] == "reported"
    iid2 = r.json()["incident_id"]
    assert _act(env, "comm_a", iid2, "dispatch", at="2026-11-05T08:10").json()["state"] == "dispatched"
    _problem(_act(env, "comm_a", iid2, "escalate", at="2026-11-05T08:20"), 422)  # no reason
    esc = _act(env, "comm_a", iid2, "escalate", reason="needs law enforcement", level="town", at="2026-11-05T08:30")
    assert esc.json()["level"] == "town" and esc.json()["handler_code"] == ga["town_code"]


def test_invalid_transition_and_stale_write_are_409_problems(env, t):
    ga = env["ga"]
    lng, lat = _point_in(t, ga["grid_code"], 2)
    r = _report(env, "district", lng, lat, "2026-11-06T09:00", category="order_noise")
    inc = r.json()["incident"]
    iid = inc["id"]
    body = _problem(_act(env, "district", iid, "resolve", at="2026-11-06T09:10"), 409)
    assert body["title"] == "InvalidTransition" and body["state"] == "dispatched"
    assert body["allowed_actions"] == ["reassign", "escalate", "start"] and "dispatched" in body["detail"]
    _problem(_act(env, "district", iid, "follow_up", at="2026-11-06T09:10"), 409)
    # stale version: someone else acted first
    assert _act(env, "district", iid, "accept", at="2026-11-06T09:20").status_code == 200
    stale = _problem(_act(env, "district", iid, "resolve", at="2026-11-06T09:30",
                          expected_version=inc["version"]), 409)
    assert stale["title"] == "ConflictError" and "version" in stale["detail"]
    assert _act(env, "district", iid, "resolve", at="2026-11-06T09:40").json()["state"] == "resolved"
    _problem(_act(env, "district", iid, "follow_up", at="2026-11-06T10:00"), 422)  # no satisfaction
    _problem(_act(env, "district", iid, "follow_up", satisfaction=9, at="2026-11-06T10:00"), 422)
    _problem(_act(env, "district", iid, "reopen", at="2026-11-06T10:00"), 422)  # no reason
    _problem(_act(env, "district", iid, "fly_away"), 422)
    _problem(_act(env, "district", iid, "reopen", reason="x", at="2020-01-01T00:00"), 422)  # time goes back
    _problem(_act(env, "district", iid, "reopen", reason="x", at="2099-01-01T00:00"), 422)  # future
    _problem(_act(env, "district", 10**9, "resolve"), 404)
    # bad reports: outside the district, no location, unknown category
    _problem(_report(env, "district", 120.0, 30.0, "2026-11-06T09:00"), 422)
    _problem(env["c"].post("/incidents", json={"category": "order_noise"}, headers=H(env["keys"]["district"])), 422)
    _problem(_report(env, "district", lng, lat, "2026-11-06T09:00", category="nope"), 404)


def test_scope_other_community_never_sees_the_record(env, t):
    ga, gb, c, keys = env["ga"], env["gb"], env["c"], env["keys"]
    lng, lat = _point_in(t, ga["grid_code"], 3)
    iid = _report(env, "comm_a", lng, lat, "2026-11-07T09:00", category="service_streetlight").json()["incident_id"]
    r = c.get(f"/incidents/{iid}", headers=H(keys["comm_b"]))
    body = _problem(r, 404)
    assert SECRET not in r.text and "noise at night" not in r.text and str(ga["grid_code"]) not in body["detail"]
    _problem(_act(env, "comm_b", iid, "accept", at="2026-11-07T09:10"), 404)
    listed = c.get("/incidents?page_size=1000", headers=H(keys["comm_b"])).json()
    assert iid not in {x["id"] for x in listed["incidents"]}
    assert all(x["community_code"] == gb["community_code"] for x in listed["incidents"])
    mine = c.get(f"/incidents?community_code={ga['community_code']}", headers=H(keys["comm_a"])).json()
    assert iid in {x["id"] for x in mine["incidents"]}
    # reporting into another community's area is refused; the grid worker sees its grid only
    _problem(_report(env, "comm_b", lng, lat, "2026-11-07T09:00"), 403)
    wk = c.get("/incidents", headers=H(keys["worker_a"])).json()["incidents"]
    assert wk and all(x["grid_code"] == ga["grid_code"] for x in wk)
    # filters
    per = c.get("/incidents?period=2026-11-07&state=dispatched", headers=H(keys["district"])).json()
    assert iid in {x["id"] for x in per["incidents"]}
    assert all(x["reported_at"].startswith("2026-11-07") for x in per["incidents"])
    assert c.get("/incidents?period=2026-10", headers=H(keys["district"])).json()["total"] == 0
    _problem(c.get("/incidents?state=lost", headers=H(keys["district"])), 422)
    gj = c.get("/incidents?format=geojson", headers=H(keys["comm_a"])).json()
    assert gj["type"] == "FeatureCollection" and gj["features"][0]["geometry"]["type"] == "Point"


def test_near_duplicate_comes_back_linked(env, t):
    gb = env["gb"]
    lng, lat = _point_in(t, gb["grid_code"])
    first = _report(env, "comm_b", lng, lat, "2026-11-08T20:00", category="order_noise")
    assert first.status_code == 201
    iid = first.json()["incident_id"]
    again = _report(env, "comm_b", lng + 0.0002, lat, "2026-11-08T21:00", category="order_noise")  # ≈ 20 m, 1 h
    assert again.status_code == 200, again.text
    body = again.json()
    assert body["linked"] is True and body["incident_id"] == iid and body["incident"]["linked_reports"] == 1
    far = _report(env, "comm_b", lng, lat, "2026-11-10T21:00", category="order_noise")  # 49 h later: new case
    assert far.status_code == 201 and far.json()["incident_id"] != iid
    got = env["c"].get(f"/incidents/{iid}", headers=H(env["keys"]["comm_b"])).json()
    assert len(got["linked"]) == 1 and got["linked"][0]["reporter"] == SECRET
    assert "link" in [h["action"] for h in got["history"]]


def test_stats_equal_incident_stats_on_the_same_store(env):
    c, keys, ga = env["c"], env["keys"], env["ga"]
    frame = IncidentStore(env["store"]).frame()
    assert len(frame) >= 5
    r = c.get("/incidents/stats?by=grid&period=M", headers=H(keys["district"])).json()
    want = incident_stats(frame, by="grid", period="M")
    assert len(r["rows"]) == len(want)
    for row in r["rows"]:
        exp = want.loc[(row["unit"], want.index.get_level_values("period")[0].__class__(row["period"]))]
        for col in ("n", "closed", "closure_rate", "on_time_rate", "median_handling_h", "satisfaction_rate",
                    "immediate_answer_rate", "mean_satisfaction"):
            e = float(exp[col])
            assert (row[col] is None and math.isnan(e)) or row[col] == pytest.approx(e), (col, row)
    # scoped: community A's numbers are those of its own incidents only
    mine = frame[frame["community_code"] == ga["community_code"]]
    ra = c.get("/incidents/stats?by=community", headers=H(keys["comm_a"])).json()
    assert [x["unit"] for x in ra["rows"]] == [ga["community_code"]]
    wa = incident_stats(mine, by="community").iloc[0]
    assert ra["rows"][0]["n"] == int(wa["n"]) and ra["rows"][0]["closed"] == int(wa["closed"])
    ana = c.get("/incidents/stats?by=town", headers=H(keys["analyst"])).json()
    assert sum(x["n"] for x in ana["rows"]) == len(frame)
    _problem(c.get("/incidents/stats?by=street", headers=H(keys["district"])), 422)


def test_analyst_sees_no_personal_fields_and_cannot_act(env, t):
    c, keys = env["c"], env["keys"]
    r = c.get("/incidents?page_size=1000", headers=H(keys["analyst"]))
    rows = r.json()["incidents"]
    assert rows and SECRET not in r.text
    assert all("reporter" not in x and "description" not in x and "attachments" not in x for x in rows)
    one = c.get(f"/incidents/{rows[0]['id']}", headers=H(keys["analyst"]))
    assert SECRET not in one.text and "reporter" not in one.json() and "linked" not in one.json()
    assert all("actor" not in h and "reason" not in h for h in one.json()["history"])
    lng, lat = _point_in(t, env["ga"]["grid_code"])
    _problem(_report(env, "analyst", lng, lat, "2026-11-09T09:00"), 403)
    _problem(_act(env, "analyst", rows[0]["id"], "accept"), 403)
    _problem(c.get("/inspections/plan?month=2026-11", headers=H(keys["analyst"])), 403)
    w = c.get("/workers", headers=H(keys["analyst"])).json()
    assert w["workers"] == []  # no names; counts per town, rounded to a multiple of k (docs/privacy.md)
    total = (w["summary"]["online"] or 0) + (w["summary"]["offline"] or 0)
    assert abs(total - len(t.workers)) <= 4 * 2 and total % 5 == 0  # 4 towns, each within ±2


def test_workers_inspections_categories_scoped(env, t):
    c, keys, ga, gb = env["c"], env["keys"], env["ga"], env["gb"]
    wk = c.get("/workers", headers=H(keys["worker_a"])).json()["workers"]
    assert wk and {x["grid_code"] for x in wk} == {ga["grid_code"]}
    other = str(t.workers.loc[t.workers["grid_code"] == gb["grid_code"], "worker_id"].iloc[0])
    _problem(c.post(f"/workers/{other}/status", json={"status": "online"}, headers=H(keys["worker_a"])), 404)
    mine = wk[0]
    r = c.post(f"/workers/{mine['worker_id']}/status", headers=H(keys["worker_a"]),
               json={"status": "offline", "lng": mine["lng"], "lat": mine["lat"],
                     "expected_version": mine["status_version"]})
    assert r.status_code == 200 and r.json()["status_version"] == mine["status_version"] + 1
    _problem(c.post(f"/workers/{mine['worker_id']}/status", headers=H(keys["worker_a"]),
                    json={"status": "online", "expected_version": mine["status_version"]}), 409)
    _problem(c.post(f"/workers/{mine['worker_id']}/status", headers=H(keys["worker_a"]),
                    json={"status": "away"}), 422)
    r = c.get("/inspections/plan?month=2026-11&format=csv", headers=H(keys["worker_a"]))
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(r.content.decode("utf-8-sig"))))
    biz_in_grid = t.businesses["building_id"].isin(
        t.buildings.loc[t.buildings["grid_code"] == ga["grid_code"], "building_id"])
    assert {x["grid_code"] for x in rows} <= {ga["grid_code"]}
    assert len({x["business_id"] for x in rows}) == int(biz_in_grid.sum())
    j = c.get("/inspections/plan?month=2026-11&page_size=5", headers=H(keys["worker_a"])).json()
    assert j["visits"] == len(rows) and len(j["rows"]) == min(5, len(rows))
    _problem(c.get(f"/inspections/plan?month=2026-11&grid_code={gb['grid_code']}", headers=H(keys["worker_a"])), 404)
    _problem(c.get("/inspections/plan?month=11-2026", headers=H(keys["worker_a"])), 422)
    cats = c.get("/incident-categories", headers=H(keys["analyst"])).json()["categories"]
    assert len(cats) == len(twin.load_catalogue()) and {"code", "level", "time_limit_h"} <= set(cats[0])


def test_every_call_is_audited_and_the_chain_verifies(env):
    c, keys = env["c"], env["keys"]
    before = audit.head_seq(env["store"])
    c.get("/incidents", headers=H(keys["comm_a"]))
    _problem(c.get("/incidents/999999999", headers=H(keys["comm_b"])), 404)
    _problem(c.get("/incidents"), 401)
    new = list(audit.entries(env["store"], since_seq=before))
    assert [(e.user_name, e.endpoint, e.outcome) for e in new] == [
        ("lan", "/incidents", "ok"), ("bo", "/incidents/{incident_id}", "not_found"),
        ("-", "/incidents", "unauthenticated")]
    allx = list(audit.entries(env["store"]))
    eps = {e.endpoint for e in allx}
    assert {"/incidents", "/incidents/{incident_id}/actions", "/incidents/stats", "/workers/{worker_id}/status",
            "/inspections/plan"} <= eps
    conflicts = [e for e in allx if e.endpoint == "/incidents/{incident_id}/actions" and e.status == 409]
    assert conflicts and all(e.outcome == "conflict" for e in conflicts)
    rep = audit.verify(env["store"])
    assert rep.ok, rep


def test_report_point_forms_and_bad_points(env, t):
    """A GeoJSON Feature with a Point is accepted like a Point; other shapes, empty or non-finite points are 422."""
    c, keys, ga = env["c"], env["keys"], env["ga"]
    lng, lat = _point_in(t, ga["grid_code"], 4)
    feature = {"type": "Feature", "properties": {}, "geometry": {"type": "Point", "coordinates": [lng, lat]}}
    r = c.post("/incidents", headers=H(keys["district"]), json={
        "category": "service_streetlight", "point": feature, "reported_at": "2026-11-09T09:00", "dispatch": False})
    assert r.status_code == 201, r.text
    assert (r.json()["incident"]["lng"], r.json()["incident"]["lat"]) == (lng, lat)
    for point in ({"type": "LineString", "coordinates": [[lng, lat], [lng, lat + 0.001]]},
                  {"type": "Point", "coordinates": []}, {"type": "Point", "coordinates": [lng]},
                  {"type": "Point", "coordinates": ["a", "b"]}, {"type": "Feature", "geometry": None},
                  {"type": "Feature", "geometry": [1, 2]}):
        _problem(c.post("/incidents", headers=H(keys["district"]), json={"category": "service_streetlight",
                                                                          "point": point}), 422)
    _problem(c.post("/incidents", headers=H(keys["district"]), json={
        "category": "service_streetlight", "point": {"type": "Point", "coordinates": [lng, lat]}, "lng": lng}), 422)
