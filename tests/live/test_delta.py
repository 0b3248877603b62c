"""Exactness on the live state: after random change sets the delta index answers equal a from-scratch rebuild (a
twin whose frames are the live state, index built from them), for summaries, overlays, records and dossiers."""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from shapely.geometry import box, mapping

import twin
from tests.live.conftest import sqlite_store
from twin.errors import TwinError
from twin.live import changes as ch
from twin.live.state import LiveTwin
from twin.model import Twin
from twin.query.dossier import grid_counts

D0 = dt.date(2026, 12, 1)
_dirs = itertools.count()


def _areas(t: Twin) -> list:
    x0, y0, x1, y1 = t.district.bounds
    out = [t.district, *t.communities.geometry.iloc[:2]]
    for fx, fy in ((0.3, 0.3), (0.55, 0.4)):
        cx, cy = x0 + fx * (x1 - x0), y0 + fy * (y1 - y0)
        out.append(box(cx, cy, cx + 0.35 * (x1 - x0), cy + 0.4 * (y1 - y0)))
    return out


def _assert_same(view: Twin) -> None:
    assert "query.point_index" in view.cache and "query.partition_index" in view.cache  # derived: base + delta
    fresh = dataclasses.replace(view, cache={})  # from scratch: the index is built from the live frames
    for area in _areas(view):
        a = twin.summarize_area(view, area, by="grid")
        b = twin.summarize_area(fresh, area, by="grid")
        assert a.totals == b.totals and a.buildings_by_use == b.buildings_by_use
        assert a.businesses_by_credit == b.businesses_by_credit
        pd.testing.assert_frame_equal(a.by_grid, b.by_grid)
        pd.testing.assert_frame_equal(a.by_community, b.by_community)
        for kind in ("persons", "buildings", "businesses"):
            assert twin.records_in_area(view, area, kind).ids == twin.records_in_area(fresh, area, kind).ids
    for cat in ("residents", "elderly_80", "businesses", "dwellings"):
        pd.testing.assert_frame_equal(twin.overlay(view, cat, res=9), twin.overlay(fresh, cat, res=9))
    pd.testing.assert_frame_equal(grid_counts(view), grid_counts(fresh))
    # and the live frames agree with a direct count
    s = twin.summarize_area(view, view.district, by=None)
    assert s.totals["residents"] == len(view.persons) and s.totals["businesses"] == len(view.businesses)


def _random_change(live: LiveTwin, draw, eff: dt.date) -> ch.Change:  # noqa: ANN001
    w = live.world
    kw = {"effective_date": eff, "author": "hypothesis", "reason": "oracle"}
    kind = draw(st.sampled_from(["born", "dies", "moves", "moves", "out", "in", "flag", "biz", "credit",
                                 "building", "demolish", "dwelling", "household"]))
    fr = live.frames_on(eff)
    p = fr.persons
    pid = int(p["person_id"].iloc[draw(st.integers(0, len(p) - 1))])
    dw = fr.dwellings
    did = int(dw["dwelling_id"].iloc[draw(st.integers(0, len(dw) - 1))])
    if kind == "born":
        return ch.PersonBorn(dwelling_id=did, sex=draw(st.sampled_from(["M", "F"])), **kw)
    if kind == "dies":
        return ch.PersonDies(person_id=pid, **kw)
    if kind == "moves":  # anywhere: across grid and community lines
        return ch.PersonMoves(person_id=pid, dwelling_id=did, **kw)
    if kind == "out":
        return ch.PersonMovesOut(person_id=pid, **kw)
    if kind == "in":
        return ch.PersonMovesIn(dwelling_id=did, sex="F", birth_date=dt.date(1940, 2, 29), disabled=True, **kw)
    if kind == "flag":
        return ch.PersonFlagChanged(person_id=pid, flag="low_income", value=not bool(w.row("persons", pid)["low_income"]),
                                    **kw)
    biz = fr.businesses
    bid = int(biz["business_id"].iloc[draw(st.integers(0, len(biz) - 1))])
    b = fr.buildings
    bld = int(b["building_id"].iloc[draw(st.integers(0, len(b) - 1))])
    if kind == "biz":
        return ch.BusinessMoves(business_id=bid, building_id=bld, **kw)
    if kind == "credit":
        now = w.row("businesses", bid)["credit"]
        return ch.BusinessCreditChanged(business_id=bid, credit="red" if now != "red" else "green", **kw)
    if kind == "building":
        c = live.t.cells.iloc[draw(st.integers(0, len(live.t.cells) - 1))]
        h = 0.00004
        return ch.BuildingAdded(footprint=mapping(box(c.lng - h, c.lat - h, c.lng + h, c.lat + h)),
                                use=draw(st.sampled_from(["residential", "commercial"])), floors=3, **kw)
    if kind == "demolish":
        empty = [int(i) for i in b["building_id"] if w.res_by_building.get(int(i)) == 0
                 and w.biz_by_building.get(int(i)) == 0]
        if empty:
            return ch.BuildingDemolished(building_id=empty[draw(st.integers(0, len(empty) - 1))], **kw)
        return ch.DwellingAdded(building_id=bld, **kw)
    if kind == "dwelling":
        return ch.DwellingAdded(building_id=bld, **kw)
    return ch.HouseholdForms(person_ids=(pid,), dwelling_id=did, **kw)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                   HealthCheck.too_slow])
@given(data=st.data())
def test_delta_answers_equal_a_rebuild(small_twin: Twin, tmp_path_factory, data) -> None:  # noqa: ANN001
    live = LiveTwin(small_twin, sqlite_store(tmp_path_factory.mktemp(f"oracle{next(_dirs)}")),
                    compact_after=data.draw(st.sampled_from([5, 10_000])))
    n_sets = data.draw(st.integers(1, 3))
    for k in range(n_sets):
        eff = D0 + dt.timedelta(days=30 * k)
        cs = []
        for _ in range(data.draw(st.integers(1, 8))):
            c = _random_change(live, data.draw, eff)
            try:  # a change the state refuses (e.g. the person drawn died earlier in the run) is skipped
                live.apply([c])
            except TwinError:
                continue
            cs.append(c)
        _assert_same(live.twin_on(eff))
        live.wait_compaction()
    last = D0 + dt.timedelta(days=30 * (n_sets - 1))
    _assert_same(live.twin_on(last))
    _assert_same(live.twin_on(D0 - dt.timedelta(days=1)))  # before every change: the snapshot, ages on that day


def test_ages_move_with_the_as_of_date(small_twin: Twin, tmp_path) -> None:  # noqa: ANN001
    live = LiveTwin(small_twin, sqlite_store(tmp_path))
    p = small_twin.persons
    b = p["birth_date"].to_numpy().astype("datetime64[D]")
    turning = np.flatnonzero((b >= np.datetime64("1956-12-02")) & (b <= np.datetime64("1957-11-30")))
    assert len(turning)  # residents who turn 70 between 2026-12-01 and 2027-11-30
    s1 = twin.summarize_area(live.twin_on(dt.date(2026, 12, 1)), small_twin.district, by=None).totals["elderly_70"]
    s2 = twin.summarize_area(live.twin_on(dt.date(2027, 11, 30)), small_twin.district, by=None).totals["elderly_70"]
    dead = (b < np.datetime64("1927-12-01")).sum()  # nobody dies unless a change says so
    assert s2 - s1 == len(turning) and dead >= 0
    frozen = twin.summarize_area(small_twin, small_twin.district, by=None).totals["elderly_70"]
    assert frozen == (twin.model.ages_on(b, small_twin.as_of) >= 70).sum()
