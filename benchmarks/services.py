"""No-application services on the default twin (run: ``.venv/bin/python benchmarks/services.py [--changes 400]
[--days 8]``).

A :class:`twin.live.state.LiveTwin` over the default twin with a throwaway SQLite store (the default twin's own
store is never touched) gets ``--changes`` SYNTHETIC person changes (deaths, move-outs, move-ins, births,
disability certifications) spread over ``--days`` distinct days of December 2026, committed as one change set.
Then, in the same run:

* ``run_services`` on the live state (the period cut at event days: 1 + days + 1 reads of ``persons_on``);
* the obvious alternative: read ``persons_on`` for every day of the month and apply the rules day by day
  (32 reads); both answers must be equal (``exact``);
* ``run_services`` on the frozen snapshot, the district work list and its XLSX export.

Prints a table and a last JSON line with ``run_s_live``, ``run_s_every_day``, ``persons_on_calls``,
``run_s_snapshot``, ``work_list_s``, ``xlsx_s``, ``rows`` and ``exact``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

import twin
from twin.access.audit import use_audit_dir
from twin.live import changes as ch
from twin.live.state import LiveTwin
from twin.services import default_services, run_services, snapshot_view, work_list
from twin.services.rules import qualifying
from twin.services.worklists import export_work_list
from twin.store.sql import Store

START, END = dt.date(2026, 12, 1), dt.date(2026, 12, 31)


def _changes(t: twin.Twin, n: int, days: int, rng: np.random.Generator) -> list[ch.Change]:
    p = t.persons
    bd = p["birth_date"]
    turning = p.loc[(bd.dt.year == 1956) & (bd.dt.month == 12), "person_id"].to_numpy()
    others = rng.choice(p["person_id"].to_numpy(), n, replace=False)
    people = np.unique(np.concatenate([rng.choice(turning, min(len(turning), n // 4), replace=False), others]))[:n]
    when = [START + dt.timedelta(days=int(d)) for d in np.sort(rng.choice(31, days, replace=False))]
    dwellings = t.dwellings.loc[t.dwellings["occupied"], "dwelling_id"].to_numpy()
    kw = {"author": "benchmark", "reason": "SYNTHETIC benchmark change"}
    out: list[ch.Change] = []
    for i, pid in enumerate(people.tolist()):
        d = when[i % days]
        k = i % 5
        if k == 0:
            out.append(ch.PersonDies(person_id=pid, effective_date=d, **kw))
        elif k == 1:
            out.append(ch.PersonMovesOut(person_id=pid, effective_date=d, **kw))
        elif k == 2:
            out.append(ch.PersonMovesIn(dwelling_id=int(rng.choice(dwellings)), sex="F",
                                        birth_date=dt.date(1956, 12, 1 + i % 28), effective_date=d, **kw))
        elif k == 3:
            out.append(ch.PersonBorn(dwelling_id=int(rng.choice(dwellings)), sex="M", effective_date=d, **kw))
        elif not bool(p["disabled"].iloc[pid]):
            out.append(ch.PersonFlagChanged(person_id=pid, flag="disabled", value=True, effective_date=d, **kw))
    return out


def _every_day(view: LiveTwin) -> set[tuple[str, int, dt.date]]:
    out: set[tuple[str, int, dt.date]] = set()
    before = view.persons_on(START - dt.timedelta(days=1))
    d = START
    while d <= END:
        state = view.persons_on(d)
        for rule in default_services():
            hit = qualifying(rule, state, d, d, before=before)
            out |= {(rule.name, int(x), d) for x in hit["person_id"]}
        before, d = state, d + dt.timedelta(days=1)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--changes", type=int, default=400)
    ap.add_argument("--days", type=int, default=8)
    args = ap.parse_args()
    t = twin.load()
    tmp = Path(tempfile.mkdtemp(prefix="svc-bench-"))
    store = Store(tmp / "state.sqlite")
    use_audit_dir(store, tmp)
    live = LiveTwin(t, store)
    live.apply(_changes(t, args.changes, args.days, np.random.default_rng(20231)))
    rows = []

    def timed(name: str, f):  # noqa: ANN001, ANN202
        t0 = time.perf_counter()
        v = f()
        rows.append((name, time.perf_counter() - t0))
        return v

    run = timed("run_services, live (cut at event days)", lambda: run_services(live, "2026-12"))
    every = timed("every day read (the alternative)", lambda: _every_day(live))
    got = {(s, int(p), q.date()) for s, p, q in zip(run.rows["service"], run.rows["person_id"],
                                                    run.rows["qualifying_date"])}
    snap = snapshot_view(t)
    timed("run_services, snapshot", lambda: run_services(snap, "2026-12"))
    work = timed("work list (district, audited)", lambda: work_list(run, t, store=store))
    timed("XLSX export of the work list", lambda: export_work_list(work, "xlsx"))
    load = os.getloadavg()[0]
    print(f"default twin, {len(t.persons):,} persons; {args.changes} changes on {args.days} days; "
          f"load {load:.1f}")
    print(pd.DataFrame(rows, columns=["step", "seconds"]).round(2).to_string(index=False))
    print("counts:", run.counts())
    secs = dict(rows)
    print(json.dumps({
        "run_s_live": round(secs["run_services, live (cut at event days)"], 2),
        "run_s_every_day": round(secs["every day read (the alternative)"], 2),
        "persons_on_calls": run.persons_on_calls, "run_s_snapshot": round(secs["run_services, snapshot"], 2),
        "work_list_s": round(secs["work list (district, audited)"], 2),
        "xlsx_s": round(secs["XLSX export of the work list"], 2), "rows": len(run.rows),
        "exact": got == every, "load": round(load, 1)}))


if __name__ == "__main__":
    main()
