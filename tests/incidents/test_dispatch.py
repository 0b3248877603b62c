"""Four-level dispatch on the default twin: locating, level rules, worker choice, escalation, duplicate linking."""

from __future__ import annotations

import dataclasses
import datetime as dt

import numpy as np
import pandas as pd
import pytest

from twin.crs import lnglat_to_xy, xy_to_lnglat
from twin.errors import InvalidTransition, NotFoundError, OutsideDistrictError, ValidationError
from twin.incidents.dispatch import (
    DISTRICT_CODE,
    choose_worker,
    dispatch,
    dispatch_level,
    escalate,
    find_duplicate,
    locate,
    locate_points,
    nearest_workers,
    place_incident,
    reassign,
    worker_board,
)
from twin.incidents.lifecycle import CST, new_incident

T0 = dt.datetime(2026, 11, 3, 9, 0, tzinfo=CST)


@pytest.fixture(scope="module")
def grid_with_two(default_twin):
    """A grid with two workers, and a building point inside it."""
    t = default_twin
    counts = t.workers.groupby("grid_code").size()
    g = str(counts[counts == 2].index[0])
    b = t.buildings[t.buildings["grid_code"].astype(str) == g].iloc[0]
    return g, float(b["lng"]), float(b["lat"])


def _offset(lng: float, lat: float, dx_m: float, dy_m: float = 0.0) -> tuple[float, float]:
    x, y = lnglat_to_xy(np.array([lng]), np.array([lat]))
    a, b = xy_to_lnglat(x + dx_m, y + dy_m)
    return float(a[0]), float(b[0])


def _inc(cat, lng, lat, *, category="env_garbage", severity=1, at=T0):
    return new_incident(cat, category=category, lng=lng, lat=lat, reported_at=at, severity=severity)


def test_locate_matches_partition(default_twin):
    t = default_twin
    b = t.buildings.sample(200, random_state=1)
    loc = locate_points(t, b["lng"].to_numpy(), b["lat"].to_numpy())
    assert (loc["grid_code"].to_numpy() == b["grid_code"].astype(str).to_numpy()).all()
    g = t.grids.set_index("grid_code")
    assert (loc["community_code"].to_numpy() == g.loc[loc["grid_code"], "community_code"].to_numpy()).all()
    one = locate(t, float(b["lng"].iloc[0]), float(b["lat"].iloc[0]))
    assert one.code_at("district") == DISTRICT_CODE and one.code_at("town") == one.town_code


def test_outside_district_rejected(default_twin):
    with pytest.raises(OutsideDistrictError, match="outside every grid"):
        locate(default_twin, 113.30, 23.10)  # Guangzhou side, not Chancheng


@pytest.mark.parametrize("category,severity,level", [
    ("env_garbage", 1, "grid"),           # trivial matters stay in the grid
    ("env_garbage", 2, "community"),      # small ones in the community
    ("env_garbage", 3, "town"),           # big ones in the town
    ("env_garbage", 4, "district"),       # hard ones: district–town consultation
    ("dispute_property", 1, "community"),  # category default above grid …
    ("construction_illegal", 1, "town"),   # … is never lowered by a low severity
    ("construction_illegal", 2, "town"),
    ("order_gathering", 1, "district"),
])
def test_dispatch_level_rule(cat, category, severity, level):
    assert dispatch_level(cat, category, severity) == level


def _board(rows):
    w = pd.DataFrame(rows, columns=["worker_id", "name", "grid_code", "status", "lng", "lat"])
    return w


def test_choose_worker_online_least_loaded_then_nearest():
    lng, lat = 113.10, 23.00
    near = _offset(lng, lat, 50)
    far = _offset(lng, lat, 500)
    w = _board([("A", "a", "G", "online", *far), ("B", "b", "G", "online", *near),
                ("C", "c", "G", "offline", lng, lat), ("D", "d", "H", "online", lng, lat)])
    board = worker_board(w, open_cases=pd.Series({"A": 1, "B": 3}))
    assert choose_worker(board, "G", lng, lat) == "A"  # fewer open cases beats distance
    board = worker_board(w, open_cases=pd.Series({"A": 2, "B": 2}))
    assert choose_worker(board, "G", lng, lat) == "B"  # equal load → nearest
    board = worker_board(w, status=pd.DataFrame({"worker_id": ["A", "B"], "status": ["offline", "offline"]}))
    assert choose_worker(board, "G", lng, lat) == ""  # nobody online (C is offline) → none


def test_nearest_workers_distance_in_metres():
    lng, lat = 113.10, 23.00
    w = _board([("A", "a", "G", "online", *_offset(lng, lat, 300)), ("B", "b", "G", "online", *_offset(lng, lat, 0, 120)),
                ("C", "c", "G", "offline", lng, lat)])
    out = nearest_workers(worker_board(w), lng, lat, k=5)
    assert out["worker_id"].tolist() == ["B", "A"]
    assert out["dist_m"].tolist() == pytest.approx([120.0, 300.0], abs=0.01)
    assert nearest_workers(worker_board(w), lng, lat, k=1, online_only=False)["worker_id"].tolist() == ["C"]


def test_place_assigns_grid_worker(default_twin, cat, grid_with_two):
    t = default_twin
    g, lng, lat = grid_with_two
    ids = sorted(t.workers.loc[t.workers["grid_code"] == g, "worker_id"])
    live = pd.DataFrame({"worker_id": ids, "status": ["online", "online"]})
    board = worker_board(t.workers, status=live, open_cases=pd.Series({ids[0]: 5}))
    changes, _ = place_incident(t, _inc(cat, lng, lat), board, cat)
    assert changes["level"] == "grid" and changes["grid_code"] == g and changes["handler_code"] == g
    assert changes["assignee"] == ids[1]  # the less loaded of the two


def test_grid_offline_is_covered_then_escalated(default_twin, cat, grid_with_two):
    t = default_twin
    g, lng, lat = grid_with_two
    comm = str(t.grid(g)["community_code"])
    comm_grids = set(t.grids.loc[t.grids["community_code"] == comm, "grid_code"])
    in_comm = t.workers["grid_code"].isin(comm_grids)
    # nobody online in the grid, one worker online elsewhere in the community → that worker covers
    other = t.workers[in_comm & (t.workers["grid_code"] != g)]
    assert len(other) > 0
    status = pd.DataFrame({"worker_id": t.workers.loc[in_comm, "worker_id"], "status": "offline"})
    status.loc[status["worker_id"] == other["worker_id"].iloc[0], "status"] = "online"
    changes, note = place_incident(t, _inc(cat, lng, lat), worker_board(t.workers, status=status), cat)
    assert changes["level"] == "grid" and changes["assignee"] == other["worker_id"].iloc[0]
    assert "covered" in note
    # nobody online in the whole community → escalated to the community
    status["status"] = "offline"
    changes, note = place_incident(t, _inc(cat, lng, lat), worker_board(t.workers, status=status), cat)
    assert changes["level"] == "community" and changes["handler_code"] == comm and changes["assignee"] == ""


def test_dispatch_above_grid_goes_to_unit(default_twin, cat, grid_with_two):
    t = default_twin
    g, lng, lat = grid_with_two
    inc, rec = dispatch(t, _inc(cat, lng, lat, severity=3), board=worker_board(t.workers), catalogue=cat,
                        actor="auto", now=T0)
    assert inc.state == "dispatched" and inc.level == "town" and inc.handler_code == str(t.grid(g)["town_code"])
    assert inc.assignee == "" and inc.deadline == T0 + dt.timedelta(hours=120)
    assert "severity 3" in rec.reason


def test_manual_reassign_and_escalate(default_twin, cat, grid_with_two):
    t = default_twin
    g, lng, lat = grid_with_two
    board = worker_board(t.workers, status=pd.DataFrame({"worker_id": t.workers["worker_id"], "status": "online"}))
    inc, _ = dispatch(t, dataclasses.replace(_inc(cat, lng, lat), id=1), board=board, catalogue=cat, actor="auto",
                      now=T0)
    other = t.workers[t.workers["grid_code"] != g].iloc[0]
    re, rec = reassign(inc, other["worker_id"], board=board, actor="boss", now=T0 + dt.timedelta(hours=1),
                       reason="closer to the site")
    assert re.assignee == other["worker_id"] and re.handler_code == other["grid_code"]
    assert (rec.action, rec.reason, rec.actor) == ("reassign", "closer to the site", "boss")
    with pytest.raises(NotFoundError, match="unknown worker"):
        reassign(inc, "W9999", board=board, actor="boss", now=T0, reason="x")
    off = worker_board(t.workers, status=pd.DataFrame({"worker_id": [other["worker_id"]], "status": ["offline"]}))
    with pytest.raises(ValidationError, match="offline"):
        reassign(inc, other["worker_id"], board=off, actor="boss", now=T0, reason="x")
    up, _ = escalate(inc, actor="boss", now=T0 + dt.timedelta(hours=2), reason="wider problem", catalogue=cat)
    assert (up.level, up.handler_code, up.assignee, up.escalations) == ("community", inc.community_code, "", 1)
    assert up.deadline == T0 + dt.timedelta(hours=72)
    top, _ = escalate(up, actor="boss", now=T0 + dt.timedelta(hours=3), reason="x", to_level="district")
    assert top.handler_code == DISTRICT_CODE
    with pytest.raises(InvalidTransition, match="already at district"):
        escalate(top, actor="boss", now=T0 + dt.timedelta(hours=4), reason="x")
    with pytest.raises(ValidationError, match="must go up"):
        escalate(up, actor="boss", now=T0 + dt.timedelta(hours=4), reason="x", to_level="grid")


def test_find_duplicate_rules(cat):
    lng, lat = 113.10, 23.00
    c = []
    for i, (dx, hours_before, category, state) in enumerate([
        (80, 2, "env_garbage", "dispatched"),     # 1: a near duplicate
        (50, 1, "env_garbage", "in_progress"),    # 2: also one, but later than 1
        (150, 3, "env_garbage", "dispatched"),    # 3: too far
        (10, 30, "env_garbage", "dispatched"),    # 4: too long ago
        (10, 3, "order_noise", "dispatched"),     # 5: other category
        (10, 4, "env_garbage", "resolved"),       # 6: already closed
        (10, -1, "env_garbage", "dispatched"),    # 7: reported after the new one
    ], start=1):
        x, y = _offset(lng, lat, dx)
        c.append({"id": i, "category": category, "state": state, "lng": x, "lat": y,
                  "reported_at": T0 - dt.timedelta(hours=hours_before)})
    cands = pd.DataFrame(c)
    new = _inc(cat, lng, lat)
    assert find_duplicate(cands, new) == 1
    assert find_duplicate(cands[cands["id"] != 1], new) == 2
    assert find_duplicate(cands[~cands["id"].isin([1, 2])], new) is None
    assert find_duplicate(cands[~cands["id"].isin([1, 2])], new, radius_m=200) == 3
    assert find_duplicate(cands[cands["id"] == 4], new, window_h=48) == 4
    assert find_duplicate(cands.iloc[0:0], new) is None
