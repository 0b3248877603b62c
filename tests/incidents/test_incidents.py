"""The incident state machine, time limits and the overdue flag (pure: no twin, no store)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
from pathlib import Path

import pandas as pd
import pytest

from twin.errors import IngestError, InvalidTransition, NotFoundError, ValidationError
from twin.incidents.catalogue import LEVEL_TIME_LIMIT_H, LEVELS, load_catalogue, time_limit_h
from twin.incidents.lifecycle import (
    ACTIONS,
    CST,
    STATES,
    Incident,
    allowed_actions,
    as_time,
    incidents_to_frame,
    is_overdue,
    new_incident,
    overdue_mask,
    transition,
)

T0 = dt.datetime(2026, 11, 3, 9, 0, tzinfo=CST)
VALID = {
    ("reported", "dispatch"), ("reopened", "dispatch"),
    ("dispatched", "reassign"), ("in_progress", "reassign"),
    ("dispatched", "escalate"), ("in_progress", "escalate"),
    ("dispatched", "start"), ("in_progress", "resolve"),
    ("resolved", "follow_up"), ("resolved", "reopen"),
}


def _inc(cat: pd.DataFrame, **kw) -> Incident:
    base = new_incident(cat, category="env_garbage", lng=113.1, lat=23.0, reported_at=T0, channel="hotline_12345")
    return dataclasses.replace(base, id=7, **kw)


def _kwargs(action: str) -> dict:
    kw: dict = {"actor": "tester", "now": T0 + dt.timedelta(hours=2)}
    if action in ("reopen", "reassign", "escalate"):
        kw["reason"] = "because"
    if action == "follow_up":
        kw["satisfaction"] = 5
    if action in ("dispatch", "reassign", "escalate"):
        kw["changes"] = {"level": "grid", "handler_code": "G1", "assignee": "W2"}
    return kw


def test_default_catalogue_is_sensible(cat):
    assert len(cat) >= 30
    assert set(cat["level"]) == set(LEVELS)
    for group in ("disputes", "public_order", "public_safety", "fire_hazards", "environment_sanitation",
                  "illegal_construction", "public_services"):
        assert group in set(cat["group"])
    assert (cat["time_limit_h"] > 0).all()
    assert cat["share"].sum() == pytest.approx(1.0)


@pytest.mark.parametrize("state,action", list(itertools.product(STATES, ACTIONS)))
def test_every_transition_valid_or_rejected(cat, state, action):
    inc = _inc(cat, state=state, level="grid" if state != "reported" else "")
    if (state, action) in VALID:
        new, rec = transition(inc, action, **_kwargs(action))
        assert new.state == ACTIONS[action][1]
        assert (rec.from_state, rec.to_state, rec.action, rec.actor) == (state, new.state, action, "tester")
        assert rec.at == T0 + dt.timedelta(hours=2) and new.updated_at == rec.at
        assert inc.state == state  # the input is not mutated
    else:
        with pytest.raises(InvalidTransition, match=state):
            transition(inc, action, **_kwargs(action))


def test_allowed_actions_match_table():
    for s in STATES:
        assert set(allowed_actions(s)) == {a for (st, a) in VALID if st == s}
    assert allowed_actions("followed_up") == []


def test_full_loop_timestamps_and_target_state_names(cat):
    inc = _inc(cat)
    inc, _ = transition(inc, "dispatch", actor="auto", now=T0 + dt.timedelta(minutes=5), catalogue=cat,
                        changes={"level": "grid", "handler_code": "G", "assignee": "W1"})
    assert inc.deadline == T0 + dt.timedelta(hours=24)  # env_garbage: 24 h at grid level
    inc, _ = transition(inc, "in_progress", actor="W1", now=T0 + dt.timedelta(hours=1))
    inc, _ = transition(inc, "resolved", actor="W1", now=T0 + dt.timedelta(hours=3))
    assert inc.handling_h() == pytest.approx(3.0)
    inc, rec = transition(inc, "followed_up", actor="visitor", now=T0 + dt.timedelta(days=1), satisfaction=4)
    assert (inc.state, inc.satisfaction, rec.detail["satisfaction"]) == ("followed_up", 4, 4)
    assert inc.dispatched_at == T0 + dt.timedelta(minutes=5) and inc.started_at == T0 + dt.timedelta(hours=1)


def test_reopen_clears_resolution_and_counts(cat):
    inc = _inc(cat, state="resolved", level="grid", resolved_at=T0 + dt.timedelta(hours=1))
    new, rec = transition(inc, "reopen", actor="visitor", now=T0 + dt.timedelta(hours=5), reason="still dirty")
    assert new.state == "reopened" and new.resolved_at is None and new.reopen_count == 1
    assert rec.reason == "still dirty"


@pytest.mark.parametrize("sat", [None, 0, 6, 2.5, True])
def test_follow_up_needs_satisfaction_1_to_5(cat, sat):
    inc = _inc(cat, state="resolved", level="grid")
    with pytest.raises(ValidationError, match="satisfaction"):
        transition(inc, "follow_up", actor="v", now=T0 + dt.timedelta(hours=1), satisfaction=sat)


def test_satisfaction_only_at_follow_up(cat):
    inc = _inc(cat, state="in_progress", level="grid")
    with pytest.raises(ValidationError, match="only at follow-up"):
        transition(inc, "resolve", actor="w", now=T0 + dt.timedelta(hours=1), satisfaction=5)


@pytest.mark.parametrize("action", ["reopen", "reassign", "escalate"])
def test_audited_actions_need_a_reason(cat, action):
    state = "resolved" if action == "reopen" else "dispatched"
    inc = _inc(cat, state=state, level="grid")
    kw = _kwargs(action) | {"reason": "  "}
    with pytest.raises(ValidationError, match="reason"):
        transition(inc, action, **kw)


def test_actor_and_time_are_checked(cat):
    inc = _inc(cat, state="dispatched", level="grid")
    with pytest.raises(ValidationError, match="actor"):
        transition(inc, "start", actor="", now=T0 + dt.timedelta(hours=1))
    with pytest.raises(ValidationError, match="before the report"):
        transition(inc, "start", actor="w", now=T0 - dt.timedelta(hours=1))
    later = dataclasses.replace(inc, updated_at=T0 + dt.timedelta(hours=5))
    with pytest.raises(ValidationError, match="backwards"):
        transition(later, "start", actor="w", now=T0 + dt.timedelta(hours=4))
    with pytest.raises(InvalidTransition, match="unknown action"):
        transition(inc, "teleport", actor="w", now=T0)
    with pytest.raises(ValidationError, match="placement"):
        transition(inc, "reassign", actor="w", now=T0, reason="x", changes={"state": "resolved"})


def test_dispatch_needs_a_level(cat):
    with pytest.raises(ValidationError, match="level"):
        transition(_inc(cat), "dispatch", actor="auto", now=T0)


@pytest.mark.parametrize("field,value,match", [
    ("category", "flying_saucers", "unknown incident category"),
    ("channel", "pigeon", "unknown channel"),
    ("severity", 5, "severity"),
    ("severity", 1.5, "severity"),
    ("lng", "east", "not a number"),
    ("lat", float("nan"), "finite"),
    ("lng", 500000.0, "degrees"),
    ("reported_at", "yesterday", "ISO"),
])
def test_new_incident_rejects_bad_fields(cat, field, value, match):
    kw = dict(category="env_garbage", lng=113.1, lat=23.0, reported_at=T0)
    kw[field] = value
    with pytest.raises((ValidationError, NotFoundError), match=match):
        new_incident(cat, **kw)


def test_times_are_normalised_to_cst():
    assert as_time("2026-11-03T09:00:00") == T0
    assert as_time("2026-11-03T01:00:00+00:00") == T0
    assert as_time(dt.date(2026, 11, 3)).hour == 0
    assert as_time("2026-11-03T01:00:00+00:00").utcoffset() == dt.timedelta(hours=8)


def test_time_limits_per_level(cat):
    # env_garbage: grid, 24 h; escalation never shortens the time: community ≥ 72 h, town ≥ 120 h, district ≥ 240 h
    assert time_limit_h(cat, "env_garbage", "grid") == 24
    for lvl in ("community", "town", "district"):
        assert time_limit_h(cat, "env_garbage", lvl) == LEVEL_TIME_LIMIT_H[lvl]
    # construction_illegal is a town matter with 168 h: kept when escalated to district only if longer
    assert time_limit_h(cat, "construction_illegal", "town") == 168
    assert time_limit_h(cat, "construction_illegal", "district") == max(168, LEVEL_TIME_LIMIT_H["district"])


def test_escalation_recomputes_deadline(cat):
    inc = _inc(cat, state="dispatched", level="grid", deadline=T0 + dt.timedelta(hours=24))
    new, _ = transition(inc, "escalate", actor="m", now=T0 + dt.timedelta(hours=1), reason="needs town",
                        changes={"level": "town", "handler_code": "T"}, catalogue=cat)
    assert new.deadline == T0 + dt.timedelta(hours=LEVEL_TIME_LIMIT_H["town"])
    assert new.escalations == 1


def test_overdue_flag(cat):
    d = T0 + dt.timedelta(hours=24)
    open_inc = _inc(cat, state="in_progress", level="grid", deadline=d)
    assert not is_overdue(open_inc, d)
    assert is_overdue(open_inc, d + dt.timedelta(seconds=1))
    on_time = _inc(cat, state="resolved", level="grid", deadline=d, resolved_at=d)
    late = _inc(cat, state="followed_up", level="grid", deadline=d, resolved_at=d + dt.timedelta(minutes=1))
    assert not is_overdue(on_time, d + dt.timedelta(days=9)) and is_overdue(late, d)
    assert not is_overdue(_inc(cat), d + dt.timedelta(days=9))  # never dispatched → no deadline
    frame = incidents_to_frame([open_inc, on_time, late, _inc(cat)])
    for c in ("deadline", "resolved_at"):
        frame[c] = pd.to_datetime(frame[c])
    assert overdue_mask(frame, d + dt.timedelta(hours=1)).tolist() == [True, False, True, False]


def test_catalogue_errors_name_row(tmp_path: Path):
    p = tmp_path / "cat.csv"
    p.write_text("code,name,name_zh,group,level,time_limit_h\nok,a,b,c,grid,24\nbad,a,b,c,province,24\n")
    with pytest.raises(IngestError, match=r"row 2 \(bad\).*province"):
        load_catalogue(p)
    p.write_text("code,name,name_zh,group,level,time_limit_h\nok,a,b,c,grid,-1\n")
    with pytest.raises(IngestError, match="row 1.*positive"):
        load_catalogue(p)
    p.write_text("code,name,name_zh,group,level,time_limit_h\nok,a,b,c,grid,1\nok,a,b,c,town,2\n")
    with pytest.raises(IngestError, match="duplicate"):
        load_catalogue(p)
    p.write_text("code,name,level\nok,a,grid\n")
    with pytest.raises(IngestError, match="lacks column"):
        load_catalogue(p)
    p.write_text("code,name,name_zh,group,level,time_limit_h\nmine,a,b,c,town,5\n")
    assert load_catalogue(p).loc["mine", "time_limit_h"] == 5.0
