"""The SQL queue and statistics (twin.incidents.queries) give exactly what the frame path gives (scoped_frame +
incident_stats / frame_rows, the service's answer before), for every role and filter, on SQLite and PostgreSQL; the
maintained aggregates equal a rebuild after reports, actions, links and bulk imports."""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import pytest

from twin.access.roles import ANALYST, DISTRICT, make_role
from twin.encoding import dumps, loads
from twin.incidents import _derived
from twin.incidents.lifecycle import CST, overdue_mask
from twin.incidents.queries import ListFilter, list_page, stats_rows
from twin.incidents.stats import incident_stats
from twin.incidents.store import IncidentStore, act_on_incident, report_incident
from twin.incidents.synth import seed_incidents
from twin.service._incident_json import frame_rows, stored_rows
from twin.service._incident_scope import scoped_frame

NOW = dt.datetime(2026, 11, 5, 12, 0, tzinfo=CST)


@pytest.fixture()
def seeded(any_store, small_twin, cat):
    """A seeded synthetic history plus live reports: undispatched ones, acted on, reopened, linked."""
    t = small_twin
    istore = IncidentStore(any_store)
    seed_incidents(istore, t, cat, n=400, end="2026-11-01", seed=7)
    b = t.buildings.sample(12, random_state=3)
    ids = []
    for i, (lng, lat) in enumerate(zip(b["lng"], b["lat"], strict=True)):
        at = dt.datetime(2026, 11, 2, 8, tzinfo=CST) + dt.timedelta(hours=3 * i)
        inc, _ = report_incident(istore, t, cat, actor="t", category="env_garbage" if i % 2 else "order_noise",
                                 lng=float(lng), lat=float(lat), reported_at=at, auto_dispatch=i % 3 != 0,
                                 answered_at_once=i % 4 == 0)
        ids.append((inc, at))
    for inc, at in ids[1:6]:
        if inc.state != "dispatched":
            continue
        act_on_incident(istore, inc.id, "start", actor="w", now=at + dt.timedelta(hours=1))
        act_on_incident(istore, inc.id, "resolve", actor="w", now=at + dt.timedelta(hours=2, minutes=7))
    got = istore.get(ids[2][0].id)
    if got.state == "resolved":
        act_on_incident(istore, got.id, "follow_up", actor="v", now=got.resolved_at, satisfaction=3)
    got = istore.get(ids[4][0].id)
    if got.state == "resolved":
        act_on_incident(istore, got.id, "reopen", actor="v", now=got.resolved_at, reason="still broken")
    lng, lat = float(b["lng"].iloc[1]), float(b["lat"].iloc[1])  # a near-duplicate of an open case: linked
    report_incident(istore, t, cat, actor="t", category="env_garbage", lng=lng, lat=lat,
                    reported_at=dt.datetime(2026, 11, 2, 12, tzinfo=CST))
    return istore, t


def _roles(t):
    g = t.grids.astype(str)
    return [DISTRICT, ANALYST, make_role("community", [g["community_code"].iloc[0]], user="c"),
            make_role("town", [g["town_code"].iloc[0]], user="tn"),
            make_role("grid_worker", list(g["grid_code"].iloc[[2, 5]]), user="w")]


def _old_list(istore, t, role, f: ListFilter):
    df = scoped_frame(istore, role, t, states=f.states, categories=f.categories, since=f.since, until=f.until,
                      grid_codes=None)
    for col in ("grid_code", "community_code", "town_code"):
        v = getattr(f, col)
        if v is not None:
            df = df[(df[col + "_now"].astype(str) == v).to_numpy()]
    late = overdue_mask(df, NOW) if len(df) else np.zeros(0, dtype=bool)
    if f.overdue is not None:
        keep = late if f.overdue else ~late
        df, late = df[keep], late[keep]
    order = np.lexsort((-df["id"].to_numpy(), -df["reported_at"].astype("int64").to_numpy()))
    return frame_rows(df.iloc[order], role, late[order])


def _json(x):
    return loads(dumps(x))


def test_aggregates_equal_a_rebuild(seeded):
    istore, _ = seeded
    st = istore.store
    q_agg = f"SELECT month, grid_code, community_code, town_code, {', '.join(_derived.AGG_COLUMNS)} FROM incident_agg " \
            "WHERE n <> 0 OR closed <> 0 ORDER BY 1, 2, 3, 4"
    q_h = "SELECT id, grid_code, community_code, town_code, reported_at, handling_h FROM incident_handling ORDER BY id"
    q_hist = "SELECT bucket, n FROM incident_handling_hist WHERE n <> 0 ORDER BY bucket"
    q_wide = "SELECT wide, n FROM incident_handling_hist_wide WHERE n <> 0 ORDER BY wide"
    q_town = f"SELECT month, town_code, {', '.join(_derived.AGG_COLUMNS)} FROM incident_agg_town WHERE n <> 0 " \
             "OR closed <> 0 ORDER BY 1, 2"
    before = (st.query(q_agg), st.query(q_h), st.query(q_hist), st.query(q_town), st.query(q_wide))
    with st.transaction() as tx:
        _derived.rebuild(tx)
    assert before == (st.query(q_agg), st.query(q_h), st.query(q_hist), st.query(q_town), st.query(q_wide))
    assert sum(r[1] for r in before[2]) == len(before[1]) > 300
    wide: dict[int, int] = {}  # the 16 h level sums the quarter-hour level
    for b, n in before[2]:
        wide[b // _derived.WIDE] = wide.get(b // _derived.WIDE, 0) + n
    assert sorted(wide.items()) == [tuple(r) for r in before[4]] and len(before[4]) > 1
    assert sum(r[4] for r in before[0]) == istore.count() > 400


@pytest.mark.parametrize("filters", [
    {}, {"states": ["dispatched", "reported"]}, {"categories": ["env_garbage"]}, {"overdue": True},
    {"overdue": False, "states": ["followed_up", "resolved"]},
    {"since": dt.datetime(2026, 8, 1, tzinfo=CST), "until": dt.datetime(2026, 11, 3, 7, 30, tzinfo=CST)},
])
def test_queue_pages_equal_the_frame_path(seeded, filters):
    istore, t = seeded
    for role in _roles(t):
        for unit in (None, "community_code", "grid_code"):
            f = ListFilter(**filters)
            if unit is not None:
                code = str(t.grids[unit].iloc[5])
                f = ListFilter(**filters, **{unit: code})
            want = _json(_old_list(istore, t, role, f))
            rows, late, total, nxt = list_page(istore, t, role, f, now=NOW, page=0, page_size=7)
            assert total == len(want), (role.name, unit)
            assert _json(stored_rows(rows, role, late)) == want[:7]
            rows2, late2, _, _ = list_page(istore, t, role, f, now=NOW, page=2, page_size=7)
            assert _json(stored_rows(rows2, role, late2)) == want[14:21]
            walked, cursor = [], None  # the keyset cursor walks the same sequence
            for _ in range(200):
                rows, late, _, cursor = list_page(istore, t, role, f, now=NOW, page_size=50, after=cursor)
                walked += stored_rows(rows, role, late)
                if cursor is None:
                    break
            assert _json(walked) == want


def _close(a, b):
    if a is None or (isinstance(a, float) and math.isnan(a)):
        return b is None or (isinstance(b, float) and math.isnan(b))
    return b is not None and a == pytest.approx(b, rel=1e-12)


@pytest.mark.parametrize("by", ["district", "town", "community", "grid"])
@pytest.mark.parametrize("period", [None, "M", "Q", "Y"])
def test_stats_equal_incident_stats(seeded, by, period):
    istore, t = seeded
    cases = [(None, None, NOW), (dt.datetime(2026, 6, 1, tzinfo=CST), dt.datetime(2026, 11, 1, tzinfo=CST), None),
             (dt.datetime(2026, 5, 17, 6, tzinfo=CST), None, NOW)]  # all time; whole months; a cut month
    for role in _roles(t):
        for since, until, now in cases:
            got, n = stats_rows(istore, t, role, by=by, period=period, since=since, until=until, now=now)
            df = scoped_frame(istore, role, t, since=since, until=until)
            want = incident_stats(df, by=by, period=period, now=now)
            assert n == len(df) and len(got) == len(want), (role.name, since, now)
            for row, (key, exp) in zip(got, want.iterrows(), strict=True):
                key = key if isinstance(key, tuple) else (key,)
                assert row["unit"] == str(key[0]) and (period is None or row["period"] == str(key[1]))
                for col, v in exp.items():
                    assert _close(row[col], None if v is None or v is np.nan else float(v)), (col, row, exp)


def test_stats_other_periods_fall_back(seeded):
    istore, t = seeded
    assert stats_rows(istore, t, DISTRICT, period="W") is None


def test_a_store_from_before_the_aggregates_is_migrated_on_open(tmp_path, small_twin, cat):
    """Opening a store whose incidents were written without the derived tables builds them from the incidents."""
    from twin.store.sql import Store

    st = Store(tmp_path / "state.sqlite")
    istore = IncidentStore(st)
    seed_incidents(istore, small_twin, cat, n=150, end="2026-11-01", seed=3)
    want = stats_rows(istore, small_twin, DISTRICT, by="grid", period="M")
    for table in ("incident_agg", "incident_agg_town", "incident_handling", "incident_handling_hist",
                  "incident_handling_hist_wide"):
        st.connection.execute(f"DROP TABLE {table}")
    st2 = Store(tmp_path / "state.sqlite")  # a new process: schemas not yet ensured
    again = stats_rows(IncidentStore(st2), small_twin, DISTRICT, by="grid", period="M")
    assert again == want and want[1] == 150


def test_a_store_without_the_wide_histogram_is_migrated_on_open(tmp_path, small_twin, cat):
    """A store written before ``incident_handling_hist_wide`` existed gets it on open; the district median agrees."""
    from twin.store.sql import Store

    st = Store(tmp_path / "state.sqlite")
    istore = IncidentStore(st)
    seed_incidents(istore, small_twin, cat, n=150, end="2026-11-01", seed=4)
    want = stats_rows(istore, small_twin, DISTRICT)
    st.connection.execute("DROP TABLE incident_handling_hist_wide")
    st2 = Store(tmp_path / "state.sqlite")  # a new process: schemas not yet ensured
    again = stats_rows(IncidentStore(st2), small_twin, DISTRICT)
    assert again == want and want[0][0]["median_handling_h"] is not None
    assert st2.query("SELECT SUM(n) FROM incident_handling_hist_wide")[0][0] == \
        st2.query("SELECT COUNT(*) FROM incident_handling")[0][0] > 50
