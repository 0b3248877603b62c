"""The engine on the small twin: month totals against a direct pandas computation on the state, and against a
day-by-day oracle after random births, deaths, moves and flag changes."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from twin.services import FrameView, located_persons, run_services, snapshot_view
from twin.services.config import AgeRule, FlagRule, default_services


def _direct_age_count(persons: pd.DataFrame, age: int, year: int, month: int, *, flag: str | None = None) -> int:
    """Residents whose ``age``-th birthday falls in (year, month), by pandas date fields (29 Feb → 1 Mar)."""
    bd = persons["birth_date"]
    leap = year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
    feb29 = (bd.dt.month == 2) & (bd.dt.day == 29)
    anniv_month = bd.dt.month.where(~(feb29 & (not leap)), 3)
    hit = (bd.dt.year + age == year) & (anniv_month == month)
    if flag:
        hit &= persons[flag]
    return int(hit.sum())


def test_month_totals_equal_a_direct_pandas_computation_on_the_snapshot(small_twin):
    view = snapshot_view(small_twin)
    persons = located_persons(small_twin)
    nonzero = 0
    for year, month in [(2026, m) for m in range(1, 13)] + [(2024, 2), (2024, 3), (2025, 3)]:
        run = run_services(view, f"{year}-{month:02d}")
        counts = run.counts()
        for s in run.services:
            if isinstance(s, AgeRule):
                want = _direct_age_count(persons, s.age, year, month, flag=s.requires[0] if s.requires else None)
                assert counts[s.name] == want, (s.name, year, month)
                nonzero += want
            else:
                assert counts[s.name] == 0  # nothing is certified in a frozen snapshot
        assert run.persons_on_calls == 2  # no events: the day before and the first day
    assert nonzero > 50  # the comparison is not vacuous


def _random_events(persons: pd.DataFrame, rng: np.random.Generator, start: dt.date, days: int) -> tuple[
        pd.DataFrame, pd.DataFrame, np.ndarray]:
    """Deaths, move-outs, move-ins (of held-out persons), births and flag changes on random days of the period,
    biased towards residents with a birthday in it so that the boundaries are exercised."""
    ids = persons["person_id"].to_numpy()
    held_out = rng.choice(ids, 150, replace=False)
    present = np.setdiff1d(ids, held_out)
    born = persons.sample(40, random_state=1).copy()
    born["person_id"] = ids.max() + 1 + np.arange(len(born))
    days_of = rng.integers(0, days, len(born))
    born["birth_date"] = [pd.Timestamp(start + dt.timedelta(days=int(d))) for d in days_of]
    universe = pd.concat([persons, born], ignore_index=True)
    q70 = persons.loc[(persons["birth_date"].dt.year == start.year - 70) & (persons["birth_date"].dt.month ==
                                                                           start.month), "person_id"].to_numpy()
    rows = []

    def day() -> dt.date:
        return start + dt.timedelta(days=int(rng.integers(-2, days + 1)))

    for pid in rng.choice(np.union1d(present[:400], np.intersect1d(q70, present)), 120, replace=False):
        rows.append(("person.dies" if rng.random() < 0.5 else "person.moves_out", int(pid), day(), None))
    for pid in held_out[:100]:
        rows.append(("person.moves_in", int(pid), day(), None))
    for pid, d in zip(born["person_id"], days_of):
        rows.append(("person.born", int(pid), start + dt.timedelta(days=int(d)), None))
    for pid in rng.choice(present, 200, replace=False):
        flag = str(rng.choice(["disabled", "low_income"]))
        rows.append(("person.flag", int(pid), day(), {"flag": flag, "value": bool(rng.random() < 0.8)}))
    ev = pd.DataFrame(rows, columns=["kind", "person_id", "effective_date", "fields"])
    ev.insert(0, "seq", np.arange(1, len(ev) + 1))
    return universe, ev, np.concatenate([present, held_out[100:]])


def _oracle(view: FrameView, services, start: dt.date, end: dt.date) -> set[tuple[str, int, dt.date]]:
    """Who qualifies, read day by day: persons_on(d) for every day, pandas DateOffset anniversaries."""
    out: set[tuple[str, int, dt.date]] = set()
    d = start
    prev = view.persons_on(start - dt.timedelta(days=1))
    while d <= end:
        s = view.persons_on(d)
        for rule in services:
            if isinstance(rule, AgeRule):
                bd = s["birth_date"]
                q = bd + pd.DateOffset(years=rule.age)
                q = q.where(~((bd.dt.month == 2) & (bd.dt.day == 29) & (q.dt.day == 28)), q + pd.Timedelta(days=1))
                hit = q.dt.date == d
                for f in rule.requires:
                    hit &= s[f]
            else:
                assert isinstance(rule, FlagRule)
                before = prev.set_index("person_id")[rule.flag]
                was = s["person_id"].map(before)
                hit = s[rule.flag] & was.eq(False)
            out |= {(rule.name, int(p), d) for p in s.loc[hit, "person_id"]}
        prev, d = s, d + dt.timedelta(days=1)
    return out


@pytest.mark.parametrize("seed", [1, 2])
def test_engine_equals_a_day_by_day_oracle_after_random_changes(small_twin, seed):
    rng = np.random.default_rng(seed)
    start, end = dt.date(2026, 12, 1), dt.date(2026, 12, 31)
    persons = located_persons(small_twin)
    universe, events, present = _random_events(persons, rng, start, 31)
    view = FrameView(universe, events, present=present)
    services = default_services()
    run = run_services(view, "2026-12", services=services)
    got = {(s, int(p), q.date()) for s, p, q in zip(run.rows["service"], run.rows["person_id"],
                                                  run.rows["qualifying_date"])}
    want = _oracle(view, services, start, end)
    assert got == want
    kinds = {s for s, _, _ in got}
    assert {"elderly_70", "newborn_followup", "disability_followup"} <= kinds  # every kind of rule was exercised
    assert run.persons_on_calls < 33
    # the month's totals against a direct pandas computation on the state of each qualifying day
    for name, n in run.counts().items():
        assert n == sum(1 for s, _, _ in want if s == name)


def test_rows_carry_the_location_on_the_qualifying_date(small_twin):
    persons = located_persons(small_twin)
    run = run_services(snapshot_view(small_twin), "2026-12")
    assert len(run.rows) > 0
    loc = persons.set_index("person_id").loc[run.rows["person_id"], ["dwelling_id", "grid_code", "community_code"]]
    assert (loc["dwelling_id"].to_numpy() == run.rows["dwelling_id"].to_numpy()).all()
    assert (loc["grid_code"].to_numpy() == run.rows["grid_code"].to_numpy()).all()
    assert (run.rows["community_code"].str.len() == 12).all()
