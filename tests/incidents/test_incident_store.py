"""Incident persistence: round trip, audit trail, compare-and-set under concurrent writers, linking, import."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import threading

import pandas as pd
import pytest

from twin.errors import ConflictError, IngestError, InvalidTransition, NotFoundError, ValidationError
from twin.incidents.ingest import import_incidents
from twin.incidents.lifecycle import CST, Transition, new_incident
from twin.incidents.store import (
    IncidentStore,
    act_on_incident,
    board_for,
    escalate_incident,
    reassign_incident,
    report_incident,
)
from twin.store.sql import Store

T0 = dt.datetime(2026, 11, 3, 9, 0, tzinfo=CST)


@pytest.fixture()
def istore(tmp_path) -> IncidentStore:
    return IncidentStore(Store(tmp_path / "state.sqlite"))


@pytest.fixture(scope="module")
def spot(default_twin):
    t = default_twin
    online = set(t.workers.loc[t.workers["status"] == "online", "grid_code"])
    b = t.buildings[t.buildings["grid_code"].astype(str).isin(online)].iloc[5000]
    return float(b["lng"]), float(b["lat"]), str(b["grid_code"])


def _report(istore, t, cat, spot, **kw):
    lng, lat, _ = spot
    fields = dict(category="env_garbage", lng=lng, lat=lat, reported_at=T0, channel="hotline_12345",
                  reporter="13800000000", description="rubbish", attachments=[{"name": "a.jpg", "size": 10}])
    fields.update(kw)
    return report_incident(istore, t, cat, actor="tester", **fields)


def test_round_trip_and_audit(istore, default_twin, cat, spot):
    inc, linked = _report(istore, default_twin, cat, spot)
    assert not linked and inc.state == "dispatched" and inc.grid_code == spot[2] and inc.version == 2
    assert istore.get(inc.id) == inc  # every field survives the store, times tz-aware CST
    inc = act_on_incident(istore, inc.id, "start", actor="W", now=T0 + dt.timedelta(hours=1))
    inc = act_on_incident(istore, inc.id, "resolve", actor="W", now=T0 + dt.timedelta(hours=2))
    inc = act_on_incident(istore, inc.id, "follow_up", actor="V", now=T0 + dt.timedelta(days=1), satisfaction=5)
    got = istore.get(inc.id)
    assert got == inc and got.attachments == ({"name": "a.jpg", "size": 10},)
    trail = istore.transitions(inc.id)
    assert trail["action"].tolist() == ["report", "dispatch", "start", "resolve", "follow_up"]
    assert trail["actor"].tolist() == ["tester", "tester", "W", "W", "V"]
    assert trail["at"].is_monotonic_increasing
    assert json.loads(trail["detail"].iloc[-1]) == {"satisfaction": 5}
    frame = istore.frame(states=["followed_up"])
    assert frame["id"].tolist() == [inc.id] and frame["reported_at"].iloc[0] == T0


def test_invalid_transition_leaves_store_untouched(istore, default_twin, cat, spot):
    inc, _ = _report(istore, default_twin, cat, spot)
    with pytest.raises(InvalidTransition):
        act_on_incident(istore, inc.id, "follow_up", actor="V", now=T0 + dt.timedelta(hours=1), satisfaction=5)
    assert istore.get(inc.id) == inc and len(istore.transitions(inc.id)) == 2
    with pytest.raises(NotFoundError, match="no incident"):
        istore.get(999)


def test_stale_write_is_a_conflict_two_connections(tmp_path, default_twin, cat, spot):
    path = tmp_path / "state.sqlite"
    s1, s2 = IncidentStore(Store(path)), IncidentStore(Store(path))  # two connections, as two processes would
    inc, _ = _report(s1, default_twin, cat, spot)
    a, b = s1.get(inc.id), s2.get(inc.id)
    s1.save(dataclasses.replace(a, state="in_progress", updated_at=T0 + dt.timedelta(hours=1)),
            Transition(a.id, "start", "dispatched", "in_progress", "W1", T0 + dt.timedelta(hours=1)))
    with pytest.raises(ConflictError, match="changed since you read it"):
        s2.save(dataclasses.replace(b, assignee="W9"), Transition(b.id, "reassign", "dispatched", "dispatched",
                                                                   "boss", T0 + dt.timedelta(hours=1), "x"))
    final = s2.get(inc.id)
    assert final.state == "in_progress" and final.assignee == inc.assignee and final.version == inc.version + 1
    assert s2.transitions(inc.id)["action"].tolist() == ["report", "dispatch", "start"]  # the loser left no trace
    with pytest.raises(ConflictError, match="version"):
        act_on_incident(s2, inc.id, "resolve", actor="W1", now=T0 + dt.timedelta(hours=2),
                        expected_version=inc.version)


def test_two_threads_race_one_wins(istore, default_twin, cat, spot):
    inc, _ = _report(istore, default_twin, cat, spot)
    barrier = threading.Barrier(2)
    outcome: dict[str, str] = {}

    def worker(name: str) -> None:
        cur = istore.get(inc.id)
        barrier.wait()
        try:
            istore.save(dataclasses.replace(cur, state="in_progress", updated_at=T0 + dt.timedelta(hours=1)),
                        Transition(cur.id, "start", "dispatched", "in_progress", name, T0 + dt.timedelta(hours=1)))
            outcome[name] = "ok"
        except ConflictError:
            outcome[name] = "conflict"
        finally:
            istore.store.close()

    threads = [threading.Thread(target=worker, args=(n,)) for n in ("W1", "W2")]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert sorted(outcome.values()) == ["conflict", "ok"]
    starts = istore.transitions(inc.id).query("action == 'start'")
    assert len(starts) == 1 and starts["actor"].iloc[0] == next(k for k, v in outcome.items() if v == "ok")


def test_no_lost_updates_with_retries(tmp_path, default_twin, cat, spot):
    path = tmp_path / "state.sqlite"
    inc, _ = _report(IncidentStore(Store(path)), default_twin, cat, spot)
    per_thread = 15

    def bump(name: str) -> None:
        s = IncidentStore(Store(path))
        done = 0
        while done < per_thread:
            cur = s.get(inc.id)
            try:
                s.save(dataclasses.replace(cur, linked_reports=cur.linked_reports + 1),
                       Transition(cur.id, "link", cur.state, cur.state, name, T0))
                done += 1
            except ConflictError:
                continue
        s.store.close()

    threads = [threading.Thread(target=bump, args=(f"w{i}",)) for i in range(2)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    final = IncidentStore(Store(path)).get(inc.id)
    assert final.linked_reports == 2 * per_thread and final.version == inc.version + 2 * per_thread


def test_near_duplicate_is_linked_not_duplicated(istore, default_twin, cat, spot):
    first, _ = _report(istore, default_twin, cat, spot)
    again, linked = _report(istore, default_twin, cat, spot, reported_at=T0 + dt.timedelta(hours=3),
                            channel="online", reporter="someone else")
    assert linked and again.id == first.id and again.linked_reports == 1
    other, linked2 = _report(istore, default_twin, cat, spot, category="order_noise")
    assert not linked2 and other.id != first.id
    late, linked3 = _report(istore, default_twin, cat, spot, reported_at=T0 + dt.timedelta(hours=30))
    assert not linked3
    assert istore.count() == 3 and istore.links(first.id)["reporter"].tolist() == ["someone else"]


def test_manual_reassign_escalate_persisted(istore, default_twin, cat, spot):
    t = default_twin
    istore.set_worker_status("W0001", status="online", now=T0)
    inc, _ = _report(istore, t, cat, spot)
    re = reassign_incident(istore, t, inc.id, "W0001" if inc.assignee != "W0001" else "W0002", actor="boss",
                           now=T0 + dt.timedelta(hours=1), reason="on site already", allow_offline=True)
    up = escalate_incident(istore, cat, inc.id, actor="boss", now=T0 + dt.timedelta(hours=2), reason="too big",
                           to_level="town")
    assert re.assignee in ("W0001", "W0002") and up.level == "town" and up.deadline == T0 + dt.timedelta(hours=120)
    trail = istore.transitions(inc.id)
    assert trail["action"].tolist()[-2:] == ["reassign", "escalate"]
    assert trail["reason"].tolist()[-2:] == ["on site already", "too big"]


def test_worker_status_and_load(istore, default_twin, cat, spot):
    t = default_twin
    w = t.workers.iloc[0]
    v = istore.set_worker_status(w["worker_id"], status="offline", now=T0, lng=113.0, lat=23.0)
    assert v == 1 and istore.set_worker_status(w["worker_id"], status="online", now=T0, expected_version=1) == 2
    with pytest.raises(ConflictError):
        istore.set_worker_status(w["worker_id"], status="offline", now=T0, expected_version=1)
    with pytest.raises(ValidationError, match="online"):
        istore.set_worker_status(w["worker_id"], status="asleep", now=T0)
    inc, _ = _report(istore, t, cat, spot)
    board = board_for(istore, t).set_index("worker_id")
    assert board.loc[w["worker_id"], "status"] == "online" and board.loc[w["worker_id"], "lng"] == 113.0
    assert board.loc[inc.assignee, "open_cases"] == 1


def test_report_and_dispatch_are_one_commit(tmp_path, default_twin, cat, spot, monkeypatch):
    """A command-centre screen polling the store never sees a new case stored but not dispatched (no level, so
    no alarm): while the dispatch is chosen, another connection does not see the report yet."""
    import twin.incidents.store as store_mod

    db = tmp_path / "state.sqlite"
    istore, reader = IncidentStore(Store(db)), Store(db)
    seen: list[tuple] = []
    real = store_mod.dispatch

    def watching(t, incident, **kw):
        seen.append(tuple(reader.query("SELECT COUNT(*) FROM incidents WHERE id = ?", (incident.id,))[0]))
        return real(t, incident, **kw)

    monkeypatch.setattr(store_mod, "dispatch", watching)
    inc, _ = _report(istore, default_twin, cat, spot)
    assert seen == [(0,)]  # not visible to anyone else before the dispatch is written with it
    assert reader.query("SELECT state, level, version FROM incidents WHERE id = ?", (inc.id,)) == \
        [("dispatched", inc.level, 2)]


def test_failed_dispatch_keeps_the_report(istore, default_twin, cat, spot, monkeypatch):
    import twin.incidents.store as store_mod

    def refuse(*a, **kw):
        raise ValidationError("no unit can take it")

    monkeypatch.setattr(store_mod, "dispatch", refuse)
    with pytest.raises(ValidationError, match="no unit can take it"):
        _report(istore, default_twin, cat, spot)
    kept = istore.frame(states=["reported"])
    assert len(kept) == 1 and istore.transitions(int(kept["id"].iloc[0]))["action"].tolist() == ["report"]


def test_outside_point_writes_nothing(istore, default_twin, cat):
    from twin.errors import OutsideDistrictError

    with pytest.raises(OutsideDistrictError):
        report_incident(istore, default_twin, cat, actor="x", category="env_garbage", lng=113.3, lat=23.1,
                        reported_at=T0)
    assert istore.count() == 0


def test_import_csv_and_geojson(istore, default_twin, cat, spot, tmp_path):
    lng, lat, _ = spot
    good = tmp_path / "good.csv"
    good.write_text("category,lng,lat,reported_at,channel,severity\n"
                    f"env_garbage,{lng},{lat},2026-11-03T09:00,online,1\n"
                    f"env_garbage,{lng},{lat},2026-11-03T10:00,hotline_12345,\n"
                    f"order_noise,{lng},{lat},2026-11-03T11:00,,2\n")
    res = import_incidents(istore, default_twin, cat, good, actor="importer", auto_dispatch=True)
    assert res == {"rows": 3, "new": 2, "linked": 1}
    assert istore.frame()["state"].tolist() == ["dispatched", "dispatched"]
    bad = tmp_path / "bad.csv"
    bad.write_text("category,lng,lat,reported_at,channel,severity\n"
                   f"env_garbage,{lng},{lat},2026-11-03T09:00,online,1\n"
                   f"fire,{lng},{lat},2026-11-03T09:00,online,1\n"
                   f"env_garbage,abc,{lat},2026-11-03T09:00,online,1\n"
                   f"env_garbage,{lng},{lat},2026-11-03T09:00,online,9\n"
                   f"env_garbage,113.3,23.1,2026-11-03T09:00,online,1\n")
    with pytest.raises(IngestError) as e:
        import_incidents(istore, default_twin, cat, bad, actor="importer")
    msg = str(e.value)
    assert "4 bad row(s), nothing imported" in msg
    for needle in ("row 2: unknown incident category 'fire'", "row 3: lng 'abc'", "row 4: severity",
                   "row 5: point"):
        assert needle in msg
    assert istore.count() == 2
    gj = tmp_path / "inc.geojson"
    gj.write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "geometry": {"type": "Point", "coordinates": [lng, lat]},
         "properties": {"category": "fire_blocked_exit", "reported_at": "2026-11-04T08:00:00"}},
    ]}))
    assert import_incidents(istore, default_twin, cat, gj, actor="importer")["new"] == 1
    with pytest.raises(IngestError, match="missing column"):
        (tmp_path / "x.csv").write_text("a,b\n1,2\n")
        import_incidents(istore, default_twin, cat, tmp_path / "x.csv", actor="importer")


def test_ids_are_unique_across_bulk_and_single(istore, default_twin, cat, spot):
    inc = new_incident(cat, category="env_garbage", lng=spot[0], lat=spot[1], reported_at=T0)
    frame = pd.DataFrame([dataclasses.asdict(inc) | {"synthetic": True}]).drop(columns=["id"])
    ids = istore.add_many(pd.concat([frame] * 3, ignore_index=True))
    single = istore.add(inc, actor="x")
    assert len(set(ids.tolist()) | {single.id}) == 4
    assert istore.delete_synthetic() == 3 and istore.count() == 1
