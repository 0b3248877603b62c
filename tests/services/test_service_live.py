"""The engine over the real live state (twin.live.state.LiveTwin) after committed changes on the small twin."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pytest

from twin.access.audit import use_audit_dir
from twin.live import changes as ch
from twin.live.state import LiveTwin
from twin.services import LiveView, run_services
from twin.store.sql import Store


def _d(day: int) -> dt.date:
    return dt.date(2026, 12, day)


@pytest.fixture()
def live(small_twin, tmp_path: Path):
    s = Store(tmp_path / "state.sqlite")
    use_audit_dir(s, tmp_path / "audit")
    lt = LiveTwin(small_twin, s)
    yield lt
    s.close()


def test_live_twin_is_a_live_view_and_the_rules_follow_its_changes(live):
    assert isinstance(live, LiveView)
    p = live.t.persons
    bd = p["birth_date"]
    turning = p.loc[(bd.dt.year == 1956) & (bd.dt.month == 12) & (bd.dt.day.between(2, 30))]
    assert len(turning) >= 2
    a, b = (int(x) for x in turning["person_id"].iloc[:2])
    day_a, day_b = (int(bd[p["person_id"] == x].dt.day.iloc[0]) for x in (a, b))
    healthy = int(p.loc[~p["disabled"] & (bd.dt.year < 1990), "person_id"].iloc[0])
    dwelling = int(p.loc[p["person_id"] == healthy, "dwelling_id"].iloc[0])
    kw = {"author": "李敏", "reason": "test"}
    live.apply([
        ch.PersonDies(person_id=a, effective_date=_d(day_a - 1), **kw),  # the day before the 70th birthday
        ch.PersonMovesOut(person_id=b, effective_date=_d(day_b + 1), **kw),  # the day after
        ch.PersonMovesIn(dwelling_id=dwelling, sex="F", birth_date=dt.date(1956, 12, 20), effective_date=_d(19), **kw),
        ch.PersonBorn(dwelling_id=dwelling, sex="M", effective_date=_d(10), **kw),
        ch.PersonFlagChanged(person_id=healthy, flag="disabled", value=True, effective_date=_d(15), **kw),
    ])
    n = len(p)
    run = run_services(live, "2026-12")
    seventy = set(run.for_service("elderly_70")["person_id"])
    assert a not in seventy and b in seventy and n in seventy  # n: the new id of the person who moved in
    assert run.for_service("newborn_followup")["person_id"].tolist() == [n + 1]
    dis = run.for_service("disability_followup")
    assert dis["person_id"].tolist() == [healthy] and str(dis["qualifying_date"].iloc[0].date()) == "2026-12-15"
    want = {int(x) for x in turning["person_id"]} - {a} | {n}
    assert seventy == want
    assert run.persons_on_calls == 1 + 1 + len({day_a - 1, day_b + 1, 19, 10, 15} - {1})
    before = run_services(live, "2026-11")  # nothing of December leaks into November
    assert not np.isin(before.rows["person_id"], [n, n + 1]).any()
